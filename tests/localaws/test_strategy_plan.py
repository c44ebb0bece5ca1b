"""The staged rollout of BLUE_GREEN, LINEAR and CANARY deployments, driven by a fake clock."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from localaws.strategies import (
    LambdaAnswer,
    LambdaHooks,
    ShiftStep,
    StagedRollout,
    StrategyConfigError,
    check_deployment_configuration,
    production_steps,
    stage_plan,
)

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:hook"


def walk(
    rollout: StagedRollout,
    *,
    until: float = 1000.0,
    green_ready: bool = True,
    lambdas: LambdaHooks | None = None,
    start: float = 0.0,
) -> tuple[float, str | None]:
    """Advance once per simulated second (minutes last 1 s, stages 1 s) until the rollout reaches
    CLEAN_UP, a rollback is asked for, or ``until``; return (the time, the rollback reason)."""
    now = start
    while now < until:
        reason = rollout.advance(
            now,
            T0 + datetime.timedelta(seconds=now),
            green_ready=green_ready,
            minute_seconds=1.0,
            stage_seconds=1.0,
            lambdas=lambdas,
        )
        if reason is not None or rollout.cleaning_up:
            return now, reason
        now += 1.0
    return now, None


def entered(rollout: StagedRollout) -> list[str]:
    """The stages entered so far, in order."""
    return [entry.stage for entry in rollout.log]


def test_production_steps_of_each_strategy() -> None:
    """BLUE_GREEN shifts all production traffic at once; CANARY shifts canaryPercent and holds
    it canaryBakeTimeInMinutes, then the rest; LINEAR shifts stepPercent at a time, each step held
    stepBakeTimeInMinutes except the one that reaches 100 %; ECS's defaults apply when unset."""
    canary = {"canaryPercent": 20.0, "canaryBakeTimeInMinutes": 3}
    linear = {"stepPercent": 30.0, "stepBakeTimeInMinutes": 2}

    assert production_steps({"strategy": "BLUE_GREEN"}) == [ShiftStep(100.0, 0)]
    assert production_steps({"strategy": "CANARY", "canaryConfiguration": canary}) == [
        ShiftStep(20.0, 3),
        ShiftStep(100.0, 0),
    ]
    assert production_steps({"strategy": "CANARY"}) == [ShiftStep(5.0, 10), ShiftStep(100.0, 0)]
    assert production_steps({"strategy": "LINEAR", "linearConfiguration": linear}) == [
        ShiftStep(30.0, 2),
        ShiftStep(60.0, 2),
        ShiftStep(90.0, 2),
        ShiftStep(100.0, 0),
    ]
    assert [s.percent for s in production_steps({"strategy": "LINEAR"})][:3] == [10.0, 20.0, 30.0]
    assert len(production_steps({"strategy": "LINEAR"})) == 10
    plan = [stage for stage, _ in stage_plan(2, reconcile=True)]
    assert plan[0] == "RECONCILE_SERVICE"
    assert plan[-3:] == ["POST_PRODUCTION_TRAFFIC_SHIFT", "BAKE_TIME", "CLEAN_UP"]


def test_canary_holds_its_step_and_the_bake() -> None:
    """A CANARY rollout holds the canary step canaryBakeTimeInMinutes and the bake
    bakeTimeInMinutes (in simulated minutes); green's production share follows the steps."""
    config = {
        "strategy": "CANARY",
        "canaryConfiguration": {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 5},
        "bakeTimeInMinutes": 7,
    }
    rollout = StagedRollout.for_configuration(config, reconcile=False)

    now, reason = walk(rollout)

    assert reason is None
    times = {entry.stage: (entry.at - T0).total_seconds() for entry in rollout.log}
    shares = [e.production_percent for e in rollout.log if e.stage == "PRODUCTION_TRAFFIC_SHIFT"]
    assert shares == [10.0, 100.0]
    first_shift = next(
        (e.at - T0).total_seconds() for e in rollout.log if e.stage == "PRODUCTION_TRAFFIC_SHIFT"
    )
    second_pre = [
        (e.at - T0).total_seconds()
        for e in rollout.log
        if e.stage == "PRE_PRODUCTION_TRAFFIC_SHIFT"
    ][1]
    assert second_pre - first_shift == 5
    assert times["CLEAN_UP"] - times["BAKE_TIME"] == 7
    assert rollout.lifecycle_stage == "CLEAN_UP"
    assert now == times["CLEAN_UP"]


def test_scale_up_waits_for_green() -> None:
    """SCALE_UP is not left while green is not ready."""
    rollout = StagedRollout.for_configuration({"strategy": "BLUE_GREEN"}, reconcile=False)

    walk(rollout, until=50, green_ready=False)

    assert entered(rollout) == ["PRE_SCALE_UP", "SCALE_UP"]
    assert rollout.launches_green
    assert not rollout.cleaning_up


def pause(stage: str, **timeout: Any) -> dict[str, Any]:
    """A PAUSE hook at ``stage``."""
    hook: dict[str, Any] = {"targetType": "PAUSE", "lifecycleStages": [stage]}
    if timeout:
        hook["timeoutConfiguration"] = timeout
    return hook


