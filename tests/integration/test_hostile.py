"""Hostile and malformed input: the worker refuses it, never crashes, never calls AWS."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from config.celery import celery_config
from config.settings import Settings
from localaws.devstack import Worker
from localaws.testing import control
from producers.client import ConveyorClient
from producers.contract.names import TASK_RESOLVE, TASK_WATCH
from producers.contract.records import DeploymentRecord
from producers.contract.store import RecordStore
from tests.integration.conftest import Stack, redis_contents

pytestmark = pytest.mark.integration


def _stats(stack: Stack) -> dict[str, Any]:
    stats: dict[str, Any] = control(stack.endpoint, "GET", "stats")[1]
    return stats


class _Exploit:
    """Unpickling this creates a file: proof that pickle was deserialized."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.path),))


def _deploy_ok(stack: Stack) -> None:
    result = stack.cli(
        "update", "--cluster", "demo", "--service", "web", "--image", "web=:1.2.0", "--json"
    )
    assert result.returncode == 0, result.stderr + result.stdout


def test_pickled_and_malformed_messages_are_refused_and_the_worker_goes_on(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """Pickle is never deserialized; wrong arguments are dropped; real jobs still run."""
    worker = start_worker("w1")
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    config = celery_config(Settings(redis_url=stack.redis_url))  # type: ignore[arg-type]
    config.update(accept_content=["json", "pickle"], task_serializer="pickle")
    attacker = Celery("attacker")
    attacker.config_from_object(config)
    attacker.send_task(
        TASK_WATCH, args=[_Exploit(str(marker)), 1], queue="conveyor", serializer="pickle"
    )
    for args, kwargs in (
        ([], {}),
        (["x", "1"], {}),
        (["x"], {"seq": 1}),
        ([{"deployment": 1}, 1], {}),
        (["x" * 500, 1], {}),
    ):
        attacker.send_task(
            TASK_RESOLVE, args=args, kwargs=kwargs, queue="conveyor", serializer="json"
        )
    attacker.send_task("conveyor.no.such.task", args=[1], queue="conveyor", serializer="json")
    attacker.close()

    def dropped() -> int:
        return worker.log().count('malformed step message dropped"') + worker.log().count(
            'malformed deployment id dropped"'
        )

    deadline = time.monotonic() + 30
    while dropped() < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert dropped() == 5, worker.log()[-3000:]
    assert "Refusing to deserialize untrusted content of type pickle" in worker.log()
    assert not marker.exists(), "a pickled message was deserialized"
    assert worker.proc.poll() is None, "the worker died"
    _deploy_ok(stack)


def test_hand_edited_record_fails_the_job_without_calling_aws(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """A record whose job is garbage fails with InvalidJob; AWS sees no call for it."""
    start_worker("w1")
    client = redis.Redis.from_url(stack.redis_url)
    store = RecordStore(client)
    now = time.time()
    record = DeploymentRecord(
        id="handmade",
        job={"cluster": 5, "images": "web"},
        cluster="demo",
        service="nope",
        created_at=now,
        updated_at=now,
    )
    store.create(record, due=now + 60)
    before = _stats(stack)["calls"]
    app = Celery("sender")
    app.config_from_object(celery_config(Settings(redis_url=stack.redis_url)))  # type: ignore[arg-type]
    app.send_task(TASK_RESOLVE, args=["handmade", 0], queue="conveyor")
    app.close()
    final = ConveyorClient(Settings(redis_url=stack.redis_url)).wait(  # type: ignore[arg-type]
        "handmade", timeout=30, interval=0.2
    )
    assert final.state.value == "failed"
    assert final.error is not None
    assert final.error.code == "InvalidJob"
    assert "cluster" in final.error.message
    assert _stats(stack)["calls"] == before


def test_secrets_never_reach_logs_records_or_results(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """Environment values, secret references and credentials appear nowhere Conveyor writes."""
    env_value = f"envvalue-{uuid.uuid4().hex[:10]}"
    secret_ref = f"arn:aws:ssm:us-east-1:123456789012:parameter/secretref-{uuid.uuid4().hex[:10]}"
    aws_secret = f"awssecret-{uuid.uuid4().hex}"
    stack.env["AWS_SECRET_ACCESS_KEY"] = aws_secret
    worker = start_worker("w1")
    ecs = stack.ecs()
    name = f"sec-{uuid.uuid4().hex[:6]}"
    ecs.register_task_definition(
        family=name,
        containerDefinitions=[
            {
                "name": "app",
                "image": "registry.local:5000/t/app:1.0.0",
                "memory": 128,
                "environment": [{"name": "API_TOKEN", "value": env_value}],
                "secrets": [{"name": "DB_PASSWORD", "valueFrom": secret_ref}],
            }
        ],
    )
    ecs.create_service(
        cluster="demo",
        serviceName=name,
        taskDefinition=name,
        desiredCount=1,
        launchType="EC2",
        deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": True}},
    )
    ok = stack.cli(
        "update", "--cluster", "demo", "--service", name, "--image", "app=:1.1.0", "--json"
    )
    bad = stack.cli(
        "update", "--cluster", "demo", "--service", name, "--image", "app=:fail-1", "--json"
    )
    assert ok.returncode == 0, ok.stderr
    assert bad.returncode == 1, bad.stderr
    new = ecs.describe_task_definition(taskDefinition=name)["taskDefinition"]
    assert new["containerDefinitions"][0]["secrets"][0]["valueFrom"] == secret_ref  # carried over

    client = redis.Redis.from_url(stack.redis_url)
    stored = redis_contents(client)
    assert b"conveyor:deployment:" in stored, "no record read: the check would prove nothing"
    places = {
        "worker log": worker.log().encode(),
        "redis (records, results, queues)": stored,
        "cli output": (ok.stdout + ok.stderr + bad.stdout + bad.stderr).encode(),
    }
    for where, text in places.items():
        for secret in (env_value, secret_ref, aws_secret):
            assert secret.encode() not in text, f"{secret[:12]}... leaked into the {where}"
