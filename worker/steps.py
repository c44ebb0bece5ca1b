"""Running one step of a deployment: fencing, locking, error policy, persistence, dispatch.

The Celery tasks in :mod:`worker.tasks` only call :func:`run_step`. The order of effects makes
crashes harmless: the step acts (idempotently) on AWS, the record is committed with a new seq
and the time by which the next step must run, and only then is the next step's message sent. A
crash before the commit re-runs the step; a crash between commit and send leaves the deployment
overdue, and :func:`sweep` re-dispatches it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis
import structlog
from celery.exceptions import SoftTimeLimitExceeded
from redis.exceptions import LockError

from producers.contract.dispatch import TaskSender, dispatch
from producers.contract.enums import ErrorCode
from producers.contract.messages import CleanupMessage
from producers.contract.names import (
    PRIORITY_BACKGROUND,
    QUEUE,
    watch_queue,
)
from producers.contract.records import (
    DeploymentRecord,
    DeploymentState,
    ErrorInfo,
    StepEntry,
    StepStatus,
)
from producers.contract.releases import ReleaseRecord
from producers.contract.store import NewerRecordError
from worker.aws.gateway import AwsGateway
from worker.domain.errors import (
    ConveyorError,
    InvalidJobError,
    PermanentError,
    TransientError,
)
from worker.kinds import FlowDeps, covers, worker_kind
from worker.observe import metrics
from worker.release_store import WorkerReleaseStore
from worker.services.revisions import discard, needs_discard
from worker.services.transitions import Transition, fail, finish
from worker.services.update_flow import AttemptNotes
from worker.store import WorkerStore

log = structlog.get_logger("conveyor.steps")


def backoff(attempt: int, base: float = 2.0, cap: float = 60.0) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * 2**attempt))


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a step needs from its process."""

    store: WorkerStore
    redis: redis.Redis
    sender: TaskSender
    clock: Callable[[], float]
    poll_interval: float
    recovery_grace: float
    step_time_limit: float
    max_step_attempts: int
    known_fields: frozenset[str] | None = None
    supersede: bool = True
    queue_wait: float = 2.0
    queue: str = QUEUE
    # The real account of a record's credentials (STS, cached per process and role); None
    # when this process cannot tell, and the producer's key stands.
    account_of: Callable[[DeploymentRecord], str | None] | None = None
    # Poll the watched rollouts of a cluster together (gateways that name their scope).
    batch_watch: bool = True
    # Where attempts keep their notes; default: beside the attempt marks in the store.
    notes: AttemptNotes | None = None
    # The fleet's freeze windows (CONVEYOR_FREEZE_FILE): a release's next wave waits them out.
    freeze_file: str | None = None
    # The Prometheus server of gates that name none (CONVEYOR_PROMETHEUS_URL).
    prometheus_url: str | None = None


def flow_deps(ctx: StepContext) -> FlowDeps:
    """What the flows of this process get from it."""
    return FlowDeps(
        poll_interval=ctx.poll_interval,
        clock=ctx.clock,
        known_fields=ctx.known_fields,
        redis=ctx.redis,
        batch_watch=ctx.batch_watch,
        notes=ctx.notes or (None if ctx.store is None else StoreNotes(ctx.store)),
        prometheus_url=ctx.prometheus_url,
        # A third of the step's time: the step's own calls (and a rate-limit wait) need the rest.
        measure_timeout=max(1.0, ctx.step_time_limit / 3),
    )


def _next_due(ctx: StepContext, now: float, countdown: float) -> float:
    return now + countdown + ctx.recovery_grace


def _stored_payload(payload: dict[str, Any] | None) -> dict[str, Any]:
    """The full job of a create-Fargate deployment; its record holds only a redacted copy."""
    if payload is None:
        raise InvalidJobError(
            "the job payload of this deployment is gone (it is kept only while the deployment "
            "runs); apply the spec again"
        )
    return payload


@dataclass(frozen=True, slots=True)
class StoreNotes:
    """Attempt notes kept in Redis beside the attempt marks (gone when the deployment ends)."""

    store: WorkerStore

    def get(self, deployment_id: str, name: str) -> str | None:
        """See AttemptNotes."""
        return self.store.read_note(deployment_id, name)

    def put(self, deployment_id: str, name: str, value: str) -> None:
        """See AttemptNotes."""
        self.store.note(deployment_id, name, value)


