"""ECS-native deployment strategies (BLUE_GREEN, LINEAR, CANARY) as seen through the ECS API.

Each test walks a service deployment through its lifecycle stages on the local AWS and checks
what DescribeServices, DescribeServiceDeployments and the control API's traffic view show. Stages
are observed by waiting for them (or holding them with a PAUSE hook), never by timing.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.model import StringShape

from localaws.fidelity import answer_errors
from localaws.testing import control, create_alarm, run_local_aws
from tests.localaws.conftest import Aws, client, wait_for

GOOD = "repo/app:1"
NEXT = "repo/app:2"
BROKEN = "repo/app:fail-2"
LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:hook"
ROLE = "arn:aws:iam::123456789012:role/ecs-hooks"
BREAKER = {"enable": True, "rollback": True}
STAGES_WITHOUT_RECONCILE = [
    "PRE_SCALE_UP",
    "SCALE_UP",
    "POST_SCALE_UP",
    "TEST_TRAFFIC_SHIFT",
    "POST_TEST_TRAFFIC_SHIFT",
]
ECS_MODEL = botocore.session.get_session().get_service_model("ecs")
# Each test walks one or two staged deployments through ten-odd stages, each stage at least one
# tick and 0.1 x the rollout: the suite's 1.5 s rollouts and 0.2 s ticks spent 3-4 s on every
# deployment. Stages that a test observes are held (a PAUSE hook, a bake or a traffic hold of
# minutes set with set_minute), never caught in passing, so their speed does not matter.
STAGED_ROLLOUT_SECONDS = 0.5
STAGED_TICK_SECONDS = 0.05
# Polls of DescribeServiceDeployments while waiting for a status, a stage or a hook.
POLL_SECONDS = 0.1


def _enum(name: str) -> list[str]:
    shape = ECS_MODEL.shape_for(name)
    assert isinstance(shape, StringShape)
    return list(shape.enum)


HOOK_STAGES = _enum("DeploymentLifecycleHookStage")
# botocore's DeploymentLifecycleHook documentation: PAUSE hooks cannot be configured there.
LAMBDA_ONLY_STAGES = ("TEST_TRAFFIC_SHIFT", "PRODUCTION_TRAFFIC_SHIFT")


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def staged_aws_url() -> Iterator[str]:
    """A local AWS of its own for these tests, with 0.5 s rollouts."""
    with run_local_aws(rollout_seconds=STAGED_ROLLOUT_SECONDS) as url:
        yield url


@pytest.fixture
def aws(staged_aws_url: str) -> Aws:
    """The staged local AWS reset to an empty world with a short tick, and a cluster ``test``."""
    status, _ = control(staged_aws_url, "POST", "reset")
    assert status == 200
    status, body = control(staged_aws_url, "POST", "config", {"tick_seconds": STAGED_TICK_SECONDS})
    assert status == 200, body
    return Aws(staged_aws_url)


# -- helpers -------------------------------------------------------------------------------------


def configuration(strategy: str = "BLUE_GREEN", **extra: Any) -> dict[str, Any]:
    """A deploymentConfiguration for ``strategy``, with no bake unless ``extra`` says."""
    return {
        "strategy": strategy,
        "bakeTimeInMinutes": 0,
        "maximumPercent": 200,
        "minimumHealthyPercent": 100,
        "deploymentCircuitBreaker": BREAKER,
        **extra,
    }


def set_minute(aws: Aws, seconds: float) -> None:
    """Set how many seconds a simulated minute lasts (reset before each test restores it)."""
    status, body = aws.control("POST", "config", {"minute_seconds": seconds})
    assert status == 200, body


def start(aws: Aws, config: dict[str, Any], **extra: Any) -> str:
    """Create service ``app`` on GOOD with ``config``; wait until it is steady; return its
    task definition."""
    blue = aws.task_definition("app", GOOD)
    aws.service("app", blue, deploymentConfiguration=config, **extra)
    aws.wait_completed("app", blue)
    return blue


def update(aws: Aws, image: str, config: dict[str, Any] | None = None) -> tuple[str, str]:
    """UpdateService to a new revision running ``image`` (and to ``config`` when given): (its
    task definition, the ARN of the service deployment it started).

    Hooks are configured here rather than at CreateService, so that the first deployment does
    not pause too.
    """
    green = aws.task_definition("app", image)
    extra = {"deploymentConfiguration": config} if config is not None else {}
    aws.ecs.update_service(cluster="test", service="app", taskDefinition=green, **extra)
    arn: str = aws.ecs.list_service_deployments(cluster="test", service="app")[
        "serviceDeployments"
    ][0]["serviceDeploymentArn"]
    return green, arn


def describe(aws: Aws, arn: str) -> dict[str, Any]:
    """DescribeServiceDeployments of one ARN that must exist."""
    answer = aws.ecs.describe_service_deployments(serviceDeploymentArns=[arn])
    assert answer["failures"] == []
    found: dict[str, Any] = answer["serviceDeployments"][0]
    return found


def wait_status(aws: Aws, arn: str, status: str) -> dict[str, Any]:
    """Wait until the service deployment has ``status``; return its description."""
    found: dict[str, Any] = wait_for(
        lambda: (d := describe(aws, arn))["status"] == status and d,
        timeout=60,
        interval=POLL_SECONDS,
    )
    return found


def wait_stage(aws: Aws, arn: str, stage: str) -> dict[str, Any]:
    """Wait until the service deployment shows ``lifecycleStage`` ``stage``."""
    found: dict[str, Any] = wait_for(
        lambda: (d := describe(aws, arn))["lifecycleStage"] == stage and d,
        timeout=60,
        interval=POLL_SECONDS,
    )
    return found


def wait_awaiting(aws: Aws, arn: str) -> dict[str, Any]:
    """Wait for a hook AWAITING_ACTION; return (the deployment's description) with it."""

    def awaiting() -> dict[str, Any] | None:
        found = describe(aws, arn)
        hooks = [
            h for h in found.get("lifecycleHookDetails", []) if h["status"] == "AWAITING_ACTION"
        ]
        return found if hooks else None

    found: dict[str, Any] = wait_for(awaiting, timeout=60, interval=POLL_SECONDS)
    return found


def awaiting_hook(detail: dict[str, Any]) -> dict[str, Any]:
    """The one hook of a description that is AWAITING_ACTION."""
    hooks: list[dict[str, Any]] = [
        h for h in detail["lifecycleHookDetails"] if h["status"] == "AWAITING_ACTION"
    ]
    (hook,) = hooks
    return hook


def traffic(aws: Aws, arn: str) -> dict[str, Any]:
    """The control API's view of a staged service deployment: stage, split, stages passed."""
    status, body = aws.control("GET", "traffic")
    assert status == 200
    (entry,) = [e for e in body["services"] if e["serviceDeploymentArn"] == arn]
    result: dict[str, Any] = entry
    return result


def stages(aws: Aws, arn: str) -> list[str]:
    """Every stage the service deployment entered, in order."""
    return [entry["stage"] for entry in traffic(aws, arn)["stages"]]


def running_tasks(aws: Aws) -> dict[str, str]:
    """RUNNING tasks of service ``app``: task ARN -> task definition ARN."""
    arns = aws.ecs.list_tasks(cluster="test", serviceName="app")["taskArns"]
    if not arns:
        return {}
    tasks = aws.ecs.describe_tasks(cluster="test", tasks=arns)["tasks"]
    return {t["taskArn"]: t["taskDefinitionArn"] for t in tasks if t["lastStatus"] == "RUNNING"}


def error_of(call: Any, **kwargs: Any) -> dict[str, str]:
    """The error (Code, Message) of a call that must fail."""
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    error = caught.value.response["Error"]
    return {"Code": str(error.get("Code")), "Message": str(error.get("Message"))}


def raw_answers(aws: Aws, operation: str) -> list[dict[str, Any]]:
    """Collect the raw JSON bodies the local AWS answers ``operation`` with, as sent."""
    bodies: list[dict[str, Any]] = []

    def keep(response_dict: dict[str, Any], **_: Any) -> None:
        if response_dict["status_code"] == 200:
            bodies.append(json.loads(response_dict["body"]))

    aws.ecs.meta.events.register(f"before-parse.ecs.{operation}", keep)
    return bodies


# -- 1. strategies, stages and bake --------------------------------------------------------------


def test_strategy_fields_are_kept_and_returned(aws: Aws) -> None:
    """CreateService and UpdateService keep the strategy fields, hooks, alarms and the load
    balancer's advancedConfiguration as sent, and DescribeServices returns them unchanged."""
    network = aws.network()
    advanced = {
        "alternateTargetGroupArn": network.target_group_arn.replace("tg-ip", "tg-alt"),
        "productionListenerRule": "arn:aws:elasticloadbalancing:us-east-1:123456789012:"
        "listener-rule/app/lb/1/2/3",
        "testListenerRule": "arn:aws:elasticloadbalancing:us-east-1:123456789012:"
        "listener-rule/app/lb/1/2/4",
        "roleArn": ROLE,
    }
    hooks = [
        {
            "hookTargetArn": LAMBDA,
            "roleArn": ROLE,
            "lifecycleStages": ["POST_SCALE_UP", "TEST_TRAFFIC_SHIFT"],
            "hookDetails": {"team": "web"},
        },
        {
            "targetType": "PAUSE",
            "lifecycleStages": ["PRE_PRODUCTION_TRAFFIC_SHIFT"],
            "timeoutConfiguration": {"timeoutInMinutes": 30, "action": "CONTINUE"},
        },
    ]
    alarms = {"alarmNames": ["app-5xx"], "enable": True, "rollback": True}
    config = configuration(bakeTimeInMinutes=5, lifecycleHooks=hooks, alarms=alarms)
    balancer = {
        "targetGroupArn": network.target_group_arn,
        "containerName": "app",
        "containerPort": 8080,
        "advancedConfiguration": advanced,
    }
    blue = aws.task_definition("app", GOOD)
    created = aws.service("app", blue, deploymentConfiguration=config, loadBalancers=[balancer])

    for service in (created, aws.describe("app")):
        kept = service["deploymentConfiguration"]
        assert kept["strategy"] == "BLUE_GREEN"
        assert kept["bakeTimeInMinutes"] == 5
        assert kept["lifecycleHooks"] == hooks
        assert kept["alarms"] == alarms
        assert service["loadBalancers"] == [balancer]

    linear = {"stepPercent": 25.0, "stepBakeTimeInMinutes": 2}
    canary = {"canaryPercent": 12.5, "canaryBakeTimeInMinutes": 4}
    aws.ecs.update_service(
        cluster="test",
        service="app",
        deploymentConfiguration={
            "strategy": "LINEAR",
            "linearConfiguration": linear,
            "canaryConfiguration": canary,
        },
    )
    kept = aws.describe("app")["deploymentConfiguration"]
    assert kept["strategy"] == "LINEAR"
    assert kept["linearConfiguration"] == linear
    assert kept["canaryConfiguration"] == canary
    assert kept["lifecycleHooks"] == hooks  # an update keeps what it does not name


def test_blue_green_runs_both_then_cleans_up_blue(aws: Aws) -> None:
    """A BLUE_GREEN update runs green at full count beside blue and walks every lifecycle stage
    in order, traffic moving only at the shifts; during the bake DescribeServices shows PRIMARY
    green and ACTIVE blue, both at full count, IN_PROGRESS; it ends SUCCESSFUL with blue gone,
    green COMPLETED alone, and its alarm (never in ALARM) MONITORING_COMPLETE."""
    watch = client(aws.url, "cloudwatch")
    create_alarm(watch, "app-5xx")
    alarms = {"alarmNames": ["app-5xx"], "enable": True, "rollback": True}
    blue = start(aws, configuration(bakeTimeInMinutes=1, alarms=alarms))
    blue_id = aws.describe("app")["deployments"][0]["id"]
    set_minute(aws, 2.0)

    green, arn = update(aws, NEXT)
    baking = wait_stage(aws, arn, "BAKE_TIME")

    assert baking["status"] == "IN_PROGRESS"
    assert baking["alarms"] == {"status": "MONITORING", "alarmNames": ["app-5xx"]}
    service = aws.describe("app")
    primary, active = service["deployments"]
    assert (primary["status"], primary["taskDefinition"]) == ("PRIMARY", green)
    assert (active["status"], active["taskDefinition"], active["id"]) == ("ACTIVE", blue, blue_id)
    assert primary["rolloutState"] == "IN_PROGRESS"
    assert primary["runningCount"] == active["runningCount"] == 2
    assert traffic(aws, arn)["traffic"]["production"] == {"green": 100.0, "blue": 0.0}

    done = wait_status(aws, arn, "SUCCESSFUL")

    assert done["lifecycleStage"] == "CLEAN_UP"
    assert done["alarms"] == {"status": "MONITORING_COMPLETE", "alarmNames": ["app-5xx"]}
    assert "lifecycleHookDetails" not in done
    assert stages(aws, arn) == [
        *STAGES_WITHOUT_RECONCILE,
        "PRE_PRODUCTION_TRAFFIC_SHIFT",
        "PRODUCTION_TRAFFIC_SHIFT",
        "POST_PRODUCTION_TRAFFIC_SHIFT",
        "BAKE_TIME",
        "CLEAN_UP",
    ]
    split = {
        e["stage"]: (e["test_percent"], e["production_percent"])
        for e in traffic(aws, arn)["stages"]
    }
    assert split["POST_SCALE_UP"] == (0.0, 0.0)
    assert split["POST_TEST_TRAFFIC_SHIFT"] == (100.0, 0.0)
    assert split["PRODUCTION_TRAFFIC_SHIFT"] == (100.0, 100.0)
    service = aws.wait_completed("app", green)
    assert set(running_tasks(aws).values()) == {green}
    assert service["runningCount"] == 2


@pytest.mark.parametrize(
    ("strategy", "extra", "percents"),
    [
        (
            "CANARY",
            {"canaryConfiguration": {"canaryPercent": 20.0, "canaryBakeTimeInMinutes": 1}},
            [20.0, 100.0],
        ),
        (
            "LINEAR",
            {"linearConfiguration": {"stepPercent": 40.0, "stepBakeTimeInMinutes": 1}},
            [40.0, 80.0, 100.0],
        ),
    ],
)
def test_canary_and_linear_shift_production_in_steps(
    aws: Aws, strategy: str, extra: dict[str, Any], percents: list[float]
) -> None:
    """CANARY shifts canaryPercent first and LINEAR stepPercent at a time: each production step
    is a PRE_PRODUCTION_TRAFFIC_SHIFT then a PRODUCTION_TRAFFIC_SHIFT with green's share growing
    to 100 %, before the bake and the clean-up; it ends SUCCESSFUL."""
    set_minute(aws, 0.3)
    start(aws, configuration(strategy, **extra))
    _, arn = update(aws, NEXT)

    wait_status(aws, arn, "SUCCESSFUL")

    entries = traffic(aws, arn)["stages"]
    steps = [e for e in entries if e["stage"] == "PRODUCTION_TRAFFIC_SHIFT"]
    assert [e["production_percent"] for e in steps] == percents
    shifts = ["PRE_PRODUCTION_TRAFFIC_SHIFT", "PRODUCTION_TRAFFIC_SHIFT"] * len(percents)
    assert [e["stage"] for e in entries] == [
        *STAGES_WITHOUT_RECONCILE,
        *shifts,
        "POST_PRODUCTION_TRAFFIC_SHIFT",
        "BAKE_TIME",
        "CLEAN_UP",
    ]
    assert traffic(aws, arn)["strategy"] == strategy


def test_canary_holds_its_canary_percent_while_baking(aws: Aws) -> None:
    """While the canary bakes, DescribeServiceDeployments shows PRODUCTION_TRAFFIC_SHIFT and the
    traffic view green at canaryPercent, blue at the rest."""
    canary = {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 1}
    start(aws, configuration("CANARY", canaryConfiguration=canary))
    set_minute(aws, 5.0)
    _, arn = update(aws, NEXT)

    wait_stage(aws, arn, "PRODUCTION_TRAFFIC_SHIFT")

    assert traffic(aws, arn)["traffic"]["production"] == {"green": 10.0, "blue": 90.0}
    assert describe(aws, arn)["status"] == "IN_PROGRESS"


def test_reconcile_service_when_two_old_revisions_serve(aws: Aws) -> None:
    """A deployment that starts while two revisions still have tasks (a previous deployment
    superseded mid-way) begins with RECONCILE_SERVICE."""
    hold = [{"targetType": "PAUSE", "lifecycleStages": ["POST_PRODUCTION_TRAFFIC_SHIFT"]}]
    start(aws, configuration())
    _, first = update(aws, NEXT, configuration(lifecycleHooks=hold))
    wait_awaiting(aws, first)  # green and blue both running

    _, second = update(aws, "repo/app:3")

    wait_awaiting(aws, second)
    assert stages(aws, second)[0] == "RECONCILE_SERVICE"
    assert describe(aws, first)["status"] == "STOPPED"


def test_describe_service_deployments_matches_botocore_shapes(aws: Aws) -> None:
    """Every DescribeServiceDeployments and ListServiceDeployments answer during and after a
    staged deployment, as sent on the wire, has only members (and enum values) of botocore's
    output shapes."""
    set_minute(aws, 0.1)
    hooks = [{"targetType": "PAUSE", "lifecycleStages": ["POST_SCALE_UP"]}]
    alarms = {"alarmNames": ["app-5xx"], "enable": True, "rollback": False}
    config = configuration(alarms=alarms, bakeTimeInMinutes=1)
    start(aws, config)
    answers = raw_answers(aws, "DescribeServiceDeployments")
    lists = raw_answers(aws, "ListServiceDeployments")
    _, arn = update(aws, NEXT, {**config, "lifecycleHooks": hooks})
    hook = awaiting_hook(wait_awaiting(aws, arn))
    aws.ecs.continue_service_deployment(serviceDeploymentArn=arn, hookId=hook["hookId"])
    wait_status(aws, arn, "SUCCESSFUL")
    aws.ecs.list_service_deployments(cluster="test", service="app")

    describe_shape = ECS_MODEL.operation_model("DescribeServiceDeployments").output_shape
    list_shape = ECS_MODEL.operation_model("ListServiceDeployments").output_shape
    assert describe_shape is not None
    assert list_shape is not None
    assert answers
    assert lists
    seen = {d["lifecycleStage"] for a in answers for d in a["serviceDeployments"]}
    assert {"POST_SCALE_UP", "CLEAN_UP"} <= seen
    for answer in answers:
        assert answer_errors(answer, describe_shape) == []
    for answer in lists:
        assert answer_errors(answer, list_shape) == []


# -- 2. broken images ----------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["BLUE_GREEN", "CANARY", "LINEAR"])
def test_failing_green_rolls_back_before_production_traffic(aws: Aws, strategy: str) -> None:
    """Green tasks that fail to start trip the circuit breaker during SCALE_UP: the deployment
    ends ROLLBACK_SUCCESSFUL with the breaker's reason, never reached PRODUCTION_TRAFFIC_SHIFT,
    blue kept all production traffic and all its tasks, and the service is back on blue alone
    (the same deployment, PRIMARY and COMPLETED)."""
    # Nothing here is held by minutes: without them, LINEAR's first deployment does not spend
    # its default ten 6-minute step holds before the test begins.
    set_minute(aws, 0.0)
    blue = start(aws, configuration(strategy))
    blue_id = aws.describe("app")["deployments"][0]["id"]
    blue_tasks = running_tasks(aws)

    green, arn = update(aws, BROKEN)
    done = wait_status(aws, arn, "ROLLBACK_SUCCESSFUL")

    reason = "ECS deployment circuit breaker: tasks failed to start."
    assert done["statusReason"] == reason
    assert done["rollback"]["reason"] == reason
    assert done["deploymentCircuitBreaker"]["status"] == "TRIGGERED"
    passed = traffic(aws, arn)["stages"]
    assert "PRODUCTION_TRAFFIC_SHIFT" not in [e["stage"] for e in passed]
    assert passed[-1]["stage"] == "ROLLBACK"
    assert all(e["production_percent"] == 0.0 for e in passed)
    service = aws.wait_completed("app", blue)
    assert [d["id"] for d in service["deployments"]] == [blue_id]
    assert running_tasks(aws) == blue_tasks
    assert green not in set(running_tasks(aws).values())


# -- 3. alarms -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["PRODUCTION_TRAFFIC_SHIFT", "BAKE_TIME"])
def test_alarm_in_alarm_rolls_back(aws: Aws, stage: str) -> None:
    """A deployment alarm set to ALARM (CloudWatch SetAlarmState on the same endpoint) during the
    production traffic shift or the bake rolls the deployment back: ROLLBACK_SUCCESSFUL, alarms
    TRIGGERED with the alarm's name, a statusReason that names it, all traffic back on blue and
    the service back on blue."""
    watch = client(aws.url, "cloudwatch")
    create_alarm(watch, "app-5xx")
    alarms = {"alarmNames": ["app-5xx", "app-latency"], "enable": True, "rollback": True}
    config = configuration("CANARY", alarms=alarms)
    blue = start(aws, config)
    set_minute(aws, 5.0)
    # Hold the stage the alarm fires in: the canary step, or the bake.
    canary_bake = 10 if stage == "PRODUCTION_TRAFFIC_SHIFT" else 0
    canary = {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": canary_bake}
    _, arn = update(aws, NEXT, {**config, "canaryConfiguration": canary, "bakeTimeInMinutes": 10})
    wait_stage(aws, arn, stage)

    watch.set_alarm_state(AlarmName="app-5xx", StateValue="ALARM", StateReason="5xx")
    done = wait_status(aws, arn, "ROLLBACK_SUCCESSFUL")

    assert done["alarms"] == {
        "status": "TRIGGERED",
        "alarmNames": ["app-5xx", "app-latency"],
        "triggeredAlarmNames": ["app-5xx"],
    }
    assert "app-5xx" in done["statusReason"]
    assert done["rollback"]["reason"] == done["statusReason"]
    view = traffic(aws, arn)
    assert view["stages"][-2]["stage"] == stage
    assert view["traffic"]["production"] == {"green": 0.0, "blue": 100.0}
    aws.wait_completed("app", blue)


def test_alarm_without_rollback_stops_the_deployment(aws: Aws) -> None:
    """With alarms.rollback false, an alarm in ALARM stops the deployment where it is: STOPPED,
    alarms TRIGGERED, green FAILED beside blue, which keeps serving."""
    watch = client(aws.url, "cloudwatch")
    create_alarm(watch, "app-5xx")
    alarms = {"alarmNames": ["app-5xx"], "enable": True, "rollback": False}
    blue = start(aws, configuration(bakeTimeInMinutes=10, alarms=alarms))
    set_minute(aws, 5.0)
    green, arn = update(aws, NEXT)
    wait_stage(aws, arn, "BAKE_TIME")

    watch.set_alarm_state(AlarmName="app-5xx", StateValue="ALARM", StateReason="5xx")
    done = wait_status(aws, arn, "STOPPED")

    assert done["alarms"]["status"] == "TRIGGERED"
    assert "app-5xx" in done["statusReason"]
    assert "rollback" not in done
    primary, active = aws.describe("app")["deployments"]
    assert (primary["taskDefinition"], primary["rolloutState"]) == (green, "FAILED")
    assert active["taskDefinition"] == blue


# -- 4. PAUSE hooks ------------------------------------------------------------------------------


def test_pause_hook_waits_for_continue(aws: Aws) -> None:
    """A PAUSE hook stops the deployment at its stage with a hook AWAITING_ACTION (hookId,
    expiresAt, timeoutAction) until ContinueServiceDeployment(CONTINUE); then the hook is
    SUCCEEDED and the deployment goes on to SUCCESSFUL. Once it has ended, the deployment cannot
    be continued again (ClientException)."""
    set_minute(aws, 1.0)
    hooks = [
        {
            "targetType": "PAUSE",
            "lifecycleStages": ["POST_SCALE_UP"],
            "timeoutConfiguration": {"timeoutInMinutes": 600, "action": "ROLLBACK"},
        }
    ]
    start(aws, configuration())
    before = datetime.datetime.now(datetime.UTC)
    _, arn = update(aws, NEXT, configuration(lifecycleHooks=hooks))

    paused = wait_awaiting(aws, arn)

    hook = awaiting_hook(paused)
    assert paused["lifecycleStage"] == "POST_SCALE_UP"
    assert paused["status"] == "IN_PROGRESS"
    assert hook["targetType"] == "PAUSE"
    assert hook["timeoutAction"] == "ROLLBACK"
    assert "targetArn" not in hook
    assert hook["expiresAt"] > before + datetime.timedelta(seconds=500)
    assert traffic(aws, arn)["traffic"]["production"]["green"] == 0.0

    answer = aws.ecs.continue_service_deployment(
        serviceDeploymentArn=arn, hookId=hook["hookId"], action="CONTINUE"
    )

    assert answer["serviceDeploymentArn"] == arn
    done = wait_status(aws, arn, "SUCCESSFUL")
    (resolved,) = done["lifecycleHookDetails"]
    assert resolved["hookId"] == hook["hookId"]
    assert resolved["status"] == "SUCCEEDED"
    again = error_of(
        aws.ecs.continue_service_deployment, serviceDeploymentArn=arn, hookId=hook["hookId"]
    )
    assert again["Code"] == "ClientException"
    assert "SUCCESSFUL" in again["Message"]


def test_pause_hook_before_each_production_step(aws: Aws) -> None:
    """A PAUSE hook at PRE_PRODUCTION_TRAFFIC_SHIFT pauses a LINEAR deployment before each of its
    steps, each time with a new hookId; lifecycleStage shows the stage before the shift."""
    set_minute(aws, 0.1)
    hooks = [{"targetType": "PAUSE", "lifecycleStages": ["PRE_PRODUCTION_TRAFFIC_SHIFT"]}]
    linear = {"stepPercent": 50.0, "stepBakeTimeInMinutes": 0}
    config = configuration("LINEAR", linearConfiguration=linear)
    start(aws, config)
    _, arn = update(aws, NEXT, {**config, "lifecycleHooks": hooks})

    seen: list[tuple[str, str, float]] = []
    for _ in range(2):
        paused = wait_awaiting(aws, arn)
        hook = awaiting_hook(paused)
        seen.append(
            (
                hook["hookId"],
                paused["lifecycleStage"],
                traffic(aws, arn)["traffic"]["production"]["green"],
            )
        )
        aws.ecs.continue_service_deployment(serviceDeploymentArn=arn, hookId=hook["hookId"])

    done = wait_status(aws, arn, "SUCCESSFUL")
    assert [stage for _, stage, _ in seen] == [
        "POST_TEST_TRAFFIC_SHIFT",
        "PRODUCTION_TRAFFIC_SHIFT",
    ]
    assert [green for _, _, green in seen] == [0.0, 50.0]
    assert seen[0][0] != seen[1][0]
    assert [h["status"] for h in done["lifecycleHookDetails"]] == ["SUCCEEDED", "SUCCEEDED"]


def test_continue_with_rollback_rolls_back(aws: Aws) -> None:
    """ContinueServiceDeployment(ROLLBACK) on a paused hook rolls the deployment back: the hook
    FAILED, the deployment ROLLBACK_SUCCESSFUL with a reason naming the hook, and the service
    back on blue."""
    set_minute(aws, 1.0)
    hooks = [{"targetType": "PAUSE", "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"]}]
    blue = start(aws, configuration())
    _, arn = update(aws, NEXT, configuration(lifecycleHooks=hooks))
    hook = awaiting_hook(wait_awaiting(aws, arn))

    aws.ecs.continue_service_deployment(
        serviceDeploymentArn=arn, hookId=hook["hookId"], action="ROLLBACK"
    )

    done = wait_status(aws, arn, "ROLLBACK_SUCCESSFUL")
    assert done["lifecycleHookDetails"][0]["status"] == "FAILED"
    assert hook["hookId"] in done["statusReason"]
    assert "ContinueServiceDeployment" in done["rollback"]["reason"]
    aws.wait_completed("app", blue)


@pytest.mark.parametrize(
    ("action", "ending"), [("CONTINUE", "SUCCESSFUL"), ("ROLLBACK", "ROLLBACK_SUCCESSFUL")]
)
def test_pause_hook_timeout_takes_its_action(aws: Aws, action: str, ending: str) -> None:
    """A PAUSE hook nobody answers is TIMED_OUT once timeoutInMinutes (simulated minutes) have
    passed, and its timeoutConfiguration.action is taken."""
    set_minute(aws, 0.5)
    hooks = [
        {
            "targetType": "PAUSE",
            "lifecycleStages": ["POST_PRODUCTION_TRAFFIC_SHIFT"],
            "timeoutConfiguration": {"timeoutInMinutes": 1, "action": action},
        }
    ]
    start(aws, configuration())
    _, arn = update(aws, NEXT, configuration(lifecycleHooks=hooks))

    done = wait_status(aws, arn, ending)

    (hook,) = done["lifecycleHookDetails"]
    assert hook["status"] == "TIMED_OUT"
    assert hook["timeoutAction"] == action


def test_continue_service_deployment_errors(aws: Aws) -> None:
    """ContinueServiceDeployment of an unknown ARN is ServiceDeploymentNotFoundException; an
    unknown hookId or action is InvalidParameterException naming it; a ROLLING deployment has no
    hooks to continue."""
    start(aws, configuration("ROLLING"))
    (done,) = aws.ecs.list_service_deployments(cluster="test", service="app")["serviceDeployments"]
    arn = done["serviceDeploymentArn"]
    call = aws.ecs.continue_service_deployment

    assert error_of(call, serviceDeploymentArn=arn + "x", hookId="h")["Code"] == (
        "ServiceDeploymentNotFoundException"
    )
    rolling = error_of(call, serviceDeploymentArn=arn, hookId="h")
    assert rolling["Code"] == "InvalidParameterException"
    assert "ROLLING" in rolling["Message"]
    bad_action = error_of(call, serviceDeploymentArn=arn, hookId="h", action="SKIP")
    assert bad_action["Code"] == "InvalidParameterException"
    assert "SKIP" in bad_action["Message"]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"strategy": "PURPLE"}, "deploymentConfiguration.strategy"),
        ({"bakeTimeInMinutes": 1441}, "bakeTimeInMinutes"),
        ({"linearConfiguration": {"stepPercent": 2.0}}, "linearConfiguration.stepPercent"),
        ({"canaryConfiguration": {"canaryPercent": 0.05}}, "canaryConfiguration.canaryPercent"),
        (
            {"lifecycleHooks": [{"targetType": "PAUSE", "lifecycleStages": ["SCALE_UP"]}]},
            "lifecycleHooks[0].lifecycleStages",
        ),
        (
            {"lifecycleHooks": [{"lifecycleStages": ["POST_SCALE_UP"]}]},
            "lifecycleHooks[0].hookTargetArn",
        ),
        (
            {
                "lifecycleHooks": [
                    {
                        "targetType": "PAUSE",
                        "lifecycleStages": ["POST_SCALE_UP"],
                        "timeoutConfiguration": {"timeoutInMinutes": 20161},
                    }
                ]
            },
            "timeoutInMinutes",
        ),
    ],
)
def test_invalid_strategy_configuration_is_refused(
    aws: Aws, change: dict[str, Any], named: str
) -> None:
    """CreateService and UpdateService refuse strategy fields ECS refuses, with an
    InvalidParameterException that names the field."""
    blue = aws.task_definition("app", GOOD)
    created = error_of(
        aws.ecs.create_service,
        cluster="test",
        serviceName="app",
        taskDefinition=blue,
        desiredCount=1,
        deploymentConfiguration=configuration(**change),
    )
    assert created["Code"] == "InvalidParameterException"
    assert named in created["Message"]
    start(aws, configuration())
    updated = error_of(
        aws.ecs.update_service,
        cluster="test",
        service="app",
        deploymentConfiguration=configuration(**change),
    )
    assert named in updated["Message"]


