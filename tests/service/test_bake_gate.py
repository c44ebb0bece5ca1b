"""A job's bake gate, measured while a canary or linear deployment bakes with production traffic
partly shifted, against the in-memory fake ECS and a scripted metric source.

Passed lets ECS go on; failed (or inconclusive with on_inconclusive: fail) stops the deployment
through ECS (StopServiceDeployment ROLLBACK) and ends rolled_back naming the gate. Measurements
are on the record, so a step run again never counts one twice.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from producers.contract.gates import Gate
from producers.contract.records import DeploymentRecord, DeploymentState, Step
from tests.fakes.ecs import FakeEcs
from tests.fakes.gates import ScriptedMetrics
from tests.service.test_staged_flow import Clock, record_for, run_until, staged_service, step
from worker.domain.errors import InvalidJobError
from worker.domain.gates import Measurement, failed_query, no_data, value
from worker.services.update_flow import UpdateFlow

GATE: dict[str, Any] = {
    "name": "error-rate",
    "prometheus": {"query": "sum(rate(http_5xx[1m])) / sum(rate(http_total[1m]))"},
    "success": "result < 0.01",
    "interval_seconds": 30,
    "count": 3,
    "on_inconclusive": "fail",
}


def gate(**changes: Any) -> dict[str, Any]:
    """The test's gate with ``changes``."""
    return {**GATE, **changes}


def watching(
    ecs: FakeEcs, clock: Clock, metrics: ScriptedMetrics, **job: Any
) -> tuple[UpdateFlow, DeploymentRecord]:
    """A flow measuring with ``metrics``, and a record at its watch step."""
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock, metrics=metrics)
    return flow, run_until(flow, record_for(bake_gate=gate(), **job), Step.WATCH)


def test_a_bake_gate_that_passes_lets_ecs_go_on() -> None:
    """Three good measurements, one per interval, during the canary's bake: passed, recorded,
    nothing sent to ECS, and the deployment succeeds when ECS completes it."""
    ecs, clock = staged_service("CANARY"), Clock()
    metrics = ScriptedMetrics({"error-rate": [value(0.001), value(0.002), value(0.003)]})
    flow, record = watching(ecs, clock, metrics)
    ecs.enter_stage("demo", "web", "PRODUCTION_TRAFFIC_SHIFT", traffic=5.0)
    for _ in range(3):
        t = step(flow, record)
        assert t.next_step is Step.WATCH
        record = t.record
        clock.now += 30
    info = record.bake_gate
    assert info is not None
    assert [m.value for m in info.measurements] == [0.001, 0.002, 0.003]
    assert [(w.traffic, w.outcome) for w in info.windows] == [(5.0, "passed")]
    assert "3 of 3 measurement(s) met result < 0.01" in (info.windows[0].reason or "")
    step(flow, record)
    assert len(metrics.calls) == 3  # passed: no more measuring
    ecs.complete("demo", "web")
    assert step(flow, record).record.state is DeploymentState.SUCCEEDED
    assert "StopServiceDeployment" not in ecs.calls


def test_a_bake_gate_that_fails_stops_the_deployment_and_ends_rolled_back() -> None:
    """A measurement over the condition during the canary's bake: ECS is asked to stop and
    roll back (no second UpdateService), and the deployment ends rolled_back with a reason
    that names the gate, its condition and the value."""
    ecs, clock = staged_service("CANARY"), Clock()
    metrics = ScriptedMetrics({"error-rate": [value(0.2)]})
    flow, record = watching(ecs, clock, metrics)
    ecs.enter_stage("demo", "web", "PRODUCTION_TRAFFIC_SHIFT", traffic=5.0)
    t = step(flow, record)
    assert t.next_step is Step.ROLLBACK
    assert t.record.bake_gate is not None
    assert t.record.bake_gate.windows[0].outcome == "failed"
    t = step(flow, t.record)
    assert t.next_step is Step.WATCH_ROLLBACK
    assert ecs.calls.count("StopServiceDeployment") == 1
    ecs.complete("demo", "web")
    t = step(flow, t.record)
    assert t.record.state is DeploymentState.ROLLED_BACK
    reason = t.record.reason or ""
    assert "gate error-rate" in reason
    assert "result < 0.01" in reason
    assert "0.2" in reason
    assert "StopServiceDeployment" in reason
    assert ecs.calls.count("UpdateService") == 1


