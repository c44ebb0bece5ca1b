"""An in-memory AWS behind the :class:`AwsGateway` interface, for the tests only.

It lives under ``tests/`` so that it never ships in Conveyor's wheel: no worker or producer
module imports it (``tests/unit/test_architecture.py`` checks).

It keeps clusters, task definitions, tags and services with their deployments and stopped
tasks, and lets a test move a rollout along (:meth:`FakeEcs.complete`,
:meth:`FakeEcs.fail_rollout`) or inject errors (:meth:`FakeEcs.inject`). Every call is recorded
in :attr:`FakeEcs.calls`.

It answers as :class:`worker.aws.boto_fargate.BotoAwsGateway` does on the local AWS, error
types and codes included; ``tests/gateway/test_gateway_behaviour.py`` runs one suite against
both, so a difference is a failing test. Where the local AWS is known to differ from AWS (a family
described without a revision), the fake follows AWS and that suite says so.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import itertools
import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Literal

from worker.aws.gateway import MAX_SERVICE_DEPLOYMENTS, family_of
from worker.domain.errors import AwsRequestError, ConveyorError, NotFoundError
from worker.domain.planning import READ_ONLY_KEYS
from worker.domain.tickets import Ticket

# A fixed clock: nothing in the fake depends on time, but AWS timestamps are datetimes.
_EPOCH = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
# CloudFormation's StatusReason of a change set with nothing in it.
_NO_CHANGES = (
    "The submitted information didn't contain changes. "
    "Submit different information to create a change set."
)
# Resource types whose every update (of the properties Conveyor's stacks set) is a
# replacement: a task definition revision cannot change.
_REPLACED_ON_UPDATE = frozenset({"AWS::ECS::TaskDefinition"})
# RegisterTaskDefinition's required members; botocore refuses a request without them.
_REQUIRED_REGISTER_KEYS = ("family", "containerDefinitions")
_STOP_CODE = "EssentialContainerExited"
_STOP_REASON = "Essential container in task exited"
_BROKEN_TAG_PREFIX = "fail-"


def _is_broken(image: str) -> bool:
    """Whether the local AWS fails tasks of this image: its tag starts with ``fail-``."""
    name = image.split("@", 1)[0]
    colon = name.rfind(":")
    return colon > name.rfind("/") and name[colon + 1 :].startswith(_BROKEN_TAG_PREFIX)


def _cluster_not_found(operation: str) -> NotFoundError:
    return NotFoundError(
        f"{operation} failed with ClusterNotFoundException: Cluster not found.",
        "ClusterNotFoundException",
    )


def _service_not_found(operation: str) -> NotFoundError:
    return NotFoundError(
        f"{operation} failed with ServiceNotFoundException: Service not found.",
        "ServiceNotFoundException",
    )


def _stack_missing(operation: str, name: str) -> AwsRequestError:
    return AwsRequestError(
        f"{operation} failed with ValidationError: Stack with id {name} does not exist",
        "ValidationError",
    )


class FakeEcs:
    """An in-memory ECS account in one region."""

    def __init__(self, account: str = "123456789012", region: str = "us-east-1") -> None:
        self.account = account
        self.region = region
        self.clusters: set[str] = set()
        self.revisions: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.tags: dict[str, list[dict[str, str]]] = {}
        self.services: dict[tuple[str, str], dict[str, Any]] = {}
        # Stopped tasks by (cluster, service), oldest first.
        self.stopped_tasks: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self.calls: list[str] = []
        self._errors: dict[str, list[ConveyorError]] = defaultdict(list)
        self._ids = itertools.count(1)
        # ECS's deployment history: entries by (cluster, service), oldest first, and the
        # service revisions they target; an entry per deployment id in DescribeServices.
        self.history: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self.service_revisions: dict[str, dict[str, Any]] = {}
        self._entry_of: dict[str, dict[str, Any]] = {}
        self.history_supported = True
        # Every UpdateService the gateway was asked for, with its parameters as boto sends them.
        self.update_requests: list[dict[str, Any]] = []
        # "account:region", as the worker's gateways name their scope.
        self.scope = f"{account}:{region}"
        # Standalone tasks started with run_task, and EventBridge rule targets by rule.
        self.running_tasks: list[dict[str, Any]] = []
        # One-off tasks started through the gateway's run_task, by ARN, and the RunTask
        # requests as boto sends them; log lines by (group, stream); what a container's next
        # task exits with and logs (test controls, by container name).
        self.task_runs: dict[str, dict[str, Any]] = {}
        self.run_task_requests: list[dict[str, Any]] = []
        self.log_streams: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.task_results: dict[str, tuple[int | None, list[str]]] = {}
        self.schedules: dict[str, list[dict[str, Any]]] = defaultdict(list)

    # -- test controls -------------------------------------------------------------------

    def inject(self, operation: str, *errors: ConveyorError) -> None:
        """Make the next calls of ``operation`` raise these errors, in order."""
        self._errors[operation].extend(errors)

    def add_cluster(self, name: str) -> str:
        """Create an ACTIVE cluster; returns its name."""
        self.clusters.add(name)
        return name

    def add_task_definition(
        self, definition: dict[str, Any], tags: list[dict[str, str]] | None = None
    ) -> str:
        """Register a revision directly; returns its ARN.

        The stored revision gets the read-only keys DescribeTaskDefinition returns (those the
        definition does not already carry), so a copy sent back unstripped is refused as on AWS.
        """
        family = definition["family"]
        revision = len(self.revisions[family]) + 1
        arn = f"arn:aws:ecs:{self.region}:{self.account}:task-definition/{family}:{revision}"
        stored = copy.deepcopy(definition)
        stored.pop("tags", None)
        stored.update(
            {
                "taskDefinitionArn": arn,
                "revision": revision,
                "status": "ACTIVE",
                "registeredAt": _EPOCH,
            }
        )
        stored.pop("deregisteredAt", None)
        stored.setdefault(
            "compatibilities", sorted({"EC2", *stored.get("requiresCompatibilities", [])})
        )
        stored.setdefault("requiresAttributes", [])
        stored.setdefault("registeredBy", f"arn:aws:iam::{self.account}:root")
        self.revisions[family].append(stored)
        self.tags[arn] = list(tags or [])
        return arn

    def start_task(self, cluster: str, task_definition: str) -> str:
        """Start a standalone task (RUNNING until stopped); returns its ARN.

        A deregistered revision is refused as on ECS (ClientException).
        """
        found = self._usable_revision(task_definition, "RunTask")
        if cluster not in self.clusters:
            raise _cluster_not_found("RunTask")
        task_arn = f"arn:aws:ecs:{self.region}:{self.account}:task/{cluster}/{next(self._ids):032x}"
        self.running_tasks.append(
            {
                "taskArn": task_arn,
                "cluster": cluster,
                "taskDefinitionArn": found["taskDefinitionArn"],
                "lastStatus": "RUNNING",
                "desiredStatus": "RUNNING",
            }
        )
        return task_arn

    def set_task_result(
        self, container: str, exit_code: int | None, lines: Sequence[str] = ()
    ) -> None:
        """What the named container exits with (None: no exit code, as a task that never
        started) and the lines it logs, in tasks stopped by :meth:`finish_task`."""
        self.task_results[container] = (exit_code, list(lines))

    def start_task_run(self, task_arn: str) -> None:
        """Move a one-off task to RUNNING."""
        task = self.task_runs[task_arn]
        task["lastStatus"] = "RUNNING"
        for container in task["containers"]:
            container["lastStatus"] = "RUNNING"

    def finish_task(
        self, task_arn: str, *, stop_code: str = "EssentialContainerExited", reason: str = ""
    ) -> None:
        """Stop a one-off task: each container exits as :meth:`set_task_result` says (default 0;
        1 for a ``fail-`` image) and its lines go to its awslogs stream."""
        task = self.task_runs[task_arn]
        definition = self._find_revision(task["taskDefinitionArn"], "DescribeTasks")
        task_id = task_arn.rsplit("/", 1)[-1]
        for container in task["containers"]:
            name = str(container["name"])
            image = str(container.get("image", ""))
            default = 1 if _is_broken(image) else 0
            exit_code, lines = self.task_results.get(name, (default, []))
            container["lastStatus"] = "STOPPED"
            if exit_code is not None:
                container["exitCode"] = exit_code
            spec: dict[str, Any] = next(
                (c for c in definition["containerDefinitions"] if c.get("name") == name), {}
            )
            options = (spec.get("logConfiguration") or {}).get("options") or {}
            if spec.get("logConfiguration", {}).get("logDriver") == "awslogs" and options.get(
                "awslogs-group"
            ):
                stream = f"{options.get('awslogs-stream-prefix', '')}/{name}/{task_id}"
                self.log_streams[(options["awslogs-group"], stream)].extend(lines)
        task.update(
            lastStatus="STOPPED",
            desiredStatus="STOPPED",
            stopCode=stop_code,
            stoppedReason=reason or _STOP_REASON,
            stoppedAt=_EPOCH,
        )

    def stop_standalone_task(self, task_arn: str) -> None:
        """Stop a standalone task: it no longer counts as running."""
        self.running_tasks = [t for t in self.running_tasks if t["taskArn"] != task_arn]

    def add_schedule(self, rule: str, task_definition: str) -> None:
        """Add an EventBridge rule target that runs ``task_definition`` (an ARN, with or
        without its revision) on a cluster of this account."""
        self.schedules[rule].append(
            {
                "Id": f"t{next(self._ids)}",
                "Arn": f"arn:aws:ecs:{self.region}:{self.account}:cluster/demo",
                "EcsParameters": {"TaskDefinitionArn": task_definition, "TaskCount": 1},
            }
        )

    def _usable_revision(self, task_definition: str, operation: str) -> dict[str, Any]:
        """A revision something may start from: an INACTIVE one is refused, as on ECS."""
        found = self._find_revision(task_definition, operation)
        if found["status"] != "ACTIVE":
            raise AwsRequestError(
                f"{operation} failed with ClientException: TaskDefinition is inactive",
                "ClientException",
            )
        return found

    def deregister_task_definition(self, task_definition: str) -> None:
        """Deregister a revision: INACTIVE, still described by revision or ARN."""
        found = self._find_revision(task_definition, "DeregisterTaskDefinition")
        found.update(status="INACTIVE", deregisteredAt=_EPOCH)

    def add_service(
        self,
        cluster: str,
        name: str,
        task_definition: str,
        *,
        desired: int = 2,
        breaker: bool = True,
        rollback: bool = True,
        configuration: dict[str, Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Create a steady service on ``task_definition`` (creating the cluster if need be).

        ``configuration`` is added to its deployment configuration (a ``strategy`` of
        BLUE_GREEN, LINEAR or CANARY, bake times, lifecycle hooks, alarms); ``extra`` are more
        DescribeServices fields as given (``deploymentController``, ``loadBalancers``...).
        """
        self.add_cluster(cluster)
        # A test may run a service on a revision the fake does not hold: kept as given.
        with contextlib.suppress(NotFoundError):
            task_definition = self._find_revision(task_definition, "CreateService")[
                "taskDefinitionArn"
            ]
        service = {
            "serviceName": name,
            "serviceArn": f"arn:aws:ecs:{self.region}:{self.account}:service/{cluster}/{name}",
            "clusterArn": f"arn:aws:ecs:{self.region}:{self.account}:cluster/{cluster}",
            "status": "ACTIVE",
            "desiredCount": desired,
            "runningCount": desired,
            "pendingCount": 0,
            "taskDefinition": task_definition,
            "deploymentConfiguration": {
                "deploymentCircuitBreaker": {"enable": breaker, "rollback": rollback},
                **copy.deepcopy(configuration or {}),
            },
            "events": [],
            **copy.deepcopy(extra),
        }
        initial = self._deployment(task_definition, desired, "COMPLETED", desired)
        service["deployments"] = [initial]
        self.services[(cluster, name)] = service
        first = self._record_history(cluster, name, initial)
        first["status"] = "SUCCESSFUL"
        return service

    def _record_history(
        self, cluster: str, service: str, deployment: dict[str, Any]
    ) -> dict[str, Any]:
        """Add ECS's history entry (and service revision) for a new deployment."""
        n = next(self._ids)
        base = f"arn:aws:ecs:{self.region}:{self.account}"
        revision = f"{base}:service-revision/{cluster}/{service}/{n}"
        self.service_revisions[revision] = {
            "serviceRevisionArn": revision,
            "serviceArn": f"{base}:service/{cluster}/{service}",
            "clusterArn": f"{base}:cluster/{cluster}",
            "taskDefinition": deployment["taskDefinition"],
        }
        entry: dict[str, Any] = {
            "serviceDeploymentArn": f"{base}:service-deployment/{cluster}/{service}/{n}",
            "serviceArn": f"{base}:service/{cluster}/{service}",
            "clusterArn": f"{base}:cluster/{cluster}",
            "targetServiceRevision": {"arn": revision},
            "status": "IN_PROGRESS",
            "createdAt": datetime.datetime.now(datetime.UTC),
            "deploymentCircuitBreaker": {"status": "MONITORING", "failureCount": 0, "threshold": 3},
        }
        # As ECS: the entry carries the configuration it deploys with; one of ECS's own
        # strategies also its lifecycle stage, hooks that ran, and the alarms it watches.
        configuration = copy.deepcopy(
            self.services[(cluster, service)].get("deploymentConfiguration") or {}
        )
        entry["deploymentConfiguration"] = configuration
        if configuration.get("strategy", "ROLLING") != "ROLLING":
            entry["lifecycleStage"] = "RECONCILE_SERVICE"
            entry["lifecycleHookDetails"] = []
        elif configuration.get("lifecycleHooks"):
            # A rolling deployment with hooks: ECS runs them at PRE_SCALE_UP and POST_SCALE_UP.
            entry["lifecycleStage"] = "PRE_SCALE_UP"
            entry["lifecycleHookDetails"] = []
        alarms = configuration.get("alarms") or {}
        if alarms.get("enable"):
            entry["alarms"] = {
                "status": "MONITORING",
                "alarmNames": list(alarms.get("alarmNames") or []),
                "triggeredAlarmNames": [],
            }
        self.history[(cluster, service)].append(entry)
        self._entry_of[deployment["id"]] = entry
        return entry

    def _deployment(self, td: str, desired: int, state: str, running: int = 0) -> dict[str, Any]:
        return {
            "id": f"ecs-svc/{next(self._ids):019d}",
            "status": "PRIMARY",
            "taskDefinition": td,
            "desiredCount": desired,
            "runningCount": running,
            "pendingCount": desired - running,
            "failedTasks": 0,
            "rolloutState": state,
            "rolloutStateReason": "",
        }

    def _event(self, service: dict[str, Any], message: str) -> None:
        n = next(self._ids)
        service["events"].insert(0, {"id": f"ev-{n}", "createdAt": f"t{n}", "message": message})

    def complete(self, cluster: str, name: str) -> None:
        """Finish the PRIMARY deployment: COMPLETED, all running, older deployments gone."""
        service = self.services[(cluster, name)]
        primary = service["deployments"][0]
        primary.update(
            rolloutState="COMPLETED", runningCount=primary["desiredCount"], pendingCount=0
        )
        for gone in service["deployments"][1:]:
            entry = self._entry_of.get(gone["id"])
            if entry is not None and entry["status"] == "ROLLBACK_IN_PROGRESS":
                entry["status"] = "ROLLBACK_SUCCESSFUL"
            elif entry is not None and entry["status"] == "IN_PROGRESS":
                entry["status"] = "STOPPED"
        entry = self._entry_of.get(primary["id"])
        if entry is not None and entry["status"] == "IN_PROGRESS":
            entry["status"] = "SUCCESSFUL"
            if "lifecycleStage" in entry:
                entry["lifecycleStage"] = "CLEAN_UP"
        if "rolling back" in primary["rolloutStateReason"]:
            # As on ECS: once the rollback is over, the reason no longer says "rolling back".
            primary["rolloutStateReason"] = "ECS deployment circuit breaker: rollback completed."
        service["deployments"] = [primary]
        self._event(service, f"(service {name}) has reached a steady state.")

    def fail_rollout(self, cluster: str, name: str, *, alarm: str | None = None) -> None:
        """Fail the PRIMARY as the circuit breaker does (or, with ``alarm``, as a deployment
        alarm in ALARM does); roll back when the service (or its alarms) says so.

        Leaves three STOPPED tasks of the failed revision, as the breaker's threshold needs.
        """
        service = self.services[(cluster, name)]
        failed = service["deployments"][0]
        if alarm is None:
            why = "ECS deployment circuit breaker: tasks failed to start."
            by = "ECS deployment circuit breaker"
            rollback = service["deploymentConfiguration"]["deploymentCircuitBreaker"]["rollback"]
        else:
            why = f"ECS deployment alarms: alarm(s) {alarm} in ALARM state."
            by = "ECS deployment alarms"
            rollback = True
        failed.update(rolloutState="FAILED", failedTasks=3, rolloutStateReason=why)
        for _ in range(failed["failedTasks"]):
            self._stop_failed_task(cluster, name, failed["taskDefinition"])
        self._event(service, f"(service {name}) deployment {failed['id']} failed")
        entry = self._entry_of.get(failed["id"])
        rolls_back = rollback and len(service["deployments"]) > 1
        if entry is not None:
            if alarm is None:
                entry["deploymentCircuitBreaker"] = {
                    "status": "TRIGGERED",
                    "failureCount": failed["failedTasks"],
                    "threshold": 3,
                }
            else:
                entry["alarms"] = {
                    "status": "TRIGGERED",
                    "alarmNames": [alarm],
                    "triggeredAlarmNames": [alarm],
                }
            entry["status"] = "ROLLBACK_IN_PROGRESS" if rolls_back else "STOPPED"
            entry["statusReason"] = why
            if rolls_back:
                entry["rollback"] = {
                    "reason": why,
                    "startedAt": datetime.datetime.now(datetime.UTC),
                }
        if rolls_back:
            previous = service["deployments"][1]["taskDefinition"]
            back = self._deployment(previous, service["desiredCount"], "IN_PROGRESS")
            back["rolloutStateReason"] = (
                f"{by}: rolling back to deploymentId {service['deployments'][1]['id']}."
            )
            failed["status"] = "ACTIVE"
            service["deployments"] = [back, failed]
            service["taskDefinition"] = previous

    # -- ECS's own strategies (BLUE_GREEN, LINEAR, CANARY) ----------------------------------

    def _primary_entry(self, cluster: str, name: str) -> dict[str, Any]:
        """The service deployment of the service's PRIMARY deployment."""
        primary = self.services[(cluster, name)]["deployments"][0]
        return self._entry_of[primary["id"]]

    def enter_stage(
        self, cluster: str, name: str, stage: str, *, traffic: float | None = None
    ) -> None:
        """Move the PRIMARY's service deployment to a lifecycle stage (BAKE_TIME...). As on
        ECS, DescribeServices still says IN_PROGRESS: the stages show only in the history.
        ``traffic``: the percent of production traffic ECS now asks for the new revision."""
        entry = self._primary_entry(cluster, name)
        entry["status"] = "IN_PROGRESS"
        entry["lifecycleStage"] = stage
        if traffic is not None:
            entry["targetServiceRevision"]["requestedProductionTrafficWeight"] = traffic
        entry["updatedAt"] = datetime.datetime.now(datetime.UTC)

    def await_approval(
        self,
        cluster: str,
        name: str,
        stage: str,
        *,
        hook_id: str = "hook-1",
        expires_at: datetime.datetime | None = None,
        timeout_action: str = "ROLLBACK",
    ) -> None:
        """Pause the PRIMARY's service deployment at ``stage`` on a PAUSE hook
        (AWAITING_ACTION), as ECS reports it until ContinueServiceDeployment."""
        self.enter_stage(cluster, name, stage)
        detail: dict[str, Any] = {
            "hookId": hook_id,
            "targetType": "PAUSE",
            "status": "AWAITING_ACTION",
            "timeoutAction": timeout_action,
        }
        if expires_at is not None:
            detail["expiresAt"] = expires_at
        self._primary_entry(cluster, name)["lifecycleHookDetails"] = [detail]

    def trigger_alarms(self, cluster: str, name: str, *alarms: str) -> None:
        """Put deployment alarms in ALARM: ECS rolls the deployment back when the service's
        alarms say rollback, else stops it (STOPPED)."""
        entry = self._primary_entry(cluster, name)
        configured = self.services[(cluster, name)]["deploymentConfiguration"].get("alarms") or {}
        entry["alarms"] = {
            "status": "TRIGGERED",
            "alarmNames": list(configured.get("alarmNames") or alarms),
            "triggeredAlarmNames": list(alarms),
        }
        self._end_staged(
            cluster,
            name,
            f"CloudWatch alarm(s) {', '.join(alarms)} in ALARM state.",
            rollback=bool(configured.get("rollback", True)),
        )

    def fail_hook(self, cluster: str, name: str, stage: str, function_arn: str) -> None:
        """A Lambda lifecycle hook at ``stage`` answers FAILED: ECS rolls the deployment back."""
        self.enter_stage(cluster, name, stage)
        entry = self._primary_entry(cluster, name)
        entry["lifecycleHookDetails"] = [
            {
                "hookId": f"hook-{next(self._ids)}",
                "targetType": "AWS_LAMBDA",
                "targetArn": function_arn,
                "status": "FAILED",
            }
        ]
        self._end_staged(cluster, name, "Lifecycle hook failed.", rollback=True)

    def _end_staged(self, cluster: str, name: str, reason: str, *, rollback: bool) -> None:
        """ECS ends the PRIMARY's staged deployment: it rolls back (traffic returns to the
        revision before, ROLLBACK_IN_PROGRESS until :meth:`complete`) or stops (STOPPED)."""
        entry = self._primary_entry(cluster, name)
        entry["statusReason"] = reason
        if not rollback:
            entry["status"] = "STOPPED"
            return
        entry["status"] = "ROLLBACK_IN_PROGRESS"
        entry["rollback"] = {"reason": reason, "startedAt": datetime.datetime.now(datetime.UTC)}
        self._back_to_previous(cluster, name)

    def _back_to_previous(self, cluster: str, name: str) -> None:
        """Make the deployment before the PRIMARY the PRIMARY again (ECS's rollback)."""
        service = self.services[(cluster, name)]
        failed = service["deployments"][0]
        if len(service["deployments"]) > 1:
            previous = service["deployments"][1]["taskDefinition"]
            back = self._deployment(previous, service["desiredCount"], "IN_PROGRESS")
            failed.update(status="ACTIVE", rolloutState="FAILED")
            service["deployments"] = [back, failed]
            service["taskDefinition"] = previous

    def _stop_failed_task(self, cluster: str, service: str, task_definition: str) -> None:
        """Record a task of ``task_definition`` that stopped because a container exited."""
        task_id = f"{next(self._ids):032x}"
        task_arn = f"arn:aws:ecs:{self.region}:{self.account}:task/{cluster}/{task_id}"
        try:
            definitions = self._find_revision(task_definition, "DescribeTasks")[
                "containerDefinitions"
            ]
        except NotFoundError:
            definitions = [{"name": "web", "image": ""}]
        any_broken = any(_is_broken(str(c.get("image", ""))) for c in definitions)
        containers = []
        for index, definition in enumerate(definitions):
            image = str(definition.get("image", ""))
            # The broken container exits 1 and ECS stops the others (143); with no image marked
            # broken, the first container is the one that exited.
            exited = _is_broken(image) if any_broken else index == 0
            containers.append(
                {
                    "name": definition.get("name"),
                    "image": image,
                    "taskArn": task_arn,
                    "lastStatus": "STOPPED",
                    "exitCode": 1 if exited else 143,
                }
            )
        self.stopped_tasks[(cluster, service)].append(
            {
                "taskArn": task_arn,
                "clusterArn": f"arn:aws:ecs:{self.region}:{self.account}:cluster/{cluster}",
                "taskDefinitionArn": task_definition,
                "group": f"service:{service}",
                "lastStatus": "STOPPED",
                "desiredStatus": "STOPPED",
                "stopCode": _STOP_CODE,
                "stoppedReason": _STOP_REASON,
                "stoppedAt": _EPOCH,
                "containers": containers,
            }
        )

    # -- EcsGateway ----------------------------------------------------------------------

    def _call(self, operation: str) -> None:
        self.calls.append(operation)
        if self._errors[operation]:
            raise self._errors[operation].pop(0)

    def _find_revision(self, task_definition: str, operation: str) -> dict[str, Any]:
        """A revision by family (the latest ACTIVE one), ``family:revision`` or ARN.

        An INACTIVE revision is found by revision or ARN, as on AWS; ClientException otherwise.
        """
        name = task_definition.rsplit("/", 1)[-1]
        family, _, revision = name.partition(":")
        revisions = self.revisions.get(family, [])
        if revision:
            found = [r for r in revisions if str(r["revision"]) == revision]
        else:
            found = [r for r in revisions if r["status"] == "ACTIVE"]
        if not found:
            raise NotFoundError(
                f"{operation} failed with ClientException: Unable to describe task definition.",
                "ClientException",
            )
        return found[-1]

    def _service(self, cluster: str, service: str, operation: str) -> dict[str, Any]:
        if cluster not in self.clusters:
            raise _cluster_not_found(operation)
        found = self.services.get((cluster, service))
        if found is None:
            raise _service_not_found(operation)
        return found

    async def reserve(self, operation: str, ticket: Ticket | None = None) -> None:
        """See EcsGateway. The fake has no rate limits."""

    async def describe_services(self, cluster: str, services: list[str]) -> dict[str, Any]:
        """See EcsGateway. One DescribeServices call for up to 10 services."""
        self._call("DescribeServices")
        if cluster not in self.clusters:
            raise _cluster_not_found("DescribeServices")
        found = {}
        for name in services[:10]:
            service = self.services.get((cluster, name.rsplit("/", 1)[-1]))
            if service is not None:
                found[service["serviceName"]] = copy.deepcopy(service)
        return found

    async def describe_service(self, cluster: str, service: str) -> dict[str, Any] | None:
        """See EcsGateway. A missing cluster is a NotFoundError, a missing service None."""
        self._call("DescribeServices")
        if cluster not in self.clusters:
            raise _cluster_not_found("DescribeServices")
        found = self.services.get((cluster, service))
        return copy.deepcopy(found) if found else None

    async def describe_task_definition(
        self, task_definition: str
    ) -> tuple[dict[str, Any], list[dict[str, str]]]:
        """See EcsGateway."""
        self._call("DescribeTaskDefinition")
        found = self._find_revision(task_definition, "DescribeTaskDefinition")
        return copy.deepcopy(found), copy.deepcopy(self.tags[found["taskDefinitionArn"]])

    async def active_task_definition_arns(self, family: str) -> list[str]:
        """See EcsGateway. One ListTaskDefinitions call per page of 100."""
        active = [
            str(r["taskDefinitionArn"])
            for r in reversed(self.revisions.get(family, []))
            if r["status"] == "ACTIVE"
        ]
        for _ in range(len(active) // 100 + 1):
            self._call("ListTaskDefinitions")
        return active

    async def service_task_definitions(self) -> set[str]:
        """See EcsGateway. Every cluster's services, ten per DescribeServices."""
        self._call("ListClusters")
        used: set[str] = set()
        for cluster in sorted(self.clusters):
            self._call("ListServices")
            services = [s for (c, _), s in self.services.items() if c == cluster]
            for _ in range(0, len(services), 10):
                self._call("DescribeServices")
            for service in services:
                used.add(service["taskDefinition"])
                used |= {d["taskDefinition"] for d in service["deployments"]}
        return used

    async def running_task_definitions(self) -> set[str]:
        """See EcsGateway. Standalone tasks only: the fake starts no tasks for services (their
        revisions are in service_task_definitions)."""
        self._call("ListClusters")
        used: set[str] = set()
        for cluster in sorted(self.clusters):
            self._call("ListTasks")
            tasks = [t for t in self.running_tasks if t["cluster"] == cluster]
            for _ in range(0, len(tasks), 100):
                self._call("DescribeTasks")
            used |= {t["taskDefinitionArn"] for t in tasks}
        return used

    async def scheduled_task_definitions(self) -> set[str]:
        """See EcsGateway. One ListRules, one ListTargetsByRule per rule."""
        self._call("ListRules")
        used: set[str] = set()
        for rule in sorted(self.schedules):
            self._call("ListTargetsByRule")
            used |= {
                str(t["EcsParameters"]["TaskDefinitionArn"])
                for t in self.schedules[rule]
                if t.get("EcsParameters", {}).get("TaskDefinitionArn")
            }
        return used

    async def deregister_revision(self, arn: str) -> None:
        """See EcsGateway. The fake has no rate limits."""
        self._call("DeregisterTaskDefinition")
        self.deregister_task_definition(arn)

    async def tag_task_definition(self, arn: str, tags: dict[str, str]) -> None:
        """See EcsGateway. An unknown revision is a ClientException, as on AWS."""
        self._call("TagResource")
        found = self._find_revision(arn, "TagResource")
        kept = [t for t in self.tags[found["taskDefinitionArn"]] if t["key"] not in tags]
        self.tags[found["taskDefinitionArn"]] = kept + [
            {"key": k, "value": v} for k, v in tags.items()
        ]

    async def newer_task_definition_arns(self, family: str, after_revision: int) -> list[str]:
        """See EcsGateway. One ListTaskDefinitions call per page of ten, newest first."""
        newer = [
            r["taskDefinitionArn"]
            for r in reversed(self.revisions.get(family, []))
            if r["status"] == "ACTIVE" and r["revision"] > after_revision
        ]
        for _ in range(len(newer) // 10 + 1):
            self._call("ListTaskDefinitions")
        return newer

    async def register_task_definition(self, payload: dict[str, Any]) -> dict[str, Any]:
        """See EcsGateway. Refuses what botocore and ECS refuse, with their codes."""
        self._call("RegisterTaskDefinition")
        # botocore validates the request before sending it: ParamValidationError, no AWS call.
        problems = [f'Unknown parameter in input: "{k}"' for k in READ_ONLY_KEYS if k in payload]
        problems += [
            f'Missing required parameter in input: "{k}"'
            for k in _REQUIRED_REGISTER_KEYS
            if k not in payload
        ]
        if problems:
            raise AwsRequestError(
                "RegisterTaskDefinition: Parameter validation failed:\n" + "\n".join(problems),
                "ParamValidationError",
            )
        if "tags" in payload and not payload["tags"]:
            raise AwsRequestError(
                "RegisterTaskDefinition failed with ClientException: Tags can not be empty.",
                "ClientException",
            )
        arn = self.add_task_definition(payload, payload.get("tags"))
        return copy.deepcopy(self.revisions[family_of(arn)][-1])

    async def update_service(
        self,
        cluster: str,
        service: str,
        task_definition: str,
        *,
        force_new_deployment: bool,
        desired_count: int | None = None,
        deployment_configuration: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """See EcsGateway. The service comes back on the revision's full ARN."""
        self._call("UpdateService")
        request: dict[str, Any] = {
            "cluster": cluster,
            "service": service,
            "taskDefinition": task_definition,
            "forceNewDeployment": force_new_deployment,
        }
        if desired_count is not None:
            request["desiredCount"] = desired_count
        if deployment_configuration is not None:
            request["deploymentConfiguration"] = copy.deepcopy(deployment_configuration)
        self.update_requests.append(request)
        found = self._service(cluster, service, "UpdateService")
        if found["status"] != "ACTIVE":
            raise NotFoundError(
                "UpdateService failed with ServiceNotActiveException: Service was not ACTIVE.",
                "ServiceNotActiveException",
            )
        # Checked before anything changes: ECS refuses the whole request.
        target = self._usable_revision(task_definition, "UpdateService")["taskDefinitionArn"]
        if desired_count is not None:
            found["desiredCount"] = desired_count
        if deployment_configuration is not None:
            found["deploymentConfiguration"] = copy.deepcopy(deployment_configuration)
        old = found["deployments"][0]
        if old["taskDefinition"] != target or force_new_deployment:
            for deployment in found["deployments"]:
                deployment["status"] = "ACTIVE"
                entry = self._entry_of.get(deployment["id"])
                if entry is not None and entry["status"] == "IN_PROGRESS":
                    entry["status"] = "STOPPED"
                    entry["statusReason"] = "replaced by a newer deployment"
            new = self._deployment(target, found["desiredCount"], "IN_PROGRESS")
            found["deployments"].insert(0, new)
            found["taskDefinition"] = target
            self._record_history(cluster, service, new)
        return copy.deepcopy(found)

    def _history_call(self, operation: str) -> None:
        self._call(operation)
        if not self.history_supported:
            raise AwsRequestError(
                f"{operation} failed with AccessDeniedException: not authorized",
                "AccessDeniedException",
            )

    async def find_service_deployment(
        self, cluster: str, service: str, task_definition: str, *, created_after: float
    ) -> dict[str, Any] | None:
        """See EcsGateway."""
        self._history_call("ListServiceDeployments")
        self._service(cluster, service, "ListServiceDeployments")
        after = datetime.datetime.fromtimestamp(created_after, datetime.UTC)
        entries = [e for e in self.history[(cluster, service)] if e["createdAt"] >= after]
        if entries:
            self._history_call("DescribeServiceRevisions")
        ours = [
            e
            for e in entries
            if self.service_revisions[e["targetServiceRevision"]["arn"]]["taskDefinition"]
            == task_definition
        ]
        if not ours:
            return None
        return await self.describe_service_deployment(ours[-1]["serviceDeploymentArn"])

    async def describe_service_deployment(self, arn: str) -> dict[str, Any] | None:
        """See EcsGateway."""
        self._history_call("DescribeServiceDeployments")
        for entries in self.history.values():
            for entry in entries:
                if entry["serviceDeploymentArn"] == arn:
                    return copy.deepcopy(entry)
        return None

    async def describe_service_deployments(self, arns: Sequence[str]) -> dict[str, dict[str, Any]]:
        """See EcsGateway."""
        self._history_call("DescribeServiceDeployments")
        wanted = set(arns[:MAX_SERVICE_DEPLOYMENTS])
        return {
            entry["serviceDeploymentArn"]: copy.deepcopy(entry)
            for entries in self.history.values()
            for entry in entries
            if entry["serviceDeploymentArn"] in wanted
        }

    async def stop_service_deployment(self, arn: str) -> None:
        """See EcsGateway. ECS rolls back to the deployment before; a finished one: Conflict."""
        self._history_call("StopServiceDeployment")
        for (cluster, name), entries in self.history.items():
            for entry in entries:
                if entry["serviceDeploymentArn"] != arn:
                    continue
                if entry["status"] not in ("PENDING", "IN_PROGRESS"):
                    raise AwsRequestError(
                        "StopServiceDeployment failed with ConflictException: the service "
                        "deployment is not in progress",
                        "ConflictException",
                    )
                entry["status"] = "ROLLBACK_IN_PROGRESS"
                entry["rollback"] = {"reason": "stopped on request"}
                service = self.services[(cluster, name)]
                failed = service["deployments"][0]
                if len(service["deployments"]) > 1:
                    previous = service["deployments"][1]["taskDefinition"]
                    back = self._deployment(previous, service["desiredCount"], "IN_PROGRESS")
                    failed.update(status="ACTIVE", rolloutState="FAILED")
                    service["deployments"] = [back, failed]
                    service["taskDefinition"] = previous
                return
        raise NotFoundError(
            "StopServiceDeployment failed with ServiceDeploymentNotFoundException",
            "ServiceDeploymentNotFoundException",
        )

    async def continue_service_deployment(
        self, arn: str, hook_id: str, action: Literal["CONTINUE", "ROLLBACK"] = "CONTINUE"
    ) -> None:
        """See EcsGateway. The hook must be AWAITING_ACTION (else InvalidParameterException);
        it SUCCEEDED, and ROLLBACK rolls the deployment back as ECS's own rollback does."""
        self._history_call("ContinueServiceDeployment")
        for (cluster, name), entries in self.history.items():
            for entry in entries:
                if entry["serviceDeploymentArn"] != arn:
                    continue
                hooks = [
                    h
                    for h in entry.get("lifecycleHookDetails") or []
                    if h.get("hookId") == hook_id and h.get("status") == "AWAITING_ACTION"
                ]
                if not hooks:
                    raise AwsRequestError(
                        "ContinueServiceDeployment failed with InvalidParameterException: no "
                        f"lifecycle hook {hook_id} awaits action in this service deployment",
                        "InvalidParameterException",
                    )
                hooks[0]["status"] = "SUCCEEDED"
                if action == "ROLLBACK":
                    self._end_staged(
                        cluster,
                        name,
                        "Service deployment rollback requested by ContinueServiceDeployment.",
                        rollback=True,
                    )
                return
        raise NotFoundError(
            "ContinueServiceDeployment failed with ServiceDeploymentNotFoundException",
            "ServiceDeploymentNotFoundException",
        )

    async def list_stopped_task_arns(self, cluster: str, service: str) -> list[str]:
        """See EcsGateway."""
        self._call("ListTasks")
        self._service(cluster, service, "ListTasks")
        return [t["taskArn"] for t in reversed(self.stopped_tasks[(cluster, service)])]

    async def describe_tasks(self, cluster: str, task_arns: list[str]) -> list[dict[str, Any]]:
        """See EcsGateway. Tasks of other clusters and unknown ARNs are left out."""
        self._call("DescribeTasks")
        if not task_arns:
            return []
        if cluster not in self.clusters:
            raise _cluster_not_found("DescribeTasks")
        wanted = {ref.rsplit("/", 1)[-1] for ref in task_arns[:100]}
        runs = [t for t in self.task_runs.values() if t["clusterArn"].endswith(f"/{cluster}")]
        return [
            copy.deepcopy(task)
            for (task_cluster, _), tasks in self.stopped_tasks.items()
            if task_cluster == cluster
            for task in tasks
            if task["taskArn"].rsplit("/", 1)[-1] in wanted
        ] + [copy.deepcopy(t) for t in runs if t["taskArn"].rsplit("/", 1)[-1] in wanted]

    async def run_task(
        self,
        cluster: str,
        task_definition: str,
        *,
        started_by: str,
        client_token: str,
        placement: dict[str, Any],
        overrides: dict[str, Any],
    ) -> dict[str, Any]:
        """See EcsGateway. The task waits in PROVISIONING for :meth:`start_task_run` and
        :meth:`finish_task`; a repeated client token returns the task it started."""
        self._call("RunTask")
        if cluster not in self.clusters:
            raise _cluster_not_found("RunTask")
        found = self._usable_revision(task_definition, "RunTask")
        self.run_task_requests.append(
            {
                "cluster": cluster,
                "taskDefinition": task_definition,
                "startedBy": started_by,
                "clientToken": client_token,
                **placement,
                "overrides": copy.deepcopy(overrides),
            }
        )
        for task in self.task_runs.values():
            if task["clientToken"] == client_token:
                return copy.deepcopy(task)
        names = {c.get("name") for c in overrides.get("containerOverrides", [])}
        unknown = names - {c.get("name") for c in found["containerDefinitions"]}
        if unknown:
            raise AwsRequestError(
                "RunTask failed with InvalidParameterException: Override for container named "
                f"{sorted(unknown)[0]} is not a container in the TaskDefinition.",
                "InvalidParameterException",
            )
        task_arn = f"arn:aws:ecs:{self.region}:{self.account}:task/{cluster}/{next(self._ids):032x}"
        task = {
            "taskArn": task_arn,
            "clusterArn": f"arn:aws:ecs:{self.region}:{self.account}:cluster/{cluster}",
            "taskDefinitionArn": found["taskDefinitionArn"],
            "lastStatus": "PROVISIONING",
            "desiredStatus": "RUNNING",
            "startedBy": started_by,
            "clientToken": client_token,
            "launchType": placement.get("launchType", "EC2"),
            "overrides": copy.deepcopy(overrides),
            "containers": [
                {
                    "name": c.get("name"),
                    "image": c.get("image", ""),
                    "taskArn": task_arn,
                    "lastStatus": "PENDING",
                }
                for c in found["containerDefinitions"]
            ],
        }
        self.task_runs[task_arn] = task
        return copy.deepcopy(task)

    async def stop_task(self, cluster: str, task_arn: str, reason: str) -> None:
        """See EcsGateway. A one-off task stops at once (UserInitiated); its started containers
        are killed (137)."""
        self._call("StopTask")
        if cluster not in self.clusters:
            raise _cluster_not_found("StopTask")
        task = self.task_runs.get(task_arn)
        if task is None:
            raise AwsRequestError(
                "StopTask failed with InvalidParameterException: The referenced task was not "
                "found.",
                "InvalidParameterException",
            )
        if task["lastStatus"] == "STOPPED":
            return
        for container in task["containers"]:
            if container["lastStatus"] == "RUNNING":
                container["exitCode"] = 137
            container["lastStatus"] = "STOPPED"
        task.update(
            lastStatus="STOPPED",
            desiredStatus="STOPPED",
            stopCode="UserInitiated",
            stoppedReason=reason,
            stoppedAt=_EPOCH,
        )

    async def task_arns_started_by(self, cluster: str, started_by: str) -> list[str]:
        """See EcsGateway. One ListTasks call per desired status (RUNNING, STOPPED)."""
        self._call("ListTasks")
        self._call("ListTasks")
        if cluster not in self.clusters:
            raise _cluster_not_found("ListTasks")
        return [
            arn
            for arn, task in self.task_runs.items()
            if task["clusterArn"].endswith(f"/{cluster}") and task["startedBy"] == started_by
        ]

    async def log_tail(self, group: str, stream: str, limit: int) -> list[str]:
        """See EcsGateway."""
        self._call("GetLogEvents")
        lines = self.log_streams.get((group, stream), [])
        return list(lines[-limit:]) if limit > 0 else []


class FakeAws(FakeEcs):
    """FakeEcs plus the stack-side calls: clusters, network, target groups and stacks.

    Stacks do not run templates: a test plays CloudFormation's part by setting a stack's status
    (:meth:`set_stack`, :meth:`finish_stack`), and reads what was sent from
    :attr:`stack_requests`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.clusters.add("demo")
        self.subnets: dict[str, str] = {"demo-a": "subnet-0aaa1111", "demo-b": "subnet-0bbb2222"}
        self.security_groups: dict[str, str] = {"demo": "sg-0ccc3333"}
        self.target_groups: dict[str, dict[str, Any]] = {}
        self.stacks: dict[str, dict[str, Any]] = {}
        self.events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.stack_requests: list[tuple[str, str, dict[str, str]]] = []
        # What each stack was last created or updated from, and the last operation's token.
        self._stack_sources: dict[str, tuple[str, dict[str, str]]] = {}
        self._stack_tokens: dict[str, str] = {}

    def add_subnet(self, name: str) -> str:
        """Add a subnet with this Name tag; returns its id."""
        self.subnets[name] = f"subnet-{next(self._ids):017x}"
        return self.subnets[name]

    def add_security_group(self, name: str) -> str:
        """Add a security group with this group name; returns its id."""
        self.security_groups[name] = f"sg-{next(self._ids):017x}"
        return self.security_groups[name]

    def add_target_group(self, name: str, *, attached: bool = True, kind: str = "ip") -> str:
        """Add a target group; returns its ARN."""
        arn = f"arn:aws:elasticloadbalancing:{self.region}:{self.account}:targetgroup/{name}/1"
        self.target_groups[name] = {
            "TargetGroupArn": arn,
            "TargetGroupName": name,
            "TargetType": kind,
            "LoadBalancerArns": ["arn:aws:elasticloadbalancing:lb/app/x/1"] if attached else [],
        }
        return arn

    def set_stack(self, name: str, status: str, **fields: Any) -> None:
        """Play CloudFormation: give the stack a status (and outputs, reasons...)."""
        if name not in self.stacks:
            n = next(self._ids)
            self.stacks[name] = {
                "StackName": name,
                "StackId": f"arn:aws:cloudformation:{self.region}:{self.account}:stack/{name}/{n}",
                "CreationTime": _EPOCH,
                "Parameters": [],
                "Tags": [],
            }
        self.stacks[name].update(StackStatus=status, **fields)

    def finish_stack(self, name: str) -> None:
        """Play CloudFormation: end the operation in progress with success (``*_COMPLETE``).

        Adds the stack's own ``*_COMPLETE`` event, newest first, with the operation's token.
        """
        status = str(self.stacks[name]["StackStatus"])
        if not status.endswith("_IN_PROGRESS"):
            return
        done = status.removesuffix("_IN_PROGRESS") + "_COMPLETE"
        self.set_stack(name, done)
        self.add_stack_event(
            name,
            name,
            done,
            None,
            self._stack_tokens.get(name, ""),
            resource_type="AWS::CloudFormation::Stack",
        )

    def add_stack_event(
        self,
        name: str,
        logical: str,
        status: str,
        reason: str | None,
        token: str,
        *,
        resource_type: str = "AWS::ECS::Service",
    ) -> None:
        """Append a stack event, newest first as CloudFormation lists them."""
        n = next(self._ids)
        self.events[name].insert(
            0,
            {
                "EventId": f"e{n}",
                "Timestamp": f"t{n}",
                "LogicalResourceId": logical,
                "ResourceType": resource_type,
                "ResourceStatus": status,
                "ResourceStatusReason": reason,
                "ClientRequestToken": token,
            },
        )

    def _live_stack(self, name: str) -> dict[str, Any] | None:
        """The stack by name; a deleted one (DELETE_COMPLETE) is no longer found by name."""
        found = self.stacks.get(name)
        if found is None or found.get("StackStatus") == "DELETE_COMPLETE":
            return None
        return found

    async def cluster_is_active(self, cluster: str) -> bool:
        """See StackGateway."""
        self._call("DescribeClusters")
        return cluster in self.clusters

    @staticmethod
    def _resolve(
        refs: list[str], id_prefix: str, by_name: dict[str, str], what: str, code: str
    ) -> list[str]:
        """Ids for ids (``id_prefix``...) or names, in the order given, as boto_fargate.py resolves.

        ``what`` is ``"<spec field>: no <noun>"``; the missing references follow it.
        """
        ids = set(by_name.values())
        found = {r: r for r in refs if r.startswith(id_prefix) and r in ids}
        found.update({r: by_name[r] for r in refs if not r.startswith(id_prefix) and r in by_name})
        missing = [r for r in refs if r not in found]
        if missing:
            raise NotFoundError(f"{what} {', '.join(missing)}; check the spec", code)
        return [found[r] for r in refs]

    async def resolve_subnets(self, refs: list[str]) -> list[str]:
        """See StackGateway."""
        self._call("DescribeSubnets")
        return self._resolve(
            refs, "subnet-", self.subnets, "network.subnets: no subnet", "InvalidSubnetID.NotFound"
        )

    async def resolve_security_groups(self, refs: list[str]) -> list[str]:
        """See StackGateway."""
        self._call("DescribeSecurityGroups")
        return self._resolve(
            refs,
            "sg-",
            self.security_groups,
            "network.security_groups: no group",
            "InvalidGroup.NotFound",
        )

    async def describe_target_group(self, ref: str) -> dict[str, Any] | None:
        """See StackGateway."""
        self._call("DescribeTargetGroups")
        key = "TargetGroupArn" if ref.startswith("arn:") else "TargetGroupName"
        for group in self.target_groups.values():
            if group[key] == ref:
                return copy.deepcopy(group)
        return None

    async def describe_stack(self, name: str) -> dict[str, Any] | None:
        """See StackGateway."""
        self._call("DescribeStacks")
        found = self._live_stack(name)
        return copy.deepcopy(found) if found else None

    async def preview_stack(
        self,
        name: str,
        template: str,
        parameters: dict[str, str],
        tags: dict[str, str],
        *,
        create: bool,
    ) -> dict[str, Any]:
        """See StackGateway. Resources are compared by their template JSON: Add on a create,
        Modify where the resource differs from the stack's last template, nothing else; a
        task definition is replaced (its revisions are immutable). On a create, the stack
        CloudFormation made to hold the change set is left DELETE_IN_PROGRESS, as DeleteStack
        leaves it on AWS, until ``finish_stack``."""
        for operation in ("CreateChangeSet", "DescribeChangeSet", "DeleteChangeSet"):
            self._call(operation)
        if create and self._live_stack(name) is None:
            self._call("DeleteStack")
            self.stacks.pop(name, None)
            self.events[name] = []
            self._stack_tokens[name] = f"conveyor-plan-{name}"
            self.set_stack(
                name,
                "DELETE_IN_PROGRESS",
                Parameters=[
                    {"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()
                ],
                Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            )
        wanted = json.loads(template).get("Resources", {})
        before_template, before_parameters = self._stack_sources.get(name, ("{}", {}))
        before = {} if create else json.loads(before_template).get("Resources", {})
        changes = [
            {
                "action": "Add" if key not in before else "Modify",
                "logical_id": key,
                "type": resource.get("Type"),
                "replacement": None
                if key not in before
                else str(resource.get("Type") in _REPLACED_ON_UPDATE),
            }
            for key, resource in sorted(wanted.items())
            if key not in before
            or before[key] != resource
            or (parameters != before_parameters and not create)
        ]
        return {
            "status": "CREATE_COMPLETE" if changes else "FAILED",
            "reason": None if changes else _NO_CHANGES,
            "changes": changes,
        }

    async def create_stack(
        self, name: str, template: str, parameters: dict[str, str], tags: dict[str, str], token: str
    ) -> str:
        """See StackGateway. A stack of that name that is not deleted: AlreadyExistsException."""
        self._call("CreateStack")
        if self._live_stack(name) is not None:
            raise AwsRequestError(
                f"CreateStack failed with AlreadyExistsException: Stack [{name}] already exists",
                "AlreadyExistsException",
            )
        self.stacks.pop(name, None)
        self.events.pop(name, None)
        self.stack_requests.append(("create", template, parameters))
        self._stack_sources[name] = (template, dict(parameters))
        self._stack_tokens[name] = token
        self.set_stack(
            name,
            "CREATE_IN_PROGRESS",
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        )
        return str(self.stacks[name]["StackId"])

    async def update_stack(
        self, name: str, template: str, parameters: dict[str, str], tags: dict[str, str], token: str
    ) -> str | None:
        """See StackGateway. Refused (ValidationError) for a missing or busy stack."""
        self._call("UpdateStack")
        found = self._live_stack(name)
        if found is None:
            raise _stack_missing("UpdateStack", name)
        status = str(found.get("StackStatus"))
        if status.endswith("_IN_PROGRESS"):
            raise AwsRequestError(
                f"UpdateStack failed with ValidationError: Stack:{found['StackId']} is in "
                f"{status} state and can not be updated.",
                "ValidationError",
            )
        if self._stack_sources.get(name) == (template, parameters):
            return None
        self.stack_requests.append(("update", template, parameters))
        self._stack_sources[name] = (template, dict(parameters))
        self._stack_tokens[name] = token
        self.set_stack(name, "UPDATE_IN_PROGRESS", LastUpdatedTime=_EPOCH)
        return str(self.stacks[name]["StackId"])

    async def delete_stack(self, name: str, token: str) -> None:
        """See StackGateway. Deleting a stack that does not exist does nothing, as on AWS."""
        self._call("DeleteStack")
        if self._live_stack(name) is None:
            return
        self._stack_tokens[name] = token
        self.set_stack(name, "DELETE_IN_PROGRESS")

    async def stack_events(self, name: str) -> list[dict[str, Any]]:
        """See StackGateway."""
        self._call("DescribeStackEvents")
        if self._live_stack(name) is None:
            raise _stack_missing("DescribeStackEvents", name)
        return copy.deepcopy(self.events[name])
