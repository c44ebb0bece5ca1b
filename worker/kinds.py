"""The worker's half of the job kinds: each kind's flow, and what its failures and cancels mean.

The shared half (model, redaction, first step) is :data:`producers.contract.kinds.JOB_KINDS`.
:mod:`worker.steps` and :mod:`worker.tasks` look a kind up here and never switch on it, so a
new kind is one entry in each table beside its job model and its flow
(docs/architecture.md, "Where to add things").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
import structlog

from producers.contract.enums import DeploymentState, JobKind, Step
from producers.contract.fargate_spec import FargateServiceJob
from producers.contract.jobs import UpdateServiceJob
from producers.contract.kinds import JOB_KINDS, KindSpec
from producers.contract.records import DeploymentRecord, ErrorInfo
from worker.aws.gateway import AwsGateway
from worker.domain.errors import InvalidJobError
from worker.domain.pre_deploy import TASK_DEADLINE_SLACK, task_deadline
from worker.domain.supersede import covers_changes, covers_whole_state
from worker.gates.prometheus import PrometheusMetrics
from worker.gates.sources import GateSources
from worker.services.fargate_flow import FargateFlow
from worker.services.flow import Flow
from worker.services.plan import plan_update
from worker.services.transitions import Transition, finish, to_rollback
from worker.services.update_flow import AttemptNotes, UpdateFlow
from worker.services.watching import BatchedDescriber

# The give-up policies log as the step does.
log = structlog.get_logger("conveyor.steps")


@dataclass(frozen=True, slots=True)
class FlowDeps:
    """What a flow may take from its process, besides the gateway."""

    poll_interval: float
    clock: Callable[[], float]
    known_fields: frozenset[str] | None = None
    # For rollouts of one scope polled together; None (or batch_watch off): each polls alone.
    redis: redis.Redis | None = None
    batch_watch: bool = False
    notes: AttemptNotes | None = None
    # The Prometheus server of gates that name none (CONVEYOR_PROMETHEUS_URL).
    prometheus_url: str | None = None
    # How long one measurement of a gate may take inside a step.
    measure_timeout: float = 10.0


def record_deadline(record: DeploymentRecord) -> float | None:
    """The record's own deadline: what bounds the retries of most steps of most kinds."""
    return record.deadline


@dataclass(frozen=True, slots=True)
class WorkerKind:
    """How workers run one kind of job."""

    spec: KindSpec
    # The flow that runs the kind's steps against a gateway.
    flow: Callable[[AwsGateway, FlowDeps], Flow]
    # What the job would change, as JSON (`conveyor plan`); read calls only.
    plan: Callable[[AwsGateway, Any, FlowDeps], Awaitable[dict[str, Any]]]
    # The full job must be at hand: the record's redacted copy cannot be run.
    needs_payload: bool
    # Steps that act with their last call: an attempt mark tells a re-run from a first run.
    marked_steps: frozenset[Step]
    # Steps after which nothing of the service has changed: a cancel there simply ends.
    before_change: frozenset[Step]
    # A step that cannot succeed: the hand-over when the service may already have changed
    # (``(record, error, now)``); None ends the deployment failed.
    give_up: Callable[[DeploymentRecord, ErrorInfo, float], Transition | None]
    # A cancel once the service may have changed (``(record, now)``); None runs the step as
    # usual (it is already on its way back).
    cancel: Callable[[DeploymentRecord, float], Transition | None]
    # Whether a ``newer`` job of this kind carries every change an ``older`` one asked for.
    covers: Callable[[Mapping[str, Any], Mapping[str, Any]], bool]
    # Registers task definition revisions of its own: a revision of a deployment that did not
    # succeed is marked discarded, and old revisions are cleaned up after (keep_revisions).
    registers_revisions: bool
    # The deadline that bounds the record's step's retries (None: its attempts alone do).
    deadline: Callable[[DeploymentRecord], float | None] = record_deadline


# --- update-existing ----------------------------------------------------------------------


