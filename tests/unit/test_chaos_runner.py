"""The campaign's runner: its supervision of its workers tells their own exits from its stops,
and its staged actors make valid jobs and answer the deployments awaiting approval."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any, cast

import pytest

from producers.contract.records import DeploymentRecord, DeploymentState, ProgressInfo
from scripts.chaos import runner
from scripts.chaos.schedule import STAGED_SERVICES, draw


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


def test_every_staged_job_the_schedule_draws_is_a_valid_job(campaign: runner.Campaign) -> None:
    """A job the contract refused would only test the refusal: each drawn staged job passes
    the strategy rules (a strategy's options with that strategy, AWS's bounds), names its
    service's alarm when it draws one, and leaves the timeout to the strategy's default."""
    jobs = [
        (event.args, campaign._staged_job(event.args))
        for seed in (1, 2, 3)
        for event in draw(seed, 8, services=20).events
        if event.kind in ("staged", "staged_wait")
    ]
    assert len(jobs) > 20
    for args, job in jobs:
        assert job.service == runner.staged_name(args["staged"])
        assert job.strategy == args["strategy"]
        assert job.alarms == ((runner.alarm_name(args["staged"]),) if args["alarm"] else ())
        assert job.timeout_seconds is None
        assert ("fail-" in job.images[0].image) == args["broken"]


def test_a_staged_service_is_created_plain_and_then_given_its_bake_alarm_and_hook() -> None:
    """Its first deployment has no bake and no hook (else it would wait at its own hook);
    then a gated one pauses every deployment at POST_SCALE_UP, and every one has its alarm."""
    for index, (strategy, gated) in enumerate(STAGED_SERVICES):
        first = runner.staged_configuration(index, first=True)
        assert (first["strategy"], first["bakeTimeInMinutes"]) == (strategy, 0)
        assert "lifecycleHooks" not in first
        assert "alarms" not in first
        later = runner.staged_configuration(index, first=False)
        assert later["bakeTimeInMinutes"] > 0
        assert later["alarms"]["alarmNames"] == [runner.alarm_name(index)]
        assert ("lifecycleHooks" in later) == gated


class _Client:
    """ConveyorClient's status and answer_hook, over fixed records."""

    def __init__(self, awaiting: set[str]) -> None:
        self.awaiting = awaiting
        self.answered: list[tuple[str, str, str]] = []

    def status(self, deployment_id: str) -> DeploymentRecord:
        progress = ProgressInfo(awaiting_hook_id="h" if deployment_id in self.awaiting else None)
        return DeploymentRecord(
            id=deployment_id,
            job={},
            cluster="demo",
            service="s",
            state=DeploymentState.RUNNING,
            progress=progress,
            created_at=0.0,
            updated_at=0.0,
        )

    def answer_hook(self, deployment_id: str, action: str, by: str) -> None:
        self.answered.append((deployment_id, action, by))


def test_an_answer_goes_to_a_deployment_awaiting_approval_and_is_recorded(
    campaign: runner.Campaign,
) -> None:
    """Of the staged deployments accepted so far, one awaiting approval is answered when there
    is one (else the pick); the answer, and whether it awaited, are in the history."""
    for n, kind in enumerate(("staged", "update", "staged", "staged")):
        campaign.history.enqueues.append({"kind": kind, "id": f"d{n}", "accepted": True})
    fake = _Client(awaiting={"d2"})
    campaign.client = cast(Any, fake)
    campaign._answer({"pick": 0.0, "delay": 0}, "ROLLBACK")
    fake.awaiting = set()
    campaign._answer({"pick": 0.99, "delay": 0}, "CONTINUE")
    assert fake.answered == [("d2", "ROLLBACK", "chaos"), ("d3", "CONTINUE", "chaos")]
    assert [(a["id"], a["action"], a["awaiting"]) for a in campaign.history.answers] == [
        ("d2", "ROLLBACK", True),
        ("d3", "CONTINUE", False),
    ]


