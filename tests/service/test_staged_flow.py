"""Services that ECS deploys blue/green, linear or canary, against the in-memory fake ECS.

Their strategy settings go through Conveyor untouched, their verdict comes from the service
deployment (never from DescribeServices' rolloutState, which stays IN_PROGRESS for the bake),
their default timeout covers the strategy, and Conveyor rolls them back only through ECS.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
from pathlib import Path
from typing import Any, Literal

import pytest

from producers.cli.core import exit_code
from producers.cli.exit_codes import ExitCode
from producers.cli.rendering import progress_text
from producers.contract.jobs import UpdateServiceJob
from producers.contract.records import Approval, DeploymentRecord, DeploymentState, Step
from tests.fakes.ecs import FakeEcs
from worker.aws.gateway import EcsGateway
from worker.domain.errors import AwsRequestError
from worker.services.transitions import Transition
from worker.services.update_flow import UpdateFlow
from worker.steps import StepContext, execute

FIXTURE = Path(__file__).parent.parent / "fixtures" / "describe_task_definition_web.json"
ROLE = "arn:aws:iam::123456789012:role/ecsInfrastructureRole"
TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup"
RULE = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/shop/1/2"

STRATEGIES: dict[str, dict[str, Any]] = {
    "BLUE_GREEN": {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 60},
    "LINEAR": {
        "strategy": "LINEAR",
        "bakeTimeInMinutes": 10,
        "linearConfiguration": {"stepPercent": 25.0, "stepBakeTimeInMinutes": 5},
    },
    "CANARY": {
        "strategy": "CANARY",
        "bakeTimeInMinutes": 10,
        "canaryConfiguration": {"canaryPercent": 5.0, "canaryBakeTimeInMinutes": 15},
    },
}
HOOKS = [
    {
        "targetType": "AWS_LAMBDA",
        "hookTargetArn": "arn:aws:lambda:us-east-1:123456789012:function:smoke-test",
        "roleArn": ROLE,
        "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
        "hookDetails": {"suite": "checkout"},
    },
    {
        "targetType": "PAUSE",
        "lifecycleStages": ["PRE_PRODUCTION_TRAFFIC_SHIFT"],
        "timeoutConfiguration": {"timeoutInMinutes": 30, "action": "ROLLBACK"},
    },
]
ALARMS = {"alarmNames": ["shop-5xx", "shop-p99"], "enable": True, "rollback": True}
LOAD_BALANCERS = [
    {
        "targetGroupArn": f"{TG}/blue/1",
        "containerName": "web",
        "containerPort": 8080,
        "advancedConfiguration": {
            "alternateTargetGroupArn": f"{TG}/green/2",
            "productionListenerRule": RULE,
            "testListenerRule": RULE.replace("/2", "/3"),
            "roleArn": ROLE,
        },
    }
]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def staged_service(
    strategy: str = "BLUE_GREEN", *, alarms: dict[str, Any] | None = None
) -> FakeEcs:
    """demo/web on web:1, deployed by ECS with ``strategy`` (ROLLING: a rolling update), hooks,
    alarms and a blue/green load balancer."""
    fake = FakeEcs()
    described = json.loads(FIXTURE.read_text())
    arn = fake.add_task_definition(described["taskDefinition"], described["tags"])
    configuration = {
        **STRATEGIES.get(strategy, {"strategy": strategy}),
        "lifecycleHooks": HOOKS,
        "alarms": alarms or ALARMS,
    }
    fake.add_service(
        "demo",
        "web",
        arn,
        breaker=False,
        rollback=False,
        configuration=configuration,
        deploymentController={"type": "ECS"},
        loadBalancers=LOAD_BALANCERS,
    )
    return fake


def record_for(**job: Any) -> DeploymentRecord:
    payload = UpdateServiceJob.model_validate(
        {
            "cluster": "demo",
            "service": "web",
            "images": [{"container": "web", "image": ":1.4.2"}],
            **job,
        },
        strict=False,
    ).model_dump(mode="json")
    return DeploymentRecord(
        id="dep-1", job=payload, cluster="demo", service="web", created_at=1000.0, updated_at=1000.0
    )


def step(flow: UpdateFlow, record: DeploymentRecord) -> Transition:
    transition = asyncio.run(flow.run(record))
    nxt = transition.next_step or transition.record.step
    return Transition(
        transition.record.model_copy(update={"step": nxt}),
        transition.next_step,
        transition.countdown,
    )


def run_until(flow: UpdateFlow, record: DeploymentRecord, stop: Step) -> DeploymentRecord:
    while record.step != stop:
        t = step(flow, record)
        assert t.next_step is not None, t.record.reason
        record = t.record
    return record


def _ctx(clock: Clock) -> StepContext:
    return StepContext(
        store=None,  # type: ignore[arg-type]
        redis=None,  # type: ignore[arg-type]
        sender=None,  # type: ignore[arg-type]
        clock=clock,
        poll_interval=5,
        recovery_grace=60,
        step_time_limit=60,
        max_step_attempts=3,
    )


def _gw(ecs: FakeEcs) -> Any:
    async def gateway(_: DeploymentRecord) -> EcsGateway:
        return ecs

    return gateway


# -- 1. strategy settings are carried through untouched ----------------------------------------


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_update_service_keeps_the_strategy_hooks_alarms_and_load_balancers(strategy: str) -> None:
    """A job that sets the minimum healthy percent sends the service's whole deployment
    configuration back with only that changed (strategy, bake times, linear or canary steps,
    lifecycle hooks, alarms), and never sends the deployment controller or the load balancers,
    so ECS keeps them as they are."""
    ecs = staged_service(strategy)
    before = copy.deepcopy(ecs.services[("demo", "web")])
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    run_until(flow, record_for(minimum_healthy_percent=50), Step.WATCH)

    [request] = ecs.update_requests
    assert request["deploymentConfiguration"] == {
        **before["deploymentConfiguration"],
        "minimumHealthyPercent": 50,
    }
    assert set(request) == {
        "cluster",
        "service",
        "taskDefinition",
        "forceNewDeployment",
        "deploymentConfiguration",
    }
    after = ecs.services[("demo", "web")]
    assert after["deploymentController"] == {"type": "ECS"}
    assert after["loadBalancers"] == LOAD_BALANCERS
    assert after["deploymentConfiguration"]["lifecycleHooks"] == HOOKS


def test_a_job_without_service_options_sends_no_deployment_configuration() -> None:
    """Without options, UpdateService names the revision only: ECS keeps all the rest."""
    ecs = staged_service("CANARY")
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    run_until(flow, record_for(), Step.WATCH)
    [request] = ecs.update_requests
    assert set(request) == {"cluster", "service", "taskDefinition", "forceNewDeployment"}


# -- 2. the verdict comes from the service deployment ------------------------------------------


def test_a_blue_green_bake_past_the_rolling_timeout_is_followed_to_success() -> None:
    """DescribeServices says IN_PROGRESS through the whole 60 min bake: past the 1800 s a
    rolling update gets, the deployment is still followed, its progress shows BAKE_TIME and
    the bake time left, and it succeeds when ECS says SUCCESSFUL."""
    ecs = staged_service()
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    watching = run_until(flow, record_for(), Step.WATCH)
    clock.now += 1900
    ecs.enter_stage("demo", "web", "BAKE_TIME")
    t = step(flow, watching)
    assert t.next_step is Step.WATCH
    progress = t.record.progress
    assert (progress.strategy, progress.lifecycle_stage) == ("BLUE_GREEN", "BAKE_TIME")
    assert progress.bake_ends_at == clock.now + 3600
    assert "bake time left 60 min" in progress_text(t.record, clock.now)
    clock.now += 1800
    t = step(flow, t.record)
    assert t.next_step is Step.WATCH
    assert t.record.progress.bake_ends_at == clock.now + 1800  # counted from when first seen
    assert "bake time left 30 min" in progress_text(t.record, clock.now)
    ecs.complete("demo", "web")
    t = step(flow, t.record)
    assert t.record.state is DeploymentState.SUCCEEDED
    assert t.record.reason == "ECS reports the BLUE_GREEN deployment SUCCESSFUL"
    assert "StopServiceDeployment" not in ecs.calls
    assert ecs.calls.count("UpdateService") == 1


def test_alarms_that_roll_back_end_rolled_back_by_ecs_naming_the_alarm() -> None:
    """ECS rolls back on a deployment alarm: Conveyor follows that rollback and ends
    rolled_back, naming the alarm; it sends nothing itself."""
    ecs = staged_service("CANARY")
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    watching = run_until(flow, record_for(), Step.WATCH)
    ecs.trigger_alarms("demo", "web", "shop-5xx")
    t = step(flow, watching)
    assert t.next_step is Step.WATCH_ROLLBACK
    assert t.record.rolled_back_by_ecs
    ecs.complete("demo", "web")
    t = step(flow, t.record)
    assert t.record.state is DeploymentState.ROLLED_BACK
    assert "alarm shop-5xx triggered" in (t.record.reason or "")
    assert ecs.calls.count("UpdateService") == 1
    assert "StopServiceDeployment" not in ecs.calls


def test_a_failed_lifecycle_hook_is_named_in_the_reason() -> None:
    """A Lambda hook that answers FAILED: rolled back by ECS, the hook named."""
    ecs = staged_service("LINEAR")
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    watching = run_until(flow, record_for(), Step.WATCH)
    ecs.fail_hook(
        "demo", "web", "POST_TEST_TRAFFIC_SHIFT", "arn:aws:lambda:us-east-1:1:function:smoke-test"
    )
    ecs.complete("demo", "web")
    t = step(flow, watching)
    assert t.record.state is DeploymentState.ROLLED_BACK
    assert "lifecycle hook smoke-test FAILED" in (t.record.reason or "")


def test_a_stopped_deployment_fails_and_is_not_undone() -> None:
    """Alarms without rollback: ECS stops the deployment. Failed, and Conveyor neither stops
    nor updates anything, whatever the job says of rollbacks."""
    ecs = staged_service(alarms={"alarmNames": ["shop-5xx"], "enable": True, "rollback": False})
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    watching = run_until(flow, record_for(), Step.WATCH)
    ecs.trigger_alarms("demo", "web", "shop-5xx")
    t = step(flow, watching)
    assert t.next_step is None
    assert t.record.state is DeploymentState.FAILED
    assert "STOPPED" in (t.record.reason or "")
    assert "not Conveyor's to undo" in (t.record.reason or "")
    assert ecs.calls.count("UpdateService") == 1
    assert "StopServiceDeployment" not in ecs.calls


def test_a_rollback_that_failed_is_a_failure() -> None:
    """ROLLBACK_FAILED: failed, with ECS's reason."""
    ecs = staged_service()
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    watching = run_until(flow, record_for(), Step.WATCH)
    entry = ecs.history[("demo", "web")][-1]
    entry.update(status="ROLLBACK_FAILED", statusReason="the blue revision could not scale up")
    t = step(flow, watching)
    assert t.record.state is DeploymentState.FAILED
    assert "ROLLBACK_FAILED" in (t.record.reason or "")
    assert "could not scale up" in (t.record.reason or "")