def _rerun(ctx: StepContext, record: DeploymentRecord) -> bool:
    """Whether this step acted before (always True when no store can tell)."""
    if ctx.store is None or record.step not in worker_kind(record.kind).marked_steps:
        return True
    return ctx.store.mark_attempt(record.id, record.step.value)


def _give_up(ctx: StepContext, record: DeploymentRecord, error: ConveyorError) -> Transition:
    """End a step that cannot succeed, unless the service may already have changed.

    A step that may have changed the service hands over instead of failing, so the service is
    never left on a revision nobody follows; the kind says where (``WorkerKind.give_up``).
    """
    now = ctx.clock()
    handed = worker_kind(record.kind).give_up(record, ErrorInfo(**error.to_dict()), now)
    return handed if handed is not None else Transition(fail(record, error, now), None)


async def execute(
    ctx: StepContext,
    gateway: Callable[[DeploymentRecord], Awaitable[AwsGateway]],
    record: DeploymentRecord,
    payload: dict[str, Any] | None = None,
) -> Transition:
    """Run the record's step and apply the error policy; never raises ConveyorError.

    ``gateway`` returns the gateway for the record (its own credentials, or an assumed role);
    ``payload`` is the full job, kept apart from the record (which holds a redacted copy).
    A deployment that ends here without success has its own revision marked discarded
    (:mod:`worker.services.revisions`) before its verdict is committed.
    """
    deadline = _step_deadline(ctx)
    transition = await _execute(ctx, gateway, record, payload, deadline)
    # The gateway comes from the process's pool: asking again for the mark costs no AWS call.
    return await settle(ctx, gateway, record, transition, deadline)


def _step_deadline(ctx: StepContext) -> float:
    """When a step must end: below Celery's soft limit, so a slow step ends as a retryable
    timeout instead of being interrupted at an arbitrary point by the soft limit's signal."""
    return asyncio.get_running_loop().time() + max(1.0, ctx.step_time_limit - 5)


async def settle(
    ctx: StepContext,
    gateway: Callable[[DeploymentRecord], Awaitable[AwsGateway]],
    record: DeploymentRecord,
    transition: Transition,
    deadline: float | None = None,
) -> Transition:
    """Mark the revision of a deployment that ended without success, so nothing builds on it.

    ``record`` is the deployment as the step found it, ``transition`` what the step made of
    it; any other transition is returned as it is. Never raises ConveyorError: see
    :func:`_not_settled`.
    """
    if (
        transition.next_step is not None
        or not worker_kind(record.kind).registers_revisions
        or not needs_discard(transition.record)
    ):
        return transition
    if deadline is None:
        deadline = _step_deadline(ctx)
    try:
        async with asyncio.timeout_at(deadline):
            await discard(await gateway(record), transition.record)
    except (ConveyorError, TimeoutError) as raw:
        exc = (
            raw
            if isinstance(raw, ConveyorError)
            else TransientError("marking the revision discarded took too long")
        )
        return _not_settled(ctx, record, transition, exc)
    return transition


def _not_settled(
    ctx: StepContext, record: DeploymentRecord, transition: Transition, exc: ConveyorError
) -> Transition:
    """The verdict stands even when its revision could not be marked; a transient error with
    attempts left runs the step again instead (it is idempotent, and marks on the way out)."""
    if isinstance(exc, TransientError) and record.attempt + 1 < ctx.max_step_attempts:
        log.warning("could not mark the revision discarded; retrying", code=exc.code)
        countdown = max(backoff(record.attempt), exc.retry_after)
        retry = record.model_copy(update={"attempt": record.attempt + 1})
        return Transition(retry, record.step, countdown)
    log.error("could not mark the revision discarded", code=exc.code, error=exc.message)
    ended = transition.record
    warning = (
        f"the revision {ended.task_definition_arn or 'this deployment registered'} could not be "
        f"marked discarded ({exc.code}): until it is, the family's next deployment may build on "
        "it; grant ecs:TagResource on task definitions (deploy/iam-policy.json) or deregister it"
    )
    return Transition(
        ended.model_copy(update={"warnings": [*ended.warnings, warning]}),
        None,
        transition.countdown,
    )


