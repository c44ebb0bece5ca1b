"""Paths production takes that the first suites did not script (issue: hardening).

Each test here failed on the code before the fix it pins; docs/reliability.md lists them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest

from localaws.devstack import Worker
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


def test_workers_and_producers_on_a_custom_queue(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """CONVEYOR_QUEUE is honoured by every message, not only by the workers' consumer.

    Before, workers consumed the configured queue while every step was sent to the
    hard-coded one, so any other value stopped every deployment.
    """
    stack.env["CONVEYOR_QUEUE"] = "deploys-eu"
    start_worker("w1")
    tag = f"q-{uuid.uuid4().hex[:6]}"
    result = stack.cli(
        "update",
        "--cluster",
        "demo",
        "--service",
        "web",
        "--image",
        f"web=:{tag}",
        "--json",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert json.loads(result.stdout)["state"] == "succeeded"
