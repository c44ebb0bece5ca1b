"""The job kinds, in one table: what each kind's job is, and what crosses the queue for it.

Producers read this table to enqueue and plan a job, and workers read it to validate one again;
the worker's half (its flow, and what a give-up or a cancel means for it) is
:mod:`worker.kinds`. Adding a kind adds one entry here and one there, beside its job model
and its flow (docs/architecture.md, "Where to add things").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from producers.contract.enums import JobKind, Step
from producers.contract.fargate_spec import FargateServiceJob
from producers.contract.fargate_spec import redacted as redacted_fargate
from producers.contract.jobs import UpdateServiceJob, load_update_job

# Every job a producer may enqueue: one model per kind, each with ``kind: Literal[JobKind.X]``.
Job = UpdateServiceJob | FargateServiceJob


@dataclass(frozen=True, slots=True)
class KindSpec:
    """What Conveyor's two sides agree on about one kind of job."""

    kind: JobKind
    # The job's model; ``load`` validates a JSON payload as it (raises ValidationError).
    model: type[BaseModel]
    load: Callable[[Any], Job]
    # The step its deployments start at, and every step they may take.
    first_step: Step
    steps: frozenset[Step]
    # The job as JSON for its record, which anyone with `conveyor status` reads: environment
    # values and secret references masked. The full job is kept apart while it runs.
    redact: Callable[[Any], dict[str, Any]]
    # Whether the job still holds version rules (``REPO:{RULE}``) to resolve before enqueueing.
    has_rules: Callable[[Any], bool]


def _update_has_rules(job: UpdateServiceJob) -> bool:
    return any(i.unresolved_rule for i in job.images)


def _fargate_has_rules(job: FargateServiceJob) -> bool:
    return any(c.unresolved_rule for c in job.containers)


def _redact_update(job: UpdateServiceJob) -> dict[str, Any]:
    return job.redacted()


def _load_fargate(payload: Any) -> FargateServiceJob:
    return FargateServiceJob.model_validate(payload)


JOB_KINDS: Mapping[JobKind, KindSpec] = {
    JobKind.UPDATE_EXISTING: KindSpec(
        kind=JobKind.UPDATE_EXISTING,
        model=UpdateServiceJob,
        load=load_update_job,
        first_step=Step.RESOLVE,
        steps=frozenset(
            {
                Step.RESOLVE,
                Step.REGISTER,
                Step.RUN_TASK,
                Step.WATCH_TASK,
                Step.UPDATE,
                Step.WATCH,
                Step.ROLLBACK,
                Step.WATCH_ROLLBACK,
            }
        ),
        redact=_redact_update,
        has_rules=_update_has_rules,
    ),
    JobKind.CREATE_FARGATE: KindSpec(
        kind=JobKind.CREATE_FARGATE,
        model=FargateServiceJob,
        load=_load_fargate,
        first_step=Step.VALIDATE,
        steps=frozenset(
            {Step.VALIDATE, Step.APPLY, Step.DELETE_STALE, Step.WATCH_STACK, Step.WATCH_SERVICE}
        ),
        redact=redacted_fargate,
        has_rules=_fargate_has_rules,
    ),
}


def kind_spec(kind: JobKind | str) -> KindSpec:
    """The table entry of ``kind``; ValueError naming the known kinds when there is none."""
    try:
        return JOB_KINDS[JobKind(kind)]
    except (ValueError, KeyError):
        known = ", ".join(k.value for k in JOB_KINDS)
        raise ValueError(f"kind: unknown job kind {kind!r}; known kinds: {known}") from None


def load_job(payload: Any) -> Job:
    """Validate a JSON payload as the job of its ``kind`` (update-existing when it names none).

    Raises ValidationError for a bad job, an unknown kind included.
    """
    kind = payload.get("kind") if isinstance(payload, dict) else None
    # Anything that names no kind of this table is checked as the default kind's job, whose
    # validation error then names the field ("kind: Input should be 'update-existing'").
    spec = next((s for k, s in JOB_KINDS.items() if k.value == kind), None)
    return (spec or JOB_KINDS[JobKind.UPDATE_EXISTING]).load(payload)


# The step each kind's deployments start at.
FIRST_STEP: Mapping[JobKind, Step] = {k: s.first_step for k, s in JOB_KINDS.items()}
