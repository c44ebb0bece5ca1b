"""Release waves with metric gates, in a real Redis: measured between waves, acted on by advance.

The measurements come from a scripted source (tests/fakes/gates.py) through the worker's own
measuring service; messages are collected instead of sent, and times are given, never slept.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from producers.contract.enums import Step
from producers.contract.gates import Gate
from producers.contract.messages import GateMessage
from producers.contract.names import TASK_RELEASE_GATE
from producers.contract.records import DeploymentRecord, DeploymentState
from producers.contract.releases import GateReading, ReleaseJob, ReleaseRecord, ReleaseState
from producers.contract.store import RecordStore
from tests.fakes.gates import ScriptedMetrics
from worker.domain.gates import GateJudgement, Measurement, failed_query, no_data, value
from worker.release_store import ROLLBACK_SUFFIX, WorkerReleaseStore
from worker.services.release_gates import take_measurement
from worker.steps import StepContext, sweep
from worker.store import WorkerStore

RELEASE = "rel-00000000000000000002"
GRACE = 30.0
PREVIOUS = "arn:aws:ecs:us-east-1:123456789012:task-definition/{name}:1"
CURRENT = "arn:aws:ecs:us-east-1:123456789012:task-definition/{name}:2"


class Sender:
    """Collects sent task messages (name, args, countdown) instead of publishing them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any], float | None]] = []

    def send_task(self, name: str, args: Any = None, **options: Any) -> None:
        self.sent.append((name, list(args or []), options.get("countdown")))

    def gates(self) -> list[tuple[list[Any], float | None]]:
        """The measuring messages sent, with their countdowns."""
        return [
            (args, countdown) for name, args, countdown in self.sent if name == TASK_RELEASE_GATE
        ]

    def steps(self) -> list[str]:
        """The deployments whose step messages were sent."""
        return [args[0] for name, args, _ in self.sent if name != TASK_RELEASE_GATE]


