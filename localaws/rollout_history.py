"""ECS's deployment history: service deployments and service revisions.

Every CreateService and deployment-starting UpdateService is a *service deployment* with a
*service revision*; :class:`DeploymentHistory` keeps how each ended (SUCCESSFUL, STOPPED,
ROLLBACK_SUCCESSFUL, ...) long after DescribeServices forgot it. The scheduler
(:mod:`localaws.rollout`) moves the records; the ECS handlers read them.
"""

from __future__ import annotations

import collections
import copy
import datetime
import itertools
import random
import secrets
from typing import Any

from moto.utilities.utils import get_partition

from localaws.rollout_model import Deployment, ServiceKey, SimService, breaker_threshold
from localaws.strategies import StagedRollout

# ECS keeps 90 days of history; here each service keeps its newest service deployments.
MAX_SERVICE_DEPLOYMENTS_PER_SERVICE = 1000

ONGOING_STATUSES = frozenset(
    {"PENDING", "IN_PROGRESS", "STOP_REQUESTED", "ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS"}
)
COMPLETED_STATUSES = frozenset({"SUCCESSFUL", "STOPPED", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED"})
SERVICE_DEPLOYMENT_STATUSES = ONGOING_STATUSES | COMPLETED_STATUSES

BREAKER_REASON = "ECS deployment circuit breaker: tasks failed to start."
STOP_REQUEST_REASON = "Service deployment rollback requested by StopServiceDeployment."

# Service configuration a service revision records: (ECS member name, moto attribute name).
_REVISION_FIELDS = (
    ("launchType", "launch_type"),
    ("platformVersion", "platform_version"),
    ("capacityProviderStrategy", "capacity_provider_strategy"),
    ("loadBalancers", "load_balancers"),
    ("serviceRegistries", "service_registries"),
    ("networkConfiguration", "network_configuration"),
    ("serviceConnectConfiguration", "service_connect_configuration"),
    ("volumeConfigurations", "volume_configurations"),
    ("vpcLatticeConfigurations", "vpc_lattice_configurations"),
)


class DeploymentConflict(Exception):
    """A request that the current state of a service deployment does not allow."""


def _history_arn(backend: Any, service: Any, kind: str, resource_id: str) -> str:
    region, account = backend.region_name, backend.account_id
    return (
        f"arn:{get_partition(region)}:ecs:{region}:{account}:{kind}/"
        f"{service.cluster_name}/{service.name}/{resource_id}"
    )


class ServiceRevision:
    """What one service deployment deploys: the task definition and the service configuration.

    Immutable once made, as on ECS. A rollback makes no new revision: it deploys the last
    successful one again.
    """

    def __init__(
        self, sim: SimService, task_definition: Any, created_at: datetime.datetime
    ) -> None:
        backend, service = sim.backend, sim.service
        self.account: str = backend.account_id
        self.region: str = backend.region_name
        self.arn = _history_arn(
            backend, service, "service-revision", str(random.randint(10**18, 10**19 - 1))
        )
        self.service_arn: str = service.arn
        self.cluster_arn: str = service.cluster_arn
        self.task_definition: str = task_definition.arn
        self.created_at = created_at
        configuration: dict[str, Any] = {}
        for member, attribute in _REVISION_FIELDS:
            value = getattr(service, attribute, None)
            if value not in (None, [], {}):
                configuration[member] = copy.deepcopy(value)
        if service.launch_type == "FARGATE":
            configuration["platformFamily"] = "Linux"
        configuration["containerImages"] = [
            _container_image(container) for container in task_definition.container_definitions
        ]
        self._configuration = configuration

    def describe(self) -> dict[str, Any]:
        """The ECS ``ServiceRevision`` shape."""
        return {
            "serviceRevisionArn": self.arn,
            "serviceArn": self.service_arn,
            "clusterArn": self.cluster_arn,
            "taskDefinition": self.task_definition,
            **copy.deepcopy(self._configuration),
            "createdAt": self.created_at,
        }


def _container_image(container: dict[str, Any]) -> dict[str, str]:
    image = str(container.get("image", ""))
    result = {"containerName": str(container.get("name", "")), "image": image}
    if "@" in image:
        result["imageDigest"] = image.split("@", 1)[1]
    return result


class ServiceDeploymentRecord:
    """One service deployment of ECS's history: CreateService, or an UpdateService that started
    a new ECS deployment. It outlives the ECS deployments it drove (DescribeServices forgets them
    once a rollout or a rollback is over; this does not)."""

    def __init__(
        self,
        sim: SimService,
        target: ServiceRevision,
        sources: list[ServiceRevision],
        created_at: datetime.datetime,
        sequence: int,
    ) -> None:
        backend, service = sim.backend, sim.service
        self._sim = sim
        self.key = sim.key
        self.account: str = backend.account_id
        self.region: str = backend.region_name
        self.sequence = sequence  # orders the history of a service (and pages it)
        self.arn = _history_arn(
            backend, service, "service-deployment", secrets.token_urlsafe(16)[:21]
        )
        self.service_arn: str = service.arn
        self.cluster_arn: str = service.cluster_arn
        self.status = "PENDING"
        self.status_reason: str | None = None
        # Whole milliseconds, as the wire carries them: a createdAt a client read back filters
        # exactly (ListServiceDeployments createdAt after/before are inclusive).
        created_at = created_at.replace(microsecond=created_at.microsecond // 1000 * 1000)
        self.created_at = self.updated_at = created_at
        self.started_at: datetime.datetime | None = None
        self.finished_at: datetime.datetime | None = None
        self.stopped_at: datetime.datetime | None = None
        self.target = target
        self.sources = sources
        self.deployment_configuration = copy.deepcopy(sim.deployment_configuration())
        # The ECS deployment that moves the service to the target, and the one that rolls it back.
        self.deployment: Deployment | None = None
        self.rollback_deployment: Deployment | None = None
        self.rollback_revision: ServiceRevision | None = None
        self.rollback_reason: str | None = None
        self.rollback_started_at: datetime.datetime | None = None
        self.breaker_triggered = False
        # BLUE_GREEN, LINEAR and CANARY deployments go stage by stage (None: ROLLING).
        self.staged: StagedRollout | None = None
        # A ROLLING deployment with lifecycle hooks: the stages its hooks run at (None otherwise).
        self.rolling_hooks: StagedRollout | None = None
        self.triggered_alarms: list[str] = []
        self._final_counts: tuple[list[dict[str, Any]], dict[str, Any]] | None = None

    @property
    def sim(self) -> SimService:
        """The simulated service the service deployment belongs to."""
        return self._sim

    @property
    def ongoing(self) -> bool:
        """Whether the service deployment has not reached a completed status yet."""
        return self.status in ONGOING_STATUSES

    def _set(self, status: str, now_dt: datetime.datetime, reason: str | None) -> None:
        self.status = status
        if reason is not None:
            self.status_reason = reason
        self.updated_at = now_dt

    def start(self, now_dt: datetime.datetime) -> None:
        """PENDING -> IN_PROGRESS: the scheduler has picked the deployment up."""
        if self.status == "PENDING":
            self.started_at = now_dt
            self._set("IN_PROGRESS", now_dt, None)

    def request_rollback(self, revision: ServiceRevision, now_dt: datetime.datetime) -> None:
        """StopServiceDeployment(ROLLBACK): ROLLBACK_REQUESTED until the scheduler acts on it."""
        self.rollback_revision = revision
        self._set("ROLLBACK_REQUESTED", now_dt, STOP_REQUEST_REASON)

    def begin_rollback(
        self, reason: str, revision: ServiceRevision, now_dt: datetime.datetime
    ) -> None:
        """The rollback to ``revision`` has started."""
        if self.started_at is None:
            self.started_at = now_dt
        self.rollback_revision = revision
        self.rollback_reason = reason
        self.rollback_started_at = now_dt
        self._set("ROLLBACK_IN_PROGRESS", now_dt, reason)

    def finish(self, status: str, now_dt: datetime.datetime, reason: str | None = None) -> None:
        """Reach a completed status; task counts are kept as they are at this moment."""
        self._final_counts = self._counts()
        if self.started_at is None:
            self.started_at = now_dt
        self.finished_at = now_dt
        if status == "STOPPED":
            self.stopped_at = now_dt
        self._set(status, now_dt, reason)

    def _counts(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """(source summaries, target summary): tasks of each revision across ECS deployments."""
        if self._final_counts is not None:
            return self._final_counts
        deployments = self._sim.deployments
        primary = deployments[0] if deployments else None

        def summary(revision: ServiceRevision) -> dict[str, Any]:
            runs = [d for d in deployments if d.revision is revision]
            requested = (
                primary.desired_count
                if primary is not None
                and primary.revision is revision
                and primary.rollout_state != "FAILED"
                else 0
            )
            return {
                "arn": revision.arn,
                "requestedTaskCount": requested,
                "runningTaskCount": sum(d.running_count for d in runs),
                "pendingTaskCount": sum(d.pending_count for d in runs),
            }

        sources = [summary(source) for source in self.sources]
        target = summary(self.target)
        staged = self.staged
        if staged is not None:
            # ECS's requested traffic weights: green's share on the target revision, the rest on
            # the revision it replaces (an older one still reconciled gets none).
            target["requestedProductionTrafficWeight"] = staged.production_percent
            target["requestedTestTrafficWeight"] = staged.test_percent
            for index, source in enumerate(sources):
                rest = index == 0
                source["requestedProductionTrafficWeight"] = (
                    round(100.0 - staged.production_percent, 1) if rest else 0.0
                )
                source["requestedTestTrafficWeight"] = (
                    round(100.0 - staged.test_percent, 1) if rest else 0.0
                )
        return sources, target

    @property
    def hooked(self) -> StagedRollout | None:
        """The stages whose lifecycle hooks this deployment runs: its staged rollout, or the hook
        stages of a ROLLING deployment with hooks; None when it has neither."""
        return self.staged if self.staged is not None else self.rolling_hooks

    def _lifecycle_stage(self) -> str:
        if not self.ongoing:
            return "CLEAN_UP"
        if self.staged is not None and self.status != "PENDING":
            return self.staged.lifecycle_stage
        gate = self.rolling_hooks
        if (
            self.status == "IN_PROGRESS"
            and gate is not None
            and not gate.halted
            and gate.position >= 0
            and not gate.cleaning_up
        ):
            return gate.lifecycle_stage
        if self.status in ("PENDING", "ROLLBACK_REQUESTED"):
            return "PRE_SCALE_UP"
        moving = (
            self.rollback_deployment if self.status == "ROLLBACK_IN_PROGRESS" else self.deployment
        )
        if moving is None or len(moving.healthy()) < moving.desired_count:
            return "SCALE_UP"
        if moving.steady_since is not None and moving.rollout_state == "IN_PROGRESS":
            return "BAKE_TIME"  # a ROLLING deployment watching its alarms once steady
        return "CLEAN_UP"

    def _breaker(self) -> dict[str, Any]:
        breaker = self.deployment_configuration.get("deploymentCircuitBreaker") or {}
        if self.breaker_triggered:
            status = "TRIGGERED"
        elif not breaker.get("enable"):
            status = "DISABLED"
        else:
            status = "MONITORING" if self.ongoing else "MONITORING_COMPLETE"
        deployment = self.deployment
        return {
            "status": status,
            "failureCount": deployment.failed_tasks if deployment is not None else 0,
            "threshold": breaker_threshold(
                deployment.desired_count if deployment is not None else 0, breaker
            ),
        }

    def _alarms(self) -> dict[str, Any] | None:
        """The ECS ``ServiceDeploymentAlarms`` shape; None for a ROLLING deployment without alarms
        (as before alarms were modelled)."""
        alarms = self.deployment_configuration.get("alarms")
        if alarms is None and self.staged is None:
            return None
        alarms = alarms or {}
        names = list(alarms.get("alarmNames") or [])
        if self.triggered_alarms:
            status = "TRIGGERED"
        elif not alarms.get("enable") or not names:
            status = "DISABLED"
        else:
            status = "MONITORING" if self.ongoing else "MONITORING_COMPLETE"
        result: dict[str, Any] = {"status": status}
        if names:
            result["alarmNames"] = names
        if self.triggered_alarms:
            result["triggeredAlarmNames"] = list(self.triggered_alarms)
        return result

    def brief(self) -> dict[str, Any]:
        """The ECS ``ServiceDeploymentBrief`` shape (ListServiceDeployments)."""
        return _without_none(
            {
                "serviceDeploymentArn": self.arn,
                "serviceArn": self.service_arn,
                "clusterArn": self.cluster_arn,
                "startedAt": self.started_at,
                "createdAt": self.created_at,
                "finishedAt": self.finished_at,
                "targetServiceRevisionArn": self.target.arn,
                "status": self.status,
                "statusReason": self.status_reason,
            }
        )

    def describe(self) -> dict[str, Any]:
        """The ECS ``ServiceDeployment`` shape (DescribeServiceDeployments)."""
        sources, target = self._counts()
        rollback = None
        if self.rollback_revision is not None and self.rollback_started_at is not None:
            rollback = {
                "reason": self.rollback_reason,
                "startedAt": self.rollback_started_at,
                "serviceRevisionArn": self.rollback_revision.arn,
            }
        return _without_none(
            {
                "serviceDeploymentArn": self.arn,
                "serviceArn": self.service_arn,
                "clusterArn": self.cluster_arn,
                "createdAt": self.created_at,
                "startedAt": self.started_at,
                "finishedAt": self.finished_at,
                "stoppedAt": self.stopped_at,
                "updatedAt": self.updated_at,
                "sourceServiceRevisions": copy.deepcopy(sources),
                "targetServiceRevision": dict(target),
                "status": self.status,
                "statusReason": self.status_reason,
                "lifecycleStage": self._lifecycle_stage(),
                "deploymentConfiguration": copy.deepcopy(self.deployment_configuration),
                "lifecycleHookDetails": (
                    self.hooked.hook_details()
                    if self.hooked is not None and self.hooked.hook_runs
                    else None
                ),
                "rollback": rollback,
                "deploymentCircuitBreaker": self._breaker(),
                "alarms": self._alarms(),
            }
        )


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


class DeploymentHistory:
    """Service deployments and revisions of every service, per account and region.

    Each service keeps its newest ``limit`` service deployments (and their target revisions);
    ARNs embed account and region, and a lookup also checks them, so accounts never see each
    other's history.
    """

    def __init__(self, limit: int = MAX_SERVICE_DEPLOYMENTS_PER_SERVICE) -> None:
        self.limit = limit
        self._services: dict[ServiceKey, collections.deque[ServiceDeploymentRecord]] = {}
        self._deployments: dict[str, ServiceDeploymentRecord] = {}
        self._revisions: dict[str, ServiceRevision] = {}
        self._sequence = itertools.count(1)

    def next_sequence(self) -> int:
        """A number larger than any given before."""
        return next(self._sequence)

    def add(self, record: ServiceDeploymentRecord) -> None:
        """Keep a new service deployment (and its target revision), evicting the oldest."""
        records = self._services.setdefault(record.key, collections.deque())
        records.append(record)
        self._deployments[record.arn] = record
        self._revisions[record.target.arn] = record.target
        while len(records) > self.limit:
            old = records.popleft()
            self._deployments.pop(old.arn, None)
            self._revisions.pop(old.target.arn, None)

    def for_service(self, key: ServiceKey) -> list[ServiceDeploymentRecord]:
        """The service's deployments, newest first."""
        return list(reversed(self._services.get(key, ())))

    def deployment(self, account: str, region: str, arn: str) -> ServiceDeploymentRecord | None:
        """A service deployment of this account and region by ARN."""
        record = self._deployments.get(arn)
        if record is None or (record.account, record.region) != (account, region):
            return None
        return record

    def revision(self, account: str, region: str, arn: str) -> ServiceRevision | None:
        """A service revision of this account and region by ARN."""
        revision = self._revisions.get(arn)
        if revision is None or (revision.account, revision.region) != (account, region):
            return None
        return revision

    def drop_service(self, key: ServiceKey) -> None:
        """DeleteService: ECS deletes the service's deployments and revisions with it."""
        for record in self._services.pop(key, ()):
            self._deployments.pop(record.arn, None)
            self._revisions.pop(record.target.arn, None)

    def clear(self) -> None:
        """Forget everything (reset)."""
        self._services.clear()
        self._deployments.clear()
        self._revisions.clear()