def test_a_deployment_waiting_for_approval_shows_it() -> None:
    """A PAUSE hook AWAITING_ACTION: still in progress, and the progress says "awaiting
    approval at" the stage, with when ECS stops waiting."""
    ecs = staged_service("CANARY")
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    watching = run_until(flow, record_for(), Step.WATCH)
    expires = datetime.datetime.fromtimestamp(clock.now + 1800, datetime.UTC)
    ecs.await_approval(
        "demo", "web", "PRE_PRODUCTION_TRAFFIC_SHIFT", hook_id="h-7", expires_at=expires
    )
    t = step(flow, watching)
    assert t.next_step is Step.WATCH
    assert t.record.progress.awaiting_hook_id == "h-7"
    text = progress_text(t.record, clock.now)
    assert "awaiting approval at PRE_PRODUCTION_TRAFFIC_SHIFT" in text
    assert "ECS will ROLLBACK in 30 min" in text


def test_a_rolling_service_is_still_judged_by_describe_services() -> None:
    """A service with strategy ROLLING and no lifecycle hooks reads no service deployment while
    its rollout runs."""
    ecs = staged_service()
    ecs.services[("demo", "web")]["deploymentConfiguration"]["strategy"] = "ROLLING"
    del ecs.services[("demo", "web")]["deploymentConfiguration"]["lifecycleHooks"]
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    watching = run_until(flow, record_for(), Step.WATCH)
    t = step(flow, watching)
    assert t.next_step is Step.WATCH
    assert "DescribeServiceDeployments" not in ecs.calls
    assert t.record.progress.lifecycle_stage is None


