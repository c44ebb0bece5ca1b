"""How did a stack operation end? A pure function of the stack's status and its events.

CloudFormation's own statuses say whether an operation is still running, completed, rolled back
or failed; the events of this deployment's operation say why. A stack that completes still has
to show its service on the stack's revision: that second check is :func:`worker.domain.verdict.
judge`, applied by the flow after this one says COMPLETE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from producers.contract.records import StackEvent

# An update that failed and was undone: the service is back on what the stack had before.
ROLLED_BACK_STATUSES = frozenset({"UPDATE_ROLLBACK_COMPLETE"})
FAILED_STATUSES = frozenset(
    {
        "CREATE_FAILED",
        "ROLLBACK_COMPLETE",
        "ROLLBACK_FAILED",
        "UPDATE_ROLLBACK_FAILED",
        "DELETE_FAILED",
        "DELETE_COMPLETE",
        "UPDATE_FAILED",
    }
)
COMPLETE_STATUSES = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE"})


class StackOutcome(StrEnum):
    """Where a watched stack operation stands."""

    IN_PROGRESS = "in_progress"  # poll again
    COMPLETE = "complete"  # go on and check the service
    ROLLED_BACK = "rolled_back"  # the update failed and CloudFormation undid it
    FAILED = "failed"  # failed, not undone (or the stack is gone)
    TIMED_OUT = "timed_out"  # still running at the deadline


@dataclass(frozen=True, slots=True)
class StackVerdict:
    """The outcome and the reason to record."""

    outcome: StackOutcome
    reason: str


def judge_stack(
    name: str,
    status: str,
    events: Sequence[StackEvent],
    *,
    now: float,
    deadline: float | None,
) -> StackVerdict:
    """Judge a stack operation from the stack's ``status`` and this operation's ``events``.

    ``events`` are newest first; the oldest failure with a reason is the cause reported, since
    later failures are usually consequences of it.
    """
    if status in COMPLETE_STATUSES:
        return StackVerdict(StackOutcome.COMPLETE, f"stack {status}")
    failure = next((e for e in reversed(events) if e.status.endswith("_FAILED") and e.reason), None)
    cause = f"{failure.logical_id}: {failure.reason}" if failure else status
    if status in ROLLED_BACK_STATUSES:
        return StackVerdict(
            StackOutcome.ROLLED_BACK, f"stack update failed and was rolled back ({cause})"
        )
    if status in FAILED_STATUSES:
        return StackVerdict(StackOutcome.FAILED, f"stack {name} ended {status} ({cause})")
    if deadline is not None and now >= deadline:
        return StackVerdict(
            StackOutcome.TIMED_OUT,
            f"timed out with stack {name} still {status}; CloudFormation goes on with it "
            "(a broken image without the circuit breaker holds a stack for hours)",
        )
    return StackVerdict(StackOutcome.IN_PROGRESS, f"stack {status}")