@pytest.mark.parametrize("stage", sorted(LAMBDA_ONLY_STAGES))
def test_pause_is_refused_at_the_traffic_shift_stages(aws: Aws, stage: str) -> None:
    """PAUSE hooks cannot be configured at TEST_TRAFFIC_SHIFT or PRODUCTION_TRAFFIC_SHIFT (as
    botocore's model documents); every other hook stage takes them."""
    blue = aws.task_definition("app", GOOD)
    refused = error_of(
        aws.ecs.create_service,
        cluster="test",
        serviceName="app",
        taskDefinition=blue,
        desiredCount=1,
        deploymentConfiguration=configuration(
            lifecycleHooks=[{"targetType": "PAUSE", "lifecycleStages": [stage]}]
        ),
    )
    assert refused["Code"] == "InvalidParameterException"
    assert stage in refused["Message"]
    allowed = [s for s in HOOK_STAGES if s not in LAMBDA_ONLY_STAGES]
    aws.service(
        "other",
        blue,
        deploymentConfiguration=configuration(
            lifecycleHooks=[{"targetType": "PAUSE", "lifecycleStages": allowed}]
        ),
    )


# -- StopServiceDeployment -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "stage",
    [
        "PRE_SCALE_UP",
        "POST_SCALE_UP",
        "POST_TEST_TRAFFIC_SHIFT",
        "PRE_PRODUCTION_TRAFFIC_SHIFT",
        "POST_PRODUCTION_TRAFFIC_SHIFT",
        "BAKE_TIME",
    ],
)
def test_stop_service_deployment_rolls_back_at_any_stage(aws: Aws, stage: str) -> None:
    """StopServiceDeployment(ROLLBACK) while a CANARY deployment is held at a stage (a PAUSE hook,
    or the bake) rolls it back: ROLLBACK_SUCCESSFUL, all traffic back on blue, the service back
    on blue alone."""
    hooks = [{"targetType": "PAUSE", "lifecycleStages": [stage]}] if stage != "BAKE_TIME" else []
    canary = {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 0}
    config = configuration("CANARY", canaryConfiguration=canary)
    blue = start(aws, config)
    set_minute(aws, 5.0)
    _, arn = update(aws, NEXT, {**config, "lifecycleHooks": hooks, "bakeTimeInMinutes": 60})
    if stage == "BAKE_TIME":
        wait_stage(aws, arn, "BAKE_TIME")
    else:
        wait_awaiting(aws, arn)

    aws.ecs.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")

    done = wait_status(aws, arn, "ROLLBACK_SUCCESSFUL")
    assert "StopServiceDeployment" in done["statusReason"]
    view = traffic(aws, arn)
    assert view["stages"][-2]["stage"] == stage
    assert view["stages"][-1]["stage"] == "ROLLBACK"
    assert view["traffic"]["production"] == {"green": 0.0, "blue": 100.0}
    aws.wait_completed("app", blue)
    assert set(running_tasks(aws).values()) == {blue}