def test_without_the_history_api_a_staged_deployment_is_judged_from_describe_services() -> None:
    """No access to ECS's service deployments: a warning says what to allow, and the rollout
    is judged as a rolling one (its deadline still covers the bake)."""
    ecs = staged_service()
    ecs.history_supported = False
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    watching = run_until(flow, record_for(), Step.WATCH)
    t = step(flow, watching)
    assert t.next_step is Step.WATCH
    assert any("ecs:DescribeServiceDeployments" in w for w in t.record.warnings)
    ecs.complete("demo", "web")
    t = step(flow, t.record)
    assert t.record.state is DeploymentState.SUCCEEDED


# -- 4. the timeout follows from the strategy --------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "seconds"),
    [
        # bake 60, a 30 min PAUSE hook, a Lambda hook of up to 1440 min, and the margin
        ("BLUE_GREEN", (60 + 30 + 1440) * 60 + 1800),
        # bake 10, canary bake 15; the PAUSE hook runs before each of the two shifts
        ("CANARY", (10 + 15 + 2 * 30 + 1440) * 60 + 1800),
        # bake 10, 3 step bakes of 5; the PAUSE hook before each of the 4 steps
        ("LINEAR", (10 + 15 + 4 * 30 + 1440) * 60 + 1800),
    ],
)
def test_a_job_without_a_timeout_gets_the_strategys(strategy: str, seconds: int) -> None:
    """The deadline is the strategy's default: bakes, hook timeouts, and 1800 s."""
    ecs = staged_service(strategy)
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    t = step(flow, record_for())
    assert t.record.deadline == 1000.0 + seconds
    assert f"a {strategy} deployment, timeout {seconds} s" in t.record.steps[-1].detail


