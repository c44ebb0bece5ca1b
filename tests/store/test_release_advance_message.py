"""A producer's answer or cancel is advanced by a worker: the producer records it and sends an
``AdvanceMessage``; the worker's task moves the release on, and drops a malformed message."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from config.settings import Settings
from producers.client import ConveyorClient
from producers.contract.messages import AdvanceMessage
from producers.contract.names import QUEUE, TASK_RELEASE_ADVANCE
from producers.contract.records import DeploymentState
from producers.contract.releases import ReleaseJob, ReleaseState
from producers.contract.store import RecordStore
from tests.store.conftest import Sender
from worker.release_store import WorkerReleaseStore

ROOT = Path(__file__).resolve().parents[2]

RELEASE = "rel-00000000000000000001"


def _paused(client: redis.Redis) -> tuple[RecordStore, WorkerReleaseStore, str]:
    """A release whose first wave succeeded, waiting for an approval before its second;
    returns the stores and the id of the second wave's deployment."""
    records = RecordStore(client)
    releases = WorkerReleaseStore(client, records, ttl_seconds=3600, recovery_grace=30)
    job = ReleaseJob.model_validate(
        {
            "cluster": "c",
            "waves": [
                [{"service": "a", "images": {"app": ":2"}}],
                {"approve_before": True, "services": [{"service": "b", "images": {"app": ":2"}}]},
            ],
        }
    )
    release = releases.create(job, RELEASE, now=1.0)
    ((first,), (second,)) = release.waves
    records.modify(first, lambda r: r.model_copy(update={"state": DeploymentState.SUCCEEDED}))
    paused = releases.advance(RELEASE, Sender(), clock=lambda: 2.0)
    assert paused is not None
    assert paused.awaiting_wave == 1
    return records, releases, second


def _queued(client: redis.Redis) -> list[tuple[str, list[Any]]]:
    """The (task, args) of every message a producer put on the base queue's first list."""
    found = []
    for raw in client.lrange(QUEUE, 0, -1):
        message = json.loads(raw)
        args, _, _ = json.loads(base64.b64decode(message["body"]))
        found.append((message["headers"]["task"], args))
    return found


def test_an_answer_is_recorded_and_a_worker_is_asked_to_advance(
    client: redis.Redis, redis_url: str
) -> None:
    """`conveyor approve REL` records the answer and sends the advance message; it does not
    move the release itself (the second wave does not exist until a worker acts)."""
    records, releases, second = _paused(client)
    conveyor = ConveyorClient(Settings(redis_url=SecretStr(redis_url)))

    answered = conveyor.answer_release(RELEASE, "CONTINUE", "ops@host")

    assert (answered.wave, answered.awaiting_wave) == (0, 1)
    assert [(a.wave, a.action, a.by) for a in answered.approvals] == [(1, "CONTINUE", "ops@host")]
    assert records.get(second) is None
    assert _queued(client) == [(TASK_RELEASE_ADVANCE, [RELEASE])]
    moved = releases.advance(RELEASE, Sender(), clock=lambda: 3.0)  # what the worker then does
    assert moved is not None
    assert moved.wave == 1


def test_a_cancel_is_recorded_and_a_worker_is_asked_to_advance(
    client: redis.Redis, redis_url: str
) -> None:
    """`conveyor cancel REL` records the request and sends the advance message; the verdict is
    the worker's."""
    _, releases, _ = _paused(client)
    conveyor = ConveyorClient(Settings(redis_url=SecretStr(redis_url)))

    requested = conveyor.cancel_release(RELEASE)

    assert requested.cancel_requested_at is not None
    assert requested.state is ReleaseState.RUNNING
    assert _queued(client) == [(TASK_RELEASE_ADVANCE, [RELEASE])]
    done = releases.advance(RELEASE, Sender(), clock=lambda: 3.0)
    assert done is not None
    assert done.state is ReleaseState.CANCELLED


