"""An in-memory ECS behind the :class:`EcsGateway` interface, for tests and dry runs.

It keeps task definitions, tags and services with their deployments, and lets a test move a
rollout along (:meth:`FakeEcs.complete`, :meth:`FakeEcs.fail_rollout`) or inject errors
(:meth:`FakeEcs.inject`). Every call is recorded in :attr:`FakeEcs.calls`.
"""

from __future__ import annotations

import copy
import itertools
from collections import defaultdict
from typing import Any

from worker.aws.gateway import family_of
from worker.domain.errors import ConveyorError, NotFoundError

_READ_ONLY = ("taskDefinitionArn", "revision", "status", "registeredAt")


class FakeEcs:
    """An in-memory ECS account in one region."""

    def __init__(self, account: str = "123456789012", region: str = "us-east-1") -> None:
        self.account = account
        self.region = region
        self.revisions: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.tags: dict[str, list[dict[str, str]]] = {}
        self.services: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[str] = []
        self._errors: dict[str, list[ConveyorError]] = defaultdict(list)
        self._ids = itertools.count(1)

    # -- test controls -------------------------------------------------------------------

    def inject(self, operation: str, *errors: ConveyorError) -> None:
        """Make the next calls of ``operation`` raise these errors, in order."""
        self._errors[operation].extend(errors)

    def add_task_definition(
        self, definition: dict[str, Any], tags: list[dict[str, str]] | None = None
    ) -> str:
        """Register a revision directly; returns its ARN."""
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
                "registeredAt": "2026-01-01T00:00:00Z",
            }
        )
        self.revisions[family].append(stored)
        self.tags[arn] = list(tags or [])
        return arn

    def add_service(
        self,
        cluster: str,
        name: str,
        task_definition: str,
        *,
        desired: int = 2,
        breaker: bool = True,
        rollback: bool = True,
    ) -> dict[str, Any]:
        """Create a steady service on ``task_definition``."""
        service = {
            "serviceName": name,
            "clusterArn": f"arn:aws:ecs:{self.region}:{self.account}:cluster/{cluster}",
            "status": "ACTIVE",
            "desiredCount": desired,
            "runningCount": desired,
            "pendingCount": 0,
            "taskDefinition": task_definition,
            "deploymentConfiguration": {
                "deploymentCircuitBreaker": {"enable": breaker, "rollback": rollback}
            },
            "deployments": [self._deployment(task_definition, desired, "COMPLETED", desired)],
            "events": [],
        }
        self.services[(cluster, name)] = service
        return service

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
        service["deployments"] = [primary]
        self._event(service, f"(service {name}) has reached a steady state.")

    def fail_rollout(self, cluster: str, name: str) -> None:
        """Fail the PRIMARY as the circuit breaker does; roll back when the service says so."""
        service = self.services[(cluster, name)]
        failed = service["deployments"][0]
        failed.update(
            rolloutState="FAILED",
            failedTasks=3,
            rolloutStateReason="ECS deployment circuit breaker: tasks failed to start.",
        )
        self._event(service, f"(service {name}) deployment {failed['id']} failed")
        breaker = service["deploymentConfiguration"]["deploymentCircuitBreaker"]
        if breaker["rollback"] and len(service["deployments"]) > 1:
            previous = service["deployments"][1]["taskDefinition"]
            back = self._deployment(previous, service["desiredCount"], "IN_PROGRESS")
            back["rolloutStateReason"] = (
                f"ECS deployment circuit breaker: rolling back to deploymentId "
                f"{service['deployments'][1]['id']}."
            )
            failed["status"] = "ACTIVE"
            service["deployments"] = [back, failed]
            service["taskDefinition"] = previous

    # -- EcsGateway ----------------------------------------------------------------------

    def _call(self, operation: str) -> None:
        self.calls.append(operation)
        if self._errors[operation]:
            raise self._errors[operation].pop(0)

    async def describe_service(self, cluster: str, service: str) -> dict[str, Any] | None:
        """See EcsGateway."""
        self._call("DescribeServices")
        found = self.services.get((cluster, service))
        return copy.deepcopy(found) if found else None

    async def describe_task_definition(
        self, task_definition: str
    ) -> tuple[dict[str, Any], list[dict[str, str]]]:
        """See EcsGateway."""
        self._call("DescribeTaskDefinition")
        name = task_definition.rsplit("/", 1)[-1]
        family, _, revision = name.partition(":")
        revisions = [r for r in self.revisions.get(family, []) if r["status"] == "ACTIVE"]
        if revision:
            revisions = [r for r in revisions if str(r["revision"]) == revision]
        if not revisions:
            raise NotFoundError(
                f"DescribeTaskDefinition failed with ClientException: Unable to describe task "
                f"definition {task_definition}",
                "ClientException",
            )
        found = revisions[-1]
        return copy.deepcopy(found), copy.deepcopy(self.tags[found["taskDefinitionArn"]])

    async def list_task_definition_arns(self, family: str) -> list[str]:
        """See EcsGateway."""
        self._call("ListTaskDefinitions")
        return [r["taskDefinitionArn"] for r in self.revisions.get(family, [])]

    async def register_task_definition(self, payload: dict[str, Any]) -> dict[str, Any]:
        """See EcsGateway."""
        self._call("RegisterTaskDefinition")
        for key in _READ_ONLY:
            if key in payload:
                raise ConveyorError(f"read-only key {key} sent", "ClientException")
        if "tags" in payload and not payload["tags"]:
            raise ConveyorError("Tags can not be empty.", "InvalidParameterException")
        arn = self.add_task_definition(payload, payload.get("tags"))
        return copy.deepcopy(self.revisions[family_of(arn)][-1])

    async def update_service(
        self, cluster: str, service: str, task_definition: str, *, force_new_deployment: bool
    ) -> dict[str, Any]:
        """See EcsGateway."""
        self._call("UpdateService")
        found = self.services.get((cluster, service))
        if found is None:
            raise NotFoundError("Service not found.", "ServiceNotFoundException")
        old = found["deployments"][0]
        if old["taskDefinition"] != task_definition or force_new_deployment:
            for deployment in found["deployments"]:
                deployment["status"] = "ACTIVE"
            new = self._deployment(task_definition, found["desiredCount"], "IN_PROGRESS")
            found["deployments"].insert(0, new)
            found["taskDefinition"] = task_definition
        return copy.deepcopy(found)

    async def list_stopped_task_arns(self, cluster: str, service: str) -> list[str]:
        """See EcsGateway."""
        self._call("ListTasks")
        return [f"arn:aws:ecs:{self.region}:{self.account}:task/{cluster}/stopped1"]

    async def describe_tasks(self, cluster: str, task_arns: list[str]) -> list[dict[str, Any]]:
        """See EcsGateway."""
        self._call("DescribeTasks")
        service = next(iter(self.services.values()))
        failed = next(
            (d for d in service["deployments"] if d.get("rolloutState") == "FAILED"), None
        )
        if not failed:
            return []
        return [
            {
                "taskArn": task_arns[0],
                "taskDefinitionArn": failed["taskDefinition"],
                "stopCode": "EssentialContainerExited",
                "stoppedReason": "Essential container in task exited",
                "containers": [{"name": "web", "exitCode": 1}],
            }
        ]