def test_a_timeout_given_is_kept_when_long_enough() -> None:
    """An explicit timeout at or above the strategy's least is the deadline."""
    ecs = staged_service()
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    t = step(flow, record_for(timeout_seconds=3630))
    assert t.record.deadline == 1000.0 + 3630


def test_a_timeout_shorter_than_the_strategy_fails_at_resolve_as_invalid_input() -> None:
    """600 s for a canary that bakes 25 min: refused at resolve (InvalidJob, which the CLI
    exits 2 for), naming the least and the fix; nothing registered or updated."""
    ecs = staged_service("CANARY")
    clock = Clock()
    t = asyncio.run(execute(_ctx(clock), _gw(ecs), record_for(timeout_seconds=600)))
    assert t.record.state is DeploymentState.FAILED
    assert t.record.error is not None
    assert t.record.error.code == "InvalidJob"
    assert "1530 s" in t.record.error.message
    assert "--timeout 1530" in t.record.error.message
    assert exit_code(t.record) is ExitCode.USAGE
    assert "RegisterTaskDefinition" not in ecs.calls
    assert "UpdateService" not in ecs.calls


# -- 5. Conveyor's own rollback goes through ECS ------------------------------------------------


def test_a_timeout_rolls_back_by_stopping_the_service_deployment() -> None:
    """Out of time while ECS still deploys: StopServiceDeployment(ROLLBACK) on our service
    deployment, no second UpdateService, and rolled_back once ECS finished."""
    ecs = staged_service()
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    watching = run_until(flow, record_for(timeout_seconds=3700), Step.WATCH)
    clock.now += 3701
    t = step(flow, watching)
    assert t.next_step is Step.ROLLBACK
    assert "timed out" in (t.record.reason or "")
    t = step(flow, t.record)
    assert t.next_step is Step.WATCH_ROLLBACK
    assert ecs.calls.count("StopServiceDeployment") == 1
    ecs.complete("demo", "web")
    t = step(flow, t.record)
    assert t.record.state is DeploymentState.ROLLED_BACK
    assert "StopServiceDeployment" in (t.record.reason or "")
    assert ecs.calls.count("UpdateService") == 1
    assert ecs.services[("demo", "web")]["taskDefinition"].endswith("web:1")


def test_a_refused_stop_never_falls_back_to_update_service() -> None:
    """ECS refuses the stop: the deployment fails saying so, and the service is not pointed
    back by a second UpdateService (which would start another blue/green deployment)."""
    ecs = staged_service()
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    watching = run_until(flow, record_for(timeout_seconds=3700), Step.WATCH)
    clock.now += 3701
    rolling_back = step(flow, watching).record
    ecs.inject("StopServiceDeployment", AwsRequestError("denied", "AccessDeniedException"))
    t = step(flow, rolling_back)
    assert t.record.state is DeploymentState.FAILED
    assert "would not stop" in (t.record.reason or "")
    assert "AccessDeniedException" in (t.record.reason or "")
    assert ecs.calls.count("UpdateService") == 1