def test_an_inconclusive_bake_gate_with_on_inconclusive_fail_rolls_back() -> None:
    """No data past the tolerated count, with on_inconclusive: fail: rolled back as a failure."""
    ecs, clock = staged_service("CANARY"), Clock()
    metrics = ScriptedMetrics({"error-rate": [no_data("no series"), failed_query("refused")]})
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock, metrics=metrics)
    record = run_until(flow, record_for(bake_gate=gate(inconclusive_limit=1)), Step.WATCH)
    ecs.enter_stage("demo", "web", "PRODUCTION_TRAFFIC_SHIFT", traffic=5.0)
    t = step(flow, record)
    assert t.next_step is Step.WATCH
    clock.now += 30
    t = step(flow, t.record)
    assert t.next_step is Step.ROLLBACK
    assert "on_inconclusive: fail" in (t.record.reason or "")
    assert "refused" in (t.record.reason or "")


def test_an_inconclusive_bake_gate_with_on_inconclusive_pass_lets_ecs_go_on() -> None:
    """on_inconclusive: pass: the window is recorded inconclusive and ECS goes on."""
    ecs, clock = staged_service("CANARY"), Clock()
    metrics = ScriptedMetrics({"error-rate": [no_data()]})
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock, metrics=metrics)
    record = run_until(flow, record_for(bake_gate=gate(on_inconclusive="pass")), Step.WATCH)
    ecs.enter_stage("demo", "web", "PRODUCTION_TRAFFIC_SHIFT", traffic=5.0)
    t = step(flow, record)
    assert t.next_step is Step.WATCH
    assert t.record.bake_gate is not None
    assert t.record.bake_gate.windows[0].outcome == "inconclusive"
    assert "StopServiceDeployment" not in ecs.calls


def test_nothing_is_measured_outside_the_partly_shifted_bake() -> None:
    """Before the first production shift (0 %) and once all traffic moved (100 %), the gate
    is not measured; a window ECS left before the gate decided is recorded unfinished."""
    ecs, clock = staged_service("CANARY"), Clock()
    metrics = ScriptedMetrics({"error-rate": [value(0.001)]})
    flow, record = watching(ecs, clock, metrics)
    ecs.enter_stage("demo", "web", "TEST_TRAFFIC_SHIFT", traffic=0.0)
    record = step(flow, record).record
    assert metrics.calls == []
    assert record.bake_gate is None
    ecs.enter_stage("demo", "web", "PRODUCTION_TRAFFIC_SHIFT", traffic=5.0)
    record = step(flow, record).record
    clock.now += 30
    ecs.enter_stage("demo", "web", "BAKE_TIME", traffic=100.0)
    record = step(flow, record).record
    assert len(metrics.calls) == 1
    assert record.bake_gate is not None
    window = record.bake_gate.windows[0]
    assert window.outcome == "unfinished"
    assert "after 1 of 3 measurement(s)" in (window.reason or "")


def test_a_step_run_again_never_counts_a_measurement_twice() -> None:
    """A step run twice from the same record (its commit lost) takes the same one measurement
    each time; a step run again from the committed record finds it there, not due again."""
    ecs, clock = staged_service("CANARY"), Clock()
    metrics = ScriptedMetrics({"error-rate": [value(0.001)] * 5})
    flow, record = watching(ecs, clock, metrics)
    ecs.enter_stage("demo", "web", "PRODUCTION_TRAFFIC_SHIFT", traffic=5.0)
    lost = step(flow, record).record
    committed = step(flow, record).record
    assert lost.bake_gate is not None
    assert committed.bake_gate is not None
    assert len(lost.bake_gate.measurements) == len(committed.bake_gate.measurements) == 1
    clock.now += 10  # a second worker, or an early poll: the next one is due at +30
    again = step(flow, committed).record
    assert again.bake_gate is not None
    assert len(again.bake_gate.measurements) == 1
    assert len(metrics.calls) == 2


def test_a_worker_killed_mid_bake_is_resumed_by_another_that_goes_on_measuring() -> None:
    """Another worker (a new flow) takes over from the committed record: it measures what is
    due next and decides the window with the measurements already taken."""
    ecs, clock = staged_service("CANARY"), Clock()
    first = ScriptedMetrics({"error-rate": [value(0.001), value(0.001)]})
    flow, record = watching(ecs, clock, first)
    ecs.enter_stage("demo", "web", "PRODUCTION_TRAFFIC_SHIFT", traffic=5.0)
    record = step(flow, record).record
    clock.now += 30
    record = step(flow, record).record
    clock.now += 45  # the worker died; the sweeper re-dispatched the watch later
    second = ScriptedMetrics({"error-rate": [value(0.5)]})
    resumed = UpdateFlow(ecs, poll_interval=5, clock=clock, metrics=second)
    t = step(resumed, record)
    assert len(second.calls) == 1
    assert t.record.bake_gate is not None
    assert [m.value for m in t.record.bake_gate.measurements] == [0.001, 0.001, 0.5]
    assert t.next_step is Step.ROLLBACK


