"""The small interface through which Conveyor's services talk to ECS.

Services depend on this protocol only; :mod:`worker.aws.boto_fargate` (with
:mod:`worker.aws.boto_ecs` under it) implements it with aiobotocore, and the tests' in-memory
fake (``tests/fakes/ecs.py``, not shipped) implements it too, so the sequencing can be tested
without a server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

from worker.domain.tickets import Ticket

# DescribeServiceDeployments takes at most this many ARNs a call.
MAX_SERVICE_DEPLOYMENTS = 20


class EcsGateway(Protocol):
    """The ECS calls Conveyor makes. Errors come out as :mod:`worker.domain.errors` types."""

    @property
    def scope(self) -> str | None:
        """``account:region`` of the gateway's credentials, or None when it cannot tell.

        Rollouts watched together (:mod:`worker.services.watching`) share one scope: its API
        limits and what one DescribeServices call may answer for.
        """
        ...

    async def describe_service(self, cluster: str, service: str) -> dict[str, Any] | None:
        """Return DescribeServices' entry for the service, or None when it does not exist."""
        ...

    async def reserve(self, operation: str, ticket: Ticket | None = None) -> None:
        """Take the rate-limit token of the next call of ``operation`` now (see RateLimiter).

        ``ticket`` is the token an earlier run of the step reserved.
        """
        ...

    async def describe_services(self, cluster: str, services: list[str]) -> dict[str, Any]:
        """DescribeServices for up to 10 services of one cluster in one call, by name.

        Services that do not exist are absent from the answer.
        """
        ...

    async def describe_task_definition(
        self, task_definition: str
    ) -> tuple[dict[str, Any], list[dict[str, str]]]:
        """Return a task definition (family = latest ACTIVE revision) and its tags."""
        ...

    async def active_task_definition_arns(self, family: str) -> list[str]:
        """Every ACTIVE revision of the family, newest first."""
        ...

    async def service_task_definitions(self) -> set[str]:
        """Every revision a service runs or deploys, in every cluster of the account and
        region: each service's task definition and those of its deployments under way.

        A scan of the account, at low priority (only with tokens to spare in each bucket).
        """
        ...

    async def running_task_definitions(self) -> set[str]:
        """Every revision a task runs (desired status RUNNING), in every cluster: standalone
        tasks and the tasks of services alike. A scan of the account, at low priority."""
        ...

    async def scheduled_task_definitions(self) -> set[str]:
        """Every revision an EventBridge rule target of the account and region names (its
        ``EcsParameters.TaskDefinitionArn``), as given: a target naming only the family means
        the latest ACTIVE revision, which a cleanup never takes."""
        ...

    async def deregister_revision(self, arn: str) -> None:
        """Deregister a revision, at low priority: only with tokens to spare in its bucket."""
        ...

    async def tag_task_definition(self, arn: str, tags: dict[str, str]) -> None:
        """Add tags to a revision (TagResource); existing keys get the new values."""
        ...

    async def newer_task_definition_arns(self, family: str, after_revision: int) -> list[str]:
        """Return the family's ACTIVE revisions newer than ``after_revision``, newest first.

        Reads only the newest pages: its cost does not grow with the family's age.
        """
        ...

    async def register_task_definition(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Register a revision; return the new ``taskDefinition``."""
        ...

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
        """Point the service at a revision (with a new desired count and deployment
        configuration when given); return the updated service."""
        ...

    async def find_service_deployment(
        self, cluster: str, service: str, task_definition: str, *, created_after: float
    ) -> dict[str, Any] | None:
        """ECS's record of the deployment to ``task_definition`` made after ``created_after``.

        From the service deployments history (ListServiceDeployments, DescribeServiceRevisions,
        DescribeServiceDeployments), which keeps a deployment after DescribeServices has
        dropped it. None when there is none.
        """
        ...

    async def describe_service_deployment(self, arn: str) -> dict[str, Any] | None:
        """One service deployment (status, statusReason, rollback, breaker...), or None."""
        ...

    async def describe_service_deployments(self, arns: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Several service deployments in one call (DescribeServiceDeployments takes at most
        ``MAX_SERVICE_DEPLOYMENTS``; only those are asked), by ARN; unknown ARNs are left out."""
        ...

    async def stop_service_deployment(self, arn: str) -> None:
        """Ask ECS to stop an ongoing deployment and roll back (StopServiceDeployment)."""
        ...

    async def continue_service_deployment(
        self, arn: str, hook_id: str, action: Literal["CONTINUE", "ROLLBACK"] = "CONTINUE"
    ) -> None:
        """Answer the PAUSE lifecycle hook ``hook_id`` a service deployment waits at
        (ContinueServiceDeployment): CONTINUE goes on to the next stage, ROLLBACK rolls the
        deployment back. The hook's id is in DescribeServiceDeployments' lifecycleHookDetails."""
        ...

    async def list_stopped_task_arns(self, cluster: str, service: str) -> list[str]:
        """Return the ARNs of the service's recently stopped tasks."""
        ...

    async def describe_tasks(self, cluster: str, task_arns: list[str]) -> list[dict[str, Any]]:
        """Return DescribeTasks' entries (at most 100 ARNs a call are sent)."""
        ...

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
        """Start one task (RunTask) and return it; a refused placement raises.

        ``placement`` holds RunTask's networkConfiguration, launchType or
        capacityProviderStrategy, and platformVersion, as the caller copied them from a
        service; ``started_by`` marks the task so that :meth:`task_arns_started_by` finds it,
        and ``client_token`` makes a repeated request start no second task.
        """
        ...

    async def stop_task(self, cluster: str, task_arn: str, reason: str) -> None:
        """Stop a task (StopTask); ``reason`` is shown as its stoppedReason."""
        ...

    async def task_arns_started_by(self, cluster: str, started_by: str) -> list[str]:
        """The ARNs of the cluster's tasks, running or stopped, whose startedBy is this."""
        ...

    async def log_tail(self, group: str, stream: str, limit: int) -> list[str]:
        """The newest ``limit`` messages of a CloudWatch Logs stream, oldest first (GetLogEvents);
        an empty list when the stream does not exist (yet)."""
        ...


class StackGateway(Protocol):
    """The CloudFormation, ELBv2 and EC2 calls of create-Fargate deployments."""

    async def cluster_is_active(self, cluster: str) -> bool:
        """True when the ECS cluster exists and is ACTIVE."""
        ...

    async def resolve_subnets(self, refs: list[str]) -> list[str]:
        """Subnet ids for ids or Name tags; NotFoundError names any that do not exist."""
        ...

    async def resolve_security_groups(self, refs: list[str]) -> list[str]:
        """Security group ids for ids or group names; NotFoundError names the missing."""
        ...

    async def describe_target_group(self, ref: str) -> dict[str, Any] | None:
        """A target group by ARN or name (TargetGroupArn, TargetType, LoadBalancerArns...)."""
        ...

    async def describe_stack(self, name: str) -> dict[str, Any] | None:
        """The stack, or None when there is none (or it was deleted)."""
        ...

    async def create_stack(
        self,
        name: str,
        template: str,
        parameters: dict[str, str],
        tags: dict[str, str],
        token: str,
    ) -> str:
        """Create a stack; return its id. ``token`` makes a retried request a no-op."""
        ...

    async def update_stack(
        self,
        name: str,
        template: str,
        parameters: dict[str, str],
        tags: dict[str, str],
        token: str,
    ) -> str | None:
        """Update a stack; None when CloudFormation says there is nothing to update."""
        ...

    async def delete_stack(self, name: str, token: str) -> None:
        """Delete a stack."""
        ...

    async def stack_events(self, name: str) -> list[dict[str, Any]]:
        """The stack's newest events (first page), newest first."""
        ...

    async def preview_stack(
        self,
        name: str,
        template: str,
        parameters: dict[str, str],
        tags: dict[str, str],
        *,
        create: bool,
    ) -> dict[str, Any]:
        """What creating (``create``) or updating the stack would do, through a change set that
        is deleted afterwards (with the stack CloudFormation made for it, on a create):
        ``{"status", "reason", "changes": [{"action", "logical_id", "type", "replacement"}]}``."""
        ...


class AwsGateway(EcsGateway, StackGateway, Protocol):
    """Everything a worker calls."""


def revision_of(task_definition_arn: str) -> int:
    """Return the revision number at the end of a task definition ARN (``...:family:42``)."""
    return int(task_definition_arn.rsplit(":", 1)[1])


def family_of(task_definition_arn: str) -> str:
    """Return the family of a task definition ARN or ``family:revision`` string."""
    return task_definition_arn.rsplit("/", 1)[-1].rsplit(":", 1)[0]
