"""The deployment after a failure, end to end: real CLI, Redis, workers and the local AWS."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest

from localaws.devstack import Worker
from localaws.testing import create_services
from tests.integration.conftest import Stack
from worker.domain.planning import DISCARD_TAG

pytestmark = pytest.mark.integration

CONTAINERS = [
    {"name": "web", "image": "registry.local:5000/shop/web:1.0.0", "memory": 128,
     "essential": True},
    {"name": "proxy", "image": "registry.local:5000/shop/proxy:1.0.0", "memory": 64,
     "essential": True},
]  # fmt: skip


def _images(stack: Stack, arn: str) -> dict[str, str]:
    definition = stack.ecs().describe_task_definition(taskDefinition=arn)["taskDefinition"]
    return {c["name"]: c["image"] for c in definition["containerDefinitions"]}


def test_a_rolled_back_change_does_not_come_back_with_the_next_deployment(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """The scenario users hit: a broken proxy image is rolled back by the circuit breaker; the
    plan of the next deployment names the good base and why; the next deployment of web ends
    succeeded with the proxy it had before, not the rolled-back one."""
    (name,) = create_services(stack.endpoint, [f"af-{uuid.uuid4().hex[:6]}"], containers=CONTAINERS)
    start_worker("w1")
    update = ("update", "--cluster", "demo", "--service", name)
    broken = stack.cli(*update, "--image", "proxy=:fail-x", "--json")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    failed = json.loads(broken.stdout)
    assert failed["state"] == "rolled_back"
    tags = stack.ecs().describe_task_definition(
        taskDefinition=failed["task_definition_arn"], include=["TAGS"]
    )["tags"]
    assert {"key": DISCARD_TAG, "value": f"rolled_back by {failed['id']}"} in tags

    planned = stack.cli(*update, "--image", "web=:1.1.0", "--dry-run", "--json")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    (plan,) = json.loads(planned.stdout)
    assert plan["task_definition"]["base"] == f"{name}:1"
    assert plan["task_definition"]["skipped"] == [f"{name}:2 (rolled_back by {failed['id']})"]
    assert [f["field"] for f in plan["task_definition"]["fields"]] == [
        "containerDefinitions[0].image"
    ]
    text = stack.cli(*update, "--image", "web=:1.1.0", "--dry-run")
    assert f"stepped over {name}:2" in text.stdout

    fixed = stack.cli(*update, "--image", "web=:1.1.0", "--json")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    record = json.loads(fixed.stdout)
    assert record["state"] == "succeeded"
    images = _images(stack, record["task_definition_arn"])
    assert images == {
        "web": "registry.local:5000/shop/web:1.1.0",
        "proxy": "registry.local:5000/shop/proxy:1.0.0",
    }
