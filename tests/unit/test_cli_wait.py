"""`conveyor wait ID [ID ...]`: many deployments and releases followed in one process, against a
real Redis, through click's CliRunner; the exit code is the worst outcome."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from click.testing import CliRunner

from producers.cli import main
from producers.contract.records import DeploymentRecord, DeploymentState
from producers.contract.release_store import ReleaseStore
from producers.contract.releases import ReleaseRecord, ReleaseState, new_release_id
from producers.contract.store import RecordStore


@pytest.fixture
def db(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """A clean Redis database that the CLI is pointed at."""
    for name in ("CONVEYOR_FLEET", "CONVEYOR_QUEUE", "CONVEYOR_REDIS_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONVEYOR_REDIS_URL", redis_url)
    monkeypatch.setenv("CONVEYOR_REDIS_RETRY_SECONDS", "1")
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def store(db: redis.Redis) -> RecordStore:
    """The deployment records in that database."""
    return RecordStore(db)


def _put(store: RecordStore, id_: str, state: DeploymentState, **fields: object) -> None:
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
    result = CliRunner().invoke(main, ["wait", *args])
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
