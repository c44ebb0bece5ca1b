"""What a step returns, and the two ways a deployment ends.

Every flow's step returns a :class:`Transition`; :mod:`worker.steps` persists its record and
dispatches its next step. :func:`finish` and :func:`fail` are the only places a record becomes
terminal, so the step log always has an entry for the end.
"""

from __future__ import annotations

from dataclasses import dataclass

from producers.contract.records import (
    DeploymentRecord,
    DeploymentState,
    ErrorInfo,
    Step,
    StepEntry,
)
from worker.domain.errors import ConveyorError

__all__ = ["Transition", "fail", "finish"]


@dataclass(frozen=True, slots=True)
class Transition:
    """What a step produced: the new record, and the step to run next (None: finished)."""

    record: DeploymentRecord
    next_step: Step | None
    countdown: float = 0.0


def finish(
    record: DeploymentRecord, state: DeploymentState, reason: str, now: float
) -> DeploymentRecord:
    """Return the record in a terminal state."""
    steps = [*record.steps, StepEntry(step=record.step, status=state.value, at=now, detail=reason)]
    return record.model_copy(
        update={"state": state, "reason": reason, "finished_at": now, "steps": steps}
    )


def fail(record: DeploymentRecord, error: ConveyorError, now: float) -> DeploymentRecord:
    """Return the record failed with ``error``."""
    failed = finish(record, DeploymentState.FAILED, error.message, now)
    return failed.model_copy(update={"error": ErrorInfo(**error.to_dict())})


def rollback_budget(record: DeploymentRecord) -> float:
    """Seconds a rollback and its watch may take: the job's own timeout, counted afresh."""
    timeout = record.job.get("timeout_seconds")
    return float(timeout) if isinstance(timeout, int | float) and timeout > 0 else 1800.0


def to_rollback(record: DeploymentRecord, now: float, **changes: object) -> Transition:
    """Hand a deployment over to the rollback step with a retry budget and deadline of its own.

    Rolling back is how a failed deployment stops hurting: it must not inherit the deadline
    that just passed, or its first throttled call would end it with the service left on the
    broken revision.
    """
    update = {"attempt": 0, "deadline": now + rollback_budget(record), **changes}
    return Transition(record.model_copy(update=update), Step.ROLLBACK)
