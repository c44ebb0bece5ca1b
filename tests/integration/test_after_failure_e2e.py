"""The deployment after a failure, end to end: real CLI, Redis, workers and the local AWS."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import yaml

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


def test_a_release_superseded_by_a_change_that_rolls_back_is_not_succeeded(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """X updates web; release R (wave 1: web, wave 2: api) queues behind it; C (a broken web
    image) queues behind R and carries R's web change, so R's web deployment is superseded.
    R waits for C, takes its outcome (rolled back) and fails: exit 1, and wave 2 never starts."""
    web, api = create_services(
        stack.endpoint, [f"rw-{uuid.uuid4().hex[:6]}", f"ra-{uuid.uuid4().hex[:6]}"]
    )
    worker = start_worker("w1")
    x = stack.cli("update", "--cluster", "demo", "--service", web, "--image", "app=:1.1.0",
                  "--no-wait")  # fmt: skip
    assert x.returncode == 0, x.stderr
    # The worker is paused (its heartbeat outlives the pause) so that X cannot finish before R
    # and C are queued behind it, however slow the machine makes the commands.
    os.killpg(worker.proc.pid, signal.SIGSTOP)
    path = tmp_path / "release.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "cluster": "demo",
                "waves": [
                    [{"service": web, "images": {"app": ":1.2.0"}}],
                    [{"service": api, "images": {"app": ":1.2.0"}}],
                ],
            }
        )
    )
    r = stack.cli("release", "-f", str(path), "--no-wait")
    assert r.returncode == 0, r.stderr
    release_id = r.stdout.strip().split()[-1]
    c = stack.cli("update", "--cluster", "demo", "--service", web, "--image", "app=:fail-1",
                  "--no-wait")  # fmt: skip
    assert c.returncode == 0, c.stderr
    os.killpg(worker.proc.pid, signal.SIGCONT)
    waited = stack.cli("wait", release_id, "--json")
    assert waited.returncode == 1, waited.stdout + waited.stderr
    release = json.loads(waited.stdout)
    assert release["state"] == "failed"
    (web_id,) = release["waves"][0]
    assert release["outcomes"][web_id] == "rolled_back"
    (api_id,) = release["waves"][1]
    assert redis.Redis.from_url(stack.redis_url).get(f"conveyor:deployment:{api_id}") is None
    service = stack.ecs().describe_services(cluster="demo", services=[api])["services"][0]
    assert len(stack.ecs().list_task_definitions(familyPrefix=api)["taskDefinitionArns"]) == 1
    assert service["deployments"][0]["rolloutState"] == "COMPLETED"