def test_pause_hook_holds_until_continued() -> None:
    """A PAUSE hook holds its stage AWAITING_ACTION; CONTINUE lets the rollout go on; ROLLBACK
    asks for a rollback with a reason naming the hook."""
    config = {"strategy": "BLUE_GREEN", "lifecycleHooks": [pause("POST_SCALE_UP")]}
    held = StagedRollout.for_configuration(config, reconcile=False)
    now, _ = walk(held, until=100)
    assert held.stage == "POST_SCALE_UP"
    (run,) = held.hook_runs
    assert run.status == "AWAITING_ACTION"

    held.resolve(run.hook_id, "CONTINUE")
    _, reason = walk(held, start=now)
    assert reason is None
    assert held.cleaning_up
    assert run.status == "SUCCEEDED"

    other = StagedRollout.for_configuration(config, reconcile=False)
    now, _ = walk(other, until=100)
    other.resolve(other.hook_runs[0].hook_id, "ROLLBACK")
    _, reason = walk(other, start=now)
    assert reason is not None
    assert other.hook_runs[0].hook_id in reason
    assert other.hook_runs[0].status == "FAILED"


@pytest.mark.parametrize(("action", "rolls_back"), [("CONTINUE", False), ("ROLLBACK", True)])
def test_pause_hook_times_out(action: str, rolls_back: bool) -> None:
    """An unanswered PAUSE hook is TIMED_OUT after timeoutInMinutes and its action is taken."""
    hook = pause("PRE_PRODUCTION_TRAFFIC_SHIFT", timeoutInMinutes=30, action=action)
    rollout = StagedRollout.for_configuration(
        {"strategy": "BLUE_GREEN", "lifecycleHooks": [hook]}, reconcile=False
    )

    _, reason = walk(rollout)

    (run,) = rollout.hook_runs
    assert run.status == "TIMED_OUT"
    assert (reason is not None) is rolls_back
    assert rollout.cleaning_up is not rolls_back


def test_lambda_hook_answers() -> None:
    """A Lambda hook takes its function's answers one call at a time: IN_PROGRESS holds the stage
    and calls again after callBackDelay (seconds, scaled as minutes: 60 s is one minute here);
    SUCCEEDED lets the rollout go on; FAILED asks for a rollback."""
    hook = {"hookTargetArn": LAMBDA, "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"]}
    config = {"strategy": "BLUE_GREEN", "lifecycleHooks": [hook]}
    lambdas = LambdaHooks()
    lambdas.set(LAMBDA, [LambdaAnswer("IN_PROGRESS", 600), LambdaAnswer("SUCCEEDED")])
    rollout = StagedRollout.for_configuration(config, reconcile=False)

    _, reason = walk(rollout, lambdas=lambdas)

    assert reason is None
    assert rollout.hook_runs[0].status == "SUCCEEDED"
    assert lambdas.to_json()["calls"] == {LAMBDA: 2}
    times = {entry.stage: (entry.at - T0).total_seconds() for entry in rollout.log}
    assert times["PRE_PRODUCTION_TRAFFIC_SHIFT"] - times["POST_TEST_TRAFFIC_SHIFT"] == 10

    lambdas.set(LAMBDA, [LambdaAnswer("FAILED")])
    failing = StagedRollout.for_configuration(config, reconcile=False)
    _, reason = walk(failing, lambdas=lambdas)
    assert reason is not None
    assert LAMBDA in reason


def test_halt_puts_traffic_back_on_blue_and_stops_moving() -> None:
    """A rollback halts the rollout with all traffic on blue; it moves no more."""
    rollout = StagedRollout.for_configuration({"strategy": "BLUE_GREEN"}, reconcile=False)
    walk(rollout)
    assert rollout.production_percent == 100.0

    rollout.halt(T0, to_blue=True)
    rollout.advance(
        5000.0, T0, green_ready=True, minute_seconds=1.0, stage_seconds=1.0, lambdas=None
    )

    assert (rollout.production_percent, rollout.test_percent) == (0.0, 0.0)
    assert entered(rollout)[-1] == "ROLLBACK"


@pytest.mark.parametrize(
    "config",
    [
        {"strategy": "ROLLING"},
        {"strategy": "CANARY", "canaryConfiguration": {"canaryPercent": 0.1}},
        {"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 3.0}},
        {"lifecycleHooks": [pause("POST_PRODUCTION_TRAFFIC_SHIFT")]},
        {"lifecycleHooks": [{"hookTargetArn": LAMBDA, "lifecycleStages": ["TEST_TRAFFIC_SHIFT"]}]},
    ],
)
def test_valid_configurations_pass(config: dict[str, Any]) -> None:
    """The values ECS accepts pass the checks."""
    check_deployment_configuration(config)


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"canaryConfiguration": {"canaryPercent": 10.05}}, "canaryPercent"),
        ({"linearConfiguration": {"stepBakeTimeInMinutes": -1}}, "stepBakeTimeInMinutes"),
        ({"lifecycleHooks": [pause("PRODUCTION_TRAFFIC_SHIFT")]}, "PRODUCTION_TRAFFIC_SHIFT"),
        (
            {"lifecycleHooks": [pause("POST_SCALE_UP", action="WAIT")]},
            "timeoutConfiguration.action",
        ),
        ({"lifecycleHooks": [{"targetType": "PAUSE"}]}, "lifecycleStages"),
    ],
)
def test_invalid_configurations_name_the_field(config: dict[str, Any], named: str) -> None:
    """What ECS refuses raises StrategyConfigError naming the field."""
    with pytest.raises(StrategyConfigError, match=named):
        check_deployment_configuration(config)
