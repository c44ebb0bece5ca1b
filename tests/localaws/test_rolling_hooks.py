"""Lifecycle hooks on a ROLLING deployment: PAUSE and Lambda hooks at PRE_SCALE_UP (no new task
starts until answered) and POST_SCALE_UP (the new revision runs all its tasks, the old ones are
gone, the deployment stays IN_PROGRESS), answered with ContinueServiceDeployment or by their
timeout."""

from __future__ import annotations

from typing import Any

import pytest

from localaws.fidelity import answer_errors
from tests.localaws.conftest import Aws
from tests.localaws.test_strategies import (
    BREAKER,
    ECS_MODEL,
    LAMBDA,
    NEXT,
    ROLE,
    awaiting_hook,
    describe,
    error_of,
    raw_answers,
    running_tasks,
    set_minute,
    start,
    update,
    wait_awaiting,
    wait_status,
)


def _rolling(**extra: Any) -> dict[str, Any]:
    return {
        "strategy": "ROLLING",
        "maximumPercent": 200,
        "minimumHealthyPercent": 100,
        "deploymentCircuitBreaker": BREAKER,
        **extra,
    }


def _pause(stage: str, **timeout: Any) -> list[dict[str, Any]]:
    hook: dict[str, Any] = {"targetType": "PAUSE", "lifecycleStages": [stage]}
    if timeout:
        hook["timeoutConfiguration"] = timeout
    return [hook]


def test_pre_scale_up_pause_starts_no_task_until_continued(aws: Aws) -> None:
    """Paused at PRE_SCALE_UP, the rolling deployment is IN_PROGRESS with a hook AWAITING_ACTION
    and only the old revision runs; CONTINUE lets it roll out to SUCCESSFUL."""
    set_minute(aws, 1.0)
    blue = start(aws, _rolling())
    green, arn = update(aws, NEXT, _rolling(lifecycleHooks=_pause("PRE_SCALE_UP")))

    paused = wait_awaiting(aws, arn)

    hook = awaiting_hook(paused)
    assert (paused["status"], paused["lifecycleStage"]) == ("IN_PROGRESS", "PRE_SCALE_UP")
    assert (hook["targetType"], hook["timeoutAction"]) == ("PAUSE", "ROLLBACK")
    assert "expiresAt" in hook
    assert set(running_tasks(aws).values()) == {blue}
    primary = aws.describe("app")["deployments"][0]
    assert (primary["taskDefinition"], primary["runningCount"]) == (green, 0)

    aws.ecs.continue_service_deployment(serviceDeploymentArn=arn, hookId=hook["hookId"])

    done = wait_status(aws, arn, "SUCCESSFUL")
    assert [h["status"] for h in done["lifecycleHookDetails"]] == ["SUCCEEDED"]
    aws.wait_completed("app", green)


def test_post_scale_up_pause_holds_the_rolled_out_revision(aws: Aws) -> None:
    """Paused at POST_SCALE_UP, every running task is the new revision and the deployment is still
    IN_PROGRESS (its ECS deployment too); the answer and the descriptions match botocore."""
    set_minute(aws, 1.0)
    start(aws, _rolling())
    bodies = raw_answers(aws, "DescribeServiceDeployments")
    green, arn = update(aws, NEXT, _rolling(lifecycleHooks=_pause("POST_SCALE_UP")))

    paused = wait_awaiting(aws, arn)

    assert (paused["status"], paused["lifecycleStage"]) == ("IN_PROGRESS", "POST_SCALE_UP")
    assert set(running_tasks(aws).values()) == {green}
    primary, *old = aws.describe("app")["deployments"]
    assert (primary["taskDefinition"], primary["rolloutState"]) == (green, "IN_PROGRESS")
    assert [d["runningCount"] for d in old] == [0] * len(old)
    hook = awaiting_hook(paused)
    continued = raw_answers(aws, "ContinueServiceDeployment")
    aws.ecs.continue_service_deployment(
        serviceDeploymentArn=arn, hookId=hook["hookId"], action="CONTINUE"
    )
    wait_status(aws, arn, "SUCCESSFUL")
    assert bodies
    assert continued
    for operation, answers in (
        ("DescribeServiceDeployments", bodies),
        ("ContinueServiceDeployment", continued),
    ):
        shape = ECS_MODEL.operation_model(operation).output_shape
        for body in answers:
            assert answer_errors(body, shape) == []