def test_a_cancel_stops_our_deployment_through_ecs() -> None:
    """Cancelled during the bake: ECS is asked to stop and roll back; cancelled at the end."""
    ecs = staged_service("LINEAR")
    clock = Clock()
    watching = run_until(UpdateFlow(ecs, poll_interval=5, clock=clock), record_for(), Step.WATCH)
    ecs.enter_stage("demo", "web", "BAKE_TIME")
    # What a cancel of a rollout under way does (worker.kinds): the rollback step, at once.
    cancelled = watching.model_copy(
        update={"step": Step.ROLLBACK, "cancel_requested_at": clock.now}
    )
    t = asyncio.run(execute(_ctx(clock), _gw(ecs), cancelled))
    assert t.next_step is Step.WATCH_ROLLBACK
    assert ecs.calls.count("StopServiceDeployment") == 1
    ecs.complete("demo", "web")
    t = asyncio.run(
        execute(_ctx(clock), _gw(ecs), t.record.model_copy(update={"step": Step.WATCH_ROLLBACK}))
    )
    assert t.record.state is DeploymentState.ROLLED_BACK  # the step runner then says cancelled
    assert ecs.calls.count("UpdateService") == 1


def test_a_rollback_never_stops_someone_elses_newer_deployment() -> None:
    """Out of time, then someone else deployed (ECS stopped ours): nothing is stopped or
    updated, the deployment fails saying it was not ours to undo."""
    ecs = staged_service()
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    watching = run_until(flow, record_for(timeout_seconds=3700), Step.WATCH)
    clock.now += 3701
    rolling_back = step(flow, watching).record
    theirs = asyncio.run(ecs.describe_task_definition("web:1"))[0]["taskDefinitionArn"]
    asyncio.run(ecs.update_service("demo", "web", theirs, force_new_deployment=True))
    updates = ecs.calls.count("UpdateService")
    t = step(flow, rolling_back)
    assert t.record.state is DeploymentState.FAILED
    assert "not Conveyor's to undo" in (t.record.reason or "")
    assert "StopServiceDeployment" not in ecs.calls
    assert ecs.calls.count("UpdateService") == updates


def test_an_approved_pause_hook_lets_the_deployment_go_on() -> None:
    """continue_service_deployment answers the hook the progress names: the next poll no
    longer shows it awaiting approval, and the deployment goes on to its verdict."""
    ecs = staged_service("CANARY")
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    watching = run_until(flow, record_for(), Step.WATCH)
    ecs.await_approval("demo", "web", "PRE_PRODUCTION_TRAFFIC_SHIFT", hook_id="h-7")
    waiting = step(flow, watching).record
    assert waiting.service_deployment_arn is not None
    hook = waiting.progress.awaiting_hook_id
    assert hook == "h-7"
    asyncio.run(ecs.continue_service_deployment(waiting.service_deployment_arn, hook))
    t = step(flow, waiting)
    assert t.next_step is Step.WATCH
    assert t.record.progress.awaiting_hook_id is None
    ecs.complete("demo", "web")
    assert step(flow, t.record).record.state is DeploymentState.SUCCEEDED


def test_a_pause_hook_answered_rollback_is_rolled_back_by_ecs() -> None:
    """ROLLBACK at the hook: ECS rolls back, and Conveyor ends rolled_back."""
    ecs = staged_service("BLUE_GREEN")
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    watching = run_until(flow, record_for(), Step.WATCH)
    ecs.await_approval("demo", "web", "PRE_PRODUCTION_TRAFFIC_SHIFT", hook_id="h-8")
    waiting = step(flow, watching).record
    assert waiting.service_deployment_arn is not None
    asyncio.run(ecs.continue_service_deployment(waiting.service_deployment_arn, "h-8", "ROLLBACK"))
    ecs.complete("demo", "web")
    t = step(flow, waiting)
    assert t.record.state is DeploymentState.ROLLED_BACK
    assert "ContinueServiceDeployment" in (t.record.reason or "")


