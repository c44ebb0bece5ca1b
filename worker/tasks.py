"""Celery tasks: thin wrappers that check the message and run one step.

Like a web view, a task deserializes, delegates and reports; the logic is in
:mod:`worker.steps` and :mod:`worker.services`. A malformed message (wrong arguments, put on the
queue by hand) is logged and dropped: it never crashes the worker and never reaches AWS.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from pydantic import ValidationError

from producers.contract.gates import Gate
from producers.contract.jobs import describe_validation_error
from producers.contract.kinds import load_job
from producers.contract.messages import (
    AdvanceMessage,
    CleanupMessage,
    GateMessage,
    MalformedMessageError,
    PlanMessage,
    StepMessage,
)
from producers.contract.names import (
    PRIORITY_BACKGROUND,
    STEP_TASKS,
    watch_queue,
)
from producers.contract.records import DeploymentRecord
from producers.contract.store import wall_clock
from worker.app import app, settings, step_context
from worker.aws.gateway import AwsGateway
from worker.domain.errors import ConveyorError, TransientError
from worker.domain.gates import Measurement, failed_query
from worker.gates.prometheus import PrometheusMetrics
from worker.gates.sources import GateSources
from worker.kinds import FlowDeps, worker_kind
from worker.observe import metrics
from worker.runtime import get_runtime
from worker.services.cleanup import InUseView, clean_up_revisions
from worker.services.release_gates import take_measurement
from worker.services.transitions import Transition
from worker.steps import execute, move_release_on, release_store, run_step, settle

log = structlog.get_logger("conveyor.tasks")

M = TypeVar("M")


def _parsed(
    parse: Callable[[tuple[Any, ...], dict[str, Any]], M],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> M | None:
    """The message ``parse`` reads from a task's arguments, or None when it is malformed: the
    error is logged and the message dropped, so a bad message never crashes the worker."""
    try:
        return parse(args, kwargs)
    except MalformedMessageError as exc:
        log.error(exc.log_event, nargs=len(args), kwargs=list(kwargs))
        return None


def _run_step_message(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        message = StepMessage.parse(args, kwargs)
    except MalformedMessageError as exc:
        log.error(exc.log_event, task=name, nargs=len(args), kwargs=list(kwargs))
        return {"status": "rejected", "reason": exc.reason}
    deployment_id, seq = message.deployment_id, message.seq
    ctx = step_context()
    runtime = get_runtime(settings)

    async def gateway(record: DeploymentRecord) -> AwsGateway:
        role = record.job.get("role_arn")
        return await runtime.pool.gateway(role if isinstance(role, str) else None, now=wall_clock())

    def run(record: DeploymentRecord) -> Transition:
        return runtime.run(execute(ctx, gateway, record, ctx.store.get_job(record.id)))

    def settle_ending(record: DeploymentRecord, transition: Transition) -> Transition:
        return runtime.run(settle(ctx, gateway, record, transition))

    def account_of(record: DeploymentRecord) -> str | None:
        role = record.job.get("role_arn")
        role = role if isinstance(role, str) else None
        account = runtime.run(runtime.pool.account_id(role))
        if role is None:
            ctx.store.publish_self_account(account)
        return account

    return run_step(
        dataclasses.replace(ctx, account_of=account_of), deployment_id, seq, run, settle_ending
    )


def _register(name: str) -> None:
    # Nothing reads a step's Celery result (the record is the outcome): storing one per
    # message would keep a key per step for a day.
    @app.task(name=name, bind=True, ignore_result=True)
    def step(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return _run_step_message(name, args, kwargs)


for _task_name in STEP_TASKS.values():
    _register(_task_name)

# A cleanup that keeps finding the bucket without tokens to spare gives up after this many
# tries, 30 s apart (an hour); the family's next deployment with keep_revisions tries again.
CLEANUP_TRIES = 120


PLAN_TTL = 600


@app.task(name=PlanMessage.TASK, ignore_result=True)
def plan(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Compute the plan of a job a producer left under PLAN_KEY; write it under PLAN_RESULT_KEY."""
    planned = _parsed(PlanMessage.parse, args, kwargs)
    if planned is None:
        return {"status": "rejected"}
    plan_id = planned.plan_id
    ctx = step_context()
    raw = ctx.redis.getdel(ctx.store.keys.plan.format(id=plan_id))
    if raw is None:
        return {"status": "missing"}
    try:
        job = load_job(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        problems = (
            describe_validation_error(exc) if isinstance(exc, ValidationError) else ["not JSON"]
        )
        result: dict[str, Any] = {"error": "invalid job: " + "; ".join(problems)}
    else:
        runtime = get_runtime(settings)

        async def run() -> dict[str, Any]:
            aws = await runtime.pool.gateway(getattr(job, "role_arn", None), now=wall_clock())
            deps = FlowDeps(
                poll_interval=settings.poll_interval,
                clock=wall_clock,
                known_fields=runtime.known_fields,
            )
            return await worker_kind(job.kind).plan(aws, job, deps)

        try:
            result = runtime.run(run())
        except ConveyorError as exc:
            result = {"error": exc.message, "code": exc.code}
    ctx.redis.set(ctx.store.keys.plan_result.format(id=plan_id), json.dumps(result), ex=PLAN_TTL)
    return {"status": "ok"}


@app.task(name=CleanupMessage.TASK, ignore_result=True)
def clean_up(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Deregister a family's old revisions (see worker.services.cleanup)."""
    message = _parsed(CleanupMessage.parse, args, kwargs)
    if message is None:
        return {"status": "rejected"}
    family, keep, role = message.family, message.keep, message.role
    runtime = get_runtime(settings)
    ctx = step_context()

    async def run() -> tuple[list[str], bool]:
        aws = await runtime.pool.gateway(role, now=wall_clock())
        return await clean_up_revisions(
            aws, family, keep, store=ctx.store, view=InUseView(ctx.redis)
        )

    try:
        done, more = runtime.run(run())
    except TransientError as exc:
        log.info("cleanup of old revisions will be tried again", family=family, code=exc.code)
        done, more = [], True
    except ConveyorError as exc:
        # Cleanup is best effort: a permission missing or AWS away is logged, never retried
        # in a loop; the next deployment of the family tries again.
        log.warning(
            "cleanup of old revisions failed", family=family, code=exc.code, error=exc.message
        )
        return {"status": "failed", "code": exc.code}
    if more and message.tries + 1 < CLEANUP_TRIES:
        again = message.again()
        app.send_task(
            again.TASK,
            args=again.args(),
            countdown=30,
            queue=watch_queue(settings.queue),
            priority=PRIORITY_BACKGROUND,
        )
    return {"status": "ok", "deregistered": len(done), "more": more}


def _measure(gate: Gate, role: str | None, prometheus_url: str | None) -> Measurement:
    """One measurement of ``gate`` through its own source, with the release's identity."""
    runtime = get_runtime(settings)

    async def run() -> Measurement:
        cloudwatch = None
        if gate.source != "prometheus":
            try:
                cloudwatch = (await runtime.pool.gateway(role, now=wall_clock())).gate_metrics
            except ConveyorError as exc:
                # No client for the identity (a role that cannot be assumed): inconclusive.
                return failed_query(exc.message)
        sources = GateSources(prometheus=PrometheusMetrics(prometheus_url), cloudwatch=cloudwatch)
        return await sources.measure(gate)

    measurement = runtime.run(run())
    result = (
        "error"
        if measurement.error is not None
        else ("value" if measurement.conclusive else "no_data")
    )
    metrics.GATE_MEASUREMENTS.labels(gate.source, result).inc()
    return measurement


@app.task(name=GateMessage.TASK, ignore_result=True)
def measure_gate(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Take one measurement of a release wave's metric gate (worker.services.release_gates)."""
    message = _parsed(GateMessage.parse, args, kwargs)
    if message is None:
        return {"status": "rejected"}
    ctx = step_context()
    releases = release_store(ctx)
    return take_measurement(
        message,
        releases=releases,
        measure=lambda gate, role: _measure(gate, role, ctx.prometheus_url),
        sender=ctx.sender,
        clock=ctx.clock,
        queue=ctx.queue,
        on_verdict=lambda _source, verdict: metrics.GATE_VERDICTS.labels(verdict).inc(),
    )


@app.task(name=AdvanceMessage.TASK, ignore_result=True)
def advance_release(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Move a release on now, at a producer's request: it recorded an answer to the wave the
    release waits before, or a cancel request.

    Producers never advance a release themselves. The message only makes the change take
    effect at once: the sweeper advances every active release, so a message lost on the way
    delays the advance by a sweep, and a copy changes nothing (an advance is safe to repeat).
    """
    advance = _parsed(AdvanceMessage.parse, args, kwargs)
    if advance is None:
        return {"status": "rejected"}
    # Redis and the queue only: no event loop or AWS clients needed.
    release = move_release_on(step_context(runtime=False), advance.release_id)
    if release is None:  # gone, or the advance failed (logged): the next sweep tries again
        return {"status": "not advanced"}
    return {"status": release.state.value, "wave": release.wave}
