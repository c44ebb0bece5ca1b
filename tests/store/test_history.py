"""The audit trail in a real Redis: each event once, verdicts with their commit, no secrets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from producers.contract.enums import DeploymentState
from producers.contract.history import History
from producers.contract.jobs import UpdateServiceJob
from producers.contract.names import Keys
from producers.contract.records import BakeGateInfo, BakeWindow, GateMeasurement
from producers.contract.release_store import new_deployment
from producers.contract.releases import ReleaseJob
from producers.contract.store import RecordStore
from worker.release_store import WorkerReleaseStore

SECRET = "hunter2-do-not-log"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    yield r
    r.flushdb()


def _job(service: str = "web") -> UpdateServiceJob:
    return UpdateServiceJob.model_validate(
        {
            "cluster": "demo",
            "service": service,
            "images": [{"container": "app", "image": "repo/app:2@sha256:" + "a" * 64}],
            "settings": [{"container": "app", "environment": {"TOKEN": SECRET}}],
        },
        strict=False,
    )


def test_an_enqueue_and_its_verdict_are_noted_once_each(client: redis.Redis) -> None:
    """A create noted by who asked, retried (the record exists): one "enqueued". The terminal
    commit notes the verdict with what ECS knows it by; a stale commit notes nothing."""
    store = RecordStore(client)
    record = new_deployment(_job(), "d1", now=100.0, account="1")
    store.create(record, due=200.0, by="ci@runner")
    with pytest.raises(ValueError, match="already exists"):
        store.create(record, due=200.0, by="ci@runner")
    ended = record.model_copy(
        update={
            "state": DeploymentState.SUCCEEDED,
            "reason": "ECS reports the deployment SUCCESSFUL",
            "seq": 1,
            "task_definition_arn": "arn:aws:ecs:us-east-1:1:task-definition/web:7",
            "service_deployment_arn": "arn:aws:ecs:us-east-1:1:service-deployment/demo/web/x",
            "service_revision_arn": "arn:aws:ecs:us-east-1:1:service-revision/demo/web/9",
            "images": {"app": {"before": "repo/app:1", "after": "repo/app:2@sha256:" + "a" * 64}},
            "finished_at": 150.0,
            "updated_at": 150.0,
        }
    )
    assert store.commit(ended, expected_seq=0, due=None)
    assert not store.commit(ended, expected_seq=0, due=None)

    events = store.history.read()
    assert [e["event"] for e in events] == ["enqueued", "verdict"]
    enqueued, verdict = events
    assert (enqueued["by"], enqueued["service"], enqueued["at"]) == ("ci@runner", "web", 100.0)
    assert enqueued["images"] == {"app": "repo/app:2@sha256:" + "a" * 64}
    assert verdict["state"] == "succeeded"
    assert verdict["service_revision_arn"].endswith("service-revision/demo/web/9")
    assert verdict["images"] == {"app": "repo/app:2@sha256:" + "a" * 64}
    assert SECRET not in str(client.xrange(Keys.of().history))


def test_a_verdict_notes_the_bake_gates_verdict_of_each_window(client: redis.Redis) -> None:
    """A deployment with a bake gate: its verdict event names the gate, its condition, and
    each bake window's share of traffic and verdict."""
    store = RecordStore(client)
    record = new_deployment(_job(), "d1", now=100.0, account="1")
    store.create(record, due=200.0, by="ci@runner")
    reason = "gate error-rate: 1 measurement(s) did not meet result < 0.01 (tolerated: 0): 0.2"
    ended = record.model_copy(
        update={
            "state": DeploymentState.ROLLED_BACK,
            "reason": reason,
            "seq": 1,
            "bake_gate": BakeGateInfo(
                name="error-rate",
                condition="result < 0.01",
                windows=[
                    BakeWindow(
                        number=1, traffic=10.0, started_at=120.0, outcome="failed", reason=reason
                    )
                ],
                measurements=[GateMeasurement(at=121.0, window=1, value=0.2)],
            ),
            "finished_at": 150.0,
            "updated_at": 150.0,
        }
    )
    assert store.commit(ended, expected_seq=0, due=None)
    (verdict,) = [e for e in store.history.read() if e["event"] == "verdict"]
    assert verdict["bake_gate"] == {
        "name": "error-rate",
        "condition": "result < 0.01",
        "windows": [{"traffic": 10.0, "outcome": "failed", "reason": reason}],
    }


