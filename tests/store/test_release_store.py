"""Releases move wave by wave in a real Redis; advancing is safe to repeat."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
import redis

from producers.contract.names import DUE_KEY, JOB_KEY
from producers.contract.records import DeploymentRecord, DeploymentState, PreDeployInfo
from producers.contract.release_store import (
    ACTIVE_RELEASES_KEY,
    RELEASE_KEY,
    RELEASES_KEY,
    ReleaseStore,
)
from producers.contract.releases import ReleaseJob, ReleaseRecord, ReleaseState
from producers.contract.store import RecordStore
from tests.store.conftest import Sender
from worker.release_store import WorkerReleaseStore
from worker.services.transitions import Transition
from worker.steps import StepContext, run_step, sweep
from worker.store import WorkerStore

RELEASE = "rel-00000000000000000001"


def _job(fail_fast: bool = True) -> ReleaseJob:
    def e(name: str) -> dict[str, Any]:
        return {"service": name, "images": {"app": ":2"}}

    return ReleaseJob.model_validate(
        {"cluster": "c", "fail_fast": fail_fast, "waves": [[e("a"), e("b")], [e("c")]]}
    )


def _stores(client: redis.Redis) -> tuple[RecordStore, WorkerReleaseStore]:
    records = RecordStore(client)
    return records, WorkerReleaseStore(client, records, ttl_seconds=3600, recovery_grace=30)


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


def _land_once(
    monkeypatch: pytest.MonkeyPatch, records: RecordStore, action: Callable[[], object]
) -> None:
    """Run ``action`` the first time advance reads a deployment record: after it has read the
    release record and before it writes it, exactly where another process's cancel may land."""
    read_many = records.get_many
    pending = [action]

    def get_many(ids: list[str]) -> dict[str, DeploymentRecord | None]:
        while pending:
            pending.pop()()
        return read_many(ids)

    monkeypatch.setattr(records, "get_many", get_many)


