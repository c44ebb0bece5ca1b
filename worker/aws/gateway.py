"""The small interface through which Conveyor's services talk to ECS.

Services depend on this protocol only; :mod:`worker.aws.boto` implements it with aioboto3 and
:mod:`worker.aws.fake` in memory, so the sequencing can be tested without a server.
"""

from __future__ import annotations

from typing import Any, Protocol


class EcsGateway(Protocol):
    """The ECS calls Conveyor makes. Errors come out as :mod:`worker.domain.errors` types."""

    async def describe_service(self, cluster: str, service: str) -> dict[str, Any] | None:
        """Return DescribeServices' entry for the service, or None when it does not exist."""
        ...

    async def describe_task_definition(
        self, task_definition: str
    ) -> tuple[dict[str, Any], list[dict[str, str]]]:
        """Return a task definition (family = latest ACTIVE revision) and its tags."""
        ...

    async def list_task_definition_arns(self, family: str) -> list[str]:
        """Return the ACTIVE revision ARNs of a family, in any order."""
        ...

    async def register_task_definition(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Register a revision; return the new ``taskDefinition``."""
        ...

    async def update_service(
        self, cluster: str, service: str, task_definition: str, *, force_new_deployment: bool
    ) -> dict[str, Any]:
        """Point the service at a revision; return the updated service."""
        ...

    async def list_stopped_task_arns(self, cluster: str, service: str) -> list[str]:
        """Return the ARNs of the service's recently stopped tasks."""
        ...

    async def describe_tasks(self, cluster: str, task_arns: list[str]) -> list[dict[str, Any]]:
        """Return DescribeTasks' entries (at most 100 ARNs a call are sent)."""
        ...


def revision_of(task_definition_arn: str) -> int:
    """Return the revision number at the end of a task definition ARN (``...:family:42``)."""
    return int(task_definition_arn.rsplit(":", 1)[1])


def family_of(task_definition_arn: str) -> str:
    """Return the family of a task definition ARN or ``family:revision`` string."""
    return task_definition_arn.rsplit("/", 1)[-1].rsplit(":", 1)[0]