@pytest.mark.parametrize("stage", ["PRE_SCALE_UP", "POST_SCALE_UP"])
def test_rollback_answer_rolls_back_as_the_breaker_does(aws: Aws, stage: str) -> None:
    """ContinueServiceDeployment(ROLLBACK): the hook FAILED, our ECS deployment FAILED, a new
    PRIMARY on the last completed revision, the service deployment ROLLBACK_SUCCESSFUL with a
    reason naming the hook."""
    set_minute(aws, 1.0)
    blue = start(aws, _rolling())
    _, arn = update(aws, NEXT, _rolling(lifecycleHooks=_pause(stage)))
    hook = awaiting_hook(wait_awaiting(aws, arn))

    aws.ecs.continue_service_deployment(
        serviceDeploymentArn=arn, hookId=hook["hookId"], action="ROLLBACK"
    )

    done = wait_status(aws, arn, "ROLLBACK_SUCCESSFUL")
    assert done["lifecycleHookDetails"][0]["status"] == "FAILED"
    assert hook["hookId"] in done["rollback"]["reason"]
    aws.wait_completed("app", blue)
    assert set(running_tasks(aws).values()) == {blue}
    again = error_of(
        aws.ecs.continue_service_deployment, serviceDeploymentArn=arn, hookId=hook["hookId"]
    )
    assert again["Code"] == "ClientException"


@pytest.mark.parametrize(
    ("action", "ending"), [("CONTINUE", "SUCCESSFUL"), ("ROLLBACK", "ROLLBACK_SUCCESSFUL")]
)
def test_unanswered_pause_takes_its_timeout_action(aws: Aws, action: str, ending: str) -> None:
    """A rolling PAUSE hook nobody answers is TIMED_OUT after timeoutInMinutes and its action is
    taken."""
    set_minute(aws, 0.5)
    start(aws, _rolling())
    hooks = _pause("POST_SCALE_UP", timeoutInMinutes=1, action=action)
    _, arn = update(aws, NEXT, _rolling(lifecycleHooks=hooks))

    done = wait_status(aws, arn, ending)

    (hook,) = done["lifecycleHookDetails"]
    assert (hook["status"], hook["timeoutAction"]) == ("TIMED_OUT", action)


def test_lambda_hook_failed_rolls_a_rolling_deployment_back(aws: Aws) -> None:
    """A Lambda hook at PRE_SCALE_UP whose function answers FAILED rolls the deployment back
    before any new task starts."""
    aws.control(
        "POST", "lambda-hooks", {"hookTargetArn": LAMBDA, "answers": [{"hookStatus": "FAILED"}]}
    )
    hooks = [{"hookTargetArn": LAMBDA, "roleArn": ROLE, "lifecycleStages": ["PRE_SCALE_UP"]}]
    blue = start(aws, _rolling())
    _, arn = update(aws, NEXT, _rolling(lifecycleHooks=hooks))

    done = wait_status(aws, arn, "ROLLBACK_SUCCESSFUL")

    (hook,) = done["lifecycleHookDetails"]
    assert (hook["status"], hook["targetType"], hook["targetArn"]) == (
        "FAILED",
        "AWS_LAMBDA",
        LAMBDA,
    )
    assert LAMBDA in done["statusReason"]
    aws.wait_completed("app", blue)
    assert aws.control("GET", "lambda-hooks")[1]["calls"] == {LAMBDA: 1}


def test_a_rolling_deployment_without_hooks_has_none_to_continue(aws: Aws) -> None:
    """Without lifecycleHooks nothing changes: no lifecycleHookDetails, and
    ContinueServiceDeployment is refused naming the strategy."""
    start(aws, _rolling())
    _, arn = update(aws, NEXT)
    done = wait_status(aws, arn, "SUCCESSFUL")
    assert "lifecycleHookDetails" not in describe(aws, arn)
    assert "lifecycleHookDetails" not in done
    refused = error_of(aws.ecs.continue_service_deployment, serviceDeploymentArn=arn, hookId="h")
    assert refused["Code"] == "InvalidParameterException"