def test_a_cancel_landing_inside_a_wave_move_leaves_no_deployment_of_the_next_wave(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wave 1 has ended and advance is moving the release on when the cancel lands between its
    read and its write: the release ends cancelled, and wave 2 has no record, no due entry, no
    service queue entry and no job payload that a sweeper or worker could start later."""
    records, releases = _stores(client)
    sender = Sender()
    release = releases.create(_job(), RELEASE, now=1.0)
    for deployment_id in release.waves[0]:
        _end(records, deployment_id, DeploymentState.SUCCEEDED)
    (third,) = release.waves[1]
    _land_once(monkeypatch, records, lambda: releases.request_cancel(RELEASE, now=2.0))

    done = releases.advance(RELEASE, sender, clock=lambda: 3.0)

    assert done is not None
    assert done.state is ReleaseState.CANCELLED
    assert done.wave == 0
    assert sender.sent == []
    assert records.get(third) is None
    assert client.zscore(DUE_KEY, third) is None
    assert client.get(JOB_KEY.format(id=third)) is None
    queued = [k for k in client.scan_iter("conveyor:service:*:queue") if client.zscore(k, third)]
    assert queued == []
    assert releases.active() == []


def test_a_cancel_after_the_wave_move_cancels_that_wave(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other order: the move commits first, then the cancel. The new wave is the current
    one, so the cancel asks each of its deployments to stop before any step ran, and advancing
    again records the release as cancelled once they have ended."""
    records, releases = _stores(client)
    sender = Sender()
    release = releases.create(_job(), RELEASE, now=1.0)
    for deployment_id in release.waves[0]:
        _end(records, deployment_id, DeploymentState.SUCCEEDED)
    (third,) = release.waves[1]
    moved = releases.advance(RELEASE, sender, clock=lambda: 2.0)
    assert moved is not None
    assert moved.wave == 1
    cancelled = releases.request_cancel(RELEASE, now=3.0)
    assert cancelled is not None
    assert cancelled.waves[cancelled.wave] == [third]
    assert releases.holds_back(RELEASE) == "cancelled with its release before it started"


def test_advancing_a_finished_release_changes_nothing(client: redis.Redis) -> None:
    """A release that has its verdict keeps it (and its finish time), however often the
    sweeper or a late deployment end advances it."""
    records, releases = _stores(client)
    release = releases.create(_job(), RELEASE, now=1.0)
    releases.request_cancel(RELEASE, now=1.5)
    for deployment_id in release.waves[0]:
        _end(records, deployment_id, DeploymentState.CANCELLED)
    done = releases.advance(RELEASE, Sender(), clock=lambda: 2.0)
    assert done is not None
    again = releases.advance(RELEASE, Sender(), clock=lambda: 9.0)
    assert again == done


class CountingRedis:
    """A Redis client that counts the deployment records read through it (GET and MGET)."""

    def __init__(self, inner: redis.Redis) -> None:
        self._inner = inner
        self.records_read = 0

    def _count(self, keys: Any) -> None:
        prefix = RecordStore(self._inner).key("")
        self.records_read += sum(_key_text(k).startswith(prefix) for k in keys)

    def get(self, key: Any) -> Any:
        self._count([key])
        return self._inner.get(key)

    def mget(self, keys: Any, *more: Any) -> Any:
        self._count(list(keys) + list(more))
        return self._inner.mget(keys, *more)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _key_text(key: Any) -> str:
    return key.decode() if isinstance(key, bytes) else str(key)


def _one_wave(size: int) -> ReleaseJob:
    return ReleaseJob.model_validate(
        {
            "cluster": "c",
            "services": [{"service": f"s{i:03d}", "images": {"app": ":2"}} for i in range(size)],
        }
    )


def test_an_end_reads_its_own_record_not_the_whole_wave(client: redis.Redis) -> None:
    """Each end of a 200-deployment wave advances the release by reading that deployment only,
    until few are left: the wave costs O(N) record reads. Reading the whole wave on each end
    was a million reads for a 1,000-service release, enough to hold every worker's CPU."""
    counting = CountingRedis(client)
    records = RecordStore(counting)  # type: ignore[arg-type]
    releases = WorkerReleaseStore(counting, records, ttl_seconds=3600, recovery_grace=30)  # type: ignore[arg-type]
    release = releases.create(_one_wave(200), RELEASE, now=1.0)
    wave = release.waves[0]
    counting.records_read = 0
    for deployment_id in wave:
        _end(records, deployment_id, DeploymentState.SUCCEEDED)
        before = counting.records_read
        releases.advance(RELEASE, Sender(), clock=lambda: 2.0, ended=deployment_id)
        if deployment_id == wave[0]:
            assert counting.records_read - before == 1
    done = releases.get(RELEASE)
    assert done is not None
    assert done.state is ReleaseState.SUCCEEDED
    # _end reads each record once too (200); the advances read 1 each, and the last 32 at most
    # 32 each.
    assert counting.records_read <= 200 + 200 + 32 * 32


def test_an_end_whose_advance_was_lost_is_seen_by_the_last_ends(client: redis.Redis) -> None:
    """A deployment that ended without advancing its release (its worker died in between) is
    still counted: the ends near the close of the wave read every deployment left without an
    outcome, and the release gets its verdict without waiting for the sweeper."""
    records, releases = _stores(client)
    release = releases.create(_one_wave(100), RELEASE, now=1.0)
    lost, *rest = release.waves[0]
    _end(records, lost, DeploymentState.FAILED)  # no advance: the worker died here
    for deployment_id in rest:
        _end(records, deployment_id, DeploymentState.SUCCEEDED)
        releases.advance(RELEASE, Sender(), clock=lambda: 2.0, ended=deployment_id)
    done = releases.get(RELEASE)
    assert done is not None
    assert done.state is ReleaseState.FAILED
    assert done.outcomes[lost] == "failed"


def _ctx(client: redis.Redis, sender: Sender, now: float) -> StepContext:
    return StepContext(
        store=WorkerStore(client),
        redis=client,
        sender=sender,
        clock=lambda: now,
        poll_interval=5,
        recovery_grace=30,
        step_time_limit=10,
        max_step_attempts=3,
    )


def test_a_queued_deployment_of_a_cancelled_release_never_starts(client: redis.Redis) -> None:
    """The cancel was recorded on the release but the canceller died before it cancelled the
    wave's deployments: a worker still ends each of them cancelled before its first step acts,
    and the release then ends cancelled."""
    records, releases = _stores(client)
    release = releases.create(_job(), RELEASE, now=1.0)
    releases.request_cancel(RELEASE, now=2.0)
    sender = Sender()
    ran: list[str] = []

    def run(record: DeploymentRecord) -> Transition:
        ran.append(record.id)
        raise AssertionError("the first step must not act")

    for deployment_id in release.waves[0]:
        run_step(_ctx(client, sender, now=3.0), deployment_id, 0, run)
    assert ran == []
    for deployment_id in release.waves[0]:
        ended = records.get(deployment_id)
        assert ended is not None
        assert ended.state is DeploymentState.CANCELLED
        assert "release" in (ended.reason or "")
    done = releases.get(RELEASE)
    assert done is not None
    assert done.state is ReleaseState.CANCELLED
    assert records.get(release.waves[1][0]) is None


def _dead_entries(client: redis.Redis, count: int) -> list[str]:
    """``count`` active entries of each kind that can never finish, all older than 1000."""
    ids = []
    valid = {
        "waves": [["x"]],
        "jobs": {"x": {"cluster": "c", "service": "s"}},
        "created_at": 1.0,
        "updated_at": 1.0,
    }
    for i in range(count):
        garbage, expired, broken, finished = (f"rel-{kind}{i:019x}" for kind in "abcd")
        client.set(RELEASE_KEY.format(id=garbage), b"{not json at all")
        # Damaged yet valid JSON: a wave that does not exist, or a deployment without its job.
        damage: dict[str, Any] = {"wave": 7} if i % 2 else {"jobs": {}}
        client.set(RELEASE_KEY.format(id=broken), json.dumps({**valid, "id": broken, **damage}))
        client.set(
            RELEASE_KEY.format(id=finished),
            json.dumps({**valid, "id": finished, "state": "failed"}),
        )
        for n, release_id in enumerate((garbage, expired, broken, finished)):
            client.zadd(ACTIVE_RELEASES_KEY, {release_id: i * 4 + n})
            client.zadd(RELEASES_KEY, {release_id: i * 4 + n})
            ids.append(release_id)
    return ids


def test_dead_release_entries_do_not_hold_up_the_sweeper(client: redis.Redis) -> None:
    """Four hundred active entries that can never finish (unreadable, expired, damaged, and
    finished) ahead of a live release: one sweep still moves the live release to its next
    wave; the unreadable and damaged records are quarantined and every dead entry leaves the
    active set."""
    records, releases = _stores(client)
    dead = _dead_entries(client, 100)
    release = releases.create(_job(), RELEASE, now=1000.0)
    for deployment_id in release.waves[0]:
        _end(records, deployment_id, DeploymentState.SUCCEEDED)
    sender = Sender()

    sweep(_ctx(client, sender, now=2000.0), limit=100)

    moved = releases.get(RELEASE)
    assert moved is not None
    assert moved.wave == 1
    assert [args[0] for _, args in sender.sent] == release.waves[1]
    assert releases.active() == [RELEASE]
    quarantined = [i for i in dead if releases.is_quarantined(i)]
    assert quarantined == [i for i in dead if i.startswith(("rel-a", "rel-c"))]


def test_a_list_skips_and_names_unreadable_releases(client: redis.Redis) -> None:
    """The newest release record is garbage: the list still has the others, names the bad
    one (every time, not only the first), and reading it is None, not a traceback."""
    _, releases = _stores(client)
    releases.create(_job(), RELEASE, now=1.0)
    bad = "rel-0000000000000000000b"
    client.set(RELEASE_KEY.format(id=bad), b'{"id": 3')
    client.zadd(RELEASES_KEY, {bad: 2.0})
    client.zadd(ACTIVE_RELEASES_KEY, {bad: 2.0})
    for _ in range(2):
        found, unreadable = releases.listing(limit=20)
        assert [r.id for r in found] == [RELEASE]
        assert unreadable == [bad]
    assert releases.get(bad) is None
    assert releases.is_quarantined(bad)
    assert releases.active() == [RELEASE]


def test_a_cancel_that_waited_out_an_outage_is_recorded_when_it_took_effect(
    redis_url: str, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seed 5's campaign: a release cancel asked at 174 s waited 21 s for Redis (a stopped
    primary, then a primary refusing writes); meanwhile a worker started the next wave, and the
    cancel, recorded with the time it was asked, claimed the release started that wave after
    its cancel. The time recorded is now the time the cancel was written."""
    from pydantic import SecretStr

    import producers.client as client_module
    from config.settings import Settings
    from producers.client import ConveyorClient

    _, releases = _stores(client)
    releases.create(_job(), RELEASE, now=1.0)
    conveyor = ConveyorClient(Settings(redis_url=SecretStr(redis_url)))
    times = iter([100.0, 200.0, 200.0, 200.0, 200.0, 200.0])

    def clock() -> float:
        return next(times)

    monkeypatch.setattr(client_module, "wall_clock", clock)
    down = [True]
    write = ReleaseStore._modify

    def modify(self: ReleaseStore, *args: Any, **kwargs: Any) -> Any:
        if down:
            down.pop()
            clock()  # the clock moves on while Redis is away
            raise redis.ConnectionError("primary stopped")
        return write(self, *args, **kwargs)

    monkeypatch.setattr(ReleaseStore, "_modify", modify)
    cancelled = conveyor.cancel_release(RELEASE)
    assert cancelled.cancel_requested_at == 200.0


def test_the_next_wave_is_stamped_after_the_ends_the_advance_read(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wave-1 deployment that ends (finished_at 5.0) while an advance reads the wave's
    records: wave 2 is created after that end, so its created_at is not earlier (the e2e test
    of waves once saw wave 2 'created' before the end it waited for, on a loaded machine)."""
    records, releases = _stores(client)
    release = releases.create(_job(), RELEASE, now=1.0)
    first, second = release.waves[0]
    records.modify(
        first,
        lambda r: r.model_copy(update={"state": DeploymentState.SUCCEEDED, "finished_at": 2.0}),
    )
    times = iter([4.0, 6.0, 7.0, 8.0])

    def end_second() -> None:
        records.modify(
            second,
            lambda r: r.model_copy(update={"state": DeploymentState.SUCCEEDED, "finished_at": 5.0}),
        )
        next(times)  # the clock moved on while the records were read

    _land_once(monkeypatch, records, end_second)
    moved = releases.advance(RELEASE, Sender(), clock=lambda: next(times))
    assert moved is not None
    assert moved.wave == 1
    (third,) = moved.waves[1]
    created = records.get(third)
    assert created is not None
    assert created.created_at >= 5.0


def _moving_on(fail_fast: bool = True) -> ReleaseJob:
    """Two waves that move on once ECS shifted production traffic."""
    job = _job(fail_fast)
    return job.model_copy(update={"move_on_at": "PRODUCTION_TRAFFIC_SHIFT"})


def _at_stage(records: RecordStore, deployment_id: str, stage: str, **more: Any) -> None:
    def change(r: DeploymentRecord) -> DeploymentRecord:
        progress = r.progress.model_copy(update={"strategy": "CANARY", "lifecycle_stage": stage})
        return r.model_copy(update={"state": DeploymentState.RUNNING, "progress": progress, **more})

    records.modify(deployment_id, change)


def test_a_wave_moves_on_once_each_deployment_reached_the_stage(client: redis.Redis) -> None:
    """With move_on_at, wave 2 starts once both of wave 1 reached the stage (one ended, one
    still baking); the release's verdict still waits for the one still running."""
    records, releases = _stores(client)
    sender = Sender()
    release = releases.create(_moving_on(), RELEASE, now=1.0)
    first, second = release.waves[0]
    (third,) = release.waves[1]
    assert records.get(first).release_move_on_at == "PRODUCTION_TRAFFIC_SHIFT"  # type: ignore[union-attr]
    _at_stage(records, first, "POST_TEST_TRAFFIC_SHIFT")  # not yet
    _end(records, second, DeploymentState.SUCCEEDED)
    waiting = releases.advance(RELEASE, sender, clock=lambda: 2.0)
    assert waiting is not None
    assert waiting.wave == 0
    assert sender.sent == []

    _at_stage(records, first, "BAKE_TIME")  # past the stage counts too
    moved = releases.advance(RELEASE, sender, clock=lambda: 3.0)
    assert moved is not None
    assert moved.wave == 1
    assert moved.reached == {first: 3.0}
    assert [args for _, args in sender.sent] == [[third, 0]]
    assert records.get(third).release_move_on_at == "PRODUCTION_TRAFFIC_SHIFT"  # type: ignore[union-attr]

    _end(records, third, DeploymentState.SUCCEEDED)
    still = releases.advance(RELEASE, sender, clock=lambda: 4.0)
    assert still is not None
    assert still.state is ReleaseState.RUNNING  # first still bakes
    _end(records, first, DeploymentState.SUCCEEDED)
    done = releases.advance(RELEASE, sender, clock=lambda: 5.0)
    assert done is not None
    assert done.state is ReleaseState.SUCCEEDED
    assert len(sender.sent) == 1


def test_a_deployment_ecs_rolls_back_has_not_reached_the_stage(client: redis.Redis) -> None:
    """A deployment ECS is rolling back shows a stage of its way back, not of its way forward:
    the next wave does not start on it."""
    records, releases = _stores(client)
    sender = Sender()
    release = releases.create(_moving_on(), RELEASE, now=1.0)
    first, second = release.waves[0]
    _at_stage(records, first, "PRODUCTION_TRAFFIC_SHIFT")
    _at_stage(records, second, "BAKE_TIME", rolled_back_by_ecs=True)
    waiting = releases.advance(RELEASE, sender, clock=lambda: 2.0)
    assert waiting is not None
    assert waiting.wave == 0
    assert list(waiting.reached) == [first]
    assert sender.sent == []


def test_a_failure_after_its_wave_moved_on_stops_the_waves_not_started(
    client: redis.Redis,
) -> None:
    """A deployment that rolls back after the next wave started fails the release (fail
    fast) once every started deployment ended; the wave after is never created."""
    records, releases = _stores(client)
    sender = Sender()
    job = ReleaseJob.model_validate(
        {
            "cluster": "c",
            "move_on_at": "bake",
            "waves": [[{"service": n, "images": {"app": ":2"}}] for n in ("a", "b", "c")],
        }
    )
    assert job.move_on_at == "BAKE_TIME"
    release = releases.create(job, RELEASE, now=1.0)
    ((first,), (second,), (third,)) = release.waves
    _at_stage(records, first, "BAKE_TIME")
    assert releases.advance(RELEASE, sender, clock=lambda: 2.0).wave == 1  # type: ignore[union-attr]
    _end(records, first, DeploymentState.ROLLED_BACK)
    _at_stage(records, second, "BAKE_TIME")
    waiting = releases.advance(RELEASE, sender, clock=lambda: 3.0)
    assert waiting is not None
    assert (waiting.wave, waiting.state) == (1, ReleaseState.RUNNING)  # second still runs
    _end(records, second, DeploymentState.SUCCEEDED)
    done = releases.advance(RELEASE, sender, clock=lambda: 4.0)
    assert done is not None
    assert done.state is ReleaseState.FAILED
    assert "1 not started (fail fast)" in (done.reason or "")
    assert records.get(third) is None
    assert [args for _, args in sender.sent] == [[second, 0]]


def test_an_unknown_stage_to_move_on_at_is_refused_with_the_choices() -> None:
    """move_on_at names a lifecycle stage; anything else is refused, naming the choices."""
    with pytest.raises(ValueError, match="unknown stage 'halfway'; choose one of: scale-up"):
        ReleaseJob.model_validate(
            {
                "cluster": "c",
                "move_on_at": "halfway",
                "services": [{"service": "a", "images": {"app": ":2"}}],
            }
        )


def test_the_step_that_reaches_the_stage_starts_the_next_wave(client: redis.Redis) -> None:
    """The watch step whose record first shows the release's stage advances the release: once
    the wave's last deployment gets there, the next wave is created and dispatched; a later
    step at a later stage advances nothing more."""
    records, releases = _stores(client)
    release = releases.create(_moving_on(), RELEASE, now=1.0)
    first, second = release.waves[0]
    (third,) = release.waves[1]
    _at_stage(records, first, "PRODUCTION_TRAFFIC_SHIFT")
    releases.advance(RELEASE, Sender(), clock=lambda: 2.0)
    sender = Sender()

    def to(stage: str) -> Callable[[DeploymentRecord], Transition]:
        def run(record: DeploymentRecord) -> Transition:
            progress = record.progress.model_copy(
                update={"strategy": "CANARY", "lifecycle_stage": stage}
            )
            moved = record.model_copy(
                update={"state": DeploymentState.RUNNING, "progress": progress}
            )
            return Transition(moved, record.step, countdown=5)

        return run

    run_step(_ctx(client, sender, now=3.0), second, 0, to("POST_TEST_TRAFFIC_SHIFT"))
    assert [name for name, _ in sender.sent] == ["conveyor.update.resolve"]  # its own next step
    run_step(_ctx(client, sender, now=4.0), second, 1, to("PRODUCTION_TRAFFIC_SHIFT"))
    moved = releases.get(RELEASE)
    assert moved is not None
    assert moved.wave == 1
    assert [args for _, args in sender.sent][-1] == [third, 0]
    count = len(sender.sent)
    run_step(_ctx(client, sender, now=5.0), second, 2, to("BAKE_TIME"))
    assert len(sender.sent) == count + 1  # only the step's own next message


def test_a_cancel_stops_the_deployments_of_a_wave_it_moved_on_from(
    client: redis.Redis, redis_url: str
) -> None:
    """With move_on_at, a deployment of an earlier wave may still bake while the next wave
    deploys: cancelling the release asks both to stop, not only the wave under way."""
    from pydantic import SecretStr

    from config.settings import Settings
    from producers.client import ConveyorClient

    records, releases = _stores(client)
    release = releases.create(_moving_on(), RELEASE, now=1.0)
    first, second = release.waves[0]
    (third,) = release.waves[1]
    _at_stage(records, first, "BAKE_TIME")
    _end(records, second, DeploymentState.SUCCEEDED)
    assert releases.advance(RELEASE, Sender(), clock=lambda: 2.0).wave == 1  # type: ignore[union-attr]

    ConveyorClient(Settings(redis_url=SecretStr(redis_url))).cancel_release(RELEASE)

    asked = {i: records.get(i).cancel_requested_at for i in (first, second, third)}  # type: ignore[union-attr]
    assert asked[first] is not None  # still baking in wave 1
    assert asked[third] is not None
    assert asked[second] is None  # had ended: left as it is


def _budgeted(**budget: Any) -> ReleaseJob:
    """Four waves of one service each, with a failure budget."""
    return ReleaseJob.model_validate(
        {
            "cluster": "c",
            **budget,
            "waves": [[{"service": n, "images": {"app": ":2"}}] for n in "abcd"],
        }
    )


def test_failures_within_the_budget_go_on_and_past_it_no_wave_starts(client: redis.Redis) -> None:
    """max_failures 1: the first failure is tolerated (the next wave starts), the second
    spends the budget: no further wave starts and the release fails, saying why."""
    records, releases = _stores(client)
    sender = Sender()
    job = _budgeted(max_failures=1)
    assert job.fail_fast is False
    release = releases.create(job, RELEASE, now=1.0)
    ((a,), (b,), (c,), (d,)) = release.waves
    _end(records, a, DeploymentState.ROLLED_BACK)
    assert releases.advance(RELEASE, sender, clock=lambda: 2.0).wave == 1  # type: ignore[union-attr]
    _end(records, b, DeploymentState.FAILED)
    done = releases.advance(RELEASE, sender, clock=lambda: 3.0)
    assert done is not None
    assert done.state is ReleaseState.FAILED
    assert "2 not started (failure budget spent: 2 failed, at most 1 allowed)" in (
        done.reason or ""
    )
    assert records.get(c) is None
    assert records.get(d) is None
    assert [args for _, args in sender.sent] == [[b, 0]]


def test_a_percent_budget_counts_the_whole_release(client: redis.Redis) -> None:
    """max_failure_percent 25 of four deployments: one failure is within it (the release
    goes on to its end, and still fails: a change is not live); two would not be."""
    records, releases = _stores(client)
    sender = Sender()
    release = releases.create(_budgeted(max_failure_percent=25), RELEASE, now=1.0)
    moved: ReleaseRecord | None = None
    for n, (deployment_id,) in enumerate(release.waves):
        state = DeploymentState.ROLLED_BACK if n == 0 else DeploymentState.SUCCEEDED
        _end(records, deployment_id, state)
        moved = releases.advance(RELEASE, sender, clock=lambda: 2.0)
    assert moved is not None
    assert moved.state is ReleaseState.FAILED
    assert "not started" not in (moved.reason or "")
    assert len(sender.sent) == 3
    assert release.budget_spent(1) is None
    assert release.budget_spent(2) == "failure budget spent: 2 of 4 failed, over the 25% allowed"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_failures": 1, "max_failure_percent": 5}, "not both"),
        ({"max_failures": 1, "fail_fast": True}, "drop fail_fast (or --fail-fast)"),
        ({"max_failures": -1}, "greater than or equal to 0"),
        ({"max_failure_percent": 101}, "less than or equal to 100"),
    ],
)
def test_a_budget_that_contradicts_itself_is_refused(fields: dict[str, Any], message: str) -> None:
    """Two budgets, a budget with fail_fast, or one out of bounds: refused, naming the fix."""
    with pytest.raises(ValueError, match=re.escape(message)):
        _budgeted(**fields)


