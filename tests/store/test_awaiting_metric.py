"""The metrics endpoint counts the deployments a PAUSE lifecycle hook holds for approval."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from producers.contract.names import Keys
from producers.contract.records import DeploymentRecord, DeploymentState, ProgressInfo, Step
from producers.contract.store import RecordStore
from worker.observe.metrics import AwaitingApprovalCollector, awaiting_approval


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    c.flushdb()
    yield c
    c.flushdb()


def _create(
    store: RecordStore,
    name: str,
    stage: str,
    *,
    waiting: bool = True,
    state: DeploymentState = DeploymentState.RUNNING,
) -> None:
    now = time.time()
    hook = "h" if waiting else None
    record = DeploymentRecord(
        id=name,
        job={},
        cluster="c",
        service=name,
        state=state,
        step=Step.WATCH,
        progress=ProgressInfo(strategy="CANARY", lifecycle_stage=stage, awaiting_hook_id=hook),
        created_at=now,
        updated_at=now,
    )
    store.create(record, due=now + 600)


def test_deployments_awaiting_approval_are_counted_by_stage(client: redis.Redis) -> None:
    """Running deployments with a hook AWAITING_ACTION count at their stage; one only baking,
    one of another fleet and an unreadable record do not, and nothing is changed."""
    store = RecordStore(client)
    _create(store, "a", "POST_SCALE_UP")
    _create(store, "b", "POST_SCALE_UP")
    _create(store, "c", "POST_TEST_TRAFFIC_SHIFT")
    _create(store, "d", "BAKE_TIME", waiting=False)
    _create(store, "f", "POST_SCALE_UP", state=DeploymentState.SUCCEEDED)
    _create(RecordStore(client, queue="other"), "e", "POST_SCALE_UP")
    client.zadd(Keys.of().due, {"garbage": 1.0})
    client.set(Keys.of().record.format(id="garbage"), b"{not json")
    before = client.get(Keys.of().record.format(id="a"))

    assert awaiting_approval(client, Keys.of()) == {
        "POST_SCALE_UP": 2,
        "POST_TEST_TRAFFIC_SHIFT": 1,
    }
    assert awaiting_approval(client, Keys.of("other")) == {"POST_SCALE_UP": 1}
    (family,) = AwaitingApprovalCollector(client, Keys.of()).collect()
    assert {(s.labels["stage"], s.value) for s in family.samples} == {
        ("POST_SCALE_UP", 2),
        ("POST_TEST_TRAFFIC_SHIFT", 1),
    }
    assert client.get(Keys.of().record.format(id="a")) == before
    assert client.get(Keys.of().record.format(id="garbage")) == b"{not json"


def test_redis_away_yields_an_empty_gauge() -> None:
    """A scrape while Redis is away still answers, with no samples."""
    (family,) = AwaitingApprovalCollector(redis.Redis(port=1), Keys.of()).collect()
    assert family.samples == []