class FakeAws(FakeEcs):
    """FakeEcs plus the stack-side calls: clusters, network, target groups and stacks.

    Stacks do not run templates: a test sets a stack's status (:meth:`set_stack`) to play
    CloudFormation's part, and reads what was sent from :attr:`stack_requests`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.clusters: set[str] = {"demo"}
        self.subnets: dict[str, str] = {"demo-a": "subnet-0aaa1111", "demo-b": "subnet-0bbb2222"}
        self.security_groups: dict[str, str] = {"demo": "sg-0ccc3333"}
        self.target_groups: dict[str, dict[str, Any]] = {}
        self.stacks: dict[str, dict[str, Any]] = {}
        self.events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.stack_requests: list[tuple[str, str, dict[str, str]]] = []

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
        self.stacks.setdefault(name, {"StackName": name, "StackId": f"stack/{name}"})
        self.stacks[name].update(StackStatus=status, **fields)

    def add_stack_event(
        self, name: str, logical: str, status: str, reason: str | None, token: str
    ) -> None:
        """Append a stack event, newest first as CloudFormation lists them."""
        n = next(self._ids)
        self.events[name].insert(
            0,
            {
                "EventId": f"e{n}",
                "Timestamp": f"t{n}",
                "LogicalResourceId": logical,
                "ResourceType": "AWS::ECS::Service",
                "ResourceStatus": status,
                "ResourceStatusReason": reason,
                "ClientRequestToken": token,
            },
        )

    async def cluster_is_active(self, cluster: str) -> bool:
        """See StackGateway."""
        self._call("DescribeClusters")
        return cluster in self.clusters

    async def resolve_subnets(self, refs: list[str]) -> list[str]:
        """See StackGateway."""
        self._call("DescribeSubnets")
        known = {**self.subnets, **{v: v for v in self.subnets.values()}}
        missing = [r for r in refs if r not in known]
        if missing:
            raise NotFoundError(
                f"network.subnets: no subnet {', '.join(missing)}", "InvalidSubnetID.NotFound"
            )
        return [known[r] for r in refs]

    async def resolve_security_groups(self, refs: list[str]) -> list[str]:
        """See StackGateway."""
        self._call("DescribeSecurityGroups")
        known = {**self.security_groups, **{v: v for v in self.security_groups.values()}}
        missing = [r for r in refs if r not in known]
        if missing:
            raise NotFoundError(
                f"network.security_groups: no group {', '.join(missing)}", "InvalidGroup.NotFound"
            )
        return [known[r] for r in refs]

    async def describe_target_group(self, ref: str) -> dict[str, Any] | None:
        """See StackGateway."""
        self._call("DescribeTargetGroups")
        for group in self.target_groups.values():
            if ref in (group["TargetGroupArn"], group["TargetGroupName"]):
                return dict(group)
        return None

    async def describe_stack(self, name: str) -> dict[str, Any] | None:
        """See StackGateway."""
        self._call("DescribeStacks")
        found = self.stacks.get(name)
        return copy.deepcopy(found) if found else None

    async def create_stack(
        self, name: str, template: str, parameters: dict[str, str], tags: dict[str, str], token: str
    ) -> str:
        """See StackGateway."""
        self._call("CreateStack")
        self.stack_requests.append(("create", template, parameters))
        self.set_stack(name, "CREATE_IN_PROGRESS")
        return str(self.stacks[name]["StackId"])

    async def update_stack(
        self, name: str, template: str, parameters: dict[str, str], tags: dict[str, str], token: str
    ) -> str | None:
        """See StackGateway."""
        self._call("UpdateStack")
        previous = next((r for r in reversed(self.stack_requests)), None)
        if previous is not None and previous[1:] == (template, parameters):
            return None
        self.stack_requests.append(("update", template, parameters))
        self.set_stack(name, "UPDATE_IN_PROGRESS")
        return str(self.stacks[name]["StackId"])

    async def delete_stack(self, name: str, token: str) -> None:
        """See StackGateway."""
        self._call("DeleteStack")
        self.set_stack(name, "DELETE_IN_PROGRESS")

    async def stack_events(self, name: str) -> list[dict[str, Any]]:
        """See StackGateway."""
        self._call("DescribeStackEvents")
        return copy.deepcopy(self.events[name])
