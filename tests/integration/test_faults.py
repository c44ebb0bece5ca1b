"""Faults: throttling and 5xx from AWS, crashed workers, a restarted Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from config.settings import Settings
from localaws.devstack import Worker
from localaws.testing import control as local_aws_control
from localaws.testing import create_services
from producers.client import ConveyorClient
from producers.contract.jobs import ImageUpdate, UpdateServiceJob
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


def control(stack: Stack, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """Call the local AWS control API; the answer's JSON body."""
    return local_aws_control(stack.endpoint, method, path, body)[1]


def make_services(stack: Stack, count: int) -> list[str]:
    """Steady one-container services with the breaker on."""
    return create_services(stack.endpoint, [f"f-{uuid.uuid4().hex[:8]}" for _ in range(count)])


def revisions(stack: Stack, family: str) -> int:
    arns = stack.ecs().list_task_definitions(familyPrefix=family)["taskDefinitionArns"]
    return len([a for a in arns if a.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family])


def test_throttling_and_server_errors_do_not_fail_or_double_deployments(
    stack: Stack, start_worker: Callable[[str], Worker], figures: dict[str, object]
) -> None:
    """30% throttling and 5% 5xx on every ECS call: all deployments succeed, one revision each."""
    names = make_services(stack, 6)
    start_worker("w1")
    start_worker("w2")
    control(stack, "DELETE", "stats")
    # Seed 7 answers the first ECS request with a 5xx and throttles the second, so every run
    # injects both faults; the rest of the sequence is random at the stated rates.
    control(stack, "POST", "faults", {"throttle": 0.3, "server_error": 0.05, "seed": 7})
    try:
        client = ConveyorClient(Settings(redis_url=stack.redis_url))  # type: ignore[arg-type]
        ids = [
            client.enqueue(
                UpdateServiceJob(
                    cluster="demo",
                    service=name,
                    images=(ImageUpdate(container="app", image=":2.0.0"),),
                )
            ).id
            for name in names
        ]
        records = [client.wait(i, timeout=240, interval=0.5) for i in ids]
    finally:
        control(stack, "DELETE", "faults")
    stats = control(stack, "GET", "stats")
    assert [r.state.value for r in records] == ["succeeded"] * len(names), [
        (r.state, r.reason) for r in records
    ]
    assert sum(stats["throttled"].values()) > 0, "no fault was injected: the test proves nothing"
    assert sum(stats["server_errors"].values()) > 0
    for name in names:
        assert revisions(stack, name) == 2, f"{name} got more than one new revision"
    figures["aws_faults"] = {
        "deployments": len(names),
        "succeeded": len(records),
        "ecs_calls": sum(stats["calls"].values()),
        "throttled": sum(stats["throttled"].values()),
        "server_errors": sum(stats["server_errors"].values()),
        "seconds_enqueue_to_last_verdict": round(
            max(r.finished_at or 0 for r in records) - min(r.created_at for r in records), 1
        ),
    }


@pytest.mark.slow
def test_worker_killed_at_each_step_boundary(
    stack: Stack, start_worker: Callable[[str], Worker], figures: dict[str, object]
) -> None:
    """SIGKILL after register, after update and mid-watch: each job still ends right, once."""
    boundaries = {
        "update": "after register",
        "watch": "after update",
        "watch+": "in the middle of watching",
    }
    names = make_services(stack, len(boundaries))
    client = ConveyorClient(Settings(redis_url=stack.redis_url))  # type: ignore[arg-type]
    control(stack, "DELETE", "stats")
    recovery: dict[str, float] = {}
    for name, boundary in zip(names, boundaries, strict=True):
        worker = start_worker(f"victim-{name}")
        if boundary == "update":
            # Register commits and the update step starts within milliseconds: hold
            # UpdateService so the kill reliably lands after register, during update.
            control(stack, "POST", "faults", {"latency_ms": 3000, "operations": ["UpdateService"]})
        deployment = client.enqueue(
            UpdateServiceJob(
                cluster="demo",
                service=name,
                images=(ImageUpdate(container="app", image=":2.0.0"),),
            )
        ).id
        step, extra = boundary.rstrip("+"), boundary.endswith("+")
        deadline = time.monotonic() + 60
        while True:
            record = client.status(deployment)
            if record.step.value == step and (not extra or record.progress.desired):
                break
            assert time.monotonic() < deadline, record
            time.sleep(0.02)
        worker.kill()
        killed = time.monotonic()
        control(stack, "DELETE", "faults")
        start_worker(f"rescuer-{name}")
        final = client.wait(deployment, timeout=120, interval=0.5)
        recovery[boundaries[boundary]] = round(time.monotonic() - killed, 1)
        assert final.state.value == "succeeded", (boundaries[boundary], final.reason)
        assert revisions(stack, name) == 2, f"killed {boundaries[boundary]}: revision doubled"
    calls = control(stack, "GET", "stats")["calls"]
    assert calls.get("UpdateService") == len(names), "a service was updated twice"
    figures["sigkill_seconds_kill_to_succeeded"] = recovery
    figures["sigkill_settings"] = {
        "recovery_grace": stack.env["CONVEYOR_RECOVERY_GRACE"],
        "recovery_interval": stack.env["CONVEYOR_RECOVERY_INTERVAL"],
    }


@pytest.mark.slow
def test_redis_restart_mid_run_loses_nothing(
    stack: Stack,
    start_worker: Callable[[str], Worker],
    tmp_path: Any,
    figures: dict[str, object],
) -> None:
    """Redis (appendonly) restarted mid-run: queued and in-flight jobs finish, records intact."""
    from localaws.devstack import free_port, run_redis

    names = make_services(stack, 4)
    port = free_port()
    data = tmp_path / "redis-data"
    data.mkdir()
    url = f"redis://127.0.0.1:{port}/0"
    stack.env["CONVEYOR_REDIS_URL"] = url
    stack.redis_url = url
    with run_redis(appendonly=True, port=port, workdir=data):
        start_worker("w1")
        client = ConveyorClient(Settings(redis_url=url))  # type: ignore[arg-type]
        ids = [
            client.enqueue(
                UpdateServiceJob(
                    cluster="demo",
                    service=name,
                    images=(ImageUpdate(container="app", image=":3.0.0"),),
                )
            ).id
            for name in names
        ]
        deadline = time.monotonic() + 60
        while not any(client.status(i).step.value == "watch" for i in ids):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        before = {i: client.status(i) for i in ids}
    # Redis is down here; the workers keep retrying their connections.
    time.sleep(2)
    with run_redis(appendonly=True, port=port, workdir=data):
        restarted = time.monotonic()
        client = ConveyorClient(Settings(redis_url=url))  # type: ignore[arg-type]
        for deployment in ids:
            restored = client.status(deployment)
            assert restored.created_at == before[deployment].created_at
        finals = [client.wait(i, timeout=180, interval=0.5) for i in ids]
        assert [f.state.value for f in finals] == ["succeeded"] * len(ids), [
            (f.state, f.step, f.reason) for f in finals
        ]
        for name in names:
            assert revisions(stack, name) == 2
        figures["redis_restart"] = {
            "deployments": len(ids),
            "redis_down_seconds": 2,
            "seconds_restart_to_last_verdict": round(time.monotonic() - restarted, 1),
        }