def test_each_linear_step_bake_is_judged_on_its_own() -> None:
    """A linear deployment: the first step's window passes, the second step's window is
    judged afresh, and its failure rolls the deployment back naming the share of traffic."""
    ecs, clock = staged_service("LINEAR"), Clock()
    metrics = ScriptedMetrics({"error-rate": [value(0.001)] * 3 + [value(0.3)]})
    flow, record = watching(ecs, clock, metrics)
    ecs.enter_stage("demo", "web", "PRODUCTION_TRAFFIC_SHIFT", traffic=25.0)
    for _ in range(3):
        record = step(flow, record).record
        clock.now += 30
    ecs.enter_stage("demo", "web", "PRODUCTION_TRAFFIC_SHIFT", traffic=50.0)
    t = step(flow, record)
    assert t.next_step is Step.ROLLBACK
    assert t.record.bake_gate is not None
    assert [(w.traffic, w.outcome) for w in t.record.bake_gate.windows] == [
        (25.0, "passed"),
        (50.0, "failed"),
    ]
    assert "bake at 50 % of production traffic" in (t.record.reason or "")


@pytest.mark.parametrize("strategy", ["BLUE_GREEN", "ROLLING"])
def test_a_bake_gate_on_a_service_without_a_partly_shifted_bake_is_refused_at_resolve(
    strategy: str,
) -> None:
    """The service deploys blue/green or rolling: refused before anything is registered."""
    ecs = staged_service(strategy)
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock(), metrics=ScriptedMetrics())
    with pytest.raises(InvalidJobError, match="bake_gate: gate error-rate") as raised:
        asyncio.run(flow.run(record_for(bake_gate=gate())))
    assert "canary or linear" in raised.value.message
    assert "RegisterTaskDefinition" not in ecs.calls
    assert "UpdateService" not in ecs.calls


def test_a_job_that_makes_the_service_canary_may_carry_a_bake_gate() -> None:
    """A blue/green service the job moves to canary: the gate is judged by the strategy the
    job asks for."""
    ecs = staged_service("BLUE_GREEN")
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock(), metrics=ScriptedMetrics())
    t = asyncio.run(flow.run(record_for(bake_gate=gate(), strategy="canary")))
    assert t.next_step is Step.REGISTER


class _Hanging:
    """A source that never answers (a Prometheus that accepts and then stalls)."""

    def __init__(self) -> None:
        self.calls = 0

    async def measure(self, gate: Gate) -> Measurement:
        self.calls += 1
        await asyncio.Event().wait()
        raise AssertionError("never answers")


def test_a_source_that_does_not_answer_is_an_inconclusive_measurement() -> None:
    """The measurement is cut at the flow's measuring time and counted as an error, so the
    watch step ends in time (its retries would otherwise end in a rollback)."""
    ecs, clock = staged_service("CANARY"), Clock()
    hanging = _Hanging()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock, metrics=hanging, measure_timeout=0.05)
    record = run_until(flow, record_for(bake_gate=gate(inconclusive_limit=1)), Step.WATCH)
    ecs.enter_stage("demo", "web", "PRODUCTION_TRAFFIC_SHIFT", traffic=5.0)
    t = step(flow, record)
    assert t.next_step is Step.WATCH
    assert t.record.bake_gate is not None
    (taken,) = t.record.bake_gate.measurements
    assert "no answer within 0.05 s" in (taken.error or "")
    assert hanging.calls == 1


def test_the_step_log_has_one_entry_per_window_verdict() -> None:
    """A window that passed is one step entry; a failed one is the rollback's entry, once."""
    ecs, clock = staged_service("LINEAR"), Clock()
    metrics = ScriptedMetrics({"error-rate": [value(0.001)] * 3 + [value(0.3)]})
    flow, record = watching(ecs, clock, metrics)
    ecs.enter_stage("demo", "web", "PRODUCTION_TRAFFIC_SHIFT", traffic=25.0)
    for _ in range(3):
        record = step(flow, record).record
        clock.now += 30
    ecs.enter_stage("demo", "web", "PRODUCTION_TRAFFIC_SHIFT", traffic=50.0)
    record = step(flow, record).record
    details = [s.detail for s in record.steps if "gate error-rate" in s.detail]
    assert len(details) == 2
    assert "3 of 3 measurement(s) met" in details[0]
    assert "did not meet result < 0.01" in details[1]
