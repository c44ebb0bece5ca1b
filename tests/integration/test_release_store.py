"""Releases move wave by wave in a real Redis; advancing is safe to repeat."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from producers.contract.records import DeploymentState
from producers.contract.release_store import ReleaseStore
from producers.contract.releases import ReleaseJob, ReleaseState
from producers.contract.store import RecordStore

RELEASE = "rel-00000000000000000001"


class Sender:
    """Collects sent task messages instead of publishing them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any]]] = []

    def send_task(self, name: str, args: Any = None, **_: Any) -> None:
        self.sent.append((name, list(args or [])))


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A clean Redis database."""
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    yield r
    r.close()


def _job(fail_fast: bool = True) -> ReleaseJob:
    def e(name: str) -> dict[str, Any]:
        return {"service": name, "images": {"app": ":2"}}

    return ReleaseJob.model_validate(
        {"cluster": "c", "fail_fast": fail_fast, "waves": [[e("a"), e("b")], [e("c")]]}
    )


def _stores(client: redis.Redis) -> tuple[RecordStore, ReleaseStore]:
    records = RecordStore(client)
    return records, ReleaseStore(client, records, ttl_seconds=3600, recovery_grace=30)


def _end(records: RecordStore, deployment_id: str, state: DeploymentState) -> None:
    records.modify(deployment_id, lambda r: r.model_copy(update={"state": state}))


def _carrier(records: RecordStore, deployment_id: str) -> str:
    """Supersede ``deployment_id`` by a newer deployment of its service (outside the release),
    still running; returns the newer one's id."""
    original = records.get(deployment_id)
    assert original is not None
    carrier = original.model_copy(update={"id": f"{deployment_id}-newer", "release_id": None})
    records.create(carrier, due=1e12)
    records.modify(
        deployment_id,
        lambda r: r.model_copy(
            update={"state": DeploymentState.SUPERSEDED, "superseded_by": carrier.id}
        ),
    )
    return carrier.id


def test_a_superseded_deployment_counts_as_its_carrier_ended(client: redis.Redis) -> None:
    """A release deployment superseded by a newer job of its service is not success: the wave
    waits while the newer one runs (nothing of the next wave starts), and takes its outcome,
    so a carrier that rolled back fails the release."""
    records, releases = _stores(client)
    sender = Sender()
    release = releases.create(_job(), RELEASE, now=1.0)
    first, second = release.waves[0]
    _end(records, first, DeploymentState.SUCCEEDED)
    carrier = _carrier(records, second)
    waiting = releases.advance(RELEASE, sender, clock=lambda: 2.0)
    assert waiting is not None
    assert (waiting.wave, waiting.state) == (0, ReleaseState.RUNNING)
    assert second not in waiting.outcomes
    assert sender.sent == []
    _end(records, carrier, DeploymentState.ROLLED_BACK)
    done = releases.advance(RELEASE, sender, clock=lambda: 3.0)
    assert done is not None
    assert done.state is ReleaseState.FAILED
    assert done.outcomes[second] == "rolled_back"
    assert sender.sent == []


def test_the_next_wave_starts_only_when_this_one_ended(client: redis.Redis) -> None:
    """Wave 2 is created and dispatched once both deployments of wave 1 have ended; then the
    release succeeds. Advancing again changes nothing and sends nothing."""
    records, releases = _stores(client)
    sender = Sender()
    release = releases.create(_job(), RELEASE, now=1.0)
    first, second = release.waves[0]
    (third,) = release.waves[1]
    assert records.get(third) is None  # later waves are not created yet
    _end(records, first, DeploymentState.SUCCEEDED)
    assert releases.advance(RELEASE, sender, clock=lambda: 2.0).wave == 0  # type: ignore[union-attr]
    assert sender.sent == []
    carrier = _carrier(records, second)
    _end(records, carrier, DeploymentState.SUCCEEDED)  # carried by a newer one that succeeded
    moved = releases.advance(RELEASE, sender, clock=lambda: 3.0)
    assert moved is not None
    assert moved.wave == 1
    assert [args for _, args in sender.sent] == [[third, 0]]
    created = records.get(third)
    assert created is not None
    assert created.release_id == RELEASE
    releases.advance(RELEASE, sender, clock=lambda: 4.0)
    assert len(sender.sent) == 1
    _end(records, third, DeploymentState.SUCCEEDED)
    done = releases.advance(RELEASE, sender, clock=lambda: 5.0)
    assert done is not None
    assert done.state is ReleaseState.SUCCEEDED
    assert releases.active() == []


def test_fail_fast_stops_at_a_failed_wave(client: redis.Redis) -> None:
    """A rolled-back deployment in wave 1 fails the release; wave 2 is never created."""
    records, releases = _stores(client)
    release = releases.create(_job(fail_fast=True), RELEASE, now=1.0)
    first, second = release.waves[0]
    _end(records, first, DeploymentState.ROLLED_BACK)
    _end(records, second, DeploymentState.SUCCEEDED)
    done = releases.advance(RELEASE, Sender(), clock=lambda: 2.0)
    assert done is not None
    assert done.state is ReleaseState.FAILED
    assert "1 not started" in (done.reason or "")
    assert records.get(release.waves[1][0]) is None


def test_continue_on_failure_runs_every_wave_then_fails(client: redis.Redis) -> None:
    """With fail_fast off, wave 2 still runs; the release ends failed for wave 1's failure."""
    records, releases = _stores(client)
    release = releases.create(_job(fail_fast=False), RELEASE, now=1.0)
    first, second = release.waves[0]
    _end(records, first, DeploymentState.FAILED)
    _end(records, second, DeploymentState.SUCCEEDED)
    moved = releases.advance(RELEASE, Sender(), clock=lambda: 2.0)
    assert moved is not None
    assert moved.wave == 1
    _end(records, release.waves[1][0], DeploymentState.SUCCEEDED)
    done = releases.advance(RELEASE, Sender(), clock=lambda: 3.0)
    assert done is not None
    assert done.state is ReleaseState.FAILED
    assert done.summary() == {"failed": 1, "succeeded": 2}


def test_a_cancelled_release_starts_no_further_wave(client: redis.Redis) -> None:
    """Cancel: once the current wave's deployments end, the release ends cancelled."""
    records, releases = _stores(client)
    release = releases.create(_job(), RELEASE, now=1.0)
    releases.request_cancel(RELEASE, now=1.5)
    for deployment_id in release.waves[0]:
        _end(records, deployment_id, DeploymentState.CANCELLED)
    done = releases.advance(RELEASE, Sender(), clock=lambda: 2.0)
    assert done is not None
    assert done.state is ReleaseState.CANCELLED
    assert records.get(release.waves[1][0]) is None