async def _execute(
    ctx: StepContext,
    gateway: Callable[[DeploymentRecord], Awaitable[AwsGateway]],
    record: DeploymentRecord,
    payload: dict[str, Any] | None,
    deadline: float,
) -> Transition:
    try:
        async with asyncio.timeout_at(deadline):
            aws = await gateway(record)
            kind = worker_kind(record.kind)
            if kind.needs_payload:
                payload = _stored_payload(payload)
            flow = kind.flow(aws, flow_deps(ctx))
            rerun = _rerun(ctx, record)
            try:
                transition = await flow.run(record, payload, rerun=rerun)
            except TransientError as limited:
                if limited.code == "RateLimited" and not rerun and ctx.store is not None:
                    # Register and update act with their last call: a wait for a token means
                    # it was never sent, so the retry is still a first attempt.
                    ctx.store.unmark_attempt(record.id, record.step.value)
                raise
    except (TransientError, TimeoutError, SoftTimeLimitExceeded) as raw:
        exc = (
            raw
            if isinstance(raw, TransientError)
            else TransientError(f"step {record.step} took too long", ErrorCode.STEP_TIMEOUT)
        )
        now = ctx.clock()
        # The kind says which deadline counts at this step (a pre-deploy task has its own).
        give_up_at = worker_kind(record.kind).deadline(record)
        if exc.code == "RateLimited" and (give_up_at is None or now < give_up_at):
            # Waiting for AWS's rate limit is a place in line, not a failure: it uses none of
            # the step's attempts and leaves no entry in the step log, only the progress line.
            progress = record.progress.model_copy(update={"latest_event": exc.message})
            waiting = record.model_copy(update={"progress": progress})
            # A step holding a ticket comes back when its token is due, not a moment later (the
            # token is spent on time or not at all); one in line again is spread out a little.
            countdown = exc.retry_after + (0.0 if exc.ticket is not None else random.random())
            return Transition(waiting, record.step, countdown=countdown)
        if give_up_at is not None and now >= give_up_at:
            log.error("deadline passed while retrying", code=exc.code, error=exc.message)
            timeout = TransientError(f"timed out while retrying: {exc.message}", exc.code)
            return _give_up(ctx, record, timeout)
        if record.attempt + 1 >= ctx.max_step_attempts:
            log.error("step failed too often", code=exc.code, error=exc.message)
            return _give_up(ctx, record, exc)
        # A rate-limit wait is known exactly: come back when the token is due, not sooner.
        delay = max(backoff(record.attempt), exc.retry_after)
        log.warning("step will be retried", code=exc.code, error=exc.message, delay=delay)
        entry = StepEntry(step=record.step, status=StepStatus.RETRYING, at=now, detail=exc.message)
        retry = record.model_copy(
            update={"attempt": record.attempt + 1, "steps": [*record.steps, entry]}
        )
        return Transition(retry, record.step, countdown=delay)
    except PermanentError as exc:
        log.error("step failed", code=exc.code, error=exc.message)
        return _give_up(ctx, record, exc)
    except ConveyorError as exc:
        return _give_up(ctx, record, exc)
    except Exception as exc:
        # A defect, not a verdict: fail this deployment with the cause rather than leave it
        # hanging in the queue; the traceback goes to the log.
        log.exception("step crashed")
        error = ConveyorError(
            f"internal error in step {record.step}: {type(exc).__name__}: {exc}", ErrorCode.INTERNAL
        )
        return _give_up(ctx, record, error)
    # A step that ran is no longer failing: transient failures are counted per bad stretch.
    return Transition(
        transition.record.model_copy(update={"attempt": 0}),
        transition.next_step,
        transition.countdown,
    )