def test_an_answer_whose_advance_message_was_lost_is_acted_on_by_the_sweep(
    client: redis.Redis, redis_url: str
) -> None:
    """The advance message only makes an answer take effect at once: with it lost on the way
    (the queue emptied before any worker took it), a worker's recovery sweep moves the
    release on all the same, and starts the approved wave."""
    from worker.steps import StepContext, sweep
    from worker.store import WorkerStore

    records, _, second = _paused(client)
    conveyor = ConveyorClient(Settings(redis_url=SecretStr(redis_url)))
    conveyor.answer_release(RELEASE, "CONTINUE", "ops@host")
    client.delete(QUEUE)  # the message is lost

    sender = Sender()
    context = StepContext(
        store=WorkerStore(client),
        redis=client,
        sender=sender,
        clock=lambda: 3.0,
        poll_interval=5,
        recovery_grace=30,
        step_time_limit=10,
        max_step_attempts=3,
    )
    sweep(context, limit=100)

    started = records.get(second)
    assert started is not None
    assert started.state is DeploymentState.QUEUED
    assert [args for _, args in sender.sent] == [[second, started.seq]]


def test_the_advance_message_parses_back_and_refuses_anything_else() -> None:
    """The wire form is the release id alone, a release id."""
    message = AdvanceMessage(RELEASE)
    assert (message.TASK, message.args()) == (TASK_RELEASE_ADVANCE, [RELEASE])
    assert AdvanceMessage.parse(message.args(), {}) == message


def test_the_worker_task_advances_the_release_and_drops_a_malformed_message(
    client: redis.Redis, redis_url: str
) -> None:
    """The Celery task, run in a process of its own (loading worker.app configures logging and
    Celery): a malformed message is logged and dropped without raising, a valid one moves the
    release on and sends the first step of the approved wave."""
    records, releases, second = _paused(client)
    releases.answer_wave(RELEASE, "CONTINUE", "ops@host", now=3.0)
    code = (
        "import json\n"
        "from worker.tasks import advance_release\n"
        "results = [\n"
        "    advance_release(),\n"
        "    advance_release('not-a-release'),\n"
        f"    advance_release({RELEASE!r}, now=1),\n"
        f"    advance_release({RELEASE!r}, {RELEASE!r}),\n"
        f"    advance_release({RELEASE!r}),\n"
        "]\n"
        "print(json.dumps(results))\n"
    )
    env = {**os.environ, "CONVEYOR_REDIS_URL": redis_url}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    *rejected, advanced = json.loads(out.stdout.strip().splitlines()[-1])
    assert [r["status"] for r in rejected] == ["rejected"] * 4
    assert out.stderr.count("malformed release advance message dropped") == 4
    assert advanced == {"status": "running", "wave": 1}
    moved = releases.get(RELEASE)
    assert moved is not None
    assert moved.wave == 1
    assert records.get(second) is not None


def test_approve_no_wait_shows_the_answer_waiting_for_a_worker(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`conveyor approve REL --no-wait` returns before any worker acted: the release it prints
    still stands before the wave, and says the answer is recorded, not that it awaits one."""
    from tests.unit.cli_support import conveyor, point_at

    point_at(monkeypatch, redis_url)
    db = redis.Redis.from_url(redis_url)
    try:
        _paused(db)
        result = conveyor("approve", RELEASE, "--by", "ops@host", "--no-wait")
    finally:
        db.close()
    assert result.exit_code == 0, result.stderr
    assert f"release {RELEASE}: approved" in result.stderr
    assert "awaiting  approval" not in result.stdout
    assert "approved  wave 2 by ops@host" in result.stdout
    assert "answered  approved before wave 2 by ops@host; a worker acts on it" in result.stdout


@pytest.mark.parametrize("command", ["approve", "reject", "cancel"])
@pytest.mark.parametrize("alive", [False, True])
def test_an_answer_or_cancel_without_a_worker_says_it_waits_for_one(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, command: str, alive: bool
) -> None:
    """Only a worker acts on an answer or a cancel: with none consuming the queue, the CLI
    records it (exit 0) and says on stderr that nothing moves until one runs; with one, it
    says nothing of the kind."""
    import time

    from producers.contract.workers import WorkerInfo, publish
    from tests.unit.cli_support import conveyor, point_at

    point_at(monkeypatch, redis_url)
    db = redis.Redis.from_url(redis_url)
    try:
        _paused(db)
        if alive:
            now = time.time()
            info = WorkerInfo(
                name="w1", pid=1, queues=[QUEUE], concurrency=1, started_at=now, seen_at=now
            )
            publish(db, info, ttl=60)
        args = ["--by", "ops@host"] if command != "cancel" else []
        result = conveyor(command, RELEASE, *args, "--no-wait")
    finally:
        db.close()
    assert result.exit_code == 0, result.stderr
    warned = "no Conveyor worker consuming queue" in result.stderr
    assert warned is not alive, result.stderr
    if not alive:
        assert f"release {RELEASE} moves on once one runs" in result.stderr