class Clock:
    """A clock the test moves."""

    def __init__(self, now: float = 1.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _gate(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "errors",
        "prometheus": {"query": "sum(errors)"},
        "success": "result < 1",
        "interval_seconds": 5,
        "count": 2,
        **overrides,
    }


def _job(gate: dict[str, Any], *, on_wave: int | None = 0) -> ReleaseJob:
    def e(name: str) -> dict[str, Any]:
        return {"service": name, "images": {"app": ":2"}}

    waves: list[Any] = [[e("a"), e("b")], [e("c")]]
    if on_wave is None:
        return ReleaseJob.model_validate({"cluster": "c", "gate": gate, "waves": waves})
    waves[on_wave] = {"services": waves[on_wave], "gate": gate}
    return ReleaseJob.model_validate({"cluster": "c", "waves": waves})


def _stores(client: redis.Redis) -> tuple[RecordStore, WorkerReleaseStore]:
    records = RecordStore(client)
    return records, WorkerReleaseStore(client, records, ttl_seconds=3600, recovery_grace=GRACE)


def _succeed(records: RecordStore, deployment_id: str) -> None:
    """End a deployment as a real one would: on a new revision, with the images it changed."""

    def done(r: DeploymentRecord) -> DeploymentRecord:
        name = r.service
        return r.model_copy(
            update={
                "state": DeploymentState.SUCCEEDED,
                "family": name,
                "previous_task_definition_arn": PREVIOUS.format(name=name),
                "task_definition_arn": CURRENT.format(name=name),
                "images": {"app": {"before": f"{name}:1", "after": f"{name}:2"}},
            }
        )

    records.modify(deployment_id, done)


def _end(records: RecordStore, deployment_id: str, state: DeploymentState) -> None:
    records.modify(deployment_id, lambda r: r.model_copy(update={"state": state}))


def _measure(
    releases: WorkerReleaseStore, sender: Sender, clock: Clock, metrics: ScriptedMetrics, index: int
) -> dict[str, Any]:
    """Deliver the measuring message of wave 0 with ``index``, as the worker's task would."""

    def measure(gate: Gate, _role: str | None) -> Measurement:
        import asyncio

        return asyncio.run(metrics.measure(gate))

    return take_measurement(
        GateMessage(RELEASE, 0, index),
        releases=releases,
        measure=measure,
        sender=sender,
        clock=clock,
        queue="conveyor",
    )


def _wave_passed(
    client: redis.Redis, job: ReleaseJob, clock: Clock
) -> tuple[RecordStore, WorkerReleaseStore, Sender, ReleaseRecord]:
    """Create the release, end its first wave well, and advance: the gate starts."""
    records, releases = _stores(client)
    release = releases.create(job, RELEASE, now=clock())
    for deployment_id in release.waves[0]:
        _succeed(records, deployment_id)
    sender = Sender()
    clock.now += 1
    started = releases.advance(RELEASE, sender, clock)
    assert started is not None
    return records, releases, sender, started


def test_a_wave_gate_is_validated_naming_the_field_and_the_fix() -> None:
    """A bad gate on a wave is refused with where it is (waves[1].gate.FIELD) and the fix."""
    with pytest.raises(ValueError, match=r"waves\[1\]\.gate\.success: .*expected a number"):
        _job(_gate(success="result < x"), on_wave=1)
    with pytest.raises(ValueError, match=r"waves\[0\]\.gate: gate errors: give exactly one of"):
        _job({"name": "errors", "success": "result < 1"})
    with pytest.raises(ValueError, match=r"waves\[0\]\.gate\.count: .*raise count"):
        _job(_gate(count=1, failure_limit=1))


def test_the_release_gate_applies_to_every_wave_without_its_own() -> None:
    """A release-level gate is measured after every wave that has none; a wave's own wins."""
    job = ReleaseJob.model_validate(
        {
            "cluster": "c",
            "gate": _gate(name="all"),
            "waves": [
                [{"service": "a", "images": {"app": ":2"}}],
                {"services": [{"service": "b", "images": {"app": ":2"}}], "gate": _gate()},
            ],
        }
    )
    assert [g.name if g else None for g in (job.gate_of(0), job.gate_of(1))] == ["all", "errors"]
    assert (
        ReleaseJob.model_validate(
            {"cluster": "c", "services": [{"service": "a", "images": {"app": ":2"}}]}
        ).gate_of(0)
        is None
    )


def test_a_release_with_gates_is_recorded_for_conveyors_that_measure_them(
    client: redis.Redis,
) -> None:
    """A release with a gate is recorded at schema 2, which a Conveyor that cannot measure
    gates leaves alone (it would move the release past them); one without stays at 1."""
    _records, releases = _stores(client)
    gated = releases.create(_job(_gate()), RELEASE, now=1.0)
    assert (gated.schema_version, gated.gate_of(0), gated.gate_of(1)) == (
        2,
        _job(_gate()).gate_of(0).model_dump(mode="json"),  # type: ignore[union-attr]
        None,
    )
    plain = ReleaseJob.model_validate(
        {"cluster": "c", "services": [{"service": "a", "images": {"app": ":2"}}]}
    )
    assert releases.create(plain, "rel-00000000000000000003", now=1.0).schema_version == 1


def test_a_passed_gate_lets_the_next_wave_start(client: redis.Redis) -> None:
    """Once wave 1 ended, its gate is measured (nothing of wave 2 exists meanwhile); two good
    measurements pass it, and the next wave starts with the verdict recorded."""
    clock = Clock()
    records, releases, sender, started = _wave_passed(client, _job(_gate()), clock)
    run = started.gate_run(0)
    assert run is not None
    assert (started.wave, run.state, run.gate) == (0, "measuring", "errors")
    assert sender.gates() == [([RELEASE, 0, 0], None)]
    metrics = ScriptedMetrics({"errors": [value(0), value(0.5)]})
    assert _measure(releases, sender, clock, metrics, 0)["status"] == "measuring"
    assert sender.gates()[-1] == ([RELEASE, 0, 1], 5.0)
    assert records.get(started.waves[1][0]) is None
    clock.now += 5
    assert _measure(releases, sender, clock, metrics, 1)["status"] == "passed"
    moved = releases.get(RELEASE)
    assert moved is not None
    assert moved.wave == 1
    run = moved.gate_run(0)
    assert run is not None
    assert run.state == "passed"
    assert [m.value for m in run.measurements] == [0, 0.5]
    assert sender.steps() == [moved.waves[1][0]]
    events = [e["event"] for e in RecordStore(client).history.read()]
    assert events.count("gate passed") == 1


def test_a_failed_gate_rolls_the_wave_back_and_fails_the_release(client: redis.Redis) -> None:
    """A failed gate creates one rollback deployment per service of the wave, built from the
    revision it ran before with its previous images; the release fails once they ended, naming
    the gate, its values and the rollbacks; the next wave never starts."""
    clock = Clock()
    records, releases, sender, started = _wave_passed(client, _job(_gate()), clock)
    a, b = started.waves[0]
    metrics = ScriptedMetrics({"errors": [value(7)]})
    assert _measure(releases, sender, clock, metrics, 0)["status"] == "failed"
    rolling = releases.get(RELEASE)
    assert rolling is not None
    assert rolling.state is ReleaseState.RUNNING
    assert [(r.of, r.how, r.to) for r in rolling.rollbacks] == [
        (a, "deployment", PREVIOUS.format(name="a")),
        (b, "deployment", PREVIOUS.format(name="b")),
    ]
    assert sender.steps() == [a + ROLLBACK_SUFFIX, b + ROLLBACK_SUFFIX]
    rollback = records.get(a + ROLLBACK_SUFFIX)
    assert rollback is not None
    assert rollback.release_id is None  # a cancel of the release must not hold it back
    full = json.loads(client.get(f"conveyor:job:{a}{ROLLBACK_SUFFIX}") or b"{}")
    assert full["base_revision"] == PREVIOUS.format(name="a")
    assert [(i["container"], i["image"]) for i in full["images"]] == [("app", "a:1")]
    # Advancing again creates and sends nothing twice.
    assert releases.advance(RELEASE, sender, clock) == rolling
    assert len(sender.steps()) == 2
    _end(records, a + ROLLBACK_SUFFIX, DeploymentState.SUCCEEDED)
    assert releases.advance(RELEASE, sender, clock).state is ReleaseState.RUNNING  # type: ignore[union-attr]
    _end(records, b + ROLLBACK_SUFFIX, DeploymentState.FAILED)
    done = releases.advance(RELEASE, sender, clock)
    assert done is not None
    assert done.state is ReleaseState.FAILED
    assert [r.outcome for r in done.rollbacks] == ["succeeded", "failed"]
    assert done.reason is not None
    assert done.reason.startswith("gate errors: 1 measurement(s) did not meet result < 1")
    assert "7" in done.reason
    assert "rolled back: a succeeded, b failed; 1 not started" in done.reason
    assert records.get(done.waves[1][0]) is None


def test_an_inconclusive_gate_pauses_until_approved(client: redis.Redis) -> None:
    """No data pauses the release exactly like approve_before; an approval continues as if the
    gate had passed."""
    clock = Clock()
    _records, releases, sender, _ = _wave_passed(client, _job(_gate()), clock)
    assert _measure(releases, sender, clock, ScriptedMetrics(), 0)["status"] == "inconclusive"
    paused = releases.get(RELEASE)
    assert paused is not None
    assert (paused.wave, paused.awaiting_wave) == (0, 1)
    assert paused.awaiting_approval_since is not None
    assert sender.steps() == []
    releases.answer_wave(RELEASE, "CONTINUE", "ops@host", now=clock())
    moved = releases.advance(RELEASE, sender, clock)
    assert moved is not None
    assert (moved.wave, moved.awaiting_wave) == (1, None)
    assert sender.steps() == [moved.waves[1][0]]


def test_a_rejected_inconclusive_gate_rolls_the_wave_back(client: redis.Redis) -> None:
    """A rejection after an inconclusive gate rolls the wave back like a failed gate."""
    clock = Clock()
    records, releases, sender, started = _wave_passed(client, _job(_gate()), clock)
    _measure(releases, sender, clock, ScriptedMetrics({"errors": [failed_query("down")]}), 0)
    releases.advance(RELEASE, sender, clock)
    releases.answer_wave(RELEASE, "REJECT", "ops@host", now=clock())
    rolling = releases.advance(RELEASE, sender, clock)
    assert rolling is not None
    assert rolling.rolling_back is not None
    assert rolling.rolling_back.endswith("rejected by ops@host")
    for deployment_id in started.waves[0]:
        _end(records, deployment_id + ROLLBACK_SUFFIX, DeploymentState.SUCCEEDED)
    done = releases.advance(RELEASE, sender, clock)
    assert done is not None
    assert done.state is ReleaseState.FAILED
    assert "error: down" in (done.reason or "")


@pytest.mark.parametrize(("action", "state"), [("pass", "succeeded"), ("fail", "failed")])
def test_on_inconclusive_pass_or_fail_on_the_last_wave(
    client: redis.Redis, action: str, state: str
) -> None:
    """The last wave's gate decides the release: inconclusive with `pass` succeeds it; with
    `fail` the wave is rolled back (nothing to roll back for a deployment that was not live)."""
    clock = Clock()
    job = _job(_gate(on_inconclusive=action, count=1), on_wave=1)
    records, releases = _stores(client)
    release = releases.create(job, RELEASE, now=clock())
    for deployment_id in release.waves[0]:
        _succeed(records, deployment_id)
    sender = Sender()
    releases.advance(RELEASE, sender, clock)
    _end(records, release.waves[1][0], DeploymentState.SUCCEEDED)  # no revision: not live
    started = releases.advance(RELEASE, sender, clock)
    assert started is not None
    assert started.state is ReleaseState.RUNNING  # the last wave's gate runs first
    message = GateMessage(RELEASE, 1, 0)
    take_measurement(
        message,
        releases=releases,
        measure=lambda _g, _r: no_data(),
        sender=sender,
        clock=clock,
        queue="conveyor",
    )
    done = releases.get(RELEASE)
    assert done is not None
    assert done.state.value == state


def test_a_measurement_delivered_twice_counts_once(client: redis.Redis) -> None:
    """Two copies of one measuring message (two workers): one reading is recorded, and only
    the copy that recorded it sends the next message."""
    clock = Clock()
    _records, releases, sender, _ = _wave_passed(client, _job(_gate(count=3)), clock)
    metrics = ScriptedMetrics({"errors": [value(0), value(0)]})
    assert _measure(releases, sender, clock, metrics, 0)["status"] == "measuring"
    assert _measure(releases, sender, clock, metrics, 0)["status"] == "stale"
    run = releases.get(RELEASE).gate_run(0)  # type: ignore[union-attr]
    assert run is not None
    assert [m.index for m in run.measurements] == [0]
    assert [args for args, _ in sender.gates()] == [[RELEASE, 0, 0], [RELEASE, 0, 1]]


def test_a_racing_copy_of_a_measurement_is_not_counted(client: redis.Redis) -> None:
    """A copy that read the release before the other copy recorded its reading loses the
    compare-and-set: its reading is dropped and it sends nothing."""
    clock = Clock()
    _records, releases, sender, _ = _wave_passed(client, _job(_gate(count=3)), clock)
    inner = ScriptedMetrics({"errors": [value(0), value(9)]})

    def racing(gate: Gate, role: str | None) -> Measurement:
        # The other copy measures and records while this one is measuring.
        _measure(releases, sender, clock, inner, 0)
        return value(9)

    result = take_measurement(
        GateMessage(RELEASE, 0, 0),
        releases=releases,
        measure=racing,
        sender=sender,
        clock=clock,
        queue="conveyor",
    )
    assert result["status"] == "duplicate"
    run = releases.get(RELEASE).gate_run(0)  # type: ignore[union-attr]
    assert run is not None
    assert [m.value for m in run.measurements] == [0]
    assert [args for args, _ in sender.gates()] == [[RELEASE, 0, 0], [RELEASE, 0, 1]]


def test_a_lost_measuring_message_is_sent_again_by_the_sweep(client: redis.Redis) -> None:
    """A measurement overdue by the recovery grace (its message lost with a worker) is sent
    again by the recovery sweep, once; within the grace the sweep sends nothing."""
    clock = Clock()
    _records, releases, sender, _ = _wave_passed(client, _job(_gate()), clock)
    assert len(sender.gates()) == 1

    def swept(at: float) -> None:
        context = StepContext(
            store=WorkerStore(client),
            redis=client,
            sender=sender,
            clock=lambda: at,
            poll_interval=5,
            recovery_grace=GRACE,
            step_time_limit=10,
            max_step_attempts=3,
        )
        sweep(context, limit=100)

    swept(clock() + GRACE - 1)
    assert len(sender.gates()) == 1
    clock.now += GRACE + 1
    swept(clock())
    swept(clock())
    assert sender.gates() == [([RELEASE, 0, 0], None), ([RELEASE, 0, 0], None)]
    metrics = ScriptedMetrics({"errors": [value(0)]})
    assert _measure(releases, sender, clock, metrics, 0)["status"] == "measuring"


def test_a_cancel_while_rolling_back_still_rolls_back(client: redis.Redis) -> None:
    """A cancel requested during the rollbacks does not hold them back: they are not the
    release's deployments, and the release ends failed once they ended."""
    clock = Clock()
    records, releases, sender, started = _wave_passed(client, _job(_gate()), clock)
    _measure(releases, sender, clock, ScriptedMetrics({"errors": [value(5)]}), 0)
    releases.request_cancel(RELEASE, now=clock())
    assert releases.holds_back(RELEASE) is not None
    rollback = records.get(started.waves[0][0] + ROLLBACK_SUFFIX)
    assert rollback is not None
    assert rollback.release_id is None
    for deployment_id in started.waves[0]:
        _end(records, deployment_id + ROLLBACK_SUFFIX, DeploymentState.SUCCEEDED)
    done = releases.advance(RELEASE, sender, clock)
    assert done is not None
    assert done.state is ReleaseState.FAILED


def test_a_failed_gate_cancels_a_deployment_still_running_past_move_on_at(
    client: redis.Redis,
) -> None:
    """With move_on_at the gate starts while a deployment still bakes; when it fails, that
    deployment is cancelled the way `conveyor cancel` does it (its cancel recorded, its step
    sent again: it rolls its own rollout back), the ended one gets a rollback deployment, and
    the release fails once both have ended."""
    clock = Clock()
    records, releases = _stores(client)
    job = _job(_gate()).model_copy(update={"move_on_at": "PRODUCTION_TRAFFIC_SHIFT"})
    release = releases.create(job, RELEASE, now=clock())
    first, second = release.waves[0]
    _succeed(records, first)

    def baking(r: DeploymentRecord) -> DeploymentRecord:
        progress = r.progress.model_copy(
            update={"strategy": "CANARY", "lifecycle_stage": "BAKE_TIME"}
        )
        return r.model_copy(update={"state": DeploymentState.RUNNING, "progress": progress})

    records.modify(second, baking)
    sender = Sender()
    started = releases.advance(RELEASE, sender, clock)
    assert started is not None
    assert started.gate_run(0) is not None
    _measure(releases, sender, clock, ScriptedMetrics({"errors": [value(3)]}), 0)
    rolling = releases.get(RELEASE)
    assert rolling is not None
    assert [(r.of, r.how) for r in rolling.rollbacks] == [(first, "deployment"), (second, "cancel")]
    cancelled = records.get(second)
    assert cancelled is not None
    assert cancelled.cancel_requested_at == clock()
    assert sender.steps() == [first + ROLLBACK_SUFFIX, second]
    releases.advance(RELEASE, sender, clock)
    assert sender.steps() == [first + ROLLBACK_SUFFIX, second]  # asked once
    _end(records, first + ROLLBACK_SUFFIX, DeploymentState.SUCCEEDED)
    _end(records, second, DeploymentState.ROLLED_BACK)
    done = releases.advance(RELEASE, sender, clock)
    assert done is not None
    assert done.state is ReleaseState.FAILED
    assert [r.outcome for r in done.rollbacks] == ["succeeded", "rolled_back"]
    assert records.get(done.waves[1][0]) is None


def test_a_paused_gate_not_answered_in_time_rolls_the_wave_back(client: redis.Redis) -> None:
    """No answer within approval_timeout_minutes after an inconclusive gate: the wave is rolled
    back as for a rejection, and the reason says the approval did not come."""
    clock = Clock()
    job = _job(_gate()).model_copy(update={"approval_timeout_minutes": 10})
    records, releases, sender, started = _wave_passed(client, job, clock)
    _measure(releases, sender, clock, ScriptedMetrics(), 0)
    clock.now += 599
    assert releases.advance(RELEASE, sender, clock).rolling_back is None  # type: ignore[union-attr]
    clock.now += 2
    rolling = releases.advance(RELEASE, sender, clock)
    assert rolling is not None
    assert (rolling.rolling_back or "").endswith("not approved within 10 minutes")
    assert rolling.awaiting_wave is None
    for deployment_id in started.waves[0]:
        _end(records, deployment_id + ROLLBACK_SUFFIX, DeploymentState.SUCCEEDED)
    assert releases.advance(RELEASE, sender, clock).state is ReleaseState.FAILED  # type: ignore[union-attr]


def test_a_stored_gate_this_worker_cannot_read_pauses_the_release_for_a_person(
    client: redis.Redis,
) -> None:
    """A gate stored by another Conveyor that this one cannot read (a newer field, a damaged
    record) is not measured again and again: it is recorded inconclusive, and the release
    pauses for `conveyor approve` or `reject`, saying why without echoing the gate."""
    clock = Clock()
    _records, releases, sender, started = _wave_passed(client, _job(_gate()), clock)
    stored = started.model_copy(
        update={"gates": [_gate(success="result <", secret_field="s3cr3t"), None]}
    )
    client.set(releases.key(RELEASE), stored.model_dump_json())
    result = _measure(releases, sender, clock, ScriptedMetrics(), 0)
    assert result["status"] == "inconclusive"
    paused = releases.get(RELEASE)
    assert paused is not None
    run = paused.gate_run(0)
    assert run is not None
    assert (run.state, run.action) == ("inconclusive", "pause")
    assert run.reason is not None
    assert "cannot read" in run.reason
    assert "s3cr3t" not in run.model_dump_json()
    assert paused.awaiting_wave == 1
    assert sender.gates() == [([RELEASE, 0, 0], None)]  # the first one only: nothing re-sent


def test_a_cancel_after_the_gate_failed_still_rolls_the_wave_back(client: redis.Redis) -> None:
    """A gate failed but the advance that would roll the wave back was lost; a cancel arrives
    before the sweep: the wave is rolled back all the same, and the release ends failed (the
    gate's verdict) once the rollbacks ended, not cancelled with the failed change live."""
    clock = Clock()
    records, releases, sender, started = _wave_passed(client, _job(_gate()), clock)

    def failed(_readings: list[GateReading]) -> GateJudgement:
        return "failed", "gate errors: 9 errors", None, None

    # The verdict is recorded, and the worker dies before its advance.
    releases.record_gate_measurement(RELEASE, 0, GateReading(index=0, at=clock(), value=9), failed)
    releases.request_cancel(RELEASE, now=clock())
    clock.now += 1
    rolling = releases.advance(RELEASE, sender, clock)
    assert rolling is not None
    assert (rolling.state, rolling.rolling_back) == (ReleaseState.RUNNING, "gate errors: 9 errors")
    assert [r.how for r in rolling.rollbacks] == ["deployment", "deployment"]
    a, b = started.waves[0]
    assert sender.steps() == [a + ROLLBACK_SUFFIX, b + ROLLBACK_SUFFIX]
    for deployment_id in (a, b):
        _end(records, deployment_id + ROLLBACK_SUFFIX, DeploymentState.SUCCEEDED)
    done = releases.advance(RELEASE, sender, clock)
    assert done is not None
    assert done.state is ReleaseState.FAILED
    assert "rolled back: a succeeded, b succeeded" in (done.reason or "")
    assert records.get(done.waves[1][0]) is None


def _still_running_when_the_gate_failed(
    client: redis.Redis, clock: Clock
) -> tuple[RecordStore, WorkerReleaseStore, Sender, str, str]:
    """A move_on_at release whose gate failed while its second deployment still baked."""
    records, releases = _stores(client)
    job = _job(_gate()).model_copy(update={"move_on_at": "PRODUCTION_TRAFFIC_SHIFT"})
    release = releases.create(job, RELEASE, now=clock())
    first, second = release.waves[0]
    _succeed(records, first)

    def baking(r: DeploymentRecord) -> DeploymentRecord:
        progress = r.progress.model_copy(
            update={"strategy": "CANARY", "lifecycle_stage": "BAKE_TIME"}
        )
        return r.model_copy(update={"state": DeploymentState.RUNNING, "progress": progress})

    records.modify(second, baking)
    sender = Sender()
    releases.advance(RELEASE, sender, clock)
    _measure(releases, sender, clock, ScriptedMetrics({"errors": [value(3)]}), 0)
    return records, releases, sender, first, second


def _rollout_left_to_ecs(records: RecordStore, deployment_id: str) -> None:
    """End a deployment as a cancel of a job with rollback off does: its change went out."""
    _succeed(records, deployment_id)

    def cancelled(r: DeploymentRecord) -> DeploymentRecord:
        return r.model_copy(
            update={
                "state": DeploymentState.CANCELLED,
                "step": Step.WATCH,
                "job": {**r.job, "rollback": False},
                "reason": "cancelled; the rollout goes on in ECS (rollback is off for this job)",
            }
        )

    records.modify(deployment_id, cancelled)


@pytest.mark.parametrize("ends", ["succeeded first", "rollback off"])
def test_a_cancel_that_leaves_the_change_live_is_followed_by_a_rollback_deployment(
    client: redis.Redis, ends: str
) -> None:
    """The deployment cancelled by a failed gate succeeds before its cancel takes effect, or
    its job has rollback off (ECS finishes the rollout): its change is live, so a rollback
    deployment returns its service to the revision before the wave, recorded with the others;
    the release fails only once that one ended too."""
    clock = Clock()
    records, releases, sender, first, second = _still_running_when_the_gate_failed(client, clock)
    if ends == "succeeded first":
        _succeed(records, second)
    else:
        _rollout_left_to_ecs(records, second)
    _end(records, first + ROLLBACK_SUFFIX, DeploymentState.SUCCEEDED)
    rolling = releases.advance(RELEASE, sender, clock)
    assert rolling is not None
    assert rolling.state is ReleaseState.RUNNING
    late = rolling.rollbacks[1]
    assert (late.of, late.how, late.deployment, late.to, late.outcome) == (
        second,
        "deployment",
        second + ROLLBACK_SUFFIX,
        PREVIOUS.format(name="b"),
        None,
    )
    assert records.get(second + ROLLBACK_SUFFIX) is not None
    assert sender.steps()[-1] == second + ROLLBACK_SUFFIX
    _end(records, second + ROLLBACK_SUFFIX, DeploymentState.SUCCEEDED)
    done = releases.advance(RELEASE, sender, clock)
    assert done is not None
    assert done.state is ReleaseState.FAILED
    assert [r.outcome for r in done.rollbacks] == ["succeeded", "succeeded"]


@pytest.mark.parametrize(
    "extra",
    [
        {"pre_deploy": {"container": "app", "command": ["bin/migrate"]}},
        {"bake_gate": {**_gate(), "on_inconclusive": "fail"}, "strategy": "canary"},
    ],
    ids=["pre_deploy", "bake_gate"],
)
def test_a_release_with_a_task_or_a_bake_gate_is_recorded_for_conveyors_that_know_them(
    client: redis.Redis, extra: dict[str, Any]
) -> None:
    """A release without gates but with a pre-deploy task (its held-back entries, passed
    tasks) or a bake gate is recorded at schema 2 too: a Conveyor that knows only 1 would drop
    what it cannot read and move the release on as if it were not there."""
    _records, releases = _stores(client)
    job = ReleaseJob.model_validate(
        {"cluster": "c", "services": [{"service": "a", "images": {"app": ":2"}, **extra}]}
    )
    assert releases.create(job, RELEASE, now=1.0).schema_version == 2
