"""The rollout simulator's model of ECS services: tasks, ECS deployments, a simulated service.

:class:`ServiceTask` and :class:`Deployment` are shaped for moto's response serializer: their
public attributes are the snake_case forms of the ECS shapes' members. Their underscore
attributes are the simulator's bookkeeping, reached only through the small methods here (the
scheduler in :mod:`localaws.rollout` moves them; :mod:`localaws.rollout_history` reads them).
"""

from __future__ import annotations

import collections
import datetime
import math
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from localaws.rollout_history import ServiceDeploymentRecord, ServiceRevision

DEFAULT_DEPLOYMENT_CONFIGURATION: dict[str, Any] = {
    "deploymentCircuitBreaker": {"enable": False, "rollback": False},
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
}

ServiceKey = tuple[str, str, str, str]  # account, region, cluster name, service name


def breaker_threshold(desired_count: int, breaker: Mapping[str, Any] | None = None) -> int:
    """Failed tasks after which ECS's deployment circuit breaker fails a deployment.

    ``breaker`` is the service's ``deploymentCircuitBreaker``: its ``thresholdConfiguration``
    (botocore's model: COUNT takes ``value`` as the threshold; BOUNDED_PERCENT, the default, and
    UNBOUNDED_PERCENT take ``value`` percent of the desired count, default 50; only the bounded
    one is held between 3 and 200).
    """
    threshold = (breaker or {}).get("thresholdConfiguration") or {}
    kind = threshold.get("type") or "BOUNDED_PERCENT"
    value = float(threshold.get("value", 50))
    if kind == "COUNT":
        return int(value)
    share = math.ceil(value / 100 * desired_count)
    if kind == "UNBOUNDED_PERCENT":
        return max(1, share)
    return min(200, max(3, share))


def new_deployment_id() -> str:
    """A deployment id in ECS's format (``ecs-svc/`` and 19 digits)."""
    return f"ecs-svc/{random.randint(10**18, 10**19 - 1)}"


class ServiceTask:
    """A task launched by a service deployment, shaped for moto's response serializer.

    moto's own ``Task`` derives its status from a state manager that advances on reads; here the
    status is exactly what the simulator last set. Public attribute names are the snake_case forms
    of the ECS ``Task`` shape's members (the serializer finds them through ``botocore.xform_name``);
    underscore attributes are the simulator's bookkeeping and are never serialized.
    """

    def __init__(
        self,
        *,
        task_arn: str,
        cluster_arn: str,
        task_definition_arn: str,
        group: str,
        started_by: str,
        launch_type: str | None,
        platform_version: str | None,
        cpu: str | None,
        memory: str | None,
        containers: list[dict[str, Any]],
        attachments: list[dict[str, Any]],
        availability_zone: str,
        created_at: datetime.datetime,
        due: float,
        broken: tuple[str, ...],
    ) -> None:
        self.task_arn = task_arn
        self.id = task_arn.rsplit("/", 1)[-1]
        self.cluster_arn = cluster_arn
        self.task_definition_arn = task_definition_arn
        self.group = group
        self.started_by = started_by
        self.launch_type = launch_type
        self.platform_version = platform_version
        self.platform_family = "Linux" if launch_type == "FARGATE" else None
        self.cpu = cpu
        self.memory = memory
        self.containers = containers
        self.attachments = attachments
        self.availability_zone = availability_zone
        self.last_status = "PENDING"
        self.desired_status = "RUNNING"
        self.health_status = "UNKNOWN"
        self.connectivity = "CONNECTED"
        self.connectivity_at = created_at
        self.created_at = created_at
        self.pull_started_at: datetime.datetime | None = None
        self.pull_stopped_at: datetime.datetime | None = None
        self.started_at: datetime.datetime | None = None
        self.stopping_at: datetime.datetime | None = None
        self.execution_stopped_at: datetime.datetime | None = None
        self.stopped_at: datetime.datetime | None = None
        self.stopped_reason: str | None = None
        self.stop_code: str | None = None
        self.tags: list[dict[str, str]] = []
        self.overrides: dict[str, Any] = {
            "containerOverrides": [{"name": c["name"]} for c in containers],
            "inferenceAcceleratorOverrides": [],
        }
        self.version = 1
        self.enable_execute_command = False
        # moto's ListTasks and StopTask read these.
        self.container_instance_arn: str | None = None
        self.resource_requirements: dict[str, Any] | None = None
        self._due = due
        self._broken = broken
        self._draining = False

    @property
    def cluster_name(self) -> str:
        """The cluster's name, as moto's backend indexes tasks by it."""
        return self.cluster_arn.rsplit("/", 1)[-1]

    def advance(self) -> None:
        """Do nothing: moto's DescribeTasks advances its own tasks' state machine on every read."""

    @property
    def broken(self) -> tuple[str, ...]:
        """The containers whose image is broken: the task stops instead of running."""
        return self._broken

    @property
    def draining(self) -> bool:
        """Whether the task is being drained before it stops."""
        return self._draining

    def is_due(self, now: float) -> bool:
        """Whether the task's next transition (start, fail, end of its drain) is due at ``now``."""
        return self._due <= now

    def drain(self, until: float) -> None:
        """Begin draining: desired STOPPED, and stopped once ``until`` has passed."""
        self._draining = True
        self.desired_status = "STOPPED"
        self._due = until

    def settle(self) -> None:
        """No transition is due any more: the task is RUNNING and not draining, or STOPPED."""
        self._draining = False
        self._due = math.inf


