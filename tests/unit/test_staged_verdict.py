"""A blue/green, linear or canary deployment is judged by its service deployment's status."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from worker.domain.verdict import History, judge_service_deployment


def entry(status: str, **kw: Any) -> dict[str, Any]:
    """A DescribeServiceDeployments entry, as ECS gives it for a BLUE_GREEN deployment."""
    found: dict[str, Any] = {
        "serviceDeploymentArn": "arn:aws:ecs:us-east-1:1:service-deployment/c/web/1",
        "status": status,
        "deploymentConfiguration": {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 30},
        "deploymentCircuitBreaker": {"status": "MONITORING", "failureCount": 0, "threshold": 3},
    }
    found.update(kw)
    return found


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("PENDING", History.IN_PROGRESS),
        ("IN_PROGRESS", History.IN_PROGRESS),
        ("STOP_REQUESTED", History.IN_PROGRESS),
        ("SUCCESSFUL", History.SUCCEEDED),
        ("ROLLBACK_REQUESTED", History.ROLLING_BACK),
        ("ROLLBACK_IN_PROGRESS", History.ROLLING_BACK),
        ("ROLLBACK_SUCCESSFUL", History.ROLLED_BACK),
        ("ROLLBACK_FAILED", History.FAILED),
        ("STOPPED", History.STOPPED),
    ],
)
def test_the_status_is_the_verdict(status: str, outcome: History) -> None:
    """Every ServiceDeploymentStatus of the ECS model maps to one outcome."""
    assert judge_service_deployment(entry(status)).outcome is outcome


def test_in_progress_during_the_bake_is_no_failure() -> None:
    """IN_PROGRESS at BAKE_TIME: in progress, with the stage and the deployment's bake time."""
    verdict = judge_service_deployment(entry("IN_PROGRESS", lifecycleStage="BAKE_TIME"))
    assert verdict.outcome is History.IN_PROGRESS
    assert verdict.stage == "BAKE_TIME"
    assert (verdict.bake_minutes, verdict.strategy) == (30, "BLUE_GREEN")
    assert verdict.reason == "ECS reports the BLUE_GREEN deployment IN_PROGRESS at BAKE_TIME"


def test_the_traffic_split_is_read_from_the_target_revision() -> None:
    """requestedProductionTrafficWeight of the target revision is the new revision's share; a
    deployment without it (or with a malformed one) says nothing of the split."""
    shifting = entry(
        "IN_PROGRESS",
        lifecycleStage="PRODUCTION_TRAFFIC_SHIFT",
        targetServiceRevision={"arn": "r2", "requestedProductionTrafficWeight": 10.0},
        sourceServiceRevisions=[{"arn": "r1", "requestedProductionTrafficWeight": 90.0}],
    )
    assert judge_service_deployment(shifting).production_traffic == 10.0
    assert judge_service_deployment(entry("IN_PROGRESS")).production_traffic is None
    odd = entry("IN_PROGRESS", targetServiceRevision={"requestedProductionTrafficWeight": "x"})
    assert judge_service_deployment(odd).production_traffic is None


def test_a_rollback_names_the_alarms_that_triggered_it() -> None:
    """ROLLBACK_SUCCESSFUL after alarms: the reason names them, and ECS's own reason."""
    verdict = judge_service_deployment(
        entry(
            "ROLLBACK_SUCCESSFUL",
            alarms={
                "status": "TRIGGERED",
                "alarmNames": ["p99-latency", "5xx"],
                "triggeredAlarmNames": ["5xx"],
            },
            rollback={"reason": "CloudWatch alarm 5xx in ALARM state."},
        )
    )
    assert verdict.outcome is History.ROLLED_BACK
    assert verdict.reason == (
        "ECS rolled the BLUE_GREEN deployment back: alarm 5xx triggered; "
        "CloudWatch alarm 5xx in ALARM state."
    )


def test_a_failure_names_the_breaker_counts_and_the_failed_hook() -> None:
    """The breaker's failure count and threshold, and the hook that FAILED or TIMED_OUT."""
    verdict = judge_service_deployment(
        entry(
            "ROLLBACK_FAILED",
            deploymentCircuitBreaker={"status": "TRIGGERED", "failureCount": 4, "threshold": 3},
            lifecycleHookDetails=[
                {
                    "hookId": "h1",
                    "targetType": "AWS_LAMBDA",
                    "targetArn": "arn:aws:lambda:us-east-1:1:function:smoke-test",
                    "status": "FAILED",
                },
                {"hookId": "h2", "targetType": "PAUSE", "status": "TIMED_OUT"},
                {"hookId": "h3", "targetType": "PAUSE", "status": "SUCCEEDED"},
            ],
        )
    )
    assert verdict.outcome is History.FAILED
    assert "circuit breaker triggered (4 failed tasks, threshold 3)" in verdict.reason
    assert "lifecycle hook smoke-test FAILED" in verdict.reason
    assert "PAUSE hook h2 TIMED_OUT" in verdict.reason
    assert "h3" not in verdict.reason


def test_stopped_is_not_read_as_replaced() -> None:
    """STOPPED says what ECS says (it also stops a failed deployment without rollback)."""
    verdict = judge_service_deployment(
        entry("STOPPED", statusReason="ECS deployment alarm triggered; rollback disabled.")
    )
    assert verdict.outcome is History.STOPPED
    assert verdict.reason == (
        "ECS stopped the BLUE_GREEN deployment (STOPPED): "
        "ECS deployment alarm triggered; rollback disabled."
    )


def test_a_pause_hook_awaiting_action_is_reported_with_its_expiry() -> None:
    """AWAITING_ACTION: the hook's id, when ECS stops waiting, and what it then does."""
    expires = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
    verdict = judge_service_deployment(
        entry(
            "IN_PROGRESS",
            lifecycleStage="PRE_PRODUCTION_TRAFFIC_SHIFT",
            lifecycleHookDetails=[
                {
                    "hookId": "h9",
                    "targetType": "PAUSE",
                    "status": "AWAITING_ACTION",
                    "expiresAt": expires,
                    "timeoutAction": "CONTINUE",
                }
            ],
        )
    )
    assert verdict.outcome is History.IN_PROGRESS
    assert verdict.waiting is not None
    assert verdict.waiting.hook_id == "h9"
    assert verdict.waiting.expires_at == expires.timestamp()
    assert verdict.waiting.timeout_action == "CONTINUE"
    assert verdict.reason.endswith("at PRE_PRODUCTION_TRAFFIC_SHIFT, awaiting approval")