def test_the_trail_is_read_by_service_and_time_and_trimmed_to_its_retention(
    client: redis.Redis,
) -> None:
    """Reading filters by service (name or ARN) and by when Redis added the entry; entries
    older than the retention are trimmed when a newer one is added."""
    history = History(client, Keys.of(), retention_seconds=2)
    history.note({"event": "enqueued", "id": "a", "service": "web"}, once="a", now=1.0)
    time.sleep(0.05)
    later = time.time()
    time.sleep(0.05)
    history.note({"event": "enqueued", "id": "b", "service": "api"}, once="b", now=2.0)
    history.note({"event": "enqueued", "id": "c", "service": "web"}, once="c", now=3.0)
    arn = "arn:aws:ecs:us-east-1:1:service/demo/web"
    assert [e["id"] for e in history.read(service=arn)] == ["a", "c"]
    assert [e["id"] for e in history.read(since=later)] == ["b", "c"]
    assert [e["id"] for e in history.read(limit=2)] == ["a", "b"]
    time.sleep(2.1)
    history.note({"event": "verdict", "id": "d"}, once="d", now=4.0)
    assert [e["id"] for e in history.read()] == ["d"]
    assert 0 < client.ttl(Keys.of().history) <= 2  # a trail left idle expires whole


def test_a_release_notes_its_enqueue_answers_cancel_and_verdict(client: redis.Redis) -> None:
    """A release enqueued (with its services), a wave approved, a cancel and its verdict, each
    once, however often the writers run."""
    records = RecordStore(client)
    releases = WorkerReleaseStore(client, records, ttl_seconds=3600, recovery_grace=30)
    job = ReleaseJob.model_validate(
        {
            "release": "shop",
            "cluster": "demo",
            "waves": [
                [{"service": "a", "images": {"app": ":2"}}],
                {"approve_before": True, "services": [{"service": "b", "images": {"app": ":2"}}]},
            ],
        }
    )
    release = releases.create(job, "rel-1", now=1.0, by="ci@runner")
    releases.create(job, "rel-1", now=1.0, retried=True, by="ci@runner")
    records.modify(
        release.waves[0][0], lambda r: r.model_copy(update={"state": DeploymentState.SUCCEEDED})
    )

    class Sender:
        def send_task(self, *_: Any, **__: Any) -> None:
            pass

    releases.advance("rel-1", Sender(), clock=lambda: 2.0)
    releases.answer_wave("rel-1", "CONTINUE", "ops@host", now=3.0)
    releases.advance("rel-1", Sender(), clock=lambda: 4.0)
    releases.request_cancel("rel-1", 5.0, by="ops@host")
    releases.request_cancel("rel-1", 5.0, by="ops@host")
    records.modify(
        release.waves[1][0], lambda r: r.model_copy(update={"state": DeploymentState.CANCELLED})
    )
    releases.advance("rel-1", Sender(), clock=lambda: 6.0)
    releases.advance("rel-1", Sender(), clock=lambda: 7.0)

    events = records.history.read()
    assert [(e["event"], e.get("by")) for e in events] == [
        ("release enqueued", "ci@runner"),
        ("approved", "ops@host"),
        ("cancel requested", "ops@host"),
        ("release verdict", None),
    ]
    assert events[0]["services"] == ["demo/a", "demo/b"]
    assert (events[1]["wave"], events[3]["state"]) == (2, "cancelled")


def test_the_chaos_campaigns_secret_search_reads_the_trail(client: redis.Redis) -> None:
    """The campaign's check that no secret is in Redis reads streams too, so a secret that
    reached the audit trail would be caught."""
    from scripts.chaos.runner import _value

    History(client, Keys.of()).note({"event": "x", "reason": SECRET}, once="x", now=1.0)
    assert SECRET.encode() in _value(client, Keys.of().history.encode())
