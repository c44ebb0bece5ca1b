"""The full aiobotocore gateway: ECS plus CloudFormation, ELBv2 and EC2 for create-Fargate jobs.

Implements :class:`worker.aws.gateway.AwsGateway` on top of
:class:`worker.aws.boto_ecs.BotoEcsGateway`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import botocore.exceptions

from worker.aws.boto_calls import aws_call
from worker.aws.boto_cloudwatch import CloudWatchMetrics
from worker.aws.boto_ecs import BotoEcsGateway
from worker.aws.ratelimit import RateLimiter
from worker.domain.errors import NotFoundError

if TYPE_CHECKING:
    from types_aiobotocore_cloudformation import CloudFormationClient
    from types_aiobotocore_ec2 import EC2Client
    from types_aiobotocore_ecs import ECSClient
    from types_aiobotocore_elbv2 import ElasticLoadBalancingv2Client
    from types_aiobotocore_events import EventBridgeClient


class BotoAwsGateway(BotoEcsGateway):
    """The full gateway: ECS plus CloudFormation, ELBv2 and EC2 for create-Fargate jobs."""

    def __init__(
        self,
        ecs: ECSClient,
        cfn: CloudFormationClient,
        elbv2: ElasticLoadBalancingv2Client,
        ec2: EC2Client,
        call_timeout: float = 20.0,
        limiter: RateLimiter | None = None,
        events: EventBridgeClient | None = None,
        logs: Any = None,
    ) -> None:
        super().__init__(ecs, call_timeout, limiter, events=events, logs=logs)
        self.scope: str | None = None  # "account:region", set by the pool
        # Measures metric gates with this identity's CloudWatch client; set by the pool.
        self.gate_metrics: CloudWatchMetrics | None = None
        self._cfn = cfn
        self._elbv2 = elbv2
        self._ec2 = ec2

    @aws_call("DescribeClusters")
    async def cluster_is_active(self, cluster: str) -> bool:
        """True when the cluster exists and is ACTIVE."""
        answer = await self._ecs.describe_clusters(clusters=[cluster])
        return any(c.get("status") == "ACTIVE" for c in answer.get("clusters", []))

    @staticmethod
    async def _resolve(
        refs: list[str],
        id_prefix: str,
        by_ids: Callable[[list[str]], Coroutine[Any, Any, dict[str, str]]],
        by_names: Callable[[list[str]], Coroutine[Any, Any, dict[str, str]]],
        what: str,
        code: str,
    ) -> list[str]:
        """Ids for a mix of ids and names, in the order given; NotFoundError names the missing."""
        ids = [r for r in refs if r.startswith(id_prefix)]
        names = [r for r in refs if not r.startswith(id_prefix)]
        found: dict[str, str] = {}
        if ids:
            # Looked up with a filter, which never fails on a missing id: the message below then
            # names exactly the missing ones (EC2's own error names them as a set, or wrongly).
            found.update(await by_ids(ids))
        if names:
            found.update(await by_names(names))
        missing = [r for r in refs if r not in found]
        if missing:
            raise NotFoundError(
                f"{what}: none found for {', '.join(missing)}; check the spec", code
            )
        return [found[r] for r in refs]

    @aws_call("DescribeSubnets")
    async def resolve_subnets(self, refs: list[str]) -> list[str]:
        """Subnet ids for ids or Name tags, in the order given."""

        async def by_ids(ids: list[str]) -> dict[str, str]:
            answer = await self._ec2.describe_subnets(
                Filters=[{"Name": "subnet-id", "Values": ids}]
            )
            return {s["SubnetId"]: s["SubnetId"] for s in answer["Subnets"]}

        async def by_names(names: list[str]) -> dict[str, str]:
            answer = await self._ec2.describe_subnets(
                Filters=[{"Name": "tag:Name", "Values": names}]
            )
            return {
                tag["Value"]: subnet["SubnetId"]
                for subnet in answer["Subnets"]
                for tag in subnet.get("Tags", [])
                if tag["Key"] == "Name" and tag["Value"] in names
            }

        return await self._resolve(
            refs,
            "subnet-",
            by_ids,
            by_names,
            "network.subnets (ids or Name tags)",
            "InvalidSubnetID.NotFound",
        )

    @aws_call("DescribeSecurityGroups")
    async def resolve_security_groups(self, refs: list[str]) -> list[str]:
        """Security group ids for ids or group names, in the order given."""

        async def by_ids(ids: list[str]) -> dict[str, str]:
            answer = await self._ec2.describe_security_groups(
                Filters=[{"Name": "group-id", "Values": ids}]
            )
            return {g["GroupId"]: g["GroupId"] for g in answer["SecurityGroups"]}

        async def by_names(names: list[str]) -> dict[str, str]:
            answer = await self._ec2.describe_security_groups(
                Filters=[{"Name": "group-name", "Values": names}]
            )
            return {g["GroupName"]: g["GroupId"] for g in answer["SecurityGroups"]}

        return await self._resolve(
            refs,
            "sg-",
            by_ids,
            by_names,
            "network.security_groups (ids or group names)",
            "InvalidGroup.NotFound",
        )

    @aws_call("DescribeTargetGroups")
    async def describe_target_group(self, ref: str) -> dict[str, Any] | None:
        """A target group by ARN or name, or None."""
        try:
            if ref.startswith("arn:"):
                answer = await self._elbv2.describe_target_groups(TargetGroupArns=[ref])
            else:
                answer = await self._elbv2.describe_target_groups(Names=[ref])
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "TargetGroupNotFound":
                return None
            raise
        groups = answer.get("TargetGroups", [])
        return dict(groups[0]) if groups else None

    @aws_call("DescribeStacks")
    async def describe_stack(self, name: str) -> dict[str, Any] | None:
        """The stack, or None when it does not exist."""
        try:
            answer = await self._cfn.describe_stacks(StackName=name)
        except botocore.exceptions.ClientError as exc:
            if "does not exist" in str(exc.response.get("Error", {}).get("Message", "")):
                return None
            raise
        stacks = answer.get("Stacks", [])
        return dict(stacks[0]) if stacks else None

    @staticmethod
    def _stack_args(
        name: str, template: str, parameters: dict[str, str], tags: dict[str, str], token: str
    ) -> dict[str, Any]:
        return {
            "StackName": name,
            "TemplateBody": template,
            "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
            "ClientRequestToken": token,
        }

    @aws_call("CreateStack")
    async def create_stack(
        self,
        name: str,
        template: str,
        parameters: dict[str, str],
        tags: dict[str, str],
        token: str,
    ) -> str:
        """Create the stack; return its id."""
        answer = await self._cfn.create_stack(
            **self._stack_args(name, template, parameters, tags, token)
        )
        return str(answer["StackId"])

    @aws_call("UpdateStack")
    async def update_stack(
        self,
        name: str,
        template: str,
        parameters: dict[str, str],
        tags: dict[str, str],
        token: str,
    ) -> str | None:
        """Update the stack; None when there is nothing to update (a success)."""
        try:
            answer = await self._cfn.update_stack(
                **self._stack_args(name, template, parameters, tags, token)
            )
        except botocore.exceptions.ClientError as exc:
            if "No updates are to be performed" in str(
                exc.response.get("Error", {}).get("Message")
            ):
                return None
            raise
        return str(answer["StackId"])

    @aws_call("DeleteStack")
    async def delete_stack(self, name: str, token: str) -> None:
        """Delete the stack."""
        await self._cfn.delete_stack(StackName=name, ClientRequestToken=token)

    async def preview_stack(
        self,
        name: str,
        template: str,
        parameters: dict[str, str],
        tags: dict[str, str],
        *,
        create: bool,
    ) -> dict[str, Any]:
        """See StackGateway. CreateChangeSet, DescribeChangeSet until it settles (a minute at
        most), DeleteChangeSet; on a create, the REVIEW_IN_PROGRESS stack is deleted too."""
        change_set = f"conveyor-plan-{int(datetime.now(UTC).timestamp())}"
        args = self._stack_args(name, template, parameters, tags, "unused")
        args.pop("ClientRequestToken")
        await self._create_change_set(
            ChangeSetName=change_set, ChangeSetType="CREATE" if create else "UPDATE", **args
        )
        try:
            described: dict[str, Any] = {}
            for _ in range(60):
                described = await self._describe_change_set(change_set, name)
                if described.get("Status") in ("CREATE_COMPLETE", "FAILED", "DELETE_COMPLETE"):
                    break
                await asyncio.sleep(1)
        finally:
            await self._delete_change_set(change_set, name)
            if create:
                await self.delete_stack(name, f"conveyor-plan-{change_set}")
        changes = []
        for change in described.get("Changes", []):
            resource = change.get("ResourceChange", {})
            changes.append(
                {
                    "action": resource.get("Action"),
                    "logical_id": resource.get("LogicalResourceId"),
                    "type": resource.get("ResourceType"),
                    "replacement": resource.get("Replacement"),
                }
            )
        return {
            "status": described.get("Status"),
            "reason": described.get("StatusReason"),
            "changes": changes,
        }

    @aws_call("CreateChangeSet")
    async def _create_change_set(self, **kwargs: Any) -> dict[str, Any]:
        return dict(await self._cfn.create_change_set(**kwargs))

    @aws_call("DescribeChangeSet")
    async def _describe_change_set(self, name: str, stack: str) -> dict[str, Any]:
        return dict(await self._cfn.describe_change_set(ChangeSetName=name, StackName=stack))

    @aws_call("DeleteChangeSet")
    async def _delete_change_set(self, name: str, stack: str) -> None:
        await self._cfn.delete_change_set(ChangeSetName=name, StackName=stack)

    @aws_call("DescribeStackEvents")
    async def stack_events(self, name: str) -> list[dict[str, Any]]:
        """The newest page of the stack's events."""
        answer = await self._cfn.describe_stack_events(StackName=name)
        return [dict(e) for e in answer.get("StackEvents", [])]