# -- control API ---------------------------------------------------------------------------------


def test_minute_seconds_is_a_setting(aws: Aws) -> None:
    """The control API shows minute_seconds in its config, sets it, refuses a bad value with a
    message naming it, and a reset restores the value from start."""
    status, config = aws.control("GET", "config")
    assert status == 200
    initial = config["minute_seconds"]

    status, config = aws.control("POST", "config", {"minute_seconds": 0.25})
    assert (status, config["minute_seconds"]) == (200, 0.25)
    status, error = aws.control("POST", "config", {"minute_seconds": -1})
    assert status == 400
    assert "minute_seconds" in error["message"]
    status, error = aws.control("POST", "config", {"rollout_seconds": 3})
    assert status == 400
    assert "rollout_seconds" in error["message"]

    aws.control("POST", "reset")
    assert aws.control("GET", "config")[1]["minute_seconds"] == initial


def test_tick_seconds_is_a_setting(aws: Aws) -> None:
    """The simulator's tick can be set through the control API (alone or with minute_seconds);
    a value that is not a positive number is refused with a message naming it, and a reset
    restores the tick from start."""
    aws.control("POST", "reset")
    status, config = aws.control("GET", "config")
    assert status == 200
    initial = config["tick_seconds"]

    status, config = aws.control("POST", "config", {"tick_seconds": 0.04, "minute_seconds": 0.3})
    assert (status, config["tick_seconds"], config["minute_seconds"]) == (200, 0.04, 0.3)
    for bad in (0, -1, True, "fast"):
        status, error = aws.control("POST", "config", {"tick_seconds": bad})
        assert status == 400, bad
        assert "tick_seconds" in error["message"]
    assert aws.control("GET", "config")[1]["tick_seconds"] == 0.04

    aws.control("POST", "reset")
    assert aws.control("GET", "config")[1]["tick_seconds"] == initial