def _gated(timeout: int = 60) -> ReleaseJob:
    """Two waves of one service each; the release pauses before the second."""
    return ReleaseJob.model_validate(
        {
            "cluster": "c",
            "approval_timeout_minutes": timeout,
            "waves": [
                [{"service": "a", "images": {"app": ":2"}}],
                {"approve_before": True, "services": [{"service": "b", "images": {"app": ":2"}}]},
            ],
        }
    )


def test_a_release_pauses_before_a_gated_wave_until_approved(client: redis.Redis) -> None:
    """Once wave 1 ended the release waits (nothing of wave 2 exists); an approval records who
    and when and starts the wave; a second answer changes nothing."""
    records, releases = _stores(client)
    sender = Sender()
    job = _gated()
    assert job.approve_before == [1]
    release = releases.create(job, RELEASE, now=1.0)
    ((a,), (b,)) = release.waves
    _end(records, a, DeploymentState.SUCCEEDED)
    paused = releases.advance(RELEASE, sender, clock=lambda: 2.0)
    assert paused is not None
    assert (paused.wave, paused.awaiting_wave, paused.awaiting_approval_since) == (0, 1, 2.0)
    assert releases.advance(RELEASE, sender, clock=lambda: 3.0) == paused  # still waiting
    assert records.get(b) is None
    assert sender.sent == []

    releases.answer_wave(RELEASE, "CONTINUE", "ops@host", now=4.0)
    moved = releases.advance(RELEASE, sender, clock=lambda: 5.0)
    assert moved is not None
    assert (moved.wave, moved.awaiting_wave) == (1, None)
    assert [(x.wave, x.action, x.by, x.at) for x in moved.approvals] == [
        (1, "CONTINUE", "ops@host", 4.0)
    ]
    assert [args for _, args in sender.sent] == [[b, 0]]
    with pytest.raises(ValueError, match="is not waiting for an approval \\(it is at wave 2"):
        releases.answer_wave(RELEASE, "REJECT", "late@host", now=6.0)


