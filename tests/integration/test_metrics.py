"""The Prometheus endpoint of a real worker: the pool's children summed, counters that move."""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from config.settings import Settings
from localaws.devstack import Worker, free_port
from localaws.testing import create_services
from producers.client import ConveyorClient
from producers.contract.jobs import ImageUpdate, UpdateServiceJob
from tests.integration.conftest import Stack


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample on the endpoint, by name and sorted labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(
        value
        for (n, ls), value in samples.items()
        if n == name and all((k, v) in ls for k, v in labels.items())
    )


def test_metrics_move_during_a_deployment(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """A scrape during a deployment sees AWS calls and queue depths; after it, one succeeded
    deployment, a time to verdict, and a duration for each step run in the children."""
    (name,) = create_services(stack.endpoint, [f"m-{uuid.uuid4().hex[:8]}"], desired=1)
    port = free_port()
    stack.env.update(
        CONVEYOR_METRICS_PORT=str(port), CONVEYOR_METRICS_DIR=str(tmp_path / "samples")
    )
    start_worker("w1")
    before = scrape(port)
    assert total(before, "conveyor_deployments_total") == 0
    assert ("conveyor_queue_depth", (("queue", "conveyor"),)) in before
    assert ("conveyor_queue_depth", (("queue", "conveyor.watch"),)) in before

    client = ConveyorClient(Settings(redis_url=stack.redis_url))  # type: ignore[arg-type]
    record = client.enqueue(
        UpdateServiceJob(
            cluster="demo", service=name, images=(ImageUpdate(container="app", image=":2.0.0"),)
        )
    )
    deadline = time.monotonic() + 60
    during = scrape(port)
    while total(during, "conveyor_aws_calls_total") == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
        during = scrape(port)
    assert total(during, "conveyor_aws_calls_total", service="ecs", outcome="ok") > 0
    final = client.wait(record.id, timeout=120, interval=0.5)
    assert final.state.value == "succeeded", final.reason

    after = scrape(port)
    kind = {"kind": "update-existing"}
    assert total(after, "conveyor_deployments_total", state="succeeded", **kind) == 1
    assert total(after, "conveyor_time_to_verdict_seconds_count", state="succeeded", **kind) == 1
    for step in ("resolve", "register", "update", "watch"):
        assert total(after, "conveyor_step_duration_seconds_count", step=step, **kind) >= 1, step
    calls = total(after, "conveyor_aws_calls_total", service="ecs")
    assert calls >= 4  # describe, describe the family, register, update, then polls
    assert calls >= total(during, "conveyor_aws_calls_total", service="ecs")
    assert any(p.name.endswith(".db") for p in (tmp_path / "samples").iterdir())


def test_a_deployment_awaiting_approval_is_counted_by_the_workers_endpoint(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """A running deployment paused at a PAUSE hook shows in the worker's scrape at its stage,
    and no longer once it is answered."""
    import redis

    from producers.contract.records import DeploymentRecord, DeploymentState, ProgressInfo, Step
    from producers.contract.store import RecordStore

    port = free_port()
    stack.env.update(
        CONVEYOR_METRICS_PORT=str(port), CONVEYOR_METRICS_DIR=str(tmp_path / "samples")
    )
    start_worker("w1")
    name = ("conveyor_deployments_awaiting_approval", (("stage", "POST_SCALE_UP"),))
    assert name not in scrape(port)

    now = time.time()
    waiting = DeploymentRecord(
        id=f"paused-{uuid.uuid4().hex[:6]}",
        job={},
        cluster="demo",
        service="web",
        state=DeploymentState.RUNNING,
        step=Step.WATCH,
        progress=ProgressInfo(strategy="CANARY", lifecycle_stage="POST_SCALE_UP"),
        created_at=now,
        updated_at=now,
    )
    client = redis.Redis.from_url(stack.redis_url)
    store = RecordStore(client)
    paused = waiting.model_copy(
        update={"progress": waiting.progress.model_copy(update={"awaiting_hook_id": "h-1"})}
    )
    store.create(paused, due=now + 3600)
    assert scrape(port)[name] == 1
    client.set(store.key(paused.id), waiting.model_dump_json())  # ECS continued
    assert name not in scrape(port)
