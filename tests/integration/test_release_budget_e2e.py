"""A release's failure budget end to end: the real CLI and a worker, the local AWS."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from localaws.devstack import Worker
from tests.integration.conftest import Stack
from tests.integration.test_releases_e2e import image_of, services, write

pytestmark = pytest.mark.integration


def test_a_spent_failure_budget_stops_a_continue_on_failure_release(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """`--continue-on-failure` with max_failures 1: the first broken wave is tolerated, the
    second spends the budget, and the third wave's service is never touched (exit 1)."""
    start_worker("w1")
    a, b, c = services(stack, 3)
    path = write(
        tmp_path,
        {
            "cluster": "demo",
            "max_failures": 1,
            "waves": [
                [{"service": a, "images": {"app": ":fail-4.0.0"}}],
                [{"service": b, "images": {"app": ":fail-4.0.0"}}],
                [{"service": c, "images": {"app": ":4.0.0"}}],
            ],
        },
    )
    result = stack.cli("release", "-f", str(path), "--continue-on-failure", "--json")
    assert result.returncode == 1, result.stderr + result.stdout
    release = json.loads(result.stdout)
    assert release["state"] == "failed"
    assert [d["state"] for d in release["deployments"]] == ["rolled_back", "rolled_back", "pending"]
    assert "failure budget spent: 2 failed, at most 1 allowed" in release["reason"]
    assert image_of(stack, c).endswith(":1.0.0")

    refused = stack.cli("release", "-f", str(path), "--fail-fast")
    assert refused.returncode == 2
    assert "drop fail_fast (or --fail-fast)" in refused.stderr
