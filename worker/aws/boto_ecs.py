"""The aiobotocore implementation of :class:`worker.aws.gateway.EcsGateway`.

One long-lived ECS client (and EventBridge's, for the revisions scheduled tasks name), made by
:class:`worker.aws.boto_pool.ClientPool`; every call goes through
:func:`worker.aws.boto_calls.aws_call`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import botocore.session

from worker.aws.boto_calls import LOW_PRIORITY_SPARE, aws_call, every_page
from worker.aws.gateway import MAX_SERVICE_DEPLOYMENTS, family_of, revision_of
from worker.aws.ratelimit import RateLimiter
from worker.domain.errors import AwsRequestError
from worker.domain.tickets import Ticket

if TYPE_CHECKING:
    from types_aiobotocore_ecs import ECSClient
    from types_aiobotocore_events import EventBridgeClient


def known_register_fields() -> frozenset[str]:
    """The members of RegisterTaskDefinition's input in the installed botocore."""
    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    return frozenset(shape.members) if shape is not None else frozenset()


class BotoEcsGateway:
    """EcsGateway over one long-lived aiobotocore ECS client."""

    def __init__(
        self,
        client: ECSClient,
        call_timeout: float = 20.0,
        limiter: RateLimiter | None = None,
        *,
        events: EventBridgeClient | None = None,
        logs: Any = None,
    ) -> None:
        self._ecs = client
        self._events = events  # EventBridge, for the revisions scheduled tasks name
        # CloudWatch Logs, for the tail of a pre-deploy task's log; no type stubs: ``Any``.
        self._logs = logs
        self.call_timeout = call_timeout
        self.limiter = limiter

    @aws_call("DescribeServices")
    async def describe_service(self, cluster: str, service: str) -> dict[str, Any] | None:
        """Return the service, or None when it does not exist."""
        answer = await self._ecs.describe_services(
            cluster=cluster, services=[service], include=["TAGS"]
        )
        services = answer.get("services", [])
        return dict(services[0]) if services else None

    async def reserve(self, operation: str, ticket: Ticket | None = None) -> None:
        """Take the token of the next ``operation`` call now (nothing without a limiter)."""
        if self.limiter is not None:
            await self.limiter.reserve(operation, ticket)

    @aws_call("DescribeServices")
    async def describe_services(self, cluster: str, services: list[str]) -> dict[str, Any]:
        """Up to 10 services of one cluster in one call, by service name."""
        answer = await self._ecs.describe_services(cluster=cluster, services=services[:10])
        return {str(s["serviceName"]): dict(s) for s in answer.get("services", [])}

    @aws_call("DescribeTaskDefinition")
    async def describe_task_definition(
        self, task_definition: str
    ) -> tuple[dict[str, Any], list[dict[str, str]]]:
        """Return a task definition with its tags (``include=['TAGS']``)."""
        answer = await self._ecs.describe_task_definition(
            taskDefinition=task_definition, include=["TAGS"]
        )
        tags = [{"key": t["key"], "value": t.get("value", "")} for t in answer.get("tags", [])]
        return dict(answer["taskDefinition"]), tags

    @aws_call("ListTaskDefinitions")
    async def active_task_definition_arns(self, family: str) -> list[str]:
        """See EcsGateway. Pages of 100, newest first."""
        arns: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"familyPrefix": family, "status": "ACTIVE", "sort": "DESC"}
            if token:
                kwargs["nextToken"] = token
            answer = await self._ecs.list_task_definitions(**kwargs)
            arns += [a for a in answer.get("taskDefinitionArns", []) if family_of(a) == family]
            token = answer.get("nextToken")
            if not token:
                return arns

    async def service_task_definitions(self) -> set[str]:
        """See EcsGateway. ListClusters, ListServices and DescribeServices ten at a time, each
        at low priority."""
        used: set[str] = set()
        for cluster in await self._clusters():
            services = await every_page(
                functools.partial(self._list_services_page, cluster), "serviceArns"
            )
            for start in range(0, len(services), 10):
                answer = await self._describe_services_low(cluster, services[start : start + 10])
                for service in answer.get("services", []):
                    arns = [service.get("taskDefinition")]
                    arns += [d.get("taskDefinition") for d in service.get("deployments", [])]
                    used |= {str(a) for a in arns if a}
        return used

    async def running_task_definitions(self) -> set[str]:
        """See EcsGateway. ListTasks (RUNNING) and DescribeTasks a hundred at a time, per
        cluster, at low priority."""
        used: set[str] = set()
        for cluster in await self._clusters():
            tasks = await every_page(
                functools.partial(self._list_running_tasks_page, cluster), "taskArns"
            )
            for start in range(0, len(tasks), 100):
                answer = await self._describe_tasks_low(cluster, tasks[start : start + 100])
                used |= {
                    str(t["taskDefinitionArn"])
                    for t in answer.get("tasks", [])
                    if t.get("taskDefinitionArn")
                }
        return used

    async def scheduled_task_definitions(self) -> set[str]:
        """See EcsGateway. ListRules, then ListTargetsByRule per rule, on the default bus."""
        if self._events is None:  # before any call
            raise self._no_events()
        used: set[str] = set()
        for rule in await self._rule_names():
            targets = await self._rule_targets(rule)
            for target in targets:
                arn = target.get("EcsParameters", {}).get("TaskDefinitionArn")
                if arn:
                    used.add(str(arn))
        return used

    @staticmethod
    def _no_events() -> AwsRequestError:
        return AwsRequestError(
            "ListRules: this gateway has no EventBridge client", "NoEventsClient"
        )

    async def _clusters(self) -> list[str]:
        return await every_page(self._list_clusters_page, "clusterArns")

    async def _rule_names(self) -> list[str]:
        names: list[str] = []
        token: str | None = None
        while True:
            answer = await self._list_rules_page(token)
            names += [str(r["Name"]) for r in answer.get("Rules", [])]
            token = answer.get("NextToken")
            if not token:
                return names

    async def _rule_targets(self, rule: str) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            answer = await self._list_targets_page(rule, token)
            targets += [dict(t) for t in answer.get("Targets", [])]
            token = answer.get("NextToken")
            if not token:
                return targets

    @aws_call("ListClusters", spare=LOW_PRIORITY_SPARE)
    async def _list_clusters_page(self, token: str | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"nextToken": token} if token else {}
        return dict(await self._ecs.list_clusters(**kwargs))

    @aws_call("ListServices", spare=LOW_PRIORITY_SPARE)
    async def _list_services_page(self, cluster: str, token: str | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"cluster": cluster, **({"nextToken": token} if token else {})}
        return dict(await self._ecs.list_services(**kwargs))

    @aws_call("DescribeServices", spare=LOW_PRIORITY_SPARE)
    async def _describe_services_low(self, cluster: str, services: list[str]) -> dict[str, Any]:
        return dict(await self._ecs.describe_services(cluster=cluster, services=services))

    @aws_call("ListTasks", spare=LOW_PRIORITY_SPARE)
    async def _list_running_tasks_page(self, cluster: str, token: str | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "cluster": cluster,
            "desiredStatus": "RUNNING",
            "maxResults": 100,
            **({"nextToken": token} if token else {}),
        }
        return dict(await self._ecs.list_tasks(**kwargs))

    @aws_call("DescribeTasks", spare=LOW_PRIORITY_SPARE)
    async def _describe_tasks_low(self, cluster: str, tasks: list[str]) -> dict[str, Any]:
        return dict(await self._ecs.describe_tasks(cluster=cluster, tasks=tasks))

    @aws_call("ListRules")
    async def _list_rules_page(self, token: str | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"Limit": 100, **({"NextToken": token} if token else {})}
        if self._events is None:
            raise self._no_events()
        return dict(await self._events.list_rules(**kwargs))

    @aws_call("ListTargetsByRule")
    async def _list_targets_page(self, rule: str, token: str | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"Rule": rule, "Limit": 100}
        if token:
            kwargs["NextToken"] = token
        if self._events is None:
            raise self._no_events()
        return dict(await self._events.list_targets_by_rule(**kwargs))

    @aws_call("DeregisterTaskDefinition", spare=LOW_PRIORITY_SPARE)
    async def deregister_revision(self, arn: str) -> None:
        """See EcsGateway."""
        await self._ecs.deregister_task_definition(taskDefinition=arn)

    @aws_call("TagResource")
    async def tag_task_definition(self, arn: str, tags: dict[str, str]) -> None:
        """See EcsGateway."""
        await self._ecs.tag_resource(
            resourceArn=arn, tags=[{"key": k, "value": v} for k, v in tags.items()]
        )

    @aws_call("ListTaskDefinitions")
    async def newer_task_definition_arns(self, family: str, after_revision: int) -> list[str]:
        """The family's ACTIVE revisions newer than ``after_revision``, newest first.

        Reads pages of ten, newest first, and stops at the first page that reaches
        ``after_revision``: one call when nothing is newer, however large the family.
        """
        arns: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "familyPrefix": family,
                "status": "ACTIVE",
                "sort": "DESC",
                "maxResults": 10,
            }
            if token:
                kwargs["nextToken"] = token
            answer = await self._ecs.list_task_definitions(**kwargs)
            for arn in answer.get("taskDefinitionArns", []):
                if family_of(arn) != family:
                    continue
                if revision_of(arn) <= after_revision:
                    return arns
                arns.append(arn)
            token = answer.get("nextToken")
            if not token:
                return arns

    @aws_call("RegisterTaskDefinition")
    async def register_task_definition(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Register ``payload`` as a new revision."""
        answer = await self._ecs.register_task_definition(**payload)
        return dict(answer["taskDefinition"])

    @aws_call("UpdateService")
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
        """Point the service at ``task_definition``; nothing else about it changes, but the
        desired count and deployment configuration when given."""
        options: dict[str, Any] = {}
        if desired_count is not None:
            options["desiredCount"] = desired_count
        if deployment_configuration is not None:
            options["deploymentConfiguration"] = deployment_configuration
        answer = await self._ecs.update_service(
            cluster=cluster,
            service=service,
            taskDefinition=task_definition,
            forceNewDeployment=force_new_deployment,
            **options,
        )
        return dict(answer["service"])

    @aws_call("ListServiceDeployments")
    async def find_service_deployment(
        self, cluster: str, service: str, task_definition: str, *, created_after: float
    ) -> dict[str, Any] | None:
        """The newest service deployment created after ``created_after`` (epoch seconds) whose
        target revision runs ``task_definition``, as DescribeServiceDeployments gives it."""
        briefs: list[dict[str, Any]] = []
        token: str | None = None
        after = datetime.fromtimestamp(created_after, UTC)
        for _ in range(5):  # 100 deployments of one service since the job started is plenty
            kwargs: dict[str, Any] = {
                "cluster": cluster,
                "service": service,
                "createdAt": {"after": after},
                "maxResults": 20,
            }
            if token:
                kwargs["nextToken"] = token
            answer = await self._ecs.list_service_deployments(**kwargs)
            briefs.extend(dict(b) for b in answer.get("serviceDeployments", []))
            token = answer.get("nextToken")
            if not token:
                break
        revisions = sorted(
            {
                str(b["targetServiceRevisionArn"])
                for b in briefs
                if b.get("targetServiceRevisionArn")
            }
        )
        definitions: dict[str, str] = {}
        for start in range(0, len(revisions), 20):
            described = await self._ecs.describe_service_revisions(
                serviceRevisionArns=revisions[start : start + 20]
            )
            for revision in described.get("serviceRevisions", []):
                definitions[str(revision["serviceRevisionArn"])] = str(
                    revision.get("taskDefinition")
                )
        ours = [
            b
            for b in briefs
            if definitions.get(str(b.get("targetServiceRevisionArn"))) == task_definition
        ]
        if not ours:
            return None
        newest = max(ours, key=lambda b: b.get("createdAt") or after)
        return await self.describe_service_deployment(str(newest["serviceDeploymentArn"]))

    @aws_call("DescribeServiceDeployments")
    async def describe_service_deployment(self, arn: str) -> dict[str, Any] | None:
        """One service deployment by ARN, or None when ECS does not know it."""
        answer = await self._ecs.describe_service_deployments(serviceDeploymentArns=[arn])
        found = answer.get("serviceDeployments", [])
        return dict(found[0]) if found else None

    @aws_call("DescribeServiceDeployments")
    async def describe_service_deployments(self, arns: Sequence[str]) -> dict[str, dict[str, Any]]:
        """See EcsGateway. Up to 20 ARNs in one call (ECS's limit); the rest are not asked."""
        if not arns:
            return {}  # ECS refuses an empty list
        answer = await self._ecs.describe_service_deployments(
            serviceDeploymentArns=list(arns[:MAX_SERVICE_DEPLOYMENTS])
        )
        return {
            str(entry["serviceDeploymentArn"]): dict(entry)
            for entry in answer.get("serviceDeployments", [])
        }

    @aws_call("StopServiceDeployment")
    async def stop_service_deployment(self, arn: str) -> None:
        """Ask ECS to stop an ongoing deployment and roll it back itself."""
        await self._ecs.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")

    @aws_call("ContinueServiceDeployment")
    async def continue_service_deployment(
        self, arn: str, hook_id: str, action: Literal["CONTINUE", "ROLLBACK"] = "CONTINUE"
    ) -> None:
        """Answer a PAUSE lifecycle hook: go on to the next stage, or roll back."""
        await self._ecs.continue_service_deployment(
            serviceDeploymentArn=arn, hookId=hook_id, action=action
        )

    @aws_call("ListTasks")
    async def list_stopped_task_arns(self, cluster: str, service: str) -> list[str]:
        """Return up to 100 stopped task ARNs of the service."""
        answer = await self._ecs.list_tasks(
            cluster=cluster, serviceName=service, desiredStatus="STOPPED", maxResults=100
        )
        return list(answer.get("taskArns", []))

    @aws_call("DescribeTasks")
    async def describe_tasks(self, cluster: str, task_arns: list[str]) -> list[dict[str, Any]]:
        """Describe up to 100 tasks."""
        if not task_arns:
            return []
        answer = await self._ecs.describe_tasks(cluster=cluster, tasks=task_arns[:100])
        return [dict(t) for t in answer.get("tasks", [])]

    @aws_call("RunTask")
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
        """See EcsGateway. A RunTask that places no task (its ``failures``) raises
        AwsRequestError with ECS's reason."""
        answer = await self._ecs.run_task(
            cluster=cluster,
            taskDefinition=task_definition,
            count=1,
            startedBy=started_by[:128],
            clientToken=client_token,
            # Plain dicts, as the flow builds them (worker.domain.pre_deploy).
            overrides=overrides,  # type: ignore[arg-type]
            **placement,
        )
        tasks = answer.get("tasks", [])
        if not tasks:
            reasons = [
                f"{f.get('reason', 'no reason')}" + (f" ({f['detail']})" if f.get("detail") else "")
                for f in answer.get("failures", [])
            ]
            raise AwsRequestError(
                "RunTask placed no task: " + ("; ".join(reasons) or "ECS gave no reason"),
                "RunTaskFailure",
            )
        return dict(tasks[0])

    @aws_call("StopTask")
    async def stop_task(self, cluster: str, task_arn: str, reason: str) -> None:
        """See EcsGateway."""
        await self._ecs.stop_task(cluster=cluster, task=task_arn, reason=reason[:255])

    async def task_arns_started_by(self, cluster: str, started_by: str) -> list[str]:
        """See EcsGateway. ListTasks twice: a task stopped since is listed only as STOPPED."""
        arns: list[str] = []
        for status in ("RUNNING", "STOPPED"):
            arns += await self._tasks_started_by(cluster, started_by[:128], status)
        return list(dict.fromkeys(arns))

    @aws_call("ListTasks")
    async def _tasks_started_by(
        self, cluster: str, started_by: str, status: Literal["RUNNING", "STOPPED"]
    ) -> list[str]:
        answer = await self._ecs.list_tasks(
            cluster=cluster, startedBy=started_by, desiredStatus=status, maxResults=100
        )
        return list(answer.get("taskArns", []))

    @aws_call("GetLogEvents")
    async def log_tail(self, group: str, stream: str, limit: int) -> list[str]:
        """See EcsGateway. One GetLogEvents from the end of the stream."""
        if self._logs is None:
            raise AwsRequestError(
                "GetLogEvents: this gateway has no CloudWatch Logs client", "NoLogsClient"
            )
        try:
            answer = await self._logs.get_log_events(
                logGroupName=group, logStreamName=stream, limit=limit, startFromHead=False
            )
        except self._logs.exceptions.ResourceNotFoundException:
            return []
        return [str(e.get("message", "")) for e in answer.get("events", [])][-limit:]
