"""Fleets sharing one Redis: each works only on its own deployments."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis

from localaws.devstack import Worker
from producers.contract.jobs import ImageUpdate, UpdateServiceJob
from producers.contract.release_store import new_deployment
from producers.contract.store import RecordStore
from tests.integration.conftest import Stack
from worker.store import WorkerStore

pytestmark = pytest.mark.integration


def test_a_fleet_never_sweeps_another_fleets_deployment(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """A deployment of the default fleet is overdue (its worker died) while only a worker of
    another fleet (CONVEYOR_QUEUE=fleet-b) runs on the same Redis. That worker's sweeper never
    takes it over: it stays where it was, for its own fleet to find; nothing is sent to the
    other fleet's queue."""
    client = redis.Redis.from_url(stack.redis_url)
    job = UpdateServiceJob(
        cluster="demo", service="web", images=(ImageUpdate(container="web", image=":9"),)
    )
    record = new_deployment(job, "a-overdue", now=time.time(), account="123456789012")
    RecordStore(client).create(record, due=time.time() - 60, job=job.model_dump(mode="json"))
    stack.env["CONVEYOR_QUEUE"] = "fleet-b"
    start_worker("b1")
    time.sleep(8)  # four recovery sweeps of the other fleet (CONVEYOR_RECOVERY_INTERVAL=2)
    stored = stack.record("a-overdue")
    assert (stored["seq"], stored["state"], stored["step"]) == (0, "queued", "resolve")
    assert WorkerStore(client).overdue(time.time()) == ["a-overdue"]
    assert client.llen("fleet-b") == 0
    assert not client.keys("fleet-b:deployment:*")


def test_no_job_is_accepted_without_a_worker_of_its_queue(stack: Stack) -> None:
    """Only a watch-queue worker is alive: `conveyor update` refuses (exit 3) naming the queue
    and what the live workers consume, and enqueues nothing."""
    watcher = Worker("watcher", stack.env, stack.logs / "watcher.log", queues="conveyor.watch")
    try:
        watcher.wait_ready(stack.redis_url)
        result = stack.cli("update", "--cluster", "demo", "--service", "web", "--image", "web=:2")
    finally:
        watcher.stop()
    assert result.returncode == 3, result.stdout + result.stderr
    assert "no Conveyor worker consuming queue 'conveyor'" in result.stderr
    assert "conveyor.watch" in result.stderr
    client = redis.Redis.from_url(stack.redis_url)
    assert not client.keys("conveyor:deployment:*")