class Deployment:
    """One entry of ``service.deployments``; attributes mirror the ECS ``Deployment`` shape."""

    def __init__(
        self,
        *,
        task_definition: str,
        desired_count: int,
        launch_type: str | None,
        platform_version: str | None,
        network_configuration: dict[str, Any] | None,
        capacity_provider_strategy: list[dict[str, Any]] | None,
        now: float,
        created_at: datetime.datetime,
        reason: str | None = None,
        broken: tuple[str, ...] = (),
        revision: ServiceRevision | None = None,
    ) -> None:
        self.id = new_deployment_id()
        self.status = "PRIMARY"
        self.task_definition = task_definition
        self.desired_count = desired_count
        self.pending_count = 0
        self.running_count = 0
        self.failed_tasks = 0
        self.created_at = created_at
        self.updated_at = created_at
        self.launch_type = launch_type
        self.platform_version = platform_version
        self.platform_family = "Linux" if launch_type == "FARGATE" else None
        self.network_configuration = network_configuration
        self.capacity_provider_strategy = capacity_provider_strategy
        self.rollout_state = "IN_PROGRESS"
        self.rollout_state_reason = reason or f"ECS deployment {self.id} in progress."
        self._started = now
        self._next_launch = now
        # A ROLLING deployment that bakes (alarms, or bakeTimeInMinutes): when it was first
        # steady; it completes once the bake has passed since.
        self.steady_since: float | None = None
        self._broken = broken
        self._tasks: dict[str, ServiceTask] = {}
        # The service revision this deployment runs, and the service deployment (history record)
        # it moves: its own target, or the rollback of one.
        self._revision = revision
        self._record: ServiceDeploymentRecord | None = None

    @property
    def started(self) -> float:
        """When the deployment started, on the simulator's clock."""
        return self._started

    @property
    def broken(self) -> tuple[str, ...]:
        """The containers of its task definition whose image is broken."""
        return self._broken

    @property
    def revision(self) -> ServiceRevision | None:
        """The service revision the deployment runs."""
        return self._revision

    @property
    def record(self) -> ServiceDeploymentRecord | None:
        """The service deployment it moves: its own target, or the rollback of one."""
        return self._record

    def moves(self, record: ServiceDeploymentRecord) -> None:
        """From now on the deployment moves ``record``."""
        self._record = record

    def tasks(self) -> list[ServiceTask]:
        """Its tasks that have not stopped."""
        return list(self._tasks.values())

    def has_task(self, task_arn: str) -> bool:
        """Whether the task is one of its tasks that have not stopped."""
        return task_arn in self._tasks

    def add_task(self, task: ServiceTask) -> None:
        """A task it has just launched."""
        self._tasks[task.task_arn] = task

    def remove_task(self, task_arn: str) -> None:
        """A task of it has stopped."""
        self._tasks.pop(task_arn, None)

    def can_launch(self, now: float) -> bool:
        """Whether a launch is allowed at ``now`` (not right after a failed task)."""
        return now >= self._next_launch

    def delay_launches(self, until: float) -> None:
        """Launch nothing before ``until`` (a task has just failed)."""
        self._next_launch = until

    def pending(self) -> list[ServiceTask]:
        """Tasks not yet RUNNING."""
        return [t for t in self._tasks.values() if t.last_status == "PENDING"]

    def healthy(self) -> list[ServiceTask]:
        """RUNNING tasks that are not being drained."""
        return [t for t in self._tasks.values() if t.last_status == "RUNNING" and not t.draining]


class SimService:
    """The simulator's state for one moto ``Service``."""

    def __init__(self, backend: Any, service: Any) -> None:
        self.backend = backend
        self.service = service
        self.stopped: collections.deque[ServiceTask] = collections.deque()
        # (deployment id, task definition ARN) of the last deployment that reached COMPLETED: what
        # the circuit breaker rolls back to.
        self.last_completed: tuple[str, str] | None = None
        self.last_completed_revision: ServiceRevision | None = None
        # The newest service deployment of the service (the only one that can still be ongoing).
        self.current: ServiceDeploymentRecord | None = None
        self.announced_steady = False

    @property
    def key(self) -> ServiceKey:
        """Identity of the service across requests."""
        return service_key(self.backend, self.service)

    @property
    def deployments(self) -> list[Deployment]:
        """moto's own list, which the serializer reads; PRIMARY first."""
        deployments: list[Deployment] = self.service.deployments
        return deployments

    def deployment_configuration(self) -> dict[str, Any]:
        """The service's deployment configuration with ECS's defaults filled in."""
        config = getattr(self.service, "deployment_configuration", None) or {}
        merged = dict(DEFAULT_DEPLOYMENT_CONFIGURATION)
        merged.update(config)
        return merged


def service_key(backend: Any, service: Any) -> ServiceKey:
    """(account, region, cluster, service name) of a moto service."""
    return (backend.account_id, backend.region_name, service.cluster_name, service.name)


# -- service deployments and service revisions -----------------------------------------------------
