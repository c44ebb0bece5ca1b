"""The rollout simulator: moves ECS service deployments the way ECS moves them.

moto keeps one PRIMARY deployment per service forever and never starts a task for a service. This
module replaces that part of ECS. Each service that has something to do (a deployment in progress,
a count to reach, a task to replace) is reconciled every tick, like ECS's service scheduler does:

* the PRIMARY deployment launches tasks until it has ``desiredCount`` of them, never exceeding
  ``maximumPercent`` of the desired count across all deployments;
* a launched task is PENDING, then RUNNING, or STOPPED with "Essential container in task exited"
  when one of its images is broken (tag ``fail-…``, see :mod:`localaws.images`);
* tasks of older deployments are drained as long as ``minimumHealthyPercent`` stays satisfied;
* the deployment circuit breaker fails the PRIMARY after ``min(200, max(3, ceil(desired / 2)))``
  failed tasks and, with rollback, starts a new PRIMARY on the last COMPLETED task definition;
* once only the PRIMARY is left with every task RUNNING, and not before ``rollout_seconds`` have
  passed since the deployment started, it is COMPLETED and the service has reached a steady state;
* every CreateService and deployment-starting UpdateService is also a *service deployment* with a
  *service revision* (ECS's deployment history, :mod:`localaws.rollout_history`), which records
  how it ended (SUCCESSFUL, STOPPED, ROLLBACK_SUCCESSFUL, ...) long after DescribeServices forgot
  it; a breaker rollback, or one asked for by StopServiceDeployment, is recorded on the deployment
  that failed, as on ECS, and makes no new service deployment.
* a service whose ``deploymentConfiguration.strategy`` is BLUE_GREEN, LINEAR or CANARY deploys
  stage by stage instead (:mod:`localaws.strategies`): green starts at full count beside blue,
  the service deployment walks ECS's lifecycle stages (hooks, test and production traffic
  shifts, bake), and blue is drained only at CLEAN_UP; a rollback (circuit breaker, CloudWatch
  alarm, hook, StopServiceDeployment) makes blue PRIMARY again while it still runs, so blue never
  stops serving;
* a ROLLING deployment with ``lifecycleHooks`` runs them at PRE_SCALE_UP (before any task starts
  or stops) and POST_SCALE_UP (once the old tasks are drained, before it completes); a hook that
  asks for a rollback rolls back as the circuit breaker does.

Everything here runs under the one lock that also guards moto's state (the caller holds it), and
works on moto's own model objects so that every ECS API (DescribeServices, ListTasks, DescribeTasks,
the ``services_stable`` waiter) sees the same world.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from moto.core.utils import utcnow
from moto.ec2.models import ec2_backends
from moto.utilities.utils import get_partition

from localaws.images import broken_containers
from localaws.rollout_history import (
    BREAKER_REASON,
    STOP_REQUEST_REASON,
    DeploymentConflict,
    DeploymentHistory,
    ServiceDeploymentRecord,
    ServiceRevision,
)
from localaws.rollout_model import (
    Deployment,
    ServiceKey,
    ServiceTask,
    SimService,
    breaker_threshold,
    service_key,
)
from localaws.strategies import (
    HookError,
    LambdaHooks,
    StagedRollout,
    has_hooks,
    is_staged,
    strategy_of,
)

logger = logging.getLogger(__name__)

TICK_SECONDS = 0.2
# A minute of bake, traffic hold or hook timeout lasts this many seconds unless set otherwise.
DEFAULT_MINUTE_SECONDS = 0.1
MAX_EVENTS = 100
# Stopped tasks stay visible (DescribeTasks, ListTasks desiredStatus=STOPPED) but only the newest
# few per service, so that a fleet that keeps failing does not grow memory without bound.
MAX_STOPPED_TASKS_PER_SERVICE = 50

ESSENTIAL_EXIT_CODE = "EssentialContainerExited"
ESSENTIAL_EXIT_REASON = "Essential container in task exited"
SCHEDULER_STOP_CODE = "ServiceSchedulerInitiated"
USER_STOP_CODE = "UserInitiated"


@dataclass(frozen=True)
class Timings:
    """How long each step of a rollout takes, in seconds."""

    task_start: float  # a healthy task: PENDING -> RUNNING
    task_fail: float  # a broken task: PENDING -> STOPPED
    relaunch_delay: float  # after a failed task, before its replacement
    drain: float  # load-balancer deregistration delay before an old task stops
    minimum_rollout: float  # no deployment completes sooner
    # BLUE_GREEN, LINEAR and CANARY: the shortest time a lifecycle stage lasts (hooks and traffic
    # holds can make it longer).
    stage: float = 0.0

    @classmethod
    def for_rollout(cls, rollout_seconds: float) -> Timings:
        """Split a healthy rollout of ``rollout_seconds`` into its steps.

        Start (0.45) plus drain (0.45) ends just before ``rollout_seconds``, so that the old
        deployment disappears in the same tick in which the new one turns COMPLETED: a waiter never
        sees one deployment that is not yet COMPLETED on a healthy rollout.
        """
        s = max(rollout_seconds, 0.0)
        return cls(
            task_start=0.45 * s,
            task_fail=0.3 * s,
            relaunch_delay=0.05 * s,
            drain=0.45 * s,
            minimum_rollout=s,
            stage=0.1 * s,
        )


class Simulator:
    """Reconciles every service with a rollout in progress, every ``tick`` seconds.

    All public methods expect the caller to hold ``lock`` (the request handlers do); the background
    thread takes it for each tick.
    """

    def __init__(
        self,
        lock: threading.RLock,
        timings: Timings,
        tick: float = TICK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        minute_seconds: float = DEFAULT_MINUTE_SECONDS,
    ) -> None:
        self.lock = lock
        self.timings = timings
        # Seconds of simulated time per minute of a bake, a traffic hold or a hook timeout.
        self.minute_seconds = minute_seconds
        self._initial_minute_seconds = minute_seconds
        # What Lambda hook functions answer (set through the control API).
        self.lambda_hooks = LambdaHooks()
        self.tick_seconds = tick
        self._initial_tick_seconds = tick
        self._clock = clock
        self._services: dict[ServiceKey, SimService] = {}
        self._active: dict[ServiceKey, SimService] = {}
        self.history = DeploymentHistory()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background ticking thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="localaws-simulator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def reset(self) -> None:
        """Forget every service and its history (moto's world is being reset at the same time)
        and the Lambda hooks' answers; the minute and the tick go back to their lengths at
        start."""
        self.minute_seconds = self._initial_minute_seconds
        self.tick_seconds = self._initial_tick_seconds
        self.lambda_hooks.clear()
        self._services.clear()
        self._active.clear()
        self.history.clear()

    def _run(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            with self.lock:
                self.tick()

    # -- called by the ECS request handlers ------------------------------------------------------

    def get(self, backend: Any, service: Any) -> SimService | None:
        """The simulated state of a moto service, if the simulator manages it."""
        sim = self._services.get(service_key(backend, service))
        if sim is not None and sim.service is not service:
            return None
        return sim

    def adopt(self, backend: Any, service: Any) -> SimService:
        """Take over a service that CreateService just made, with its first deployment."""
        sim = SimService(backend, service)
        self._services[sim.key] = sim
        service.deployments = []
        self.start_deployment(sim, service.task_definition)
        return sim

    def start_deployment(self, sim: SimService, task_definition: str) -> Deployment:
        """A new service deployment (CreateService, or UpdateService that needs one).

        It gets a new service revision and a new PRIMARY ECS deployment; the previous ECS
        deployments become ACTIVE, and a previous service deployment that was still ongoing is
        STOPPED (superseded).
        """
        td = sim.backend.describe_task_definition(task_definition)
        now_dt = utcnow()
        revision = ServiceRevision(sim, td, now_dt)
        sources: list[ServiceRevision] = []
        for old in sim.deployments:
            if old.revision is not None and all(old.revision is not r for r in sources):
                sources.append(old.revision)
        record = ServiceDeploymentRecord(
            sim, revision, sources, now_dt, self.history.next_sequence()
        )
        previous = sim.current
        if previous is not None and previous.ongoing:
            previous.finish(
                "STOPPED",
                now_dt,
                f"Service deployment stopped: superseded by service deployment {record.arn}.",
            )
        if is_staged(record.deployment_configuration):
            serving = {id(old.revision) for old in sim.deployments if old.tasks()}
            record.staged = StagedRollout.for_configuration(
                record.deployment_configuration, reconcile=len(serving) > 1
            )
        elif has_hooks(record.deployment_configuration):
            record.rolling_hooks = StagedRollout.for_rolling(record.deployment_configuration)
        deployment = self._begin_deployment(sim, td, revision)
        record.deployment = deployment
        deployment.moves(record)
        sim.current = record
        self.history.add(record)
        return deployment

    def continue_deployment(
        self, record: ServiceDeploymentRecord, hook_id: str, action: str
    ) -> None:
        """ContinueServiceDeployment: answer a PAUSE hook with CONTINUE or ROLLBACK.

        The next tick moves the deployment on, or rolls it back. Raises DeploymentConflict when
        the deployment is not in progress, HookError when the hook is unknown or not awaiting an
        action.
        """
        staged = record.hooked
        if staged is None:
            raise HookError(
                f"The service deployment {record.arn} has no lifecycle hooks: its strategy is "
                f"{strategy_of(record.deployment_configuration)}."
            )
        if record.status != "IN_PROGRESS":
            raise DeploymentConflict(
                f"The service deployment {record.arn} is {record.status}: only a deployment "
                "IN_PROGRESS can be continued."
            )
        staged.resolve(hook_id, action)
        self.touch(record.sim)

    def traffic(self) -> list[dict[str, Any]]:
        """Every service's newest BLUE_GREEN, LINEAR or CANARY deployment: its stage, the traffic
        split between blue and green, the stages it passed and its hooks (the control API)."""
        found: list[dict[str, Any]] = []
        for (account, region, cluster, name), sim in sorted(self._services.items()):
            record = next((r for r in self.history.for_service(sim.key) if r.staged), None)
            if record is None or record.staged is None:
                continue
            found.append(
                {
                    "account": account,
                    "region": region,
                    "cluster": cluster,
                    "service": name,
                    "serviceDeploymentArn": record.arn,
                    "status": record.status,
                    **record.staged.to_json(),
                }
            )
        return found

    def request_rollback(self, record: ServiceDeploymentRecord) -> None:
        """StopServiceDeployment(ROLLBACK): roll back to the last successful service revision.

        The record turns ROLLBACK_REQUESTED now; the next tick starts the rollback. Raises
        DeploymentConflict when the deployment has already completed, or when there is no
        previous revision to roll back to.
        """
        if record.status in ("STOP_REQUESTED", "ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS"):
            return  # ECS goes on with the stop or rollback already under way
        if not record.ongoing:
            raise DeploymentConflict(
                f"The service deployment {record.arn} is {record.status} and cannot be stopped."
            )
        sim = record.sim
        if self._services.get(sim.key) is not sim or sim.last_completed_revision is None:
            raise DeploymentConflict(
                f"The service deployment {record.arn} cannot be rolled back: the service has no "
                "previous successful service revision."
            )
        record.request_rollback(sim.last_completed_revision, utcnow())
        self.touch(sim)

    def _begin_deployment(
        self,
        sim: SimService,
        td: Any,
        revision: ServiceRevision,
        reason: str | None = None,
    ) -> Deployment:
        """Put a new PRIMARY ECS deployment of ``revision`` in front; the others become ACTIVE."""
        service = sim.service
        deployment = Deployment(
            task_definition=td.arn,
            desired_count=service.desired_count,
            launch_type=service.launch_type,
            platform_version=service.platform_version,
            network_configuration=service.network_configuration or None,
            capacity_provider_strategy=getattr(service, "capacity_provider_strategy", None),
            now=self._clock(),
            created_at=utcnow(),
            reason=reason,
            broken=broken_containers(td.container_definitions),
            revision=revision,
        )
        for old in sim.deployments:
            old.status = "ACTIVE"
            old.updated_at = deployment.created_at
        sim.deployments.insert(0, deployment)
        service.task_definition = td.arn
        sim.announced_steady = False
        self.touch(sim)
        return deployment

    def touch(self, sim: SimService) -> None:
        """Reconcile this service again from the next tick on (counts or tasks changed)."""
        self._active[sim.key] = sim

    def forget(self, sim: SimService) -> None:
        """DeleteService: stop every task now and stop managing the service."""
        now_dt = utcnow()
        primary = sim.deployments[0] if sim.deployments else None
        for deployment in sim.deployments:
            for task in deployment.tasks():
                self._stop_for_scaling(sim, deployment, task, primary, now_dt)
            deployment.running_count = deployment.pending_count = 0
        sim.service.running_count = sim.service.pending_count = 0
        self._services.pop(sim.key, None)
        self._active.pop(sim.key, None)
        self.history.drop_service(sim.key)
        sim.current = None

    def stop_task_by_user(self, sim: SimService, task: ServiceTask, reason: str | None) -> None:
        """StopTask on a service's task: it stops now, and the service replaces it."""
        for deployment in sim.deployments:
            if deployment.has_task(task.task_arn):
                self._stop_task(
                    sim,
                    deployment,
                    task,
                    reason=reason or "Task stopped by user",
                    code=USER_STOP_CODE,
                    now_dt=utcnow(),
                )
                self._update_counts(sim)
                self.touch(sim)
                return

    def active_count(self) -> int:
        """How many services the simulator is currently moving (shown by the control API)."""
        return len(self._active)

    # -- the reconcile loop ----------------------------------------------------------------------

    def tick(self) -> None:
        """Reconcile every active service once."""
        now = self._clock()
        for key, sim in list(self._active.items()):
            if sim.service.status != "ACTIVE" or not sim.deployments:
                del self._active[key]
                continue
            try:
                still_active = self._reconcile(sim, now)
            except Exception:
                # One broken service (say, its task definition was deleted) must not stop every
                # other rollout: log it and leave it where it is.
                logger.exception("cannot reconcile service %s", key)
                still_active = False
            if not still_active:
                del self._active[key]

    def _reconcile(self, sim: SimService, now: float) -> bool:
        """Move one service one step; return False once nothing more will happen by itself."""
        service = sim.service
        now_dt = utcnow()
        name = service.name
        # Events are collected oldest first, in the order ECS would report them.
        events: list[str] = []
        target_groups = [
            lb["targetGroupArn"] for lb in service.load_balancers or [] if lb.get("targetGroupArn")
        ]

        became_running, finished = self._advance_tasks(sim, now, now_dt)
        if finished:
            events.append(_stopped_event(name, finished))
        if became_running:
            events.extend(
                f"(service {name}) registered {len(became_running)} targets in "
                f"(target-group {target_group})"
                for target_group in target_groups
            )

        record = sim.current
        if record is not None and record.status == "PENDING":
            record.start(now_dt)
        elif record is not None and record.status == "ROLLBACK_REQUESTED":
            self._roll_back_on_request(sim, record, now_dt, events)

        config = sim.deployment_configuration()
        breaker = config.get("deploymentCircuitBreaker") or {}
        primary = sim.deployments[0]
        if (
            breaker.get("enable")
            and primary.rollout_state == "IN_PROGRESS"
            and primary.failed_tasks >= breaker_threshold(primary.desired_count, breaker)
        ):
            self._trip_breaker(sim, primary, bool(breaker.get("rollback")), now_dt, events)
            primary = sim.deployments[0]
        self._watch_rolling_alarms(sim, primary, now_dt, events)
        staged = self._move_stages(sim, now, now_dt, events)
        gate = self._move_rolling_hooks(sim, now, now_dt, events)
        primary = sim.deployments[0]

        primary.desired_count = int(service.desired_count)
        cancelled: list[ServiceTask] = []
        # A staged deployment (BLUE_GREEN, LINEAR, CANARY) starts green at full count from
        # SCALE_UP on, beside blue, and drains blue only at CLEAN_UP.
        started = (
            self._scale_primary(sim, primary, config, now, now_dt, cancelled, staged is not None)
            if (staged is None or staged.launches_green) and (gate is None or gate.launches_green)
            else []
        )
        # A ROLLING deployment held at PRE_SCALE_UP neither starts nor stops a task.
        deregistered = (
            self._drain_old(sim, primary, config, now, now_dt, cancelled)
            if (staged is None or staged.cleaning_up)
            and (gate is None or gate.launches_green)
            and not _staged_and_failed(primary)
            else []
        )
        if cancelled:
            events.append(_stopped_event(name, cancelled))
        if started:
            events.append(
                f"(service {name}) has started {len(started)} tasks: {_task_list(started)}."
            )
        if deregistered:
            events.extend(
                f"(service {name}) deregistered {len(deregistered)} targets in "
                f"(target-group {target_group})"
                for target_group in target_groups
            )

        self._update_counts(sim)
        hold = (staged is not None and not staged.cleaning_up) or (
            gate is not None and not gate.cleaning_up
        )
        still_active = self._settle(sim, primary, now, now_dt, events, hold=hold)
        add_events(service, events, now_dt)
        return still_active

    def _advance_tasks(
        self, sim: SimService, now: float, now_dt: datetime.datetime
    ) -> tuple[list[ServiceTask], list[ServiceTask]]:
        """Apply every transition that is due: start, fail or finish draining tasks."""
        became_running: list[ServiceTask] = []
        stopped: list[ServiceTask] = []
        primary = sim.deployments[0]
        for deployment in sim.deployments:
            for task in deployment.tasks():
                if not task.is_due(now):
                    continue
                if task.last_status == "PENDING" and task.broken:
                    self._fail_task(sim, deployment, task, now, now_dt)
                    stopped.append(task)
                elif task.last_status == "PENDING":
                    self._set_status(sim, task, "RUNNING")
                    task.started_at = task.pull_stopped_at = now_dt
                    task.health_status = "HEALTHY"
                    for container in task.containers:
                        container["lastStatus"] = "RUNNING"
                        container["healthStatus"] = "HEALTHY"
                    task.settle()
                    became_running.append(task)
                    if _resets_on_healthy_task(sim):
                        deployment.failed_tasks = 0
                elif task.draining:
                    self._stop_for_scaling(sim, deployment, task, primary, now_dt)
                    stopped.append(task)
        return became_running, stopped

    def _fail_task(
        self,
        sim: SimService,
        deployment: Deployment,
        task: ServiceTask,
        now: float,
        now_dt: datetime.datetime,
    ) -> None:
        for container in task.containers:
            if container["name"] in task.broken:
                container["exitCode"] = 1
                container["reason"] = None
            else:
                # The others are stopped by ECS once an essential container has exited.
                container["exitCode"] = 143
        self._stop_task(
            sim,
            deployment,
            task,
            reason=ESSENTIAL_EXIT_REASON,
            code=ESSENTIAL_EXIT_CODE,
            now_dt=now_dt,
        )
        deployment.failed_tasks += 1
        deployment.delay_launches(now + self.timings.relaunch_delay)

    def _trip_breaker(
        self,
        sim: SimService,
        primary: Deployment,
        rollback: bool,
        now_dt: datetime.datetime,
        events: list[str],
    ) -> None:
        name = sim.service.name
        staged_record = primary.record
        if (
            staged_record is not None
            and staged_record.staged is not None
            and staged_record.ongoing
            and primary is staged_record.deployment
        ):
            staged_record.breaker_triggered = True
            events.append(
                f"(service {name}) (deployment {primary.id}) deployment failed: "
                "tasks failed to start."
            )
            if rollback and sim.last_completed_revision is not None:
                self._roll_back(sim, staged_record, BREAKER_REASON, now_dt, events)
            else:
                self._stop_staged(sim, staged_record, BREAKER_REASON, now_dt)
            primary.rollout_state_reason = BREAKER_REASON
            return
        record = primary.record
        ongoing = record is not None and record.ongoing
        self._fail_rolling(
            sim,
            primary,
            rollback=rollback,
            why=BREAKER_REASON,
            failed="ECS deployment circuit breaker: tasks failed to start.",
            detected="tasks failed to start.",
            by="ECS deployment circuit breaker",
            now_dt=now_dt,
            events=events,
        )
        if ongoing and record is not None:
            record.breaker_triggered = True

    def _watch_rolling_alarms(
        self,
        sim: SimService,
        primary: Deployment,
        now_dt: datetime.datetime,
        events: list[str],
    ) -> None:
        """A ROLLING deployment fails when one of its alarms is in ALARM while it runs (its
        bake included), and rolls back if its alarms say so, as the breaker does."""
        record = primary.record
        if (
            record is None
            or record.staged is not None
            or not record.ongoing
            or primary is not record.deployment
            or primary.rollout_state != "IN_PROGRESS"
        ):
            return
        alarms = record.deployment_configuration.get("alarms") or {}
        firing = _firing_alarms(sim.backend, alarms)
        if not firing:
            return
        record.triggered_alarms = firing
        reason = alarm_reason(firing)
        self._fail_rolling(
            sim,
            primary,
            rollback=bool(alarms.get("rollback")),
            why=reason,
            failed=reason,
            detected="alarm detected.",
            by="ECS deployment alarms",
            now_dt=now_dt,
            events=events,
        )

    def _fail_rolling(
        self,
        sim: SimService,
        primary: Deployment,
        *,
        rollback: bool,
        why: str,
        failed: str,
        detected: str,
        by: str,
        now_dt: datetime.datetime,
        events: list[str],
    ) -> None:
        """Fail a ROLLING deployment (``why`` for its service deployment, ``failed`` for its
        rolloutStateReason) and, with ``rollback``, start a new PRIMARY on the last COMPLETED
        task definition; ``by`` names what did it in the rollback's reason."""
        name = sim.service.name
        primary.rollout_state = "FAILED"
        primary.rollout_state_reason = failed
        primary.updated_at = now_dt
        events.append(f"(service {name}) (deployment {primary.id}) deployment failed: {detected}")
        target = sim.last_completed_revision
        can_roll_back = rollback and sim.last_completed is not None and target is not None
        record = primary.record
        if record is not None and record.ongoing:
            if primary is record.rollback_deployment:
                # The rollback itself failed: ECS does not roll back a rollback.
                record.finish("ROLLBACK_FAILED", now_dt, why)
                can_roll_back = False
            elif can_roll_back and target is not None:
                record.begin_rollback(why, target, now_dt)
            else:
                record.finish("STOPPED", now_dt, why)
        if can_roll_back and sim.last_completed is not None and target is not None:
            previous_id, previous_td = sim.last_completed
            reason = f"{by}: rolling back to deploymentId {previous_id}."
            rollback_deployment = self._begin_deployment(
                sim, sim.backend.describe_task_definition(previous_td), target, reason
            )
            if record is not None and record.status == "ROLLBACK_IN_PROGRESS":
                record.rollback_deployment = rollback_deployment
                rollback_deployment.moves(record)
            events.append(
                f"(service {name}) (deployment {primary.id}) rolling back to deployment "
                f"{previous_id} as {rollback_deployment.id}."
            )

    def _roll_back_on_request(
        self,
        sim: SimService,
        record: ServiceDeploymentRecord,
        now_dt: datetime.datetime,
        events: list[str],
    ) -> None:
        """Act on StopServiceDeployment(ROLLBACK): as the breaker's rollback, without a failure."""
        if record.staged is not None:
            self._roll_back(sim, record, STOP_REQUEST_REASON, now_dt, events)
            return
        primary = sim.deployments[0]
        target = record.rollback_revision
        if primary is not record.deployment or target is None or sim.last_completed is None:
            record.finish("ROLLBACK_FAILED", now_dt, "Service deployment could not be rolled back.")
            return
        name = sim.service.name
        previous_id, previous_td = sim.last_completed
        primary.rollout_state = "FAILED"
        primary.rollout_state_reason = f"ECS deployment {primary.id} stopped: {STOP_REQUEST_REASON}"
        primary.updated_at = now_dt
        record.begin_rollback(STOP_REQUEST_REASON, target, now_dt)
        rollback_deployment = self._begin_deployment(
            sim,
            sim.backend.describe_task_definition(previous_td),
            target,
            f"Service deployment rollback: rolling back to deploymentId {previous_id}.",
        )
        record.rollback_deployment = rollback_deployment
        rollback_deployment.moves(record)
        events.append(
            f"(service {name}) (deployment {primary.id}) rolling back to deployment "
            f"{previous_id} as {rollback_deployment.id}."
        )

    def _move_rolling_hooks(
        self, sim: SimService, now: float, now_dt: datetime.datetime, events: list[str]
    ) -> StagedRollout | None:
        """Move a ROLLING deployment with lifecycle hooks through its hook stages, or roll it back
        as the circuit breaker does when a hook asks for it; return its hook stages while they
        still hold the deployment (None once it is past them, or has none)."""
        record = sim.current
        primary = sim.deployments[0]
        gate = record.rolling_hooks if record is not None else None
        if record is None or gate is None or gate.halted:
            return None
        if (
            record.status != "IN_PROGRESS"
            or record.deployment is not primary
            or primary.rollout_state != "IN_PROGRESS"
        ):
            # Failed, stopped or superseded: its hooks are reached no more.
            gate.halt(now_dt, to_blue=False)
            return None
        # SCALE_UP ends once the rolling update itself is over: every new task running and
        # healthy, nothing pending, no old task left.
        rolled = (
            not primary.pending()
            and len(primary.healthy()) >= primary.desired_count
            and not any(d.tasks() for d in sim.deployments[1:])
        )
        reason = gate.advance(
            now,
            now_dt,
            green_ready=rolled,
            minute_seconds=self.minute_seconds,
            stage_seconds=0.0,
            lambdas=self.lambda_hooks,
        )
        if reason is None:
            return gate
        gate.halt(now_dt, to_blue=False)
        self._fail_rolling(
            sim,
            primary,
            rollback=True,
            why=reason,
            failed=reason,
            detected="lifecycle hook.",
            by="ECS lifecycle hook",
            now_dt=now_dt,
            events=events,
        )
        return None

    # -- BLUE_GREEN, LINEAR and CANARY -------------------------------------------------------------

    def _move_stages(
        self, sim: SimService, now: float, now_dt: datetime.datetime, events: list[str]
    ) -> StagedRollout | None:
        """Move the service's staged deployment one stage on, or roll it back when a hook or an
        alarm says so; return its rollout while green is still the deployment in progress."""
        record = sim.current
        primary = sim.deployments[0]
        if (
            record is None
            or record.staged is None
            or record.status != "IN_PROGRESS"
            or record.deployment is not primary
            or primary.rollout_state != "IN_PROGRESS"
        ):
            return None
        staged = record.staged
        ready = not primary.pending() and len(primary.healthy()) >= primary.desired_count
        reason = staged.advance(
            now,
            now_dt,
            green_ready=ready,
            minute_seconds=self.minute_seconds,
            stage_seconds=self.timings.stage,
            lambdas=self.lambda_hooks,
        )
        if reason is None and staged.monitors_alarms:
            alarms = record.deployment_configuration.get("alarms") or {}
            firing = _firing_alarms(sim.backend, alarms)
            if firing:
                record.triggered_alarms = firing
                reason = alarm_reason(firing)
                events.append(
                    f"(service {sim.service.name}) (deployment {primary.id}) deployment failed: "
                    "alarm detected."
                )
                if not alarms.get("rollback"):
                    self._stop_staged(sim, record, reason, now_dt)
                    return None
        if reason is None:
            return staged
        self._roll_back(sim, record, reason, now_dt, events)
        return None

    def _roll_back(
        self,
        sim: SimService,
        record: ServiceDeploymentRecord,
        reason: str,
        now_dt: datetime.datetime,
        events: list[str],
    ) -> None:
        """Roll a staged deployment back to the last successful revision.

        Blue still runs until CLEAN_UP has drained it: it becomes PRIMARY again, all traffic goes
        back to it, and green is drained. Once blue is gone, a new PRIMARY of the old revision
        is started, as a rolling rollback does.
        """
        green = record.deployment
        target = sim.last_completed_revision
        if record.staged is not None:
            record.staged.halt(now_dt, to_blue=True)
        if green is None or green is not sim.deployments[0] or target is None:
            record.finish("ROLLBACK_FAILED", now_dt, "Service deployment could not be rolled back.")
            return
        green.rollout_state = "FAILED"
        green.rollout_state_reason = f"ECS deployment {green.id} rolled back: {reason}"
        green.updated_at = now_dt
        record.begin_rollback(reason, target, now_dt)
        blue = self._blue(sim, green)
        if blue is None and sim.last_completed is not None:
            previous_id, previous_td = sim.last_completed
            blue = self._begin_deployment(
                sim,
                sim.backend.describe_task_definition(previous_td),
                target,
                f"Service deployment rollback: rolling back to deploymentId {previous_id}.",
            )
        elif blue is not None:
            sim.deployments.remove(blue)
            for other in sim.deployments:
                other.status = "ACTIVE"
                other.updated_at = now_dt
            sim.deployments.insert(0, blue)
            blue.status = "PRIMARY"
            blue.rollout_state = "IN_PROGRESS"
            blue.rollout_state_reason = (
                f"Service deployment rollback: rolling back to deploymentId {blue.id}."
            )
            blue.updated_at = now_dt
            sim.service.task_definition = blue.task_definition
            sim.announced_steady = False
            self.touch(sim)
        if blue is None:
            record.finish("ROLLBACK_FAILED", now_dt, "Service deployment could not be rolled back.")
            return
        record.rollback_deployment = blue
        blue.moves(record)
        events.append(
            f"(service {sim.service.name}) (deployment {green.id}) rolling back to deployment "
            f"{blue.id}."
        )

    def _stop_staged(
        self,
        sim: SimService,
        record: ServiceDeploymentRecord,
        reason: str,
        now_dt: datetime.datetime,
    ) -> None:
        """A staged deployment fails without rollback: it STOPS where it is, blue keeps serving."""
        green = record.deployment
        if green is not None:
            green.rollout_state = "FAILED"
            green.rollout_state_reason = reason
            green.updated_at = now_dt
        if record.staged is not None:
            record.staged.halt(now_dt, to_blue=False)
        record.finish("STOPPED", now_dt, reason)

    def _blue(self, sim: SimService, green: Deployment) -> Deployment | None:
        """The last successful deployment, if it still has tasks beside ``green``."""
        if sim.last_completed is None:
            return None
        blue_id = sim.last_completed[0]
        return next(
            (d for d in sim.deployments if d is not green and d.id == blue_id and d.tasks()), None
        )

    def _scale_primary(
        self,
        sim: SimService,
        primary: Deployment,
        config: dict[str, Any],
        now: float,
        now_dt: datetime.datetime,
        stopped: list[ServiceTask],
        unbounded: bool = False,
    ) -> list[ServiceTask]:
        """Launch (or stop) PRIMARY tasks towards the desired count; return the launched ones.

        ``unbounded``: launch them all at once, whatever maximumPercent says (a staged
        deployment's green revision starts at full count beside blue).
        """
        if primary.rollout_state == "FAILED":
            # A failed deployment launches nothing more; what it still has starting is cancelled.
            for task in primary.pending():
                self._stop_for_scaling(sim, primary, task, primary, now_dt)
                stopped.append(task)
            return []
        desired = primary.desired_count
        live = [t for t in primary.tasks() if not t.draining]
        if len(live) > desired:
            # Scale in: cancel PENDING tasks first, then drain RUNNING ones.
            surplus = sorted(live, key=lambda t: t.last_status != "PENDING")[: len(live) - desired]
            for task in surplus:
                if task.last_status == "PENDING":
                    self._stop_for_scaling(sim, primary, task, primary, now_dt)
                    stopped.append(task)
                else:
                    self._begin_drain(task, now)
            return []
        wanted = desired - len(live)
        if wanted <= 0 or not primary.can_launch(now):
            return []
        alive = sum(len(d.tasks()) for d in sim.deployments)
        ceiling = max(desired, math.floor(desired * int(config["maximumPercent"]) / 100))
        count = wanted if unbounded else min(wanted, ceiling - alive)
        return [self._launch(sim, primary, now, now_dt) for _ in range(max(count, 0))]

    def _drain_old(
        self,
        sim: SimService,
        primary: Deployment,
        config: dict[str, Any],
        now: float,
        now_dt: datetime.datetime,
        stopped: list[ServiceTask],
    ) -> list[ServiceTask]:
        """Stop tasks of non-PRIMARY deployments while enough healthy tasks remain."""
        healthy = sum(len(d.healthy()) for d in sim.deployments)
        minimum = math.ceil(primary.desired_count * int(config["minimumHealthyPercent"]) / 100)
        budget = healthy - minimum
        draining: list[ServiceTask] = []
        for deployment in sim.deployments[1:]:
            for task in deployment.tasks():
                if task.last_status == "PENDING":
                    self._stop_for_scaling(sim, deployment, task, primary, now_dt)
                    stopped.append(task)
                elif not task.draining and budget > 0:
                    self._begin_drain(task, now)
                    draining.append(task)
                    budget -= 1
        return draining

    def _begin_drain(self, task: ServiceTask, now: float) -> None:
        task.drain(until=now + self.timings.drain)

    def _settle(
        self,
        sim: SimService,
        primary: Deployment,
        now: float,
        now_dt: datetime.datetime,
        events: list[str],
        *,
        hold: bool = False,
    ) -> bool:
        """Complete the rollout once steady; return whether the service still needs ticks.

        ``hold``: a staged deployment has not reached CLEAN_UP, so it cannot complete yet.
        """
        if hold:
            sim.announced_steady = False
            return True
        name = sim.service.name
        old_alive = any(d.tasks() for d in sim.deployments[1:])
        draining = any(t.draining for t in primary.tasks())
        if primary.rollout_state == "FAILED":
            # Nothing moves by itself any more once the failed deployment has stopped starting
            # tasks: the previous deployment keeps serving, as on ECS without rollback.
            sim.service.deployments[:] = [primary] + [d for d in sim.deployments[1:] if d.tasks()]
            return bool(primary.pending()) or draining
        steady = (
            not old_alive
            and not draining
            and not primary.pending()
            and len(primary.healthy()) == primary.desired_count
        )
        if not steady:
            sim.announced_steady = False
            return True
        if primary.rollout_state == "IN_PROGRESS":
            if now < primary.started + self.timings.minimum_rollout:
                return True
            bake = self._rolling_bake_seconds(primary)
            if bake > 0:
                if primary.steady_since is None:
                    primary.steady_since = now
                if now < primary.steady_since + bake:
                    return True
            primary.rollout_state = "COMPLETED"
            primary.rollout_state_reason = f"ECS deployment {primary.id} completed."
            primary.updated_at = now_dt
            sim.last_completed = (primary.id, primary.task_definition)
            sim.last_completed_revision = primary.revision
            record = primary.record
            if record is not None and record.ongoing:
                if primary is record.deployment:
                    record.finish("SUCCESSFUL", now_dt)
                elif primary is record.rollback_deployment:
                    record.finish("ROLLBACK_SUCCESSFUL", now_dt)
            events.append(f"(service {name}) (deployment {primary.id}) deployment completed.")
        del sim.deployments[1:]
        if not sim.announced_steady:
            events.append(f"(service {name}) has reached a steady state.")
            sim.announced_steady = True
        return False

    def _rolling_bake_seconds(self, primary: Deployment) -> float:
        """How long a steady ROLLING deployment stays IN_PROGRESS before it completes: its
        bakeTimeInMinutes, or ROLLING_ALARM_BAKE_MINUTES when it watches alarms without one."""
        record = primary.record
        if record is None or record.staged is not None or primary is not record.deployment:
            return 0.0
        config = record.deployment_configuration
        minutes = config.get("bakeTimeInMinutes")
        if not isinstance(minutes, int) or isinstance(minutes, bool) or minutes <= 0:
            alarms = config.get("alarms") or {}
            watched = alarms.get("enable") and alarms.get("alarmNames")
            minutes = ROLLING_ALARM_BAKE_MINUTES if watched else 0
        return float(minutes) * self.minute_seconds

    # -- tasks -----------------------------------------------------------------------------------

    def _launch(
        self, sim: SimService, deployment: Deployment, now: float, now_dt: datetime.datetime
    ) -> ServiceTask:
        backend, service = sim.backend, sim.service
        td = backend.describe_task_definition(deployment.task_definition)
        region, account = backend.region_name, backend.account_id
        task_id = uuid.uuid4().hex
        cluster_name = service.cluster_name
        task_arn = (
            f"arn:{get_partition(region)}:ecs:{region}:{account}:task/{cluster_name}/{task_id}"
        )
        subnet, zone, address = _placement(account, region, deployment.network_configuration)
        attachments: list[dict[str, Any]] = []
        eni_attachment = str(uuid.uuid4())
        if deployment.network_configuration:
            attachments.append(
                {
                    "id": eni_attachment,
                    "type": "ElasticNetworkInterface",
                    "status": "ATTACHED",
                    "details": [
                        {"name": "subnetId", "value": subnet},
                        {"name": "networkInterfaceId", "value": f"eni-{task_id[:17]}"},
                        {"name": "privateIPv4Address", "value": address},
                    ],
                }
            )
        containers = [
            {
                "containerArn": (
                    f"arn:{get_partition(region)}:ecs:{region}:{account}:container/"
                    f"{cluster_name}/{task_id}/{uuid.uuid4()}"
                ),
                "taskArn": task_arn,
                "name": definition.get("name"),
                "image": definition.get("image"),
                "lastStatus": "PENDING",
                "healthStatus": "UNKNOWN",
                "cpu": str(definition.get("cpu", 0)),
                "networkInterfaces": (
                    [{"attachmentId": eni_attachment, "privateIpv4Address": address}]
                    if deployment.network_configuration
                    else []
                ),
            }
            for definition in td.container_definitions
        ]
        broken = deployment.broken
        delay = self.timings.task_fail if broken else self.timings.task_start
        if (
            not broken
            and deployment.rollout_state == "IN_PROGRESS"
            and not any(d.tasks() for d in sim.deployments if d is not deployment)
        ):
            # Nothing to drain (a new service, or one at zero): the tasks themselves take the
            # whole rollout, so that "one deployment, all running" and COMPLETED coincide.
            delay = max(delay, deployment.started + self.timings.minimum_rollout - now)
        task = ServiceTask(
            task_arn=task_arn,
            cluster_arn=service.cluster_arn,
            task_definition_arn=td.arn,
            group=f"service:{service.name}",
            started_by=deployment.id,
            launch_type=deployment.launch_type,
            platform_version=(
                "1.4.0" if deployment.launch_type == "FARGATE" else deployment.platform_version
            ),
            cpu=td.cpu,
            memory=td.memory,
            containers=containers,
            attachments=attachments,
            availability_zone=zone,
            created_at=now_dt,
            due=now + delay,
            broken=broken,
        )
        task.pull_started_at = now_dt
        deployment.add_task(task)
        backend.tasks.setdefault(cluster_name, {})[task_arn] = task
        self._count_in_cluster(sim, "PENDING", +1)
        return task

    def _set_status(self, sim: SimService, task: ServiceTask, status: str) -> None:
        self._count_in_cluster(sim, task.last_status, -1)
        self._count_in_cluster(sim, status, +1)
        task.last_status = status
        task.version += 1

    def _stop_for_scaling(
        self,
        sim: SimService,
        deployment: Deployment,
        task: ServiceTask,
        primary: Deployment | None,
        now_dt: datetime.datetime,
    ) -> None:
        """Stop a task as ECS's scheduler does when the PRIMARY deployment scales."""
        self._stop_task(
            sim,
            deployment,
            task,
            reason=_scaling_reason(primary),
            code=SCHEDULER_STOP_CODE,
            now_dt=now_dt,
        )

    def _stop_task(
        self,
        sim: SimService,
        deployment: Deployment,
        task: ServiceTask,
        *,
        reason: str,
        code: str,
        now_dt: datetime.datetime,
    ) -> None:
        self._set_status(sim, task, "STOPPED")
        task.desired_status = "STOPPED"
        task.stopped_reason = reason
        task.stop_code = code
        task.stopping_at = task.execution_stopped_at = task.stopped_at = now_dt
        task.settle()
        for container in task.containers:
            container["lastStatus"] = "STOPPED"
            container.setdefault("exitCode", 0)
        deployment.remove_task(task.task_arn)
        sim.stopped.append(task)
        while len(sim.stopped) > MAX_STOPPED_TASKS_PER_SERVICE:
            old = sim.stopped.popleft()
            sim.backend.tasks.get(sim.service.cluster_name, {}).pop(old.task_arn, None)

    def _count_in_cluster(self, sim: SimService, status: str, delta: int) -> None:
        cluster = sim.backend.clusters.get(sim.service.cluster_name)
        if cluster is None:
            return
        if status == "RUNNING":
            cluster.running_tasks_count = max(0, cluster.running_tasks_count + delta)
        elif status == "PENDING":
            cluster.pending_tasks_count = max(0, cluster.pending_tasks_count + delta)

    # -- bookkeeping -----------------------------------------------------------------------------

    def _update_counts(self, sim: SimService) -> None:
        now_dt = utcnow()
        for deployment in sim.deployments:
            running = sum(1 for t in deployment.tasks() if t.last_status == "RUNNING")
            pending = sum(1 for t in deployment.tasks() if t.last_status == "PENDING")
            if (running, pending) != (deployment.running_count, deployment.pending_count):
                deployment.running_count, deployment.pending_count = running, pending
                deployment.updated_at = now_dt
        service = sim.service
        service.running_count = sum(d.running_count for d in sim.deployments)
        service.pending_count = sum(d.pending_count for d in sim.deployments)
        service.task_definition = sim.deployments[0].task_definition


def add_events(service: Any, messages: Iterable[str], now_dt: datetime.datetime) -> None:
    """Prepend events (given oldest first) to ``service.events``, keeping the newest 100."""
    for message in messages:
        service.events.insert(0, {"id": str(uuid.uuid4()), "createdAt": now_dt, "message": message})
    del service.events[MAX_EVENTS:]


def _stopped_event(service_name: str, tasks: list[ServiceTask]) -> str:
    return f"(service {service_name}) has stopped {len(tasks)} running tasks: {_task_list(tasks)}."


def _task_list(tasks: Iterable[ServiceTask]) -> str:
    return " ".join(f"(task {task.id})" for task in tasks)


def _scaling_reason(primary: Deployment | None) -> str:
    deployment = primary.id if primary is not None else "unknown"
    return f"Scaling activity initiated by (deployment {deployment})"


def _placement(
    account: str, region: str, network_configuration: dict[str, Any] | None
) -> tuple[str, str, str]:
    """Subnet, availability zone and a private address for a new awsvpc task."""
    subnets = ((network_configuration or {}).get("awsvpcConfiguration") or {}).get("subnets") or []
    if not subnets:
        return "", f"{region}a", ""
    subnet_id = random.choice(subnets)
    try:
        subnet = ec2_backends[account][region].get_subnet(subnet_id)
        network = ipaddress.ip_network(subnet.cidr_block, strict=False)
        zone = subnet.availability_zone
    except Exception:  # noqa: BLE001 - an address is decoration; never fail a launch for it
        return subnet_id, f"{region}a", f"10.0.{random.randint(0, 255)}.{random.randint(4, 254)}"
    # The first four addresses and the last of a subnet are reserved by AWS.
    offset = random.randint(4, max(4, network.num_addresses - 2))
    return subnet_id, zone, str(network.network_address + offset)


# A ROLLING deployment with alarms and no bake time of its own: how long ECS keeps watching
# them once the deployment is steady (ECS derives its own from the alarms' periods).
ROLLING_ALARM_BAKE_MINUTES = 5


def alarm_reason(names: list[str]) -> str:
    """The statusReason of a deployment that CloudWatch alarms failed."""
    return f"ECS deployment alarms: alarm(s) {', '.join(names)} in ALARM state."


def _firing_alarms(backend: Any, alarms: dict[str, Any]) -> list[str]:
    """The deployment's alarms that moto's CloudWatch (same account and region) has in ALARM."""
    names: list[str] = list(alarms.get("alarmNames") or [])
    if not alarms.get("enable") or not names:
        return []
    from moto.cloudwatch.models import cloudwatch_backends

    known = cloudwatch_backends[backend.account_id][backend.region_name].alarms
    return [name for name in names if name in known and known[name].state_value == "ALARM"]


def _staged_and_failed(primary: Deployment) -> bool:
    """Whether the PRIMARY is the green deployment of a staged service deployment that failed
    without rollback: blue keeps serving beside it, so nothing is drained."""
    record = primary.record
    return (
        primary.rollout_state == "FAILED"
        and record is not None
        and record.staged is not None
        and primary is record.deployment
    )


def _resets_on_healthy_task(sim: SimService) -> bool:
    """Whether a task that becomes healthy sets the breaker's failure count back to 0
    (``resetOnHealthyTask``, true unless the service says otherwise)."""
    breaker = sim.deployment_configuration().get("deploymentCircuitBreaker") or {}
    return breaker.get("resetOnHealthyTask", True) is not False
