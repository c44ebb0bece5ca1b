"""A ROLLING deployment watched by a CloudWatch alarm, end to end: the real CLI, Redis, a celery
worker and the local AWS, which bakes a steady rolling deployment while it watches the alarm."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest

from localaws.devstack import Worker
from localaws.testing import create_alarm
from tests.integration.conftest import Stack
from tests.integration.test_strategies_e2e import (
    _client,
    _end,
    _start,
    _steady,
    _until,
    create_service,
)

pytestmark = pytest.mark.integration

BAKE_MINUTES = 80  # 8 s at the local AWS's 0.1 s a minute: time to set the alarm off


def _rolling_service(stack: Stack, alarm: str) -> str:
    """A two-task ROLLING service with the breaker and ``alarm`` (rollback on)."""
    configuration = {
        "strategy": "ROLLING",
        "maximumPercent": 200,
        "minimumHealthyPercent": 100,
        "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        "alarms": {"alarmNames": [alarm], "enable": True, "rollback": True},
    }
    name = create_service(stack, "rolling", configuration)
    _steady(stack, name)
    return name


def test_an_alarm_during_a_rolling_bake_is_reported_rolled_back_naming_it(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """The alarm fires while the steady deployment bakes: ECS rolls it back, and Conveyor
    reports rolled_back (exit 1) with the alarm named, never success."""
    alarm = f"alarm-{uuid.uuid4().hex[:6]}"
    watch = _client(stack, "cloudwatch")
    create_alarm(watch, alarm, namespace="e2e")
    name = _rolling_service(stack, alarm)
    start_worker("w1")

    run = _start(stack, name, ":1.1.0", "--bake-minutes", str(BAKE_MINUTES))
    listed = None
    while not listed:
        out = stack.cli("list", "--service", name, "--json")
        listed = json.loads(out.stdout)["deployments"] if out.returncode == 0 else []
    deployment_id = listed[0]["id"]
    _until(stack, deployment_id, "steady and baking", _steady_and_baking(stack, name))
    watch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="5xx above 1")

    code, record = _end(run)
    assert (code, record["state"]) == (1, "rolled_back"), record["reason"]
    assert alarm in record["reason"]


def _steady_and_baking(stack: Stack, name: str) -> Callable[[dict[str, object]], bool]:
    """True once ECS's service deployment of ``name`` shows BAKE_TIME."""

    def baking(_: dict[str, object]) -> bool:
        ecs = stack.ecs()
        listed = ecs.list_service_deployments(cluster="demo", service=name)["serviceDeployments"]
        if not listed:
            return False
        arn = listed[0]["serviceDeploymentArn"]
        (found,) = ecs.describe_service_deployments(serviceDeploymentArns=[arn])[
            "serviceDeployments"
        ]
        return bool(found.get("lifecycleStage") == "BAKE_TIME")

    return baking