def test_every_governed_release_the_schedule_draws_is_a_valid_release(
    campaign: runner.Campaign,
) -> None:
    """A budget goes with --continue-on-failure; an approval expires within the campaign;
    exactly the drawn entries get a broken image."""
    drawn = [
        event.args
        for seed in (1, 2, 3)
        for event in draw(seed, 8, services=20).events
        if event.kind == "release_governed"
    ]
    assert len(drawn) > 10
    for args in drawn:
        release = campaign._governed_job(args)
        assert release.max_failures == args["budget"]
        assert release.fail_fast is (args["budget"] is None)
        assert release.approve_before == ([args["approve"]] if args["approve"] else [])
        if args["approve"]:
            assert release.approval_timeout_minutes == 1
        images = [job.images[0].image for wave in release.waves for job in wave]
        broken = [n for n, image in enumerate(images) if ":fail-" in image]
        assert broken == args["broken"]


def test_a_freeze_window_is_written_for_producers_and_workers_to_read(
    campaign: runner.Campaign,
) -> None:
    """The file the workers' CONVEYOR_FREEZE_FILE names: empty at the start; then each window
    opens a second after it is written and closes ``seconds`` later."""
    from producers.contract.freeze import load_calendar

    campaign._write_freeze()
    assert load_calendar(campaign.freeze_file).windows == []
    written = time.time()
    campaign._freeze({"seconds": 5.0}, 7)
    calendar = load_calendar(campaign.freeze_file)
    assert [w.name for w in calendar.windows] == ["chaos-freeze-7"]
    assert calendar.active(written) is None
    opened = calendar.active(written + 3.0)
    assert opened is not None
    assert opened.name == "chaos-freeze-7"
    assert calendar.active(written + 8.0) is None
    assert campaign.history.freezes[0]["name"] == "chaos-freeze-7"


def test_every_gated_release_the_schedule_draws_is_a_valid_release(
    campaign: runner.Campaign,
) -> None:
    """Each wave is followed by the gate on the gate alarm, with the drawn count and rule; a
    pause that nobody answers ends within the campaign."""
    drawn = [
        event.args
        for seed in (1, 2, 3)
        for event in draw(seed, 8, services=20).events
        if event.kind == "release_gate"
    ]
    assert len(drawn) > 10
    for args in drawn:
        release = campaign._gated_job(args)
        assert release.gate is not None
        assert release.gate.count == args["count"]
        assert release.gate.on_inconclusive == args["on_inconclusive"]
        assert release.approval_timeout_minutes == 1
        assert [len(w) for w in release.waves] == [len(w) for w in args["waves"]]


def test_every_release_with_tasks_the_schedule_draws_is_a_valid_release(
    campaign: runner.Campaign,
) -> None:
    """The drawn entry of each wave runs the migration; a broken one's image exits 1."""
    drawn = [
        event.args
        for seed in (1, 2, 3)
        for event in draw(seed, 8, services=20).events
        if event.kind == "release_task"
    ]
    assert len(drawn) > 10
    assert any(any(a["broken"]) for a in drawn)
    for args in drawn:
        release = campaign._task_job(args)
        for number, wave in enumerate(release.waves):
            with_task = [p for p, job in enumerate(wave) if job.pre_deploy is not None]
            expected = [] if args["tasks"][number] is None else [args["tasks"][number]]
            assert with_task == expected
            for position in with_task:
                broken = ":fail-" in wave[position].images[0].image
                assert broken == args["broken"][number]


def test_redis_servers_started_are_stopped_when_the_sentinel_never_learns_the_replica(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A campaign whose own set-up fails (the sentinel too slow to learn of the replica on a
    loaded machine) leaves no Redis server or sentinel running behind it."""
    stopped: list[int] = []
    killed: list[str] = []

    class _Sentinel:
        def poll(self) -> int | None:
            return None if not killed else -9

        def kill(self) -> None:
            killed.append("sentinel")

        def wait(self, timeout: float | None = None) -> int:
            return -9

    def never(_self: runner.Redis) -> None:
        raise RuntimeError("the sentinel learning of the replica did not happen within 90 s")

    monkeypatch.setattr(runner.RedisServer, "start", lambda self, replica_of=None: None)
    monkeypatch.setattr(runner.RedisServer, "stop", lambda self: stopped.append(self.port))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: _Sentinel())
    monkeypatch.setattr(runner.Redis, "_replica_known", never)
    servers = runner.Redis(tmp_path, sentinel=True)
    with pytest.raises(RuntimeError, match="did not happen"):
        servers.start()
    assert sorted(stopped) == sorted(node.port for node in servers.nodes)
    assert killed == ["sentinel"]
