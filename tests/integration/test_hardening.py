"""Paths production takes that the first suites did not script (issue: hardening).

Each test here failed on the code before the fix it pins; docs/reliability.md lists them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

import pytest

from localaws.devstack import Worker
from tests.integration.conftest import Stack
from tests.integration.test_update_e2e import make_service

# What RegisterTaskDefinition accepts of a DescribeTaskDefinition answer, for outside actors.
REGISTER_KEYS = ("family", "containerDefinitions", "networkMode", "requiresCompatibilities")

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


def _wait_step(stack: Stack, deployment_id: str, step: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while stack.record(deployment_id)["step"] != step:
        assert time.monotonic() < deadline, stack.record(deployment_id)
        time.sleep(0.1)


def test_cancel_after_an_outside_deployment_leaves_it_alone(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """Someone deploys by hand while our broken rollout is watched; then we cancel.

    The rollback that a cancel starts checks the PRIMARY first: it is the outsider's, so the
    service stays on their revision and the deployment ends saying it was superseded.
    """
    start_worker("w1")
    name = make_service(stack, breaker=False)
    ecs = stack.ecs()
    original = ecs.describe_services(cluster="demo", services=[name])["services"][0]
    started = stack.cli(
        "update", "--cluster", "demo", "--service", name, "--image", "app=:fail-7", "--no-wait"
    )
    assert started.returncode == 0, started.stderr
    deployment_id = started.stdout.strip()
    _wait_step(stack, deployment_id, "watch")
    base = ecs.describe_task_definition(taskDefinition=original["taskDefinition"])
    definition = {k: v for k, v in base["taskDefinition"].items() if k in REGISTER_KEYS}
    theirs = ecs.register_task_definition(**definition)["taskDefinition"]["taskDefinitionArn"]
    ecs.update_service(cluster="demo", service=name, taskDefinition=theirs)
    result = stack.cli("cancel", deployment_id, "--json")
    record = json.loads(result.stdout)
    assert record["state"] in ("cancelled", "failed"), record
    assert "superseded" in record["reason"] or "newer deployment" in record["reason"]
    service = ecs.describe_services(cluster="demo", services=[name])["services"][0]
    assert service["taskDefinition"] == theirs