def test_a_job_that_switches_the_strategy_is_timed_by_the_strategy_it_asks_for() -> None:
    """A rolling service, and a job that makes it a canary baking 20 + 10 min: the job's own
    strategy sets the least timeout (600 s is refused at resolve, nothing changed), and
    without a timeout the deadline covers the bakes."""
    ecs = staged_service("ROLLING")
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    options = {"strategy": "canary", "canary_bake_minutes": 20, "bake_minutes": 10}
    t = asyncio.run(execute(_ctx(Clock()), _gw(ecs), record_for(timeout_seconds=600, **options)))
    assert t.record.state is DeploymentState.FAILED
    assert t.record.error is not None
    assert t.record.error.code == "InvalidJob"
    assert "UpdateService" not in ecs.calls
    timed = step(flow, record_for(**options))
    assert timed.record.deadline is not None
    assert timed.record.deadline >= 1000.0 + 30 * 60
    assert "a CANARY deployment" in timed.record.steps[-1].detail


def _asked(
    record: DeploymentRecord, action: Literal["CONTINUE", "ROLLBACK"], by: str = "ana@ops"
) -> DeploymentRecord:
    """The record as `conveyor approve`/`reject` leaves it."""
    return record.model_copy(
        update={"approval_requested": Approval(action=action, by=by, requested_at=1000.0)}
    )


@pytest.mark.parametrize(
    ("action", "final"),
    [("CONTINUE", DeploymentState.SUCCEEDED), ("ROLLBACK", DeploymentState.ROLLED_BACK)],
)
def test_an_answer_recorded_by_the_cli_is_sent_to_the_hook_awaiting_it(
    action: Literal["CONTINUE", "ROLLBACK"], final: DeploymentState
) -> None:
    """`conveyor approve`/`reject` record an answer; the watch sends it to the PAUSE hook ECS
    shows awaiting action (its id, the deployment's ARN) and notes who, when, at which stage."""
    ecs = staged_service("CANARY")
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    watching = run_until(flow, record_for(), Step.WATCH)
    ecs.await_approval("demo", "web", "PRE_PRODUCTION_TRAFFIC_SHIFT", hook_id="h-9")
    waiting = step(flow, watching).record
    t = step(flow, _asked(waiting, action))
    assert t.next_step is Step.WATCH
    assert t.record.approval_requested is None
    (answered,) = t.record.approvals
    assert (answered.action, answered.by, answered.hook_id) == (action, "ana@ops", "h-9")
    assert answered.stage == "PRE_PRODUCTION_TRAFFIC_SHIFT"
    assert answered.acted_at == 1000.0
    assert answered.outcome == f"sent to ECS (ContinueServiceDeployment {action})"
    assert ecs.calls.count("ContinueServiceDeployment") == 1
    word = "approved" if action == "CONTINUE" else "rejected"
    assert t.record.steps[-1].detail.startswith(f"{word} by ana@ops at PRE_PRODUCTION")
    ecs.complete("demo", "web")
    assert step(flow, t.record).record.state is final


def test_an_answer_with_no_hook_awaiting_is_noted_and_never_sent() -> None:
    """No PAUSE hook awaits (it timed out, or the service has none at this stage): nothing is
    sent to ECS, the record says so, and the deployment goes on as before."""
    ecs = staged_service("BLUE_GREEN")
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    watching = run_until(flow, record_for(), Step.WATCH)
    t = step(flow, _asked(watching, "CONTINUE"))
    assert t.next_step is Step.WATCH
    assert t.record.approval_requested is None
    (answered,) = t.record.approvals
    assert answered.outcome is not None
    assert answered.outcome.startswith("not sent: no lifecycle hook was awaiting approval")
    assert "ContinueServiceDeployment" not in ecs.calls


# -- lifecycle hooks on a ROLLING deployment --------------------------------------------------


ROLLING_HOOKS = [
    {
        "targetType": "PAUSE",
        "lifecycleStages": ["POST_SCALE_UP"],
        "timeoutConfiguration": {"timeoutInMinutes": 30, "action": "ROLLBACK"},
    }
]


def rolling_service(*, hooks: list[dict[str, Any]] | None = None) -> FakeEcs:
    """demo/web deployed ROLLING, with ``hooks`` as its lifecycle hooks (none: no hooks)."""
    ecs = staged_service("ROLLING")
    configuration = ecs.services[("demo", "web")]["deploymentConfiguration"]
    configuration.pop("lifecycleHooks", None)
    if hooks:
        configuration["lifecycleHooks"] = copy.deepcopy(hooks)
    return ecs