def run_step(
    ctx: StepContext,
    deployment_id: str,
    seq: int,
    run: Callable[[DeploymentRecord], Transition],
    settle_ending: Callable[[DeploymentRecord, Transition], Transition] | None = None,
) -> dict[str, Any]:
    """Run one fenced step of ``deployment_id``; ``run`` executes the flow for a record.

    ``settle_ending`` completes an ending made without running the flow (a cancel): it marks
    the revision the deployment registered (:func:`settle`).

    Returns a small JSON-safe summary for Celery's result backend.
    """
    try:
        record = ctx.store.get(deployment_id)
    except NewerRecordError:
        # Recorded by a newer Conveyor during a rolling upgrade: its workers will run it (the
        # sweeper re-dispatches it if this message was the only one).
        log.warning(
            "record from a newer version; step left to newer workers", deployment_id=deployment_id
        )
        return {"deployment_id": deployment_id, "status": "newer"}
    if record is None:
        log.warning("no record for step", deployment_id=deployment_id)
        return {"deployment_id": deployment_id, "status": "missing"}
    if record.terminal or record.seq != seq:
        return {"deployment_id": deployment_id, "status": "stale", "state": record.state.value}
    structlog.contextvars.bind_contextvars(
        deployment_id=deployment_id,
        cluster=record.cluster,
        service=record.service,
        step=record.step.value,
    )
    lock = ctx.redis.lock(
        ctx.store.keys.step_lock.format(id=deployment_id),
        # Outlives the hard time limit, so a live step never loses it; a dead one frees it soon.
        timeout=ctx.step_time_limit + 20,
        blocking=False,
        thread_local=False,
    )
    if not lock.acquire():
        # Another copy runs this deployment's step. If it is an older copy the sweeper or a
        # cancel has fenced off, its commit will fail: come back shortly rather than drop the
        # current message and wait a whole recovery grace.
        dispatch(ctx.sender, deployment_id, record.step, seq, countdown=2.0, queue=ctx.queue)
        return {"deployment_id": deployment_id, "status": "busy"}
    try:
        try:
            fresh = ctx.store.get(deployment_id)
        except NewerRecordError:
            return {"deployment_id": deployment_id, "status": "newer"}
        if fresh is None or fresh.terminal or fresh.seq != seq:
            return {"deployment_id": deployment_id, "status": "stale"}
        record = fresh
        transition = _on_cancel(ctx, record) if record.cancel_requested_at else None
        if transition is not None and settle_ending is not None:
            transition = settle_ending(record, transition)
        if transition is None and record.state is DeploymentState.QUEUED:
            transition = _held_back_by_release(ctx, record)
        if transition is None and record.state is DeploymentState.QUEUED:
            record = _with_real_account(ctx, record)
            transition = _wait_for_service(ctx, record)
        if transition is None:
            started = time.monotonic()
            transition = run(record)
            metrics.STEP_DURATION.labels(record.kind.value, record.step.value).observe(
                time.monotonic() - started
            )
        if record.cancel_requested_at and transition.next_step is None:
            transition = _as_cancelled(transition)
        now = ctx.clock()
        new = transition.record.model_copy(
            update={
                "seq": seq + 1,
                "step": transition.next_step or transition.record.step,
                "updated_at": now,
            }
        )
        due = None if transition.next_step is None else _next_due(ctx, now, transition.countdown)
        if not ctx.store.commit(new, expected_seq=seq, due=due):
            # The sweeper took this deployment over while the step ran: its copy wins.
            log.warning("record moved on during the step; result discarded")
            return {"deployment_id": deployment_id, "status": "superseded"}
        if transition.next_step is not None:
            dispatch(
                ctx.sender,
                deployment_id,
                transition.next_step,
                seq + 1,
                transition.countdown,
                queue=ctx.queue,
            )
            if _arrived_where_release_moves_on(record, new) or _passed_release_task(record, new):
                # A lost advance is caught up by the sweeper, which reads every deployment of
                # an active release without an outcome.
                move_release_on(ctx, new.release_id or "", ended=new.id)
        else:
            # The terminal commit itself released the service and dropped the full payload.
            log.info("deployment finished", state=new.state.value, reason=new.reason)
            _clean_up_after(ctx, new)
            metrics.DEPLOYMENTS.labels(new.kind.value, new.state.value).inc()
            metrics.TIME_TO_VERDICT.labels(new.kind.value, new.state.value).observe(
                max(0.0, (new.finished_at or now) - new.created_at)
            )
            if new.release_id:
                move_release_on(ctx, new.release_id, ended=new.id)
        return {
            "deployment_id": deployment_id,
            "status": "ok",
            "state": new.state.value,
            "step": new.step.value,
        }
    finally:
        try:
            lock.release()
        except LockError:
            log.warning("step lock expired before the step ended")
        structlog.contextvars.unbind_contextvars("deployment_id", "cluster", "service", "step")