# -- 5. Lambda hooks -----------------------------------------------------------------------------


def test_lambda_hook_in_progress_is_called_again_until_it_succeeds(aws: Aws) -> None:
    """A Lambda hook whose function answers IN_PROGRESS holds its stage with the hook
    IN_PROGRESS, is called again after callBackDelay, and the deployment goes on once it answers
    SUCCEEDED; the control API counts the calls."""
    set_minute(aws, 0.4)  # callBackDelay 300 s -> 2 s, in which IN_PROGRESS is seen
    status, _ = aws.control(
        "POST",
        "lambda-hooks",
        {
            "hookTargetArn": LAMBDA,
            "answers": [
                {"hookStatus": "IN_PROGRESS", "callBackDelay": 300},
                {"hookStatus": "SUCCEEDED"},
            ],
        },
    )
    assert status == 200
    hooks = [{"hookTargetArn": LAMBDA, "roleArn": ROLE, "lifecycleStages": ["POST_SCALE_UP"]}]
    start(aws, configuration())
    _, arn = update(aws, NEXT, configuration(lifecycleHooks=hooks))

    def in_progress() -> dict[str, Any] | None:
        found = describe(aws, arn)
        details = found.get("lifecycleHookDetails", [])
        return found if details and details[0]["status"] == "IN_PROGRESS" else None

    held = wait_for(in_progress, timeout=60, interval=POLL_SECONDS)
    assert held["lifecycleStage"] == "POST_SCALE_UP"
    done = wait_status(aws, arn, "SUCCESSFUL")

    (hook,) = done["lifecycleHookDetails"]
    assert (hook["status"], hook["targetType"], hook["targetArn"]) == (
        "SUCCEEDED",
        "AWS_LAMBDA",
        LAMBDA,
    )
    assert aws.control("GET", "lambda-hooks")[1]["calls"] == {LAMBDA: 2}