def _update_flow(aws: AwsGateway, deps: FlowDeps) -> Flow:
    describer = None
    if deps.batch_watch and deps.redis is not None and aws.scope is not None:
        describer = BatchedDescriber(
            aws,
            deps.redis,
            scope=aws.scope,
            freshness=min(deps.poll_interval / 2, 5.0),
            clock=deps.clock,
        )
    return UpdateFlow(
        aws,
        poll_interval=deps.poll_interval,
        known_fields=deps.known_fields,
        clock=deps.clock,
        describer=describer,
        notes=deps.notes,
        metrics=GateSources(
            prometheus=PrometheusMetrics(deps.prometheus_url),
            # Set by the client pool (its CloudWatch client); fakes have none.
            cloudwatch=getattr(aws, "gate_metrics", None),
        ),
        measure_timeout=deps.measure_timeout,
    )


async def _update_plan(aws: AwsGateway, job: UpdateServiceJob, deps: FlowDeps) -> dict[str, Any]:
    return await plan_update(aws, job, deps.known_fields)


# How soon a pre-deploy task's watch looks again after a stretch of failed attempts.
_TASK_WATCH_AFTER_FAILURE = 30.0


def _update_deadline(record: DeploymentRecord) -> float | None:
    """While the pre-deploy task runs, its own timeout counts, not the rollout's (which starts
    afresh once the task passed); RunTask has not started that clock, so attempts bound it."""
    if record.step is Step.RUN_TASK:
        return None
    if record.step is Step.WATCH_TASK:
        return task_deadline(record.pre_deploy)
    return record.deadline


def _task_give_up(record: DeploymentRecord, info: ErrorInfo, now: float) -> Transition | None:
    """A watch of the pre-deploy task that cannot succeed must not leave the task running
    unwatched with its service's queue freed.

    Inside the task's own deadline the watch goes on; past it, it is handed one last run that
    stops the task before anything else (``error`` set: see ``UpdateFlow.watch_task``); a
    watch that cannot even do that within :data:`TASK_DEADLINE_SLACK` more ends failed, naming
    the task that may still run.
    """
    deadline = task_deadline(record.pre_deploy)
    if deadline is None:
        # The record names no task to watch or stop: it cannot go on.
        return None
    if now < deadline:
        log.warning("watching the pre-deploy task failed; watching on", code=info.code)
        progress = record.progress.model_copy(update={"latest_event": info.message})
        watching = record.model_copy(update={"attempt": 0, "progress": progress})
        return Transition(watching, Step.WATCH_TASK, countdown=_TASK_WATCH_AFTER_FAILURE)
    if now < deadline + TASK_DEADLINE_SLACK:
        log.error("watching the pre-deploy task failed; stopping it", code=info.code)
        return Transition(record.model_copy(update={"error": info, "attempt": 0}), Step.WATCH_TASK)
    arn = (record.pre_deploy.task_arn if record.pre_deploy else None) or "(unknown)"
    reason = (
        f"pre-deploy task {arn} could not be followed nor stopped ({info.message}); it may still "
        "be running: stop it with `aws ecs stop-task`; the service was not changed"
    )
    ended = finish(record.model_copy(update={"error": info}), DeploymentState.FAILED, reason, now)
    return Transition(ended, None)


def _update_give_up(record: DeploymentRecord, info: ErrorInfo, now: float) -> Transition | None:
    """``update`` (its UpdateService may have reached ECS) goes on to ``watch``, which adopts
    the deployment if there is one; ``watch`` goes on to the rollback when the job allows it,
    with a budget of its own; ``watch_task`` goes on watching, or stops the task
    (:func:`_task_give_up`)."""
    if record.step is Step.WATCH_TASK:
        return _task_give_up(record, info, now)
    if record.step is Step.UPDATE:
        log.error("update gave up; looking for the deployment it may have started", code=info.code)
        return Transition(record.model_copy(update={"error": info, "attempt": 0}), Step.WATCH)
    if record.step is Step.WATCH and record.job.get("rollback", True):
        log.error("watching failed; rolling back", code=info.code, error=info.message)
        return to_rollback(record, now, reason=info.message, error=info)
    return None


