"""The stack verdict: a pure function of the stack's status and this operation's events."""

from __future__ import annotations

import pytest

from producers.contract.records import StackEvent
from worker.domain.stack_verdict import StackOutcome, judge_stack


def event(logical: str, status: str, reason: str | None = None, n: int = 0) -> StackEvent:
    return StackEvent(
        id=f"e{n}",
        timestamp="2026-01-01T00:00:00Z",
        logical_id=logical,
        resource_type="AWS::ECS::Service",
        status=status,
        reason=reason,
    )


BREAKER = event("Service", "UPDATE_FAILED", "ECS Deployment Circuit Breaker was triggered", 1)
LATER = event("Stack", "UPDATE_ROLLBACK_IN_PROGRESS", "The following resource(s) failed", 2)


@pytest.mark.parametrize(
    ("status", "events", "now", "deadline", "outcome", "reason_part"),
    [
        ("CREATE_COMPLETE", [], 0.0, 10.0, StackOutcome.COMPLETE, "CREATE_COMPLETE"),
        ("UPDATE_COMPLETE", [], 99.0, 10.0, StackOutcome.COMPLETE, "UPDATE_COMPLETE"),
        ("CREATE_IN_PROGRESS", [], 0.0, 10.0, StackOutcome.IN_PROGRESS, "CREATE_IN_PROGRESS"),
        ("UPDATE_IN_PROGRESS", [], 0.0, None, StackOutcome.IN_PROGRESS, "UPDATE_IN_PROGRESS"),
        (
            "UPDATE_ROLLBACK_COMPLETE",
            [LATER, BREAKER],
            0.0,
            10.0,
            StackOutcome.ROLLED_BACK,
            "Service: ECS Deployment Circuit Breaker was triggered",
        ),
        ("ROLLBACK_COMPLETE", [BREAKER], 0.0, 10.0, StackOutcome.FAILED, "ended ROLLBACK_COMPLETE"),
        ("CREATE_FAILED", [], 0.0, 10.0, StackOutcome.FAILED, "(CREATE_FAILED)"),
        ("DELETE_COMPLETE", [], 0.0, 10.0, StackOutcome.FAILED, "DELETE_COMPLETE"),
        ("UPDATE_ROLLBACK_FAILED", [], 0.0, 10.0, StackOutcome.FAILED, "UPDATE_ROLLBACK_FAILED"),
        ("UPDATE_IN_PROGRESS", [], 10.0, 10.0, StackOutcome.TIMED_OUT, "still UPDATE_IN_PROGRESS"),
    ],
)
def test_stack_verdict_table(
    status: str,
    events: list[StackEvent],
    now: float,
    deadline: float | None,
    outcome: StackOutcome,
    reason_part: str,
) -> None:
    """Each CloudFormation status maps to one outcome; the reason names the cause."""
    verdict = judge_stack("conveyor-s", status, events, now=now, deadline=deadline)
    assert verdict.outcome is outcome
    assert reason_part in verdict.reason


def test_the_oldest_failure_is_the_cause() -> None:
    """Later failures are consequences: the first one with a reason is reported."""
    first = event("TaskDefinition", "UPDATE_FAILED", "bad image", 1)
    then = event("Service", "UPDATE_FAILED", "dependency failed", 2)
    verdict = judge_stack("s", "UPDATE_ROLLBACK_COMPLETE", [then, first], now=0, deadline=1)
    assert "TaskDefinition: bad image" in verdict.reason


def test_a_completed_stack_is_complete_even_past_the_deadline() -> None:
    """The deadline ends only operations still running."""
    verdict = judge_stack("s", "UPDATE_COMPLETE", [], now=100.0, deadline=1.0)
    assert verdict.outcome is StackOutcome.COMPLETE
