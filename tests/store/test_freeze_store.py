"""Freeze windows against a real Redis: enqueues refused or overridden, waves held."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from pydantic import SecretStr

from config.settings import Settings
from producers.client import ConveyorClient
from producers.contract.enums import DeploymentState
from producers.contract.errors import FrozenError
from producers.contract.jobs import UpdateServiceJob
from producers.contract.releases import ReleaseJob, ReleaseState
from producers.contract.store import RecordStore
from worker.release_store import WorkerReleaseStore


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    yield r
    r.flushdb()


def _freeze(path: Path, *, active: bool) -> Path:
    """A one-off window named change-freeze around now (or one that ended an hour ago)."""
    now = time.time()
    start, end = (now - 60, now + 3600) if active else (now - 7200, now - 3600)
    path.write_text(
        yaml.safe_dump(
            {
                "windows": [
                    {
                        "name": "change-freeze",
                        "timezone": "UTC",
                        "start": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start)),
                        "end": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(end)),
                    }
                ]
            }
        )
    )
    stamp = time.time() + (1 if active else 2)  # a new mtime, so the file is read again
    import os

    os.utime(path, (stamp, stamp))
    return path


def _client(redis_url: str, freeze: Path) -> ConveyorClient:
    return ConveyorClient(
        Settings(redis_url=SecretStr(redis_url), freeze_file=str(freeze), actor="ci@runner")
    )


JOB = UpdateServiceJob.model_validate(
    {"cluster": "demo", "service": "web", "images": [{"container": "app", "image": ":2"}]},
    strict=False,
)


def test_an_enqueue_inside_a_window_is_refused_unless_overridden(
    client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """Inside the window: refused naming it, nothing stored; with a reason: enqueued, the
    record and the audit trail keep who overrode it and why."""
    path = _freeze(tmp_path / "freeze.yaml", active=True)
    conveyor = _client(redis_url, path)
    with pytest.raises(FrozenError, match="refused: inside freeze window 'change-freeze'"):
        conveyor.enqueue(JOB)
    assert client.keys("conveyor:deployment:*") == []

    record = conveyor.enqueue(JOB, override_freeze="hotfix for INC-42")
    assert record.freeze_override is not None
    assert (record.freeze_override.window, record.freeze_override.by) == (
        "change-freeze",
        "ci@runner",
    )
    events = RecordStore(client).history.read()
    assert [(e["event"], e.get("reason")) for e in events] == [
        ("enqueued", None),
        ("freeze override", "hotfix for INC-42"),
    ]


def test_a_bad_freeze_file_refuses_every_enqueue_naming_it(
    client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """A freeze file that cannot be read refuses the enqueue (fail closed), naming the file."""
    path = tmp_path / "freeze.yaml"
    path.write_text("windows: [{name: x}]")
    with pytest.raises(FrozenError, match=f"freeze file {path}: .*rrule with duration_minutes"):
        _client(redis_url, path).enqueue(JOB)


def test_a_release_wave_waits_for_the_window_to_end(client: redis.Redis, tmp_path: Path) -> None:
    """The first wave ended inside a window: the next one is held (the record says why) and
    starts once the window is over; an overridden release goes on through it."""
    path = _freeze(tmp_path / "freeze.yaml", active=True)
    records = RecordStore(client)
    releases = WorkerReleaseStore(
        client, records, ttl_seconds=3600, recovery_grace=30, freeze_file=str(path)
    )
    job = ReleaseJob.model_validate(
        {
            "cluster": "demo",
            "waves": [[{"service": n, "images": {"app": ":2"}}] for n in ("a", "b")],
        }
    )

    class Sender:
        sent: list[Any] = []

        def send_task(self, *args: Any, **_: Any) -> None:
            self.sent.append(args)

    release = releases.create(job, "rel-1", now=time.time())
    records.modify(
        release.waves[0][0], lambda r: r.model_copy(update={"state": DeploymentState.SUCCEEDED})
    )
    held = releases.advance("rel-1", Sender(), clock=time.time)
    assert held is not None
    assert held.wave == 0
    assert held.held is not None
    assert held.held.startswith("waiting for the end of freeze window 'change-freeze'")
    assert records.get(release.waves[1][0]) is None

    _freeze(path, active=False)
    moved = releases.advance("rel-1", Sender(), clock=time.time)
    assert moved is not None
    assert (moved.wave, moved.held) == (1, None)

    _freeze(path, active=True)
    from producers.contract.records import FreezeOverride

    override = FreezeOverride(window="change-freeze", reason="r", by="ci", at=time.time())
    other = releases.create(job, "rel-2", now=time.time(), freeze_override=override)
    records.modify(
        other.waves[0][0], lambda r: r.model_copy(update={"state": DeploymentState.SUCCEEDED})
    )
    through = releases.advance("rel-2", Sender(), clock=time.time)
    assert through is not None
    assert through.wave == 1
    assert through.state is ReleaseState.RUNNING