def test_lambda_hook_failed_rolls_back(aws: Aws) -> None:
    """A Lambda hook whose function answers FAILED rolls the deployment back: the hook FAILED,
    ROLLBACK_SUCCESSFUL with a reason naming the function, the service back on blue. Bad answers
    are refused by the control API with the field named."""
    status, error = aws.control(
        "POST", "lambda-hooks", {"hookTargetArn": LAMBDA, "answers": [{"hookStatus": "MAYBE"}]}
    )
    assert status == 400
    assert "answers[0].hookStatus" in error["message"]
    aws.control(
        "POST", "lambda-hooks", {"hookTargetArn": LAMBDA, "answers": [{"hookStatus": "FAILED"}]}
    )
    hooks = [{"hookTargetArn": LAMBDA, "roleArn": ROLE, "lifecycleStages": ["TEST_TRAFFIC_SHIFT"]}]
    blue = start(aws, configuration())
    _, arn = update(aws, NEXT, configuration(lifecycleHooks=hooks))

    done = wait_status(aws, arn, "ROLLBACK_SUCCESSFUL")

    assert done["lifecycleHookDetails"][0]["status"] == "FAILED"
    assert LAMBDA in done["statusReason"]
    assert "PRODUCTION_TRAFFIC_SHIFT" not in stages(aws, arn)
    aws.wait_completed("app", blue)