def test_a_rejected_wave_is_never_started_and_the_release_is_cancelled(
    client: redis.Redis,
) -> None:
    """A rejection before the gated wave: the release ends cancelled, naming who rejected it;
    the wave's deployments never exist."""
    records, releases = _stores(client)
    sender = Sender()
    release = releases.create(_gated(), RELEASE, now=1.0)
    ((a,), (b,)) = release.waves
    _end(records, a, DeploymentState.SUCCEEDED)
    releases.advance(RELEASE, sender, clock=lambda: 2.0)
    releases.answer_wave(RELEASE, "REJECT", "ops@host", now=3.0)
    done = releases.advance(RELEASE, sender, clock=lambda: 4.0)
    assert done is not None
    assert done.state is ReleaseState.CANCELLED
    assert done.reason == "rejected by ops@host before wave 2; later waves were not started"
    assert records.get(b) is None
    assert sender.sent == []


def test_an_approval_not_given_in_time_fails_the_release(client: redis.Redis) -> None:
    """approval_timeout_minutes passed without an answer (seen by the sweeper's advance): the
    release fails, saying so; an answer after that is refused."""
    records, releases = _stores(client)
    release = releases.create(_gated(timeout=10), RELEASE, now=1.0)
    _end(records, release.waves[0][0], DeploymentState.SUCCEEDED)
    releases.advance(RELEASE, Sender(), clock=lambda: 100.0)
    assert releases.advance(RELEASE, Sender(), clock=lambda: 699.0).state is ReleaseState.RUNNING  # type: ignore[union-attr]
    expired = releases.advance(RELEASE, Sender(), clock=lambda: 700.0)
    assert expired is not None
    assert expired.state is ReleaseState.FAILED
    assert expired.reason == (
        "wave 2 was not approved within 10 minutes; it and later waves were not started"
    )
    with pytest.raises(ValueError, match="it has ended failed"):
        releases.answer_wave(RELEASE, "CONTINUE", "ops@host", now=701.0)