def _on_cancel(ctx: StepContext, record: DeploymentRecord) -> Transition | None:
    """What a cancel request means at the record's step; None: run the step as usual.

    Before the service was changed, the deployment simply ends. After that, the kind says
    (``WorkerKind.cancel``): an update-existing rollout under way is rolled back (when the job
    allows rollback) and ends cancelled after that, with rollback off Conveyor stops following
    and leaves ECS to finish; a create-Fargate stack operation already started goes on in
    CloudFormation.
    """
    now = ctx.clock()
    kind = worker_kind(record.kind)
    if record.state is DeploymentState.QUEUED or record.step in kind.before_change:
        reason = "cancelled before the service was changed"
        return Transition(finish(record, DeploymentState.CANCELLED, reason, now), None)
    return kind.cancel(record, now)


def _as_cancelled(transition: Transition) -> Transition:
    """A cancelled deployment that was rolled back ends as cancelled.

    A success stays a success (it finished before the cancel took effect) and a failure stays
    a failure: a rollback that did not complete must not hide behind "cancelled".
    """
    record = transition.record
    if record.state is not DeploymentState.ROLLED_BACK:
        return transition
    reason = f"cancelled; {(record.reason or '').split('; ', 1)[-1]}"
    return Transition(
        record.model_copy(update={"state": DeploymentState.CANCELLED, "reason": reason}), None
    )


def _with_real_account(ctx: StepContext, record: DeploymentRecord) -> DeploymentRecord:
    """Key a queued deployment under the account it really acts in, before it may start.

    A job without a role was keyed under the account the workers published, or ``self`` if
    none had yet; a job with a role under the role's. Both name the same service when the
    accounts agree, so they must share one queue.
    """
    if ctx.account_of is None:
        return record
    try:
        account = ctx.account_of(record)
    except ConveyorError as exc:
        log.warning("could not tell the account; keeping the producer's key", error=exc.message)
        return record
    if account is None or account == record.account:
        return record
    log.info("keyed under the real account", account=account, was=record.service_key)
    return ctx.store.move_to_account(record, account)


def _wait_for_service(ctx: StepContext, record: DeploymentRecord) -> Transition | None:
    """Serialize deployments per service: None when this one may start now.

    A queued deployment starts only at the head of its service's queue. With ``supersede``, a
    queued deployment ends ``superseded`` when a newer one queued behind it carries every
    change it asked for (:func:`worker.domain.supersede.covers`); a newer job that does not
    cover it waits its turn instead, so no requested change is ever dropped.
    """
    ahead, head, behind = ctx.store.queue_position(record)
    carrier = None
    if ctx.supersede:
        carrier = next(
            (
                newer
                for newer in reversed(behind)
                if covers(newer.kind, newer.job, record.kind, record.job)
            ),
            None,
        )
    if carrier is not None:
        reason = (
            f"superseded by the newer deployment {carrier.id} of {record.service_key}, "
            "which carries every change this one asked for"
        )
        log.info("superseded", by=carrier.id)
        done = finish(record, DeploymentState.SUPERSEDED, reason, ctx.clock())
        return Transition(done.model_copy(update={"superseded_by": carrier.id}), None)
    if ahead == 0:
        return None
    progress = record.progress.model_copy(
        update={"latest_event": f"waiting for deployment {head} of {record.service_key}"}
    )
    return Transition(
        record.model_copy(update={"progress": progress}), record.step, countdown=ctx.queue_wait
    )


def release_store(ctx: StepContext) -> WorkerReleaseStore:
    """The release store the steps, the sweeper and the release tasks share, set up from
    ``ctx``."""
    return WorkerReleaseStore(
        ctx.redis,
        ctx.store,
        ttl_seconds=ctx.store.ttl,
        recovery_grace=ctx.recovery_grace,
        queue=ctx.queue,
        freeze_file=ctx.freeze_file,
    )


