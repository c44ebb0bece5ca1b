"""The campaign's supervision of its workers tells their own exits from its stops."""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast

import pytest

from scripts.chaos import runner
from scripts.chaos.schedule import draw


class _Proc:
    def __init__(self) -> None:
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


class _Worker:
    """A worker whose readiness probe fails while Redis refuses writes."""

    made: list[_Worker] = []
    refusals = 0
    dies = False

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.proc = _Proc()
        self.stopped = False
        self.probes = 0
        _Worker.made.append(self)

    def wait_ready(self, redis_url: str, timeout: float = 60.0) -> None:
        self.probes += 1
        if _Worker.dies:
            self.proc.returncode = 1
            raise RuntimeError("worker exited")
        if self.probes <= _Worker.refusals:
            raise RuntimeError("NOREPLICAS Not enough good replicas to write.")

    def stop(self) -> None:
        self.stopped = True
        self.proc.returncode = 0  # Celery's warm shutdown exits 0


@pytest.fixture
def campaign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> runner.Campaign:
    _Worker.made = []
    _Worker.dies = False
    monkeypatch.setattr(runner, "Worker", _Worker)
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    camp = runner.Campaign(draw(1, 1, services=4, workers=1), tmp_path, log=lambda *_: None)
    camp.workers = [None]
    camp.metrics_ports = [0]
    camp.redis = type("R", (), {"direct_url": "redis://unused"})()
    return camp


def test_a_worker_not_ready_while_redis_refuses_writes_is_probed_again_not_stopped(
    campaign: runner.Campaign,
) -> None:
    """Seed 12's campaign stopped a live worker after 8 failed probes during a run of Redis
    faults, and its supervisor then reported the warm shutdown (exit 0) as the worker's own."""
    _Worker.refusals = 9
    campaign._start_worker(0)
    assert len(_Worker.made) == 1
    only = _Worker.made[0]
    assert not only.stopped
    assert only.probes == 10
    assert campaign.workers[0] is cast(object, only)


def test_a_worker_that_dies_starting_is_started_anew_and_the_campaign_says_so(
    campaign: runner.Campaign,
) -> None:
    _Worker.dies = True
    with pytest.raises(RuntimeError, match="died starting 8 times"):
        campaign._start_worker(0)
    assert len(_Worker.made) == 8
    assert all(w.stopped for w in _Worker.made)


def test_a_worker_never_ready_is_left_running(
    campaign: runner.Campaign, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock: list[float] = [0.0]

    def monotonic() -> float:
        clock[0] += 30.0
        return clock[0]

    monkeypatch.setattr(time, "monotonic", monotonic)
    _Worker.refusals = 1_000
    campaign._start_worker(0)
    assert len(_Worker.made) == 1
    assert not _Worker.made[0].stopped
    assert any("left running" in note for note in campaign.notes)
