"""`conveyor wait ID [ID ...]`: many deployments and releases followed in one process, against a
real Redis, through click's CliRunner; the exit code is the worst outcome."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from producers.contract.records import DeploymentRecord, DeploymentState
from producers.contract.release_store import ReleaseStore
from producers.contract.releases import ReleaseRecord, ReleaseState, new_release_id
from producers.contract.store import RecordStore
from tests.unit.cli_support import conveyor, point_at


@pytest.fixture
def db(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """A clean Redis database that the CLI is pointed at."""
    point_at(monkeypatch, redis_url)
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def store(db: redis.Redis) -> RecordStore:
    """The deployment records in that database."""
    return RecordStore(db)


def _put(store: RecordStore, id_: str, state: DeploymentState, **fields: Any) -> None:
    record = DeploymentRecord(
        id=id_,
        job={},
        cluster="c",
        service=f"svc-{id_}",
        created_at=1.0,
        updated_at=1.0,
        state=state,
        **fields,
    )
    store.create(record, due=time.time() + 3600)


def _wait(*args: str) -> tuple[int, str, str]:
    result = conveyor("wait", *args)
    return result.exit_code, result.stdout, result.stderr


def test_the_worst_outcome_wins_and_every_record_is_printed(store: RecordStore) -> None:
    """Succeeded, failed and cancelled: exit 1 (failed outranks cancelled); each record is
    printed, in the order given."""
    _put(store, "ok", DeploymentState.SUCCEEDED)
    _put(store, "bad", DeploymentState.FAILED, reason="tasks failed to start")
    _put(store, "stop", DeploymentState.CANCELLED)
    code, out, err = _wait("stop", "ok", "bad")
    assert code == 1, err
    assert out.index("deployment stop: cancelled") < out.index("deployment ok: succeeded")
    assert out.index("deployment ok: succeeded") < out.index("deployment bad: failed")
    assert "stop exit 5, ok exit 0, bad exit 1; worst: 1" in err


def test_cancelled_outranks_superseded_and_ok(store: RecordStore) -> None:
    """Nothing failed: a cancelled deployment (5) outranks a superseded one (4)."""
    _put(store, "ok", DeploymentState.SUCCEEDED)
    _put(store, "old", DeploymentState.SUPERSEDED)
    assert _wait("ok", "old")[0] == 4
    _put(store, "stop", DeploymentState.CANCELLED)
    assert _wait("old", "stop", "ok")[0] == 5


def test_all_succeeded_is_zero_and_a_repeated_id_is_followed_once(store: RecordStore) -> None:
    """Exit 0 only when every one succeeded; an id given twice is printed once."""
    _put(store, "a", DeploymentState.SUCCEEDED)
    _put(store, "b", DeploymentState.SUCCEEDED)
    code, out, _ = _wait("a", "b", "a")
    assert code == 0
    assert out.count("deployment a: succeeded") == 1


def test_deployments_still_running_are_followed_to_their_end(store: RecordStore) -> None:
    """One is still running when the wait starts and ends later; the wait follows both in
    one process and exits with the worst (the running one ends rolled back: 1)."""
    _put(store, "done", DeploymentState.SUCCEEDED)
    _put(store, "slow", DeploymentState.RUNNING)

    def finish() -> None:
        time.sleep(0.5)
        store.modify(
            "slow",
            lambda r: r.model_copy(
                update={"state": DeploymentState.ROLLED_BACK, "reason": "health checks failed"}
            ),
        )

    ender = threading.Thread(target=finish)
    ender.start()
    try:
        code, out, err = _wait("done", "slow", "--json")
    finally:
        ender.join()
    assert code == 1, err
    records = json.loads(out)
    assert [(r["id"], r["state"]) for r in records] == [
        ("done", "succeeded"),
        ("slow", "rolled_back"),
    ]
    assert "[slow] running" in err


def test_an_unknown_id_is_refused_before_anything_is_followed(store: RecordStore) -> None:
    """Exit 2 naming the unknown id; no record is printed."""
    _put(store, "ok", DeploymentState.SUCCEEDED)
    code, out, err = _wait("ok", "nosuch")
    assert code == 2
    assert "nosuch" in err
    assert out == ""


def test_a_record_lost_while_waiting_counts_as_unavailable(
    store: RecordStore, db: redis.Redis
) -> None:
    """A record that vanishes during the wait outranks a failure: its outcome is unknown (3)."""
    _put(store, "bad", DeploymentState.FAILED)
    _put(store, "gone", DeploymentState.RUNNING)

    def lose() -> None:
        time.sleep(0.5)
        db.delete(store.key("gone"))  # evicted behind Conveyor's back

    thief = threading.Thread(target=lose)
    thief.start()
    try:
        code, out, err = _wait("bad", "gone")
    finally:
        thief.join()
    assert code == 3, err
    assert "deployment bad: failed" in out
    assert "gone" in err


def test_releases_and_deployments_mix(store: RecordStore, db: redis.Redis) -> None:
    """A release id and a deployment id in one wait: the release's verdict counts as any
    other; a failed release outranks a superseded deployment."""
    release_id = new_release_id()
    member = f"{release_id}-0000"
    _put(store, member, DeploymentState.FAILED)
    _put(store, "old", DeploymentState.SUPERSEDED)
    release = ReleaseRecord(
        id=release_id,
        state=ReleaseState.FAILED,
        waves=[[member]],
        jobs={member: {"cluster": "c", "service": f"svc-{member}"}},
        outcomes={member: "failed"},
        created_at=1.0,
        updated_at=2.0,
        finished_at=2.0,
    )
    releases = ReleaseStore(db, store, ttl_seconds=3600, recovery_grace=30)
    db.set(releases.key(release_id), release.model_dump_json())
    code, out, err = _wait("old", release_id)
    assert code == 1, err
    assert "deployment old: superseded" in out
    assert f"release {release_id}: failed" in out


def test_redis_gone_while_waiting_ends_the_wait_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis stops for good during the wait: after the client's retries, every id still
    running counts as unavailable (3), and the ones that had ended are still printed."""
    from localaws.devstack import run_redis

    with run_redis() as url:
        point_at(monkeypatch, url)
        own = redis.Redis.from_url(url)
        store = RecordStore(own)
        _put(store, "done", DeploymentState.SUCCEEDED)
        _put(store, "slow", DeploymentState.RUNNING)

        def stop_redis() -> None:
            time.sleep(0.5)
            with contextlib.suppress(redis.ConnectionError):
                own.shutdown(nosave=True)

        killer = threading.Thread(target=stop_redis)
        killer.start()
        try:
            code, out, err = _wait("done", "slow")
        finally:
            killer.join()
    assert code == 3, err
    assert "deployment done: succeeded" in out
    assert "cannot reach Redis" in err
    assert "slow exit 3" in err