def _arrived_where_release_moves_on(before: DeploymentRecord, after: DeploymentRecord) -> bool:
    """Whether this step took a release's deployment to the stage its release moves on at."""
    stage = after.release_move_on_at
    return (
        after.release_id is not None
        and stage is not None
        and after.reached_stage(stage)
        and not before.reached_stage(stage)
    )


def _passed_release_task(before: DeploymentRecord, after: DeploymentRecord) -> bool:
    """Whether this step saw the pre-deploy task of a release's deployment pass: the rest of
    its wave may start now."""
    return after.release_id is not None and after.passed_pre_deploy and not before.passed_pre_deploy


def move_release_on(
    ctx: StepContext, release_id: str, ended: str | None = None
) -> ReleaseRecord | None:
    """Move a release on after its deployment ``ended`` ended (or reached the stage its release
    moves on at), or in a sweep or at a producer's request (None: every deployment without an
    outcome is read). Returns the release, or None when it is gone or could not be advanced:
    a failure is logged, never raised, since the sweeper advances active releases too."""
    try:
        release = release_store(ctx).advance(release_id, ctx.sender, ctx.clock, ended=ended)
    except Exception:  # never fail the step (or the task) here: the next sweep tries again
        log.exception("could not advance the release", release_id=release_id)
        return None
    if release is not None and release.terminal:
        log.info("release finished", release_id=release_id, state=release.state.value)
    return release


def _held_back_by_release(ctx: StepContext, record: DeploymentRecord) -> Transition | None:
    """A queued deployment of a cancelled or finished release ends cancelled, unstarted."""
    if not record.release_id:
        return None
    reason = release_store(ctx).holds_back(record.release_id)
    if reason is None:
        return None
    log.info("not started: its release was cancelled or has ended", release_id=record.release_id)
    return Transition(finish(record, DeploymentState.CANCELLED, reason, ctx.clock()), None)


def _clean_up_after(ctx: StepContext, record: DeploymentRecord) -> None:
    """Send the low-priority cleanup of the family's old revisions, when the job asks for it.

    Best effort: a cleanup lost with a worker happens after the family's next deployment.
    """
    keep = record.job.get("keep_revisions")
    if (
        not worker_kind(record.kind).registers_revisions
        or not isinstance(keep, int)
        or not record.family
    ):
        return
    role = record.job.get("role_arn")
    message = CleanupMessage(record.family, keep, role if isinstance(role, str) else None)
    try:
        ctx.sender.send_task(
            message.TASK,
            args=message.args(),
            queue=watch_queue(ctx.queue),
            priority=PRIORITY_BACKGROUND,
        )
    except Exception:  # the verdict is committed; a cleanup that cannot be sent waits
        log.exception("could not send the cleanup of old revisions", family=record.family)


def sweep(ctx: StepContext, limit: int = 100) -> int:
    """Re-dispatch deployments whose next step is overdue (a worker died). Returns how many."""
    lock = ctx.redis.lock(ctx.store.keys.sweep_lock, timeout=30, blocking=False, thread_local=False)
    if not lock.acquire():
        return 0
    count = 0
    try:
        now = ctx.clock()
        for deployment_id in ctx.store.overdue(now, limit):
            try:
                record = ctx.store.reclaim(deployment_id, now=now, due=_next_due(ctx, now, 0.0))
            except redis.RedisError:
                raise
            except Exception:
                # One deployment that cannot be reclaimed must not stop the sweep at its id.
                log.exception(
                    "could not reclaim an overdue deployment", deployment_id=deployment_id
                )
                continue
            if record is None:
                continue
            log.warning(
                "re-dispatching overdue step",
                deployment_id=deployment_id,
                step=record.step.value,
                seq=record.seq,
            )
            dispatch(ctx.sender, deployment_id, record.step, record.seq, queue=ctx.queue)
            metrics.REDISPATCHED.inc()
            count += 1
        # A worker that died between a deployment's end and its release's advance: catch up.
        for release_id in release_store(ctx).active(limit):
            move_release_on(ctx, release_id)
    finally:
        try:
            lock.release()
        except LockError:
            log.warning("sweeper lock expired before the sweep ended")
    return count