@pytest.mark.parametrize(
    ("waves", "message"),
    [
        (
            [{"approve_before": True, "services": [{"service": "a", "images": {"app": ":2"}}]}],
            "waves[0].approve_before: the first wave starts when the release is made",
        ),
        (
            [[{"service": "a", "images": {"app": ":2"}}], {"services": [], "pause": True}],
            "waves[1]: unknown field(s) pause; a wave takes services, approve_before and gate",
        ),
        (
            [
                [{"service": "a", "images": {"app": ":2"}}],
                {"approve_before": "yes", "services": [{"service": "b", "images": {"app": ":2"}}]},
            ],
            "waves[1].approve_before: give true or false",
        ),
    ],
)
def test_a_wave_gate_that_cannot_be_is_refused(waves: list[Any], message: str) -> None:
    """A gate on the first wave, an unknown wave field or a gate that is not a boolean:
    refused, naming the wave and the fix."""
    with pytest.raises(ValueError, match=re.escape(message)):
        ReleaseJob.model_validate({"cluster": "c", "waves": waves})


def test_a_rejected_release_ends_only_once_the_wave_it_moved_on_from_has(
    client: redis.Redis,
) -> None:
    """With move_on_at, the gated wave waits while wave 1 still bakes; a rejection stops the
    release from starting it, and the release ends cancelled only once wave 1 has ended."""
    records, releases = _stores(client)
    sender = Sender()
    job = _gated().model_copy(update={"move_on_at": "BAKE_TIME"})
    release = releases.create(job, RELEASE, now=1.0)
    ((a,), (b,)) = release.waves
    _at_stage(records, a, "BAKE_TIME")
    paused = releases.advance(RELEASE, sender, clock=lambda: 2.0)
    assert paused is not None
    assert paused.awaiting_wave == 1
    releases.answer_wave(RELEASE, "REJECT", "ops@host", now=3.0)
    waiting = releases.advance(RELEASE, sender, clock=lambda: 4.0)
    assert waiting is not None
    assert waiting.state is ReleaseState.RUNNING  # a still bakes
    _end(records, a, DeploymentState.SUCCEEDED)
    done = releases.advance(RELEASE, sender, clock=lambda: 5.0)
    assert done is not None
    assert done.state is ReleaseState.CANCELLED
    assert records.get(b) is None
    assert sender.sent == []