def _update_cancel(record: DeploymentRecord, now: float) -> Transition | None:
    """Roll back (when the job allows it) and end cancelled after that; with rollback off,
    stop following and leave ECS to finish. A pre-deploy task under way is watched to its end
    (killing a migration half-way is worse), holding the service's queue; the watch then ends
    the deployment cancelled, without UpdateService."""
    if record.step in (Step.ROLLBACK, Step.WATCH_ROLLBACK, Step.WATCH_TASK):
        return None
    if record.job.get("rollback", True):
        return to_rollback(record, now, reason="cancelled while the rollout was under way")
    reason = "cancelled; the rollout goes on in ECS (rollback is off for this job)"
    return Transition(finish(record, DeploymentState.CANCELLED, reason, now), None)


# --- create-Fargate -----------------------------------------------------------------------


def _fargate_flow(aws: AwsGateway, deps: FlowDeps) -> Flow:
    return FargateFlow(aws, poll_interval=deps.poll_interval, clock=deps.clock)


async def _fargate_plan(aws: AwsGateway, job: FargateServiceJob, deps: FlowDeps) -> dict[str, Any]:
    preview = await FargateFlow(aws, poll_interval=deps.poll_interval, clock=deps.clock).preview(
        job
    )
    return {"cluster": job.cluster, "service": job.service, **preview}


def _never_hands_over(record: DeploymentRecord, info: ErrorInfo, now: float) -> Transition | None:
    return None


def _fargate_cancel(record: DeploymentRecord, now: float) -> Transition | None:
    reason = "cancelled; any stack operation already started goes on in CloudFormation"
    return Transition(finish(record, DeploymentState.CANCELLED, reason, now), None)


WORKER_KINDS: Mapping[JobKind, WorkerKind] = {
    JobKind.UPDATE_EXISTING: WorkerKind(
        spec=JOB_KINDS[JobKind.UPDATE_EXISTING],
        flow=_update_flow,
        plan=_update_plan,
        needs_payload=False,
        marked_steps=frozenset({Step.REGISTER, Step.UPDATE}),
        # RunTask has not run yet at RUN_TASK: a cancel there simply ends. A task started
        # (WATCH_TASK) is waited for first (_update_cancel).
        before_change=frozenset({Step.RESOLVE, Step.REGISTER, Step.RUN_TASK}),
        give_up=_update_give_up,
        cancel=_update_cancel,
        covers=covers_changes,
        registers_revisions=True,
        deadline=_update_deadline,
    ),
    JobKind.CREATE_FARGATE: WorkerKind(
        spec=JOB_KINDS[JobKind.CREATE_FARGATE],
        flow=_fargate_flow,
        plan=_fargate_plan,
        needs_payload=True,
        marked_steps=frozenset(),
        before_change=frozenset({Step.VALIDATE}),
        give_up=_never_hands_over,
        cancel=_fargate_cancel,
        covers=covers_whole_state,
        registers_revisions=False,
    ),
}


def worker_kind(kind: JobKind) -> WorkerKind:
    """The worker's entry for ``kind``; InvalidJobError when this worker does not know it."""
    found = WORKER_KINDS.get(kind)
    if found is None:
        raise InvalidJobError(
            f"job kind {kind!r} is not known to this worker (it knows: "
            f"{', '.join(k.value for k in WORKER_KINDS)}); upgrade the workers"
        )
    return found


def covers(
    newer_kind: str, newer: Mapping[str, Any], older_kind: str, older: Mapping[str, Any]
) -> bool:
    """True when the ``newer`` job carries every change the ``older`` job asked for.

    Jobs of two kinds never do; within a kind, its own rule decides
    (:mod:`worker.domain.supersede`).
    """
    if newer_kind != older_kind:
        return False
    kind = next((w for k, w in WORKER_KINDS.items() if k.value == newer_kind), None)
    return kind is not None and kind.covers(newer, older)
