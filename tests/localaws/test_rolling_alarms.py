"""Deployment alarms on a ROLLING deployment: ECS watches them while the deployment runs and for
a bake once it is steady, and an alarm in ALARM fails it (rolled back when the alarms say so)."""

from __future__ import annotations

from typing import Any

from localaws.testing import create_alarm
from tests.localaws.conftest import Aws, client, wait_for
from tests.localaws.test_strategies import (
    BREAKER,
    NEXT,
    describe,
    set_minute,
    start,
    update,
    wait_stage,
    wait_status,
)

ALARMS = {"alarmNames": ["app-5xx"], "enable": True, "rollback": True}


def _alarm(aws: Aws) -> Any:
    watch = client(aws.url, "cloudwatch")
    create_alarm(watch, "app-5xx")
    return watch


def _rolling(**extra: Any) -> dict[str, Any]:
    return {
        "strategy": "ROLLING",
        "maximumPercent": 200,
        "minimumHealthyPercent": 100,
        "deploymentCircuitBreaker": BREAKER,
        **extra,
    }


def test_an_alarm_during_the_bake_rolls_a_rolling_deployment_back(aws: Aws) -> None:
    """Once steady, the deployment bakes (IN_PROGRESS, BAKE_TIME) while ECS watches its alarm;
    the alarm in ALARM then fails it: ROLLBACK_SUCCESSFUL naming the alarm, our deployment
    FAILED, and the service back on the old revision."""
    watch = _alarm(aws)
    blue = start(aws, _rolling(alarms=ALARMS))
    set_minute(aws, 5.0)
    green, arn = update(aws, NEXT)

    baking = wait_stage(aws, arn, "BAKE_TIME")
    assert baking["status"] == "IN_PROGRESS"
    primary = aws.describe("app")["deployments"][0]
    assert (primary["taskDefinition"], primary["rolloutState"]) == (green, "IN_PROGRESS")

    watch.set_alarm_state(AlarmName="app-5xx", StateValue="ALARM", StateReason="5xx")
    done = wait_status(aws, arn, "ROLLBACK_SUCCESSFUL")

    assert done["alarms"] == {
        "status": "TRIGGERED",
        "alarmNames": ["app-5xx"],
        "triggeredAlarmNames": ["app-5xx"],
    }
    assert "app-5xx" in done["statusReason"]
    service = aws.wait_completed("app", blue)
    assert any("alarm detected" in e["message"] for e in service["events"])


def test_a_rolling_deployment_whose_alarms_stay_ok_completes_after_its_bake(aws: Aws) -> None:
    """No alarm fires: the deployment completes once its bake has passed, SUCCESSFUL."""
    _alarm(aws)
    start(aws, _rolling(alarms=ALARMS, bakeTimeInMinutes=1))
    green, arn = update(aws, NEXT)
    done = wait_status(aws, arn, "SUCCESSFUL")
    assert done["alarms"] == {"status": "MONITORING_COMPLETE", "alarmNames": ["app-5xx"]}
    aws.wait_completed("app", green)


def test_an_alarm_without_rollback_fails_the_rolling_deployment_where_it_is(aws: Aws) -> None:
    """alarms.rollback false: the deployment FAILED, not rolled back; the service stays on it."""
    watch = _alarm(aws)
    start(aws, _rolling(alarms={**ALARMS, "rollback": False}))
    set_minute(aws, 5.0)
    green, arn = update(aws, NEXT)
    wait_stage(aws, arn, "BAKE_TIME")
    watch.set_alarm_state(AlarmName="app-5xx", StateValue="ALARM", StateReason="5xx")
    stopped = wait_status(aws, arn, "STOPPED")
    assert stopped["alarms"]["triggeredAlarmNames"] == ["app-5xx"]

    def failed() -> dict[str, Any] | None:
        primary = aws.describe("app")["deployments"][0]
        return primary if primary["rolloutState"] == "FAILED" else None

    primary = wait_for(failed)
    assert primary["taskDefinition"] == green
    assert "app-5xx" in primary["rolloutStateReason"]
    assert describe(aws, arn)["status"] == "STOPPED"