# -- pre-deploy tasks ----------------------------------------------------------------------------


def _with_tasks(fail_fast: bool = True) -> ReleaseJob:
    """Wave 1: db-migrate (a pre-deploy task) with api and web; wave 2: worker."""

    def e(name: str, **extra: Any) -> dict[str, Any]:
        return {"service": name, "images": {"app": ":2"}, **extra}

    task = {"container": "app", "command": ["bin/migrate"]}
    return ReleaseJob.model_validate(
        {
            "cluster": "c",
            "fail_fast": fail_fast,
            "waves": [[e("api"), e("db", pre_deploy=task), e("web")], [e("worker")]],
        }
    )


def _task_passed(records: RecordStore, deployment_id: str) -> None:
    records.modify(
        deployment_id,
        lambda r: r.model_copy(
            update={
                "state": DeploymentState.RUNNING,
                "pre_deploy": PreDeployInfo(container="app", task_arn="t", exit_code=0),
            }
        ),
    )


def test_a_wave_with_a_task_starts_it_alone_then_the_others_once_it_passed(
    client: redis.Redis,
) -> None:
    """Only the entry with a pre-deploy task is created and sent first; once its task passed
    (its deployment still running), the wave's other entries are created and sent."""
    records, releases = _stores(client)
    sender = Sender()
    release = releases.create(_with_tasks(), RELEASE, now=1.0)
    api, db, web = release.waves[0]
    assert release.held_back == [api, web]
    releases.dispatch_wave(release, sender)
    assert [args[0] for _, args in sender.sent] == [db]
    assert records.get(api) is None
    assert records.get(web) is None
    releases.advance(RELEASE, sender, clock=lambda: 2.0)
    assert len(sender.sent) == 1  # the task has not passed: nothing more starts
    _task_passed(records, db)
    moved = releases.advance(RELEASE, sender, clock=lambda: 3.0, ended=db)
    assert moved is not None
    assert moved.held_back == []
    assert moved.tasks_passed == {db: 3.0}
    assert sorted(args[0] for _, args in sender.sent[1:]) == sorted([api, web])
    for deployment_id in (api, db, web):
        _end(records, deployment_id, DeploymentState.SUCCEEDED)
    assert releases.advance(RELEASE, sender, clock=lambda: 4.0).wave == 1  # type: ignore[union-attr]


