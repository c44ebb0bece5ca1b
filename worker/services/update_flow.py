"""The update-existing flow: resolve, register, update, watch, and roll back on failure.

Each step is one short call sequence against an :class:`EcsGateway`: it takes the deployment
record and returns a :class:`Transition` (the updated record and the next step, if any). Every
step is safe to run twice: register finds the revision it already made by its deployment tag,
update adopts the ECS deployment it already started, and watching only reads. Persisting the
record and dispatching the next step is the caller's job (:mod:`worker.steps`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import structlog
from pydantic import ValidationError

from producers.contract.enums import ErrorCode, JobKind
from producers.contract.gates import Gate
from producers.contract.jobs import (
    MASK,
    UpdateServiceJob,
    describe_validation_error,
    load_update_job,
)
from producers.contract.records import (
    MAX_EVENTS,
    MAX_STOPPED_TASKS,
    DeploymentRecord,
    DeploymentState,
    PreDeployInfo,
    ProgressInfo,
    ServiceEvent,
    Step,
    StepEntry,
    StepStatus,
    StoppedTask,
)
from producers.contract.stack_template import STACK_TAG
from worker.aws.gateway import EcsGateway, family_of, revision_of
from worker.domain.bake_gates import (
    BAKE_GATE_STRATEGIES,
    add_measurement,
    bake_traffic,
    follow,
    next_due,
    start_info,
)
from worker.domain.deployment_config import DEPLOYMENT_OPTIONS, merged_configuration
from worker.domain.errors import (
    ConveyorError,
    InvalidJobError,
    NotFoundError,
    PermanentError,
    TransientError,
    UnknownContainerError,
)
from worker.domain.gates import Measurement, failed_query
from worker.domain.planning import DEPLOYMENT_TAG, check_containers, plan_revision
from worker.domain.pre_deploy import (
    LOG_TAIL_LINES,
    MAX_CLIENT_TOKEN,
    clean_log_line,
    container_names,
    judge_task,
    log_location,
    task_deadline,
    task_overrides,
    task_placement,
)
from worker.domain.strategies import (
    bake_minutes_of,
    deployment_timeout,
    has_lifecycle_hooks,
    is_staged,
    service_strategy,
    staged_progress,
    strategy_times,
)
from worker.domain.tickets import Ticket
from worker.domain.verdict import (
    History,
    Outcome,
    StagedVerdict,
    Verdict,
    judge,
    judge_history,
    judge_service_deployment,
)
from worker.gates.sources import MetricSource
from worker.services.flow import handler_for
from worker.services.revisions import choose_base
from worker.services.transitions import Transition, finish, rollback_budget, to_rollback
from worker.services.watching import BatchedDescriber

log = structlog.get_logger("conveyor.update")

# How far before the job started the deployment history is searched: clocks of workers and
# AWS may disagree by this much. The search matches on our own revision, so a wide window
# cannot mistake another deployment for ours.
_CLOCK_SKEW = 300.0


T = TypeVar("T")


def _required(value: T | None, field: str, step: str) -> T:
    """Return a record field a step depends on; a record without it cannot go on."""
    if value is None:
        raise InvalidJobError(
            f"the deployment record has no {field} at step {step}; it was written by another "
            "version or edited by hand, so the deployment cannot continue"
        )
    return value


def validate_job(
    record: DeploymentRecord, payload: dict[str, Any] | None = None
) -> UpdateServiceJob:
    """Validate the job payload (default: the record's copy) again; workers trust nothing."""
    try:
        job = load_update_job(record.job if payload is None else payload)
    except ValidationError as exc:
        raise InvalidJobError("invalid job: " + "; ".join(describe_validation_error(exc))) from exc
    unresolved = [i.container for i in job.images if i.unresolved_rule]
    if unresolved:
        # Rules are resolved once, at enqueue, so that every service of a release gets the
        # same version: a worker never picks one.
        raise InvalidJobError(
            f"container {unresolved[0]!r}: its version rule was not resolved; enqueue with "
            "`conveyor` or ConveyorClient, which resolve rules against ECR"
        )
    if payload is None and any(
        MASK in (*s.environment.values(), *s.secrets.values()) for s in job.settings
    ):
        # The record holds masked values; without the full job they would be deployed as "***".
        raise InvalidJobError(
            "the job's environment and secret values are no longer kept (the full job expired "
            "or was lost); nothing was changed: enqueue the job again"
        )
    return job


# The attempt note holding the due time of the register token a step booked ahead.
REGISTER_TICKET = "register-ticket"


# The attempt note holding the base a deployment's register step chose, before its record does.
BASE_NOTE = "base"


class AttemptNotes(Protocol):
    """What a step notes about its attempt before it acts, for a re-run to find."""

    def get(self, deployment_id: str, name: str) -> str | None:
        """The note, or None."""
        ...

    def put(self, deployment_id: str, name: str, value: str) -> None:
        """Note ``value`` under ``name``."""
        ...


class MemoryNotes:
    """Notes kept by the flow object itself (tests, and flows run without a store)."""

    def __init__(self) -> None:
        self._notes: dict[tuple[str, str], str] = {}

    def get(self, deployment_id: str, name: str) -> str | None:
        """See AttemptNotes."""
        return self._notes.get((deployment_id, name))

    def put(self, deployment_id: str, name: str, value: str) -> None:
        """See AttemptNotes."""
        self._notes[(deployment_id, name)] = value


class UpdateFlow:
    """Runs one step of an update-existing deployment against a gateway."""

    def __init__(
        self,
        gateway: EcsGateway,
        *,
        poll_interval: float,
        known_fields: frozenset[str] | None = None,
        clock: Callable[[], float],
        describer: BatchedDescriber | None = None,
        notes: AttemptNotes | None = None,
        metrics: MetricSource | None = None,
        measure_timeout: float = 10.0,
    ) -> None:
        self._notes: AttemptNotes = notes if notes is not None else MemoryNotes()
        # Measures the job's bake gate (None: a gate is measured as an error, inconclusive).
        self._metrics = metrics
        # A measurement is cut short past this (an error, inconclusive): a slow source must not
        # take the watch step past its time limit, whose retries would end in a rollback.
        self._measure_timeout = measure_timeout
        self._ecs = gateway
        self._poll = poll_interval
        self._known = known_fields
        self._clock = clock
        self._describer = describer
        self._fetched_at: float | None = None
        self._rerun = True

    async def run(
        self,
        record: DeploymentRecord,
        payload: dict[str, Any] | None = None,
        *,
        rerun: bool = True,
    ) -> Transition:
        """Run the record's current step; ``payload`` is the full job when stored apart.

        ``rerun`` False says this step never acted before: register and update then skip the
        look for what an earlier attempt did (it costs AWS calls, and there is nothing to find).
        """
        self._rerun = rerun
        handlers = {
            Step.RESOLVE: self.resolve,
            Step.REGISTER: self.register,
            Step.RUN_TASK: self.run_task,
            Step.WATCH_TASK: self.watch_task,
            Step.UPDATE: self.update,
            Step.WATCH: self.watch,
            Step.ROLLBACK: self.rollback,
            Step.WATCH_ROLLBACK: self.watch_rollback,
        }
        handler = handler_for(handlers, record, JobKind.UPDATE_EXISTING)
        job = validate_job(record, payload)
        self._fetched_at = None
        transition = await handler(record, job)
        if self._describer is not None and record.step in (Step.WATCH, Step.WATCH_ROLLBACK):
            return self._pace(transition, job)
        return transition

    def _pace(self, transition: Transition, job: UpdateServiceJob) -> Transition:
        """Schedule the next poll from when the data was fetched, and say when it is due.

        A poll served from another deployment's batch uses data up to a few seconds old; counting
        the interval from the data keeps every service sampled once per interval.
        """
        assert self._describer is not None
        arn = transition.record.service_deployment_arn
        if transition.next_step not in (Step.WATCH, Step.WATCH_ROLLBACK):
            self._describer.done(job.cluster, job.service)
            if arn:
                self._describer.deployment_done(arn)
            return transition
        countdown = transition.countdown
        if self._fetched_at is not None and transition.next_step is transition.record.step:
            countdown = max(0.5, min(countdown, self._poll - (self._clock() - self._fetched_at)))
        self._describer.next_poll(job.cluster, job.service, self._clock() + countdown)
        progress = transition.record.progress
        if arn and (
            (progress.strategy and is_staged(progress.strategy)) or progress.lifecycle_stage
        ):
            # Its service deployment (staged, or rolling with lifecycle hooks) is polled on the
            # same beat, batched with the others'.
            self._describer.next_deployment_poll(arn, self._clock() + countdown)
        return Transition(transition.record, transition.next_step, countdown)

    def _log_step(
        self, record: DeploymentRecord, detail: str, status: StepStatus = StepStatus.COMPLETED
    ) -> list[StepEntry]:
        return [
            *record.steps,
            StepEntry(step=record.step, status=status, at=self._clock(), detail=detail),
        ]

    async def resolve(self, record: DeploymentRecord, job: UpdateServiceJob) -> Transition:
        """Read the service: it must exist, be ACTIVE and not be owned by a Conveyor stack.

        The deadline is set here: the job's timeout, or the default of the service's deployment
        strategy (:func:`worker.domain.strategies.deployment_timeout`).
        """
        now = self._clock()
        service = await self._ecs.describe_service(job.cluster, job.service)
        if service is None or service.get("status") != "ACTIVE":
            raise NotFoundError(
                f"service {job.service!r} was not found (or is not ACTIVE) in cluster "
                f"{job.cluster!r}; check --cluster and --service",
                ErrorCode.SERVICE_NOT_FOUND,
            )
        owner = {t.get("key"): t.get("value") for t in service.get("tags", [])}.get(STACK_TAG)
        if owner:
            # The stack would revert an image changed behind its back at its next update.
            raise InvalidJobError(
                f"service {job.service!r} is owned by Conveyor stack {owner!r}; change the image "
                "in its spec and run `conveyor fargate apply -f SPEC` instead"
            )
        current = str(service["taskDefinition"])
        family = job.family or family_of(current)
        detail = f"family {family}; service runs {current.rsplit('/', 1)[-1]}"
        if job.restart:
            detail += "; a restart: no new revision"
        # A blue/green, linear or canary deployment takes its bake times at the least: the
        # timeout follows from them, and one given too short is refused before any change.
        # With the job's own strategy options, the strategy it will run is the merged one (an
        # option ECS would refuse is refused here too, before anything is registered).
        configuration = (
            deployment_configuration(service, job)
            if _DEPLOYMENT_OPTIONS & set(job.service_options())
            else service.get("deploymentConfiguration")
        )
        times = strategy_times(configuration)
        if job.bake_gate is not None and times.strategy not in BAKE_GATE_STRATEGIES:
            raise InvalidJobError(
                f"bake_gate: gate {job.bake_gate.name} is measured while a canary or linear "
                f"deployment bakes with production traffic partly shifted, and service "
                f"{job.service!r} deploys {times.strategy}, which has no such bake; give "
                "--strategy canary or linear, or drop the bake gate; nothing was changed"
            )
        timeout = deployment_timeout(job, times)
        if is_staged(times.strategy):
            detail += f"; a {times.strategy} deployment, timeout {timeout} s"
        log.info("resolved", family=family, current=current, restart=job.restart)
        updated = record.model_copy(
            update={
                "state": DeploymentState.RUNNING,
                "started_at": record.started_at or now,
                "deadline": record.deadline or now + timeout,
                "family": family,
                "previous_task_definition_arn": current,
                "previous_deployment_id": _primary_id(service),
                "steps": self._log_step(record, detail),
                # A restart runs the revision the service runs: nothing to register.
                **({"task_definition_arn": current} if job.restart else {}),
            }
        )
        return Transition(updated, Step.UPDATE if job.restart else Step.REGISTER)

    async def _find_registered(
        self, record: DeploymentRecord, base_arn: str
    ) -> dict[str, Any] | None:
        """Find a revision this deployment registered on an earlier, interrupted attempt.

        Every revision newer than the base is looked at, newest first, however many other
        deployments of the family registered in between; a register whose answer was lost is
        found here instead of registering a second revision.
        """
        family = _required(record.family, "family", "register")
        base_revision = revision_of(base_arn)
        for arn in await self._ecs.newer_task_definition_arns(family, base_revision):
            definition, tags = await self._ecs.describe_task_definition(arn)
            if any(t["key"] == DEPLOYMENT_TAG and t["value"] == record.id for t in tags):
                return definition
        return None

    async def register(self, record: DeploymentRecord, job: UpdateServiceJob) -> Transition:
        """Register the new revision, or find the one an interrupted attempt registered.

        The base (:func:`worker.services.revisions.choose_base`: the family's latest ACTIVE
        revision that no failed deployment discarded, or the service's) is read here (once per
        deployment) and
        noted in the attempt mark before anything is registered: a re-run plans from that same
        base, even when our own revision has since become the family's latest. Every requested
        container must be in it, or the job fails before anything changes.
        """
        # The register bucket (one a second) is the scarce one: wait for its token before
        # reading anything, so a step waiting its turn spends no calls. A token due later is
        # booked as a ticket, noted for the step's next run, which honours it.
        ticket = self._notes.get(record.id, REGISTER_TICKET) or None
        try:
            await self._ecs.reserve("RegisterTaskDefinition", _ticket(ticket))
        except TransientError as limited:
            if limited.ticket is not None and limited.ticket.encode() != ticket:
                self._notes.put(record.id, REGISTER_TICKET, limited.ticket.encode())
            raise
        if ticket:
            # Spent: a later re-run of this step (a 5xx, a crash) queues for a token again.
            self._notes.put(record.id, REGISTER_TICKET, "")
        noted = self._notes.get(record.id, BASE_NOTE) if self._rerun else None
        if noted is None:
            choice = await choose_base(
                self._ecs,
                _required(record.family, "family", "register"),
                base=job.base,
                service_task_definition=record.previous_task_definition_arn,
                pinned=job.base_revision,
            )
            base, tags, why = choice.definition, choice.tags, choice.reason
            check_containers(base, job.containers())
            self._notes.put(record.id, BASE_NOTE, choice.arn)
            self._notes.put(record.id, "base-reason", why)
        else:
            base, tags = await self._ecs.describe_task_definition(noted)
            why = (
                self._notes.get(record.id, "base-reason") or "the base chosen by the first attempt"
            )
        base_arn = str(base["taskDefinitionArn"])
        plan = plan_revision(
            base, tags, job.image_specs(), record.id, self._known, settings=job.settings
        )
        warnings = list(record.warnings)
        if plan.dropped_fields:
            message = (
                "fields unknown to this SDK were not copied to the new revision: "
                + ", ".join(plan.dropped_fields)
                + "; upgrade Conveyor's botocore to carry them over"
            )
            log.warning("fields dropped", fields=list(plan.dropped_fields))
            warnings.append(message)
        existing = await self._find_registered(record, base_arn) if self._rerun else None
        if existing is not None:
            registered, how = existing, "found the revision registered by an earlier attempt"
        else:
            registered = await self._ecs.register_task_definition(plan.payload)
            how = "registered"
        arn = str(registered["taskDefinitionArn"])
        log.info("registered", task_definition=arn, reused=existing is not None)
        images = {c.container: {"before": c.before, "after": c.after} for c in plan.changes}
        detail = f"{how} {arn.rsplit('/', 1)[-1]} from {base_arn.rsplit('/', 1)[-1]}, {why}"
        if plan.setting_changes:
            # Names and what happened to them; never a value.
            detail += "; " + ", ".join(str(c) for c in plan.setting_changes)
        updated = record.model_copy(
            update={
                "base_task_definition_arn": base_arn,
                "base_revision": revision_of(base_arn),
                "task_definition_arn": arn,
                "images": images,
                "warnings": warnings,
                "steps": self._log_step(record, detail),
            }
        )
        return Transition(updated, _after_register(job))

    # --- the pre-deploy task ------------------------------------------------------------

    async def run_task(self, record: DeploymentRecord, job: UpdateServiceJob) -> Transition:
        """Start the pre-deploy task on the new revision, or adopt the one an earlier attempt
        started; nothing of the service changes here.

        The task is placed as the service's tasks are (network configuration, launch type or
        capacity provider strategy, platform version), marked ``startedBy`` the deployment id
        and sent with the deployment id as client token: a re-run finds the task by its mark
        instead of starting a second one, and a repeated request starts none. Its ARN goes to
        the record before it is waited for (:meth:`watch_task`).
        """
        task = _required(job.pre_deploy, "pre-deploy task", "run_task")
        target = _required(record.task_definition_arn, "task definition", "run_task")
        now = self._clock()
        definition, _ = await self._ecs.describe_task_definition(target)
        names = container_names(definition)
        if task.container not in names:
            raise UnknownContainerError(
                f"pre_deploy: container {task.container!r} is not in {_short(target)}; it has: "
                f"{', '.join(names)}"
            )
        found = await self._ecs.task_arns_started_by(job.cluster, record.id) if self._rerun else []
        if found:
            arn, how = found[0], "found the pre-deploy task started by an earlier attempt"
        else:
            service = await self._ecs.describe_service(job.cluster, job.service)
            if service is None:
                raise NotFoundError(
                    f"service {job.service!r} is gone from cluster {job.cluster!r}; nothing was "
                    "changed",
                    ErrorCode.SERVICE_NOT_FOUND,
                )
            try:
                started = await self._ecs.run_task(
                    job.cluster,
                    target,
                    started_by=record.id,
                    client_token=record.id[:MAX_CLIENT_TOKEN],
                    placement=task_placement(service),
                    overrides=task_overrides(task),
                )
            except PermanentError as exc:
                reason = (
                    f"the pre-deploy task did not start: {exc.message}; the service was not changed"
                )
                return Transition(finish(record, DeploymentState.FAILED, reason, now), None)
            arn, how = str(started["taskArn"]), "started the pre-deploy task"
        location = log_location(definition, task.container, arn)
        info = PreDeployInfo(
            container=task.container,
            task_arn=arn,
            started_at=now,
            deadline=now + task.timeout_seconds,
            last_status="PROVISIONING",
            log_group=location[0] if location else None,
            log_stream=location[1] if location else None,
        )
        log.info("pre-deploy task started", task=arn, reused=bool(found))
        detail = f"{how} {_task_id(arn)} on {_short(target)} (container {task.container})"
        updated = record.model_copy(
            update={"pre_deploy": info, "steps": self._log_step(record, detail)}
        )
        return Transition(updated, Step.WATCH_TASK, countdown=min(self._poll, 2.0))

    async def watch_task(self, record: DeploymentRecord, job: UpdateServiceJob) -> Transition:
        """Look at the pre-deploy task once: still going (look again later), passed (go on to
        UPDATE), or failed, killed or timed out (the deployment ends FAILED, the service
        untouched, with the task's exit code and the tail of its log).

        The task is never left running unwatched: past its timeout, a task that cannot be
        looked at is stopped, as is one whose watch was handed back here after giving up
        (``record.error`` set, by ``worker.kinds``). A deployment cancelled meanwhile waits for
        the task to stop and then ends cancelled, without UpdateService.
        """
        task = _required(job.pre_deploy, "pre-deploy task", "watch_task")
        info = _required(record.pre_deploy, "pre-deploy task", "watch_task")
        arn = _required(info.task_arn, "pre-deploy task ARN", "watch_task")
        deadline = _required(info.deadline, "pre-deploy deadline", "watch_task")
        late = task_deadline(info)
        if record.error is not None and late is not None and self._clock() >= late:
            return await self._lost_task(record, job, record.error.message)
        try:
            tasks = await self._ecs.describe_tasks(job.cluster, [arn])
        except ConveyorError as exc:
            if self._clock() < deadline:
                raise
            return await self._lost_task(record, job, exc.message)
        now = self._clock()
        if not tasks:
            if now >= deadline:
                reason = (
                    f"pre-deploy task {_task_id(arn)} was never seen by DescribeTasks within "
                    f"{task.timeout_seconds} s; the service was not changed"
                )
                return Transition(finish(record, DeploymentState.FAILED, reason, now), None)
            return Transition(record, Step.WATCH_TASK, countdown=self._poll)
        verdict = judge_task(tasks[0], task.container)
        info = info.model_copy(update={"last_status": verdict.last_status})
        if not verdict.stopped:
            if now >= deadline:
                how = await self._stop_late_task(job, arn, task.timeout_seconds)
                reason = (
                    f"pre-deploy task {_task_id(arn)} timed out after {task.timeout_seconds} s "
                    f"({verdict.last_status}) and {how}; the service was not changed"
                )
                ended = record.model_copy(update={"pre_deploy": info})
                return Transition(finish(ended, DeploymentState.FAILED, reason, now), None)
            return Transition(
                record.model_copy(update={"pre_deploy": info}), Step.WATCH_TASK, self._poll
            )
        info = info.model_copy(
            update={
                "exit_code": verdict.exit_code,
                "stopped_reason": verdict.reason or None,
                "log_tail": await self._task_log_tail(info),
            }
        )
        record = record.model_copy(update={"pre_deploy": info})
        name = f"pre-deploy task {_task_id(arn)} ({task.container})"
        if verdict.passed and record.cancel_requested_at:
            reason = f"cancelled while its pre-deploy task ran: {name} exited 0; the service "
            reason += "was not changed"
            return Transition(finish(record, DeploymentState.CANCELLED, reason, now), None)
        if verdict.passed:
            detail = f"{name} exited 0"
            log.info("pre-deploy task passed", task=arn)
            # The rollout gets the whole budget it had when the task started.
            spent = now - (info.started_at or now)
            passed = record.model_copy(
                update={
                    "deadline": (record.deadline or now) + spent,
                    "steps": self._log_step(record, detail),
                }
            )
            return Transition(passed, Step.UPDATE)
        if verdict.exit_code is None:
            reason = f"{name} stopped without an exit code"
        else:
            reason = f"{name} exited {verdict.exit_code}"
        if verdict.reason:
            reason += f" ({verdict.reason})"
        reason += "; the service was not changed"
        log.info("pre-deploy task failed", task=arn, exit_code=verdict.exit_code)
        return Transition(finish(record, DeploymentState.FAILED, reason, now), None)

    async def _lost_task(
        self, record: DeploymentRecord, job: UpdateServiceJob, error: str
    ) -> Transition:
        """End a deployment whose task could not be followed past its timeout: the task is
        stopped (or named, when it cannot be) so no migration runs on unwatched."""
        task = _required(job.pre_deploy, "pre-deploy task", "watch_task")
        info = _required(record.pre_deploy, "pre-deploy task", "watch_task")
        arn = _required(info.task_arn, "pre-deploy task ARN", "watch_task")
        how = await self._stop_late_task(job, arn, task.timeout_seconds)
        log.error("the pre-deploy task could not be followed past its timeout", task=arn)
        reason = (
            f"pre-deploy task {_task_id(arn)} could not be followed past its timeout of "
            f"{task.timeout_seconds} s ({error}) and {how}; the service was not changed"
        )
        return Transition(finish(record, DeploymentState.FAILED, reason, self._clock()), None)

    async def _stop_late_task(self, job: UpdateServiceJob, arn: str, seconds: int) -> str:
        """Stop a pre-deploy task that outran its timeout; what became of it, for the reason.
        A task that cannot be stopped does not keep the deployment from ending: it is said."""
        try:
            await self._ecs.stop_task(
                job.cluster, arn, f"Conveyor: pre-deploy task timed out after {seconds} s"
            )
        except ConveyorError as exc:
            log.warning("the late pre-deploy task could not be stopped", code=exc.code)
            return f"could not be stopped ({exc.code}): stop it with `aws ecs stop-task`"
        return "was stopped"

    async def _task_log_tail(self, info: PreDeployInfo) -> list[str]:
        """The newest lines of the task's own log stream; none when it has no awslogs stream
        or the log cannot be read (the exit code decides, the log only explains)."""
        if not info.log_group or not info.log_stream:
            return []
        try:
            lines = await self._ecs.log_tail(info.log_group, info.log_stream, LOG_TAIL_LINES)
        except ConveyorError as exc:
            log.warning("the pre-deploy task's log could not be read", code=exc.code)
            return []
        return [clean_log_line(line) for line in lines]

    async def update(self, record: DeploymentRecord, job: UpdateServiceJob) -> Transition:
        """Point the service at the new revision, unless an earlier attempt already did.

        A re-run adopts the deployment it started: from DescribeServices while it is there,
        else from ECS's deployment history (the breaker may have rolled it back already, or
        someone may have deployed since). Sending UpdateService again would restart a broken
        image ECS had rolled back, or overwrite the other deployment.
        """
        target = _required(record.task_definition_arn, "task definition", "update")
        service = None
        if self._rerun:
            service = await self._ecs.describe_service(job.cluster, job.service)
        # A restart's target is also what the service ran before: only a deployment other than
        # the one running at resolve can be ours.
        adopted = _any_deployment_on(
            service, target, besides=record.previous_deployment_id if job.restart else None
        )
        if adopted is None and self._rerun and _moved_since_resolve(service, record):
            history = await self._history(record, job)
            if history is not None:
                arn = str(history["serviceDeploymentArn"])
                log.info("found our deployment in ECS's history", service_deployment=arn)
                entry = f"found deployment {arn.rsplit('/', 1)[-1]} started by an earlier attempt"
                found = record.model_copy(
                    update={"service_deployment_arn": arn, "steps": self._log_step(record, entry)}
                )
                return Transition(found, Step.WATCH, countdown=min(self._poll, 2.0))
        now = self._clock()
        if adopted is None and record.deadline is not None and now >= record.deadline:
            # Changing the service now would start a rollout nobody has time to follow.
            reason = (
                "timed out before the service was changed: no UpdateService was sent "
                f"(the service still runs {_short(_primary_definition(service))})"
            )
            return Transition(finish(record, DeploymentState.FAILED, reason, now), None)
        if adopted is None:
            configuration = None
            if _DEPLOYMENT_OPTIONS & set(job.service_options()):
                # UpdateService replaces the whole deployment configuration: start from the
                # service's own, so that only what the job names changes.
                if service is None:
                    service = await self._ecs.describe_service(job.cluster, job.service)
                configuration = deployment_configuration(service, job)
            service = await self._ecs.update_service(
                job.cluster,
                job.service,
                target,
                force_new_deployment=job.force_new_deployment,
                desired_count=job.desired_count,
                deployment_configuration=configuration,
            )
            adopted = _deployment_on(service, target)
            how = "updated the service" + _describe_options(job)
        else:
            how = "found the deployment started by an earlier attempt"
        if adopted is None:
            raise NotFoundError(
                f"UpdateService returned no deployment on {target}; the service may be managed "
                "by another deployment controller (CODE_DEPLOY/EXTERNAL), which Conveyor does not "
                "drive",
                ErrorCode.NO_DEPLOYMENT,
            )
        log.info("service updated", ecs_deployment=adopted, reused=how.startswith("found"))
        updated = record.model_copy(
            update={
                "ecs_deployment_id": adopted,
                "steps": self._log_step(record, f"{how}: deployment {adopted}"),
            }
        )
        # The first look comes soon: a broken image fails within seconds on the local AWS.
        return Transition(updated, Step.WATCH, countdown=min(self._poll, 2.0))

    async def _history(
        self, record: DeploymentRecord, job: UpdateServiceJob
    ) -> dict[str, Any] | None:
        """ECS's history entry of our deployment (None when ECS has none, or no history API).

        A permission or support error leaves Conveyor with DescribeServices alone, as before
        the history existed: it is logged, not fatal.
        """
        try:
            if record.service_deployment_arn:
                return await self._ecs.describe_service_deployment(record.service_deployment_arn)
            target = _required(record.task_definition_arn, "task definition", "watch")
            since = (record.started_at or record.created_at) - _CLOCK_SKEW
            return await self._ecs.find_service_deployment(
                job.cluster, job.service, target, created_after=since
            )
        except PermanentError as exc:
            log.warning("ECS's deployment history is not available", code=exc.code)
            return None

    async def _observe(
        self,
        record: DeploymentRecord,
        job: UpdateServiceJob,
        deployment: str,
        target: str,
        deadline: float,
    ) -> tuple[DeploymentRecord, Verdict, dict[str, Any] | None]:
        if self._describer is not None:
            service, self._fetched_at = await self._describer.describe(job.cluster, job.service)
        else:
            service = await self._ecs.describe_service(job.cluster, job.service)
        verdict = judge(service, deployment, target, now=self._clock(), deadline=deadline)
        events = _merge_events(record.events, (service or {}).get("events", []))
        progress = ProgressInfo(
            running=verdict.progress.running,
            desired=verdict.progress.desired,
            pending=verdict.progress.pending,
            failed_tasks=verdict.progress.failed_tasks,
            rollout_state=verdict.progress.rollout_state,
            latest_event=events[0].message if events else None,
        )
        updated = record.model_copy(update={"events": events, "progress": progress})
        return updated, verdict, service

    async def watch(self, record: DeploymentRecord, job: UpdateServiceJob) -> Transition:
        """Poll once; decide succeeded, failed (then roll back) or poll again later.

        DescribeServices decides while our deployment is in it. Once it is not (ECS's rollback
        completed, someone deployed after us, or this watch comes late), ECS's deployment
        history does: a worker that looks late reports what really happened. A service that
        ECS deploys blue/green, linear or canary is decided by its service deployment alone
        (:meth:`_watch_staged`).
        """
        target = _required(record.task_definition_arn, "task definition", "watch")
        deadline = _required(record.deadline, "deadline", "watch")
        before = record.progress
        if record.ecs_deployment_id is None:
            # Handed over by an update step that gave up, or adopted from the history.
            service = await self._ecs.describe_service(job.cluster, job.service)
            found = _any_deployment_on(service, target)
            if found is None:
                if is_staged(service_strategy(service)):
                    return await self._watch_staged(record, job, None, before, service)
                return await self._from_history(record, job, None)
            log.info("adopted the deployment of an earlier update attempt", ecs_deployment=found)
            entry = f"found deployment {found} started by an earlier update attempt"
            record = record.model_copy(
                update={"ecs_deployment_id": found, "steps": self._log_step(record, entry)}
            )
        deployment = _required(record.ecs_deployment_id, "ECS deployment id", "watch")
        record, verdict, service = await self._observe(record, job, deployment, target, deadline)
        if is_staged(service_strategy(service)):
            return await self._watch_staged(record, job, verdict, before, service)
        sent = False
        if has_lifecycle_hooks(service):
            record, sent = await self._follow_rolling_hooks(record, job, before, service)
        return await self._decide(record, job, verdict, soon=sent)

    async def _follow_rolling_hooks(
        self,
        record: DeploymentRecord,
        job: UpdateServiceJob,
        before: ProgressInfo,
        service: dict[str, Any] | None,
    ) -> tuple[DeploymentRecord, bool]:
        """A rolling update whose service has lifecycle hooks: read our service deployment for
        its stage and the PAUSE hook awaiting approval, and send a recorded answer to it; True
        when ECS took one.

        Only what the hooks need is read here: the verdict stays DescribeServices' (and the
        history's). Without access to the service deployments, an answer is left for
        :meth:`_decide` to note as not sent.
        """
        entry, _ = await self._staged_entry(record, job)
        if entry is None:
            return record, False
        hooks = judge_service_deployment(entry)
        record = self._with_stage(record, entry, hooks, before, service)
        if record.approval_requested is None:
            return record, False
        return await self._answer_hook(record, hooks)

    async def _answer_hook(
        self, record: DeploymentRecord, staged: StagedVerdict | None
    ) -> tuple[DeploymentRecord, bool]:
        """Send the answer ``conveyor approve``/``reject`` recorded to the PAUSE hook awaiting
        it (ContinueServiceDeployment), and note who gave it, when, at which stage, and what
        came of it; True when ECS took it.

        Only a hook ECS shows AWAITING_ACTION is answered: an answer that comes after the hook
        timed out, or for a deployment without one, is noted as not sent, never sent blind.
        """
        asked = _required(record.approval_requested, "approval", "watch")
        now = self._clock()
        waiting = staged.waiting if staged is not None else None
        stage = staged.stage if staged is not None else None
        arn = record.service_deployment_arn
        sent = False
        if staged is None:
            outcome = "not sent: a rolling deployment has no lifecycle hook awaiting approval"
        elif staged.outcome is not History.IN_PROGRESS:
            outcome = f"not sent: the deployment had ended ({staged.status})"
        elif waiting is None or not waiting.hook_id or arn is None:
            at = f" (the deployment is at {stage})" if stage else ""
            outcome = f"not sent: no lifecycle hook was awaiting approval{at}"
        else:
            try:
                await self._ecs.continue_service_deployment(arn, waiting.hook_id, asked.action)
            except PermanentError as exc:
                outcome = f"refused by ECS: {exc}"
            else:
                outcome = f"sent to ECS (ContinueServiceDeployment {asked.action})"
                sent = True
        answered = asked.model_copy(
            update={
                "hook_id": waiting.hook_id if waiting is not None else None,
                "stage": stage,
                "acted_at": now,
                "outcome": outcome,
            }
        )
        word = "approved" if asked.action == "CONTINUE" else "rejected"
        detail = f"{word} by {asked.by}" + (f" at {stage}" if stage else "") + f": {outcome}"
        log.info("hook answered", action=asked.action, by=asked.by, stage=stage, sent=sent)
        return (
            record.model_copy(
                update={
                    "approval_requested": None,
                    "approvals": [*record.approvals, answered],
                    "steps": self._log_step(record, detail),
                }
            ),
            sent,
        )

    async def _decide(
        self,
        record: DeploymentRecord,
        job: UpdateServiceJob,
        verdict: Verdict,
        *,
        soon: bool = False,
    ) -> Transition:
        """Act on what DescribeServices says of a rolling update; ``soon``: a hook was just
        answered, so ECS moves on (or rolls back) at once: look again soon."""
        now = self._clock()
        if record.approval_requested is not None:
            record, _ = await self._answer_hook(record, None)
        if verdict.outcome is Outcome.IN_PROGRESS:
            return Transition(
                record, Step.WATCH, countdown=min(self._poll, 2.0) if soon else self._poll
            )
        if verdict.outcome is Outcome.SUCCEEDED:
            return Transition(finish(record, DeploymentState.SUCCEEDED, verdict.reason, now), None)
        if not verdict.ours_visible:
            return await self._from_history(record, job, verdict)
        if not verdict.rolled_back_by_ecs and verdict.primary_deployment_id not in (
            None,
            record.ecs_deployment_id,
        ):
            # Ours failed and another deployment is PRIMARY: ECS's own rollback (after an alarm
            # fired, say, which DescribeServices does not word as the breaker's) or someone
            # else's deployment. Only ECS's history tells which.
            return await self._from_history(record, job, verdict)
        return await self._failed(record, job, verdict.reason, verdict)

    async def _staged_entry(
        self, record: DeploymentRecord, job: UpdateServiceJob
    ) -> tuple[dict[str, Any] | None, str | None]:
        """Our service deployment, and the error code when ECS's service deployments cannot be
        read (a permission or support error: then the entry is None)."""
        try:
            arn = record.service_deployment_arn
            if arn and self._describer is not None:
                found, _ = await self._describer.describe_deployment(arn)
                return found, None
            if arn:
                return await self._ecs.describe_service_deployment(arn), None
            target = _required(record.task_definition_arn, "task definition", "watch")
            since = (record.started_at or record.created_at) - _CLOCK_SKEW
            found = await self._ecs.find_service_deployment(
                job.cluster, job.service, target, created_after=since
            )
        except PermanentError as exc:
            log.warning("ECS's service deployments are not available", code=exc.code)
            return None, exc.code
        return found, None

    def _with_stage(
        self,
        record: DeploymentRecord,
        entry: dict[str, Any],
        staged: StagedVerdict,
        before: ProgressInfo,
        service: dict[str, Any] | None,
    ) -> DeploymentRecord:
        """The record with our service deployment's ARN and its lifecycle stage."""
        configuration = (service or {}).get("deploymentConfiguration")
        seen = record.progress.strategy
        strategy = seen if seen is not None and is_staged(seen) else service_strategy(service)
        progress = staged_progress(
            record.progress,
            before,
            staged,
            strategy=strategy,
            bake_minutes=bake_minutes_of(configuration),
            now=self._clock(),
        )
        arn = str(entry.get("serviceDeploymentArn") or record.service_deployment_arn or "")
        return record.model_copy(
            update={
                "service_deployment_arn": arn or None,
                "service_revision_arn": _revision_of(entry) or record.service_revision_arn,
                "progress": progress,
            }
        )

    async def _watch_staged(
        self,
        record: DeploymentRecord,
        job: UpdateServiceJob,
        verdict: Verdict | None,
        before: ProgressInfo,
        service: dict[str, Any] | None,
    ) -> Transition:
        """Decide a blue/green, linear or canary deployment from its service deployment.

        ECS runs these through lifecycle stages and decides them itself: DescribeServices'
        rolloutState stays IN_PROGRESS for the whole bake, so it is never read as a failure
        here, and only the deadline (which covers the strategy's bakes and hooks) ends a
        deployment ECS has not decided. Without access to ECS's service deployments, the
        rollout is judged from DescribeServices as a rolling update is, with a warning.
        """
        now = self._clock()
        deadline = _required(record.deadline, "deadline", "watch")
        strategy = service_strategy(service)
        record = record.model_copy(
            update={"progress": record.progress.model_copy(update={"strategy": strategy})}
        )
        entry, unavailable = await self._staged_entry(record, job)
        if entry is None:
            if record.ecs_deployment_id is None:
                cause = record.error.message if record.error else "UpdateService failed"
                reason = f"the service was not changed: {cause}"
                return Transition(finish(record, DeploymentState.FAILED, reason, now), None)
            if unavailable is not None and verdict is not None:
                warning = (
                    f"ECS's service deployments cannot be read ({unavailable}): this {strategy} "
                    "deployment is judged from DescribeServices, without its lifecycle stages; "
                    "allow ecs:DescribeServiceDeployments, ecs:ListServiceDeployments and "
                    "ecs:DescribeServiceRevisions"
                )
                if warning not in record.warnings:
                    record = record.model_copy(update={"warnings": [*record.warnings, warning]})
                return await self._decide(record, job, verdict)
            if now >= deadline:
                ours = _short(record.task_definition_arn)
                reason = f"timed out: ECS shows no service deployment of {ours}"
                return await self._failed(record, job, reason, None)
            return Transition(record, Step.WATCH, countdown=self._poll)
        staged = judge_service_deployment(entry)
        record = self._with_stage(record, entry, staged, before, service)
        if record.approval_requested is not None:
            record, sent = await self._answer_hook(record, staged)
            if sent:
                # ECS moves on (or rolls back) at once: look again soon.
                return Transition(record, Step.WATCH, countdown=min(self._poll, 2.0))
        record, gate_failure = await self._measure_bake_gate(record, job, staged)
        if staged.outcome is History.IN_PROGRESS:
            if gate_failure is not None:
                # ECS cannot be held at its bake: Conveyor stops it, and ECS rolls back.
                return await self._failed(record, job, gate_failure, None)
            if now >= deadline:
                return await self._failed(record, job, f"timed out: {staged.reason}", None)
            return Transition(record, Step.WATCH, countdown=self._gate_countdown(record, job))
        if staged.outcome is History.SUCCEEDED:
            return Transition(finish(record, DeploymentState.SUCCEEDED, staged.reason, now), None)
        if staged.outcome in (History.ROLLED_BACK, History.ROLLING_BACK):
            record = record.model_copy(
                update={
                    "rolled_back_by_ecs": True,
                    "reason": staged.reason,
                    "rollback_deployment_id": None,
                    "rollback_task_definition_arn": record.previous_task_definition_arn,
                    "stopped_tasks": await self._stopped_tasks(job, record.task_definition_arn),
                }
            )
            if staged.outcome is History.ROLLED_BACK:
                return Transition(
                    finish(record, DeploymentState.ROLLED_BACK, staged.reason, now), None
                )
            record = record.model_copy(
                update={"deadline": now + rollback_budget(record), "attempt": 0}
            )
            return Transition(record, Step.WATCH_ROLLBACK, countdown=self._poll)
        reason = staged.reason
        if staged.outcome is History.STOPPED:
            reason += "; not rolled back: a stopped deployment is not Conveyor's to undo"
        return Transition(finish(record, DeploymentState.FAILED, reason, now), None)

    async def _measure_bake_gate(
        self, record: DeploymentRecord, job: UpdateServiceJob, staged: StagedVerdict
    ) -> tuple[DeploymentRecord, str | None]:
        """Follow the job's bake gate through the bake windows and take a measurement when one
        is due; returns the record, and the reason to roll back when the gate failed.

        The measurement goes onto the record this step returns, so it counts only once the
        record is committed (fenced by its seq): a re-run from the same record takes the one
        measurement that was lost, never a second one (:mod:`worker.domain.bake_gates`).
        """
        gate = job.bake_gate
        if gate is None:
            return record, None
        now = self._clock()
        traffic = bake_traffic(record.progress.strategy, staged)
        if record.bake_gate is None and traffic is None:
            return record, None
        info = follow(gate, record.bake_gate or start_info(gate), traffic, now)
        due = next_due(gate, info)
        failure = None
        if due is not None and now >= due:
            measurement = await self._measure(gate)
            judged = add_measurement(gate, info, measurement, now)
            info = judged.info
            window = info.windows[-1]
            log.info(
                "bake gate measured",
                gate=gate.name,
                window=window.number,
                measurement=measurement.describe(),
                outcome=judged.verdict.outcome.value,
            )
            if judged.fails:
                # The rollback's own step entry carries it.
                failure = window.reason or judged.verdict.reason
            elif window.outcome != "measuring":
                steps = self._log_step(record, window.reason or judged.verdict.reason)
                record = record.model_copy(update={"steps": steps})
        return record.model_copy(update={"bake_gate": info}), failure

    async def _measure(self, gate: Gate) -> Measurement:
        """One measurement of ``gate``, within the flow's measuring time."""
        if self._metrics is None:
            return failed_query("this worker measures no gates")
        try:
            async with asyncio.timeout(self._measure_timeout):
                return await self._metrics.measure(gate)
        except TimeoutError:
            return failed_query(
                f"no answer within {self._measure_timeout:g} s, the time a watch step gives it"
            )

    def _gate_countdown(self, record: DeploymentRecord, job: UpdateServiceJob) -> float:
        """The next look: one poll, or sooner when the bake gate's next measurement is due."""
        gate, info = job.bake_gate, record.bake_gate
        due = None if gate is None or info is None else next_due(gate, info)
        if due is None:
            return self._poll
        return min(self._poll, max(0.5, due - self._clock()))

    async def _from_history(
        self, record: DeploymentRecord, job: UpdateServiceJob, verdict: Verdict | None
    ) -> Transition:
        """Decide from ECS's deployment history; ``verdict`` is what DescribeServices said."""
        now = self._clock()
        entry = await self._history(record, job)
        if entry is None:
            if verdict is None:
                cause = record.error.message if record.error else "UpdateService failed"
                reason = f"the service was not changed: {cause}"
                return Transition(finish(record, DeploymentState.FAILED, reason, now), None)
            return await self._failed(record, job, verdict.reason, verdict)
        arn = str(entry.get("serviceDeploymentArn") or record.service_deployment_arn or "")
        record = record.model_copy(
            update={
                "service_deployment_arn": arn or None,
                "service_revision_arn": _revision_of(entry) or record.service_revision_arn,
            }
        )
        history = judge_history(entry)
        reason = f"{history.reason} (ECS's deployment history)"
        if history.outcome is History.IN_PROGRESS:
            if now >= _required(record.deadline, "deadline", "watch"):
                return await self._failed(record, job, f"timed out: {reason}", verdict)
            return Transition(record, Step.WATCH, countdown=self._poll)
        if history.outcome is History.SUCCEEDED:
            return Transition(finish(record, DeploymentState.SUCCEEDED, reason, now), None)
        if history.outcome is History.ROLLED_BACK:
            # ECS rolled back and finished doing so: nothing is left to follow or undo.
            record = record.model_copy(
                update={
                    "rolled_back_by_ecs": True,
                    "rollback_task_definition_arn": record.previous_task_definition_arn,
                    "stopped_tasks": await self._stopped_tasks(job, record.task_definition_arn),
                }
            )
            return Transition(finish(record, DeploymentState.ROLLED_BACK, reason, now), None)
        if history.outcome is History.ROLLING_BACK:
            record = record.model_copy(
                update={
                    "rolled_back_by_ecs": True,
                    "reason": reason,
                    "rollback_deployment_id": None,
                    "rollback_task_definition_arn": record.previous_task_definition_arn,
                    "deadline": now + rollback_budget(record),
                    "attempt": 0,
                }
            )
            return Transition(record, Step.WATCH_ROLLBACK, countdown=self._poll)
        if history.outcome is History.STOPPED:
            reason += "; not rolled back, since the newer deployment owns the service now"
            return Transition(finish(record, DeploymentState.FAILED, reason, now), None)
        return Transition(finish(record, DeploymentState.FAILED, reason, now), None)

    async def _failed(
        self,
        record: DeploymentRecord,
        job: UpdateServiceJob,
        reason: str,
        verdict: Verdict | None,
    ) -> Transition:
        """Our deployment failed while visible (or the history could not say): roll back."""
        now = self._clock()
        target = record.task_definition_arn
        record = record.model_copy(update={"stopped_tasks": await self._stopped_tasks(job, target)})
        if record.stopped_tasks and record.stopped_tasks[0].stopped_reason:
            reason += f" (task stopped: {record.stopped_tasks[0].stopped_reason})"
        record = record.model_copy(
            update={"reason": reason, "steps": self._log_step(record, reason, StepStatus.FAILED)}
        )
        if verdict is not None and verdict.rolled_back_by_ecs:
            # ECS is rolling back on its own: follow it, whatever the job says of rollbacks.
            record = record.model_copy(
                update={
                    "rolled_back_by_ecs": True,
                    "rollback_deployment_id": verdict.primary_deployment_id,
                    "rollback_task_definition_arn": verdict.primary_task_definition,
                    "deadline": now + rollback_budget(record),
                }
            )
            return Transition(record, Step.WATCH_ROLLBACK, countdown=min(self._poll, 2.0))
        if not job.rollback:
            return Transition(finish(record, DeploymentState.FAILED, reason, now), None)
        if verdict is not None and verdict.primary_deployment_id not in (
            None,
            record.ecs_deployment_id,
        ):
            # Someone else deployed after us: rolling back would undo their newer deployment.
            reason += "; not rolled back, since a newer deployment owns the service now"
            return Transition(finish(record, DeploymentState.FAILED, reason, now), None)
        return to_rollback(record, now)

    async def rollback(self, record: DeploymentRecord, job: UpdateServiceJob) -> Transition:
        """Point the service back at the revision it ran before, unless that is not ours to do.

        The service is changed only while its PRIMARY deployment is still ours (our deployment
        id, or our revision). A PRIMARY already on the previous revision is adopted (ECS or an
        earlier attempt rolled back). Anything else is someone else's newer deployment: rolling
        back would undo it, so the deployment ends and the service is left alone.

        A blue/green, linear or canary deployment is rolled back by ECS alone
        (:meth:`_rollback_staged`): never by a second UpdateService.
        """
        previous = _required(record.previous_task_definition_arn, "previous revision", "rollback")
        ours = record.task_definition_arn
        service = await self._ecs.describe_service(job.cluster, job.service)
        if is_staged(service_strategy(service)) or is_staged(record.progress.strategy):
            return await self._rollback_staged(record, job, service)
        primary = _primary(service)
        now = self._clock()
        failure = record.reason or "the deployment failed"
        if primary is None:
            raise NotFoundError(
                f"service {job.service!r} has no PRIMARY deployment to roll back "
                "(deleted, or not on the ECS deployment controller)",
                ErrorCode.NO_DEPLOYMENT,
            )
        primary_id, primary_td = str(primary.get("id")), primary.get("taskDefinition")
        if primary_td == previous and primary_id != record.ecs_deployment_id:
            adopted: str | None = primary_id
        elif primary_id == record.ecs_deployment_id or (ours is not None and primary_td == ours):
            if await self._stop(record, job, primary):
                stopped = record.model_copy(
                    update={
                        # Conveyor's rollback, carried out by ECS: not the breaker's.
                        "ecs_stop_requested": True,
                        "rollback_deployment_id": None,
                        "rollback_task_definition_arn": previous,
                        "steps": self._log_step(record, "asked ECS to stop and roll back"),
                    }
                )
                return Transition(stopped, Step.WATCH_ROLLBACK, countdown=min(self._poll, 2.0))
            service = await self._ecs.update_service(
                job.cluster, job.service, previous, force_new_deployment=False
            )
            adopted = _deployment_on(service, previous)
        else:
            reason = (
                f"{failure}; superseded by deployment {primary_id} on {_short(primary_td)}, made "
                "outside this job: not rolled back, the service was left alone"
            )
            state = (
                DeploymentState.CANCELLED if record.cancel_requested_at else DeploymentState.FAILED
            )
            log.warning("not rolling back someone else's deployment", primary=primary_id)
            return Transition(finish(record, state, reason, now), None)
        if adopted is None:
            raise NotFoundError(f"UpdateService back to {previous} started no deployment")
        record = record.model_copy(
            update={
                "rollback_deployment_id": adopted,
                "rollback_task_definition_arn": previous,
                "steps": self._log_step(record, f"rolling back to {_short(previous)}"),
            }
        )
        return Transition(record, Step.WATCH_ROLLBACK, countdown=min(self._poll, 2.0))

    async def _stop(
        self, record: DeploymentRecord, job: UpdateServiceJob, primary: dict[str, Any]
    ) -> bool:
        """Ask ECS to stop our ongoing deployment and roll back itself; False when it cannot.

        ECS then rolls back to the last revision that completed, as its circuit breaker does.
        A deployment that already completed, or an account without the API, is rolled back by
        UpdateService instead.
        """
        if primary.get("rolloutState") not in (None, "IN_PROGRESS"):
            return False
        entry = await self._history(record, job)
        if entry is None or judge_history(entry).outcome is not History.IN_PROGRESS:
            return False
        arn = str(entry["serviceDeploymentArn"])
        try:
            await self._ecs.stop_service_deployment(arn)
        except PermanentError as exc:
            log.info(
                "ECS would not stop the deployment; rolling back by UpdateService", code=exc.code
            )
            return False
        log.info("asked ECS to stop the deployment and roll back", service_deployment=arn)
        return True

    async def watch_rollback(self, record: DeploymentRecord, job: UpdateServiceJob) -> Transition:
        """Follow the rollback deployment (ours, or ECS's) to its end."""
        target = _required(record.rollback_task_definition_arn, "rollback revision", "rollback")
        deadline = _required(record.deadline, "deadline", "rollback")
        failure = record.reason or "the deployment failed"
        who = "Conveyor"
        if record.rolled_back_by_ecs:
            who = "ECS's circuit breaker"
        elif record.ecs_stop_requested:
            who = "Conveyor (through ECS's StopServiceDeployment)"
        now = self._clock()
        if is_staged(record.progress.strategy):
            return await self._watch_rollback_staged(record, job, failure, deadline)
        if record.rollback_deployment_id is None:
            # ECS rolls back on its own (a stop request, or a breaker seen in the history): its
            # rollback deployment is the PRIMARY that is neither ours nor on our revision.
            service = await self._ecs.describe_service(job.cluster, job.service)
            primary = _primary(service)
            ours = (record.ecs_deployment_id, record.task_definition_arn)
            if (
                primary is None
                or primary.get("id") in ours
                or primary.get("taskDefinition") in ours
            ):
                entry = await self._history(record, job)
                history = None if entry is None else judge_history(entry)
                if history is not None and history.outcome is History.ROLLED_BACK:
                    reason = f"{failure}; {who} rolled the service back ({history.reason})"
                    return Transition(
                        finish(record, DeploymentState.ROLLED_BACK, reason, now), None
                    )
                if history is not None and history.outcome is History.FAILED:
                    reason = f"{failure}; the rollback by {who} did not complete: {history.reason}"
                    return Transition(finish(record, DeploymentState.FAILED, reason, now), None)
                if now >= deadline:
                    reason = f"{failure}; the rollback by {who} did not start in time"
                    return Transition(finish(record, DeploymentState.FAILED, reason, now), None)
                return Transition(record, Step.WATCH_ROLLBACK, countdown=self._poll)
            target = str(primary.get("taskDefinition"))
            record = record.model_copy(
                update={
                    "rollback_deployment_id": str(primary.get("id")),
                    "rollback_task_definition_arn": target,
                }
            )
        deployment = _required(record.rollback_deployment_id, "rollback deployment", "rollback")
        record, verdict, _ = await self._observe(record, job, deployment, target, deadline)
        now = self._clock()
        if verdict.outcome is Outcome.IN_PROGRESS:
            return Transition(record, Step.WATCH_ROLLBACK, countdown=self._poll)
        if verdict.outcome is Outcome.SUCCEEDED:
            reason = f"{failure}; {who} rolled the service back to {target}"
            return Transition(finish(record, DeploymentState.ROLLED_BACK, reason, now), None)
        reason = f"{failure}; the rollback by {who} did not complete either: {verdict.reason}"
        return Transition(finish(record, DeploymentState.FAILED, reason, now), None)

    async def _rollback_staged(
        self, record: DeploymentRecord, job: UpdateServiceJob, service: dict[str, Any] | None
    ) -> Transition:
        """Roll a blue/green, linear or canary deployment back through ECS itself.

        Only StopServiceDeployment(ROLLBACK) on our own service deployment, and only while it
        is under way: ECS then shifts traffic back to the revision that served it. A deployment
        ECS already ended is reported as it ended (a STOPPED one was replaced or aborted: not
        ours to undo), and someone else's newer deployment is never touched, since only ours is
        ever stopped.
        """
        now = self._clock()
        deadline = _required(record.deadline, "deadline", "rollback")
        previous = _required(record.previous_task_definition_arn, "previous revision", "rollback")
        failure = record.reason or "the deployment failed"
        seen = record.progress.strategy
        strategy = seen if seen is not None and is_staged(seen) else service_strategy(service)
        record = record.model_copy(
            update={"progress": record.progress.model_copy(update={"strategy": strategy})}
        )
        left = DeploymentState.CANCELLED if record.cancel_requested_at else DeploymentState.FAILED
        entry, unavailable = await self._staged_entry(record, job)
        if entry is None:
            if unavailable is not None:
                reason = (
                    f"{failure}; not rolled back: Conveyor rolls a {strategy} deployment back "
                    "only through ECS's StopServiceDeployment, and ECS's service deployments "
                    f"cannot be read ({unavailable}); the deployment goes on in ECS"
                )
                return Transition(finish(record, left, reason, now), None)
            if now >= deadline:
                reason = (
                    f"{failure}; not rolled back: ECS shows no service deployment of "
                    f"{_short(record.task_definition_arn)} to stop; the service was left as it is"
                )
                return Transition(finish(record, left, reason, now), None)
            return Transition(record, Step.ROLLBACK, countdown=self._poll)
        staged = judge_service_deployment(entry)
        record = self._with_stage(record, entry, staged, record.progress, service)
        arn = _required(record.service_deployment_arn, "service deployment", "rollback")
        if staged.status in ("PENDING", "IN_PROGRESS"):
            try:
                await self._ecs.stop_service_deployment(arn)
            except PermanentError as exc:
                if exc.code == "ConflictException" and now < deadline:
                    # ECS ended it between our look and the stop: look again.
                    return Transition(record, Step.ROLLBACK, countdown=min(self._poll, 2.0))
                reason = (
                    f"{failure}; ECS would not stop the {strategy} deployment ({exc.code}): it "
                    "goes on in ECS, and the service was left as it is"
                )
                return Transition(finish(record, left, reason, now), None)
            log.info("asked ECS to stop the deployment and roll back", service_deployment=arn)
            stopped = record.model_copy(
                update={
                    "ecs_stop_requested": True,
                    "rollback_deployment_id": None,
                    "rollback_task_definition_arn": previous,
                    "steps": self._log_step(
                        record, f"asked ECS to stop the {strategy} deployment and roll back"
                    ),
                }
            )
            return Transition(stopped, Step.WATCH_ROLLBACK, countdown=min(self._poll, 2.0))
        if staged.outcome in (History.IN_PROGRESS, History.ROLLING_BACK):
            # ECS is already rolling back (its alarms, breaker or hooks), or someone asked it to
            # stop: follow that to its end.
            following = record.model_copy(
                update={
                    "rolled_back_by_ecs": staged.outcome is History.ROLLING_BACK,
                    "rollback_deployment_id": None,
                    "rollback_task_definition_arn": previous,
                }
            )
            return Transition(following, Step.WATCH_ROLLBACK, countdown=self._poll)
        return self._staged_end(record, staged, failure, "ECS")

    def _staged_end(
        self, record: DeploymentRecord, staged: StagedVerdict, failure: str, who: str
    ) -> Transition:
        """How a staged deployment that ECS has ended ends once Conveyor meant to roll it back."""
        now = self._clock()
        if staged.outcome is History.SUCCEEDED:
            # ECS completed it before it could be stopped: the service runs our revision.
            reason = f"{failure}; but ECS completed the deployment before it could be stopped"
            return Transition(finish(record, DeploymentState.SUCCEEDED, reason, now), None)
        if staged.outcome is History.ROLLED_BACK:
            reason = f"{failure}; {who} rolled the service back ({staged.reason})"
            return Transition(finish(record, DeploymentState.ROLLED_BACK, reason, now), None)
        if staged.outcome is History.STOPPED:
            left = (
                DeploymentState.CANCELLED if record.cancel_requested_at else DeploymentState.FAILED
            )
            reason = (
                f"{failure}; {staged.reason}: not Conveyor's to undo, the service was left as it is"
            )
            return Transition(finish(record, left, reason, now), None)
        reason = f"{failure}; the rollback by {who} did not complete: {staged.reason}"
        return Transition(finish(record, DeploymentState.FAILED, reason, now), None)

    async def _watch_rollback_staged(
        self, record: DeploymentRecord, job: UpdateServiceJob, failure: str, deadline: float
    ) -> Transition:
        """Follow ECS's rollback of a blue/green, linear or canary deployment, by its service
        deployment, to its end (or to the rollback's own deadline)."""
        who = "ECS"
        if record.ecs_stop_requested:
            who = "Conveyor (through ECS's StopServiceDeployment)"
        entry, _ = await self._staged_entry(record, job)
        now = self._clock()
        if entry is None:
            if now >= deadline:
                reason = f"{failure}; the rollback by {who} could not be followed in time"
                return Transition(finish(record, DeploymentState.FAILED, reason, now), None)
            return Transition(record, Step.WATCH_ROLLBACK, countdown=self._poll)
        staged = judge_service_deployment(entry)
        record = self._with_stage(record, entry, staged, record.progress, None)
        if staged.outcome in (History.IN_PROGRESS, History.ROLLING_BACK):
            if now >= deadline:
                reason = (
                    f"{failure}; the rollback by {who} did not complete in time: {staged.reason}"
                )
                return Transition(finish(record, DeploymentState.FAILED, reason, now), None)
            return Transition(record, Step.WATCH_ROLLBACK, countdown=self._poll)
        return self._staged_end(record, staged, failure, who)

    async def _stopped_tasks(self, job: UpdateServiceJob, target: str | None) -> list[StoppedTask]:
        """The stop reasons of our revision's failed tasks: the most useful text on failure."""
        try:
            arns = await self._ecs.list_stopped_task_arns(job.cluster, job.service)
            tasks = await self._ecs.describe_tasks(job.cluster, arns)
        except ConveyorError as exc:
            log.warning("could not read stopped tasks", error=exc.message)
            return []
        found = []
        for task in tasks:
            if task.get("taskDefinitionArn") != target:
                continue
            reasons = [
                f"{c.get('name')}: {c.get('reason') or 'exit code ' + str(c.get('exitCode'))}"
                for c in task.get("containers", [])
                if c.get("reason") or c.get("exitCode") not in (None, 0)
            ]
            found.append(
                StoppedTask(
                    task_arn=str(task.get("taskArn")),
                    task_definition_arn=task.get("taskDefinitionArn"),
                    stop_code=task.get("stopCode"),
                    stopped_reason=task.get("stoppedReason"),
                    container_reasons=reasons,
                )
            )
        return found[:MAX_STOPPED_TASKS]


def _after_register(job: UpdateServiceJob) -> Step:
    """The step after REGISTER: the pre-deploy task when the job has one, else UPDATE."""
    return Step.RUN_TASK if job.pre_deploy is not None else Step.UPDATE


def _task_id(task_arn: str) -> str:
    return task_arn.rsplit("/", 1)[-1]


def _primary(service: dict[str, Any] | None) -> dict[str, Any] | None:
    for deployment in (service or {}).get("deployments", []):
        if deployment.get("status") == "PRIMARY":
            return dict(deployment)
    return None


_DEPLOYMENT_OPTIONS = DEPLOYMENT_OPTIONS


def deployment_configuration(
    service: dict[str, Any] | None, job: UpdateServiceJob
) -> dict[str, Any]:
    """The service's deployment configuration with the job's options applied. Pure.

    Only what the job names changes (worker.domain.deployment_config says how each option
    does); raises InvalidJobError, before anything changed, when the result is one ECS requires
    more of.
    """
    return merged_configuration((service or {}).get("deploymentConfiguration") or {}, job)


def _describe_options(job: UpdateServiceJob) -> str:
    """`` (desired count 4, minimum healthy 50 %, …)`` for the step log; empty without options."""
    labels = {
        "desired_count": "desired count {}",
        "minimum_healthy_percent": "minimum healthy {} %",
        "maximum_percent": "maximum {} %",
        "circuit_breaker": "circuit breaker on",
        "strategy": "strategy {}",
        "bake_minutes": "bake {} min",
        "canary_percent": "canary {:g} %",
        "canary_bake_minutes": "canary bake {} min",
        "linear_step_percent": "linear step {:g} %",
        "linear_step_bake_minutes": "linear step bake {} min",
        "alarms": "alarms {}",
        "circuit_breaker_threshold_type": "breaker threshold type {}",
        "circuit_breaker_threshold": "breaker threshold {}",
    }
    parts = [
        labels[k].format(", ".join(v) if isinstance(v, tuple) else v)
        for k, v in job.service_options().items()
    ]
    return f" ({', '.join(parts)})" if parts else ""


def _deployment_on(service: dict[str, Any] | None, task_definition: str) -> str | None:
    """The id of the service's PRIMARY deployment when it runs ``task_definition``."""
    primary = _primary(service)
    if primary and primary.get("taskDefinition") == task_definition:
        return str(primary["id"])
    return None


def _merge_events(known: list[ServiceEvent], fresh: list[dict[str, Any]]) -> list[ServiceEvent]:
    """Merge newly seen service events into the record's, newest first, without duplicates."""
    seen = {e.id for e in known}
    added = [
        ServiceEvent(
            id=str(e["id"]), created_at=str(e.get("createdAt", "")), message=str(e["message"])
        )
        for e in fresh
        if str(e.get("id")) not in seen and "message" in e
    ]
    return (added + known)[:MAX_EVENTS]


def _any_deployment_on(
    service: dict[str, Any] | None, task_definition: str, *, besides: str | None = None
) -> str | None:
    """The id of any deployment of the service (PRIMARY or ACTIVE) on ``task_definition``,
    other than ``besides``."""
    for deployment in (service or {}).get("deployments", []):
        if deployment.get("taskDefinition") == task_definition and deployment["id"] != besides:
            return str(deployment["id"])
    return None


def _primary_definition(service: dict[str, Any] | None) -> str | None:
    primary = _primary(service)
    return None if primary is None else primary.get("taskDefinition")


def _short(task_definition: str | None) -> str:
    """``family:revision`` of a task definition ARN, for messages."""
    return (task_definition or "an unknown revision").rsplit("/", 1)[-1]


def _primary_id(service: dict[str, Any] | None) -> str | None:
    primary = _primary(service)
    return None if primary is None else str(primary.get("id"))


def _moved_since_resolve(service: dict[str, Any] | None, record: DeploymentRecord) -> bool:
    """Whether anything happened to the service's deployments since the job resolved it.

    Only then can an earlier attempt's deployment be hiding in the history: a breaker
    rollback or someone else's deployment gives the service a new PRIMARY.
    """
    deployments = (service or {}).get("deployments", [])
    return (
        record.previous_deployment_id is None
        or len(deployments) != 1
        or (_primary_id(service) != record.previous_deployment_id)
    )


def _ticket(note: str | None) -> Ticket | None:
    """The register ticket an earlier run noted; a note that does not read is none (the step
    queues for a token again rather than fail)."""
    if not note:
        return None
    try:
        return Ticket.decode(note)
    except ValueError:
        return None


def _revision_of(entry: dict[str, Any]) -> str | None:
    """The ARN of the service revision a service deployment deploys (None: not said)."""
    target = entry.get("targetServiceRevision")
    arn = target.get("arn") if isinstance(target, dict) else None
    return str(arn) if arn else None