def test_a_rolling_deployment_paused_at_a_hook_shows_it_awaiting_approval() -> None:
    """A rolling service with lifecycle hooks: its service deployment is read too, and a PAUSE
    hook AWAITING_ACTION shows as "awaiting approval at" the stage; the verdict is still
    DescribeServices' (in progress, then succeeded once ECS completes it)."""
    ecs = rolling_service(hooks=ROLLING_HOOKS)
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    watching = run_until(flow, record_for(), Step.WATCH)
    expires = datetime.datetime.fromtimestamp(clock.now + 1800, datetime.UTC)
    ecs.await_approval("demo", "web", "POST_SCALE_UP", hook_id="h-r1", expires_at=expires)

    t = step(flow, watching)

    assert t.next_step is Step.WATCH
    assert t.record.progress.awaiting_hook_id == "h-r1"
    assert t.record.service_deployment_arn is not None
    text = progress_text(t.record, clock.now)
    assert "awaiting approval at POST_SCALE_UP" in text
    assert "ECS will ROLLBACK in 30 min" in text
    ecs.complete("demo", "web")
    assert step(flow, t.record).record.state is DeploymentState.SUCCEEDED


@pytest.mark.parametrize(
    ("action", "final"),
    [("CONTINUE", DeploymentState.SUCCEEDED), ("ROLLBACK", DeploymentState.ROLLED_BACK)],
)
def test_an_answer_to_a_rolling_deployments_hook_is_sent(
    action: Literal["CONTINUE", "ROLLBACK"], final: DeploymentState
) -> None:
    """`conveyor approve`/`reject` on a rolling deployment paused at a hook: the answer goes to
    ECS (ContinueServiceDeployment with the hook's id) and is noted; a ROLLBACK is ECS's own
    rollback, so the deployment ends rolled back by ECS (never failed, never undone by a second
    UpdateService)."""
    ecs = rolling_service(hooks=ROLLING_HOOKS)
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    watching = run_until(flow, record_for(), Step.WATCH)
    ecs.await_approval("demo", "web", "POST_SCALE_UP", hook_id="h-r2")
    waiting = step(flow, watching).record
    updates = ecs.calls.count("UpdateService")

    t = step(flow, _asked(waiting, action))

    assert t.next_step is Step.WATCH
    assert t.countdown <= 2.0
    (answered,) = t.record.approvals
    assert (answered.action, answered.hook_id, answered.stage) == (action, "h-r2", "POST_SCALE_UP")
    assert answered.outcome == f"sent to ECS (ContinueServiceDeployment {action})"
    assert ecs.calls.count("ContinueServiceDeployment") == 1
    record = t.record
    for _ in range(5):
        if record.state is not DeploymentState.RUNNING:
            break
        ecs.complete("demo", "web")
        record = step(flow, record).record
    assert record.state is final, record.reason
    assert ecs.calls.count("UpdateService") == updates
    assert "StopServiceDeployment" not in ecs.calls
    if action == "ROLLBACK":
        assert record.rolled_back_by_ecs


def test_an_answer_to_a_rolling_deployment_with_no_hook_awaiting_is_noted_and_never_sent() -> None:
    """A rolling deployment with no PAUSE hook awaiting (its service has hooks, none waits now;
    or it has none): nothing is sent to ECS, and the record says why."""
    ecs = rolling_service(hooks=ROLLING_HOOKS)
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    watching = run_until(flow, record_for(), Step.WATCH)
    t = step(flow, _asked(watching, "ROLLBACK"))
    (answered,) = t.record.approvals
    assert answered.outcome == (
        "not sent: no lifecycle hook was awaiting approval (the deployment is at PRE_SCALE_UP)"
    )

    bare = rolling_service()
    flow = UpdateFlow(bare, poll_interval=5, clock=Clock())
    watching = run_until(flow, record_for(), Step.WATCH)
    t = step(flow, _asked(watching, "ROLLBACK"))
    (answered,) = t.record.approvals
    assert answered.outcome == (
        "not sent: a rolling deployment has no lifecycle hook awaiting approval"
    )
    assert "ContinueServiceDeployment" not in ecs.calls
    assert "ContinueServiceDeployment" not in bare.calls
