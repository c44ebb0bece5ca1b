"""A release of canary services that moves on at a lifecycle stage, end to end: the real CLI,
Redis, a celery worker and the local AWS deploying each canary stage by stage."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from localaws.devstack import Worker
from tests.integration.conftest import Stack
from tests.integration.test_strategies_e2e import _configuration, _configure, _service, _steady

pytestmark = pytest.mark.integration


def test_a_canary_release_moves_on_at_production_traffic_and_waits_for_every_verdict(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """Two canary services in two waves with ``move_on_at: production-traffic``: each
    wave starts while the one before still bakes (created before it finished), the records
    note where each deployment was when its wave moved on, and the release succeeds only once
    every deployment did."""
    start_worker("w1")
    names = [_service(stack, "CANARY") for _ in range(2)]
    for name in names:
        _steady(stack, name)
        _configure(stack, name, "CANARY", None, hook=False)
        # A 5 s bake: long enough that wave 2 starts while wave 1 still bakes.
        stack.ecs().update_service(
            cluster="demo",
            service=name,
            deploymentConfiguration={**_configuration("CANARY", None), "bakeTimeInMinutes": 50},
        )
    path = tmp_path / "release.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "release": "canaries",
                "cluster": "demo",
                "move_on_at": "production-traffic",
                "waves": [[{"service": n, "images": {"app": ":2.0.0"}}] for n in names],
            }
        )
    )

    result = stack.cli("release", "-f", str(path), "--json")

    assert result.returncode == 0, result.stderr + result.stdout
    release = json.loads(result.stdout)
    assert release["state"] == "succeeded"
    assert release["move_on_at"] == "PRODUCTION_TRAFFIC_SHIFT"
    ((first,), (second,)) = release["waves"]
    records = {i: stack.record(i) for i in (first, second)}
    assert [r["state"] for r in records.values()] == ["succeeded"] * 2
    # The second wave began while the first was still deploying (baking).
    assert records[second]["created_at"] < records[first]["finished_at"]
    assert first in release["reached"]
    assert records[first]["release_move_on_at"] == "PRODUCTION_TRAFFIC_SHIFT"