def test_a_failed_task_stops_the_release_before_any_other_service_changes(
    client: redis.Redis,
) -> None:
    """A pre-deploy task that fails: the wave's other entries are never created (cancelled,
    with the reason) and the release fails at once, even with fail_fast off."""
    records, releases = _stores(client)
    release = releases.create(_with_tasks(fail_fast=False), RELEASE, now=1.0)
    api, db, web = release.waves[0]
    _end(records, db, DeploymentState.FAILED)
    done = releases.advance(RELEASE, Sender(), clock=lambda: 2.0, ended=db)
    assert done is not None
    assert done.state is ReleaseState.FAILED
    assert done.reason is not None
    assert done.reason.startswith("the pre-deploy task of db did not pass")
    assert done.outcomes == {db: "failed", api: "cancelled", web: "cancelled"}
    assert done.not_started[api] == "not started: the pre-deploy task of db failed"
    assert records.get(api) is None
    assert records.get(web) is None
    assert records.get(release.waves[1][0]) is None
    assert client.get(JOB_KEY.format(id=api)) is None  # its full job went with it


def test_a_cancel_while_entries_are_held_ends_them_unstarted(client: redis.Redis) -> None:
    """A release cancelled while its wave waits for a task ends once that deployment ended;
    the held entries end cancelled, never created."""
    records, releases = _stores(client)
    release = releases.create(_with_tasks(), RELEASE, now=1.0)
    api, db, web = release.waves[0]
    releases.request_cancel(RELEASE, 2.0)
    _end(records, db, DeploymentState.CANCELLED)
    done = releases.advance(RELEASE, Sender(), clock=lambda: 3.0)
    assert done is not None
    assert done.state is ReleaseState.CANCELLED
    assert done.outcomes[api] == done.outcomes[web] == "cancelled"
    assert records.get(api) is None


def test_the_step_that_sees_the_task_pass_starts_the_held_entries(client: redis.Redis) -> None:
    """The worker's step whose record first shows the task passed advances the release."""
    records, releases = _stores(client)
    release = releases.create(_with_tasks(), RELEASE, now=1.0)
    api, db, web = release.waves[0]
    sender = Sender()

    def passed(record: DeploymentRecord) -> Transition:
        info = PreDeployInfo(container="app", task_arn="t", exit_code=0)
        moved = record.model_copy(update={"state": DeploymentState.RUNNING, "pre_deploy": info})
        return Transition(moved, record.step, countdown=5)

    run_step(_ctx(client, sender, now=3.0), db, 0, passed)
    assert sorted(args[0] for _, args in sender.sent[1:]) == sorted([api, web])
    assert records.get(api) is not None


def _migration_waves(**fields: Any) -> ReleaseJob:
    """Wave 1: db alone, with a pre-deploy task (nothing held back); waves 2 and 3: api, web."""
    task = {"container": "app", "command": ["bin/migrate"]}
    entries = [
        {"service": "db", "images": {"app": ":2"}, "pre_deploy": task},
        {"service": "api", "images": {"app": ":2"}},
        {"service": "web", "images": {"app": ":2"}},
    ]
    return ReleaseJob.model_validate({"cluster": "c", **fields, "waves": [[e] for e in entries]})


@pytest.mark.parametrize("fields", [{"fail_fast": False}, {"max_failures": 1}])
def test_a_failed_task_stops_the_release_even_when_its_wave_holds_nothing_back(
    client: redis.Redis, fields: dict[str, Any]
) -> None:
    """A wave whose every entry runs a pre-deploy task holds nothing back; a failed task there
    still stops the release, whatever fail_fast or the failure budget say."""
    records, releases = _stores(client)
    release = releases.create(_migration_waves(**fields), RELEASE, now=1.0)
    assert release.held_back == []
    ((db,), (api,), (web,)) = release.waves
    _end(records, db, DeploymentState.FAILED)
    done = releases.advance(RELEASE, Sender(), clock=lambda: 2.0, ended=db)
    assert done is not None
    assert (done.state, done.wave, done.pre_deploy_failed) == (ReleaseState.FAILED, 0, db)
    assert (done.reason or "").startswith("the pre-deploy task of db did not pass")
    assert "2 not started (a pre-deploy task failed)" in (done.reason or "")
    assert records.get(api) is None
    assert records.get(web) is None
