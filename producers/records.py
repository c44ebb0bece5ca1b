"""The deployment record: what producers read back about a deployment, by id.

Workers keep it in Redis, under Conveyor's own keys, independent of Celery's result expiry.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class DeploymentState(StrEnum):
    """Where a deployment is in its life."""

    QUEUED = "queued"  # accepted; no worker has started it yet
    RUNNING = "running"  # a worker is resolving, registering, updating or watching
    SUCCEEDED = "succeeded"  # our deployment is PRIMARY, on our revision, COMPLETED
    FAILED = "failed"  # failed, and not rolled back (rollback off, or rollback failed)
    ROLLED_BACK = "rolled_back"  # failed, and the service is back on the previous revision
    SUPERSEDED = "superseded"  # never started: a newer job for the same service replaced it
    CANCELLED = "cancelled"  # stopped on request; the reason says what happened to the service


TERMINAL_STATES = frozenset(
    {
        DeploymentState.SUCCEEDED,
        DeploymentState.FAILED,
        DeploymentState.ROLLED_BACK,
        DeploymentState.SUPERSEDED,
        DeploymentState.CANCELLED,
    }
)


class Step(StrEnum):
    """The steps of an update-existing deployment, in order."""

    RESOLVE = "resolve"
    REGISTER = "register"
    UPDATE = "update"
    WATCH = "watch"
    ROLLBACK = "rollback"
    WATCH_ROLLBACK = "watch_rollback"
    # create-Fargate
    VALIDATE = "validate"
    APPLY = "apply"
    DELETE_STALE = "delete_stale"
    WATCH_STACK = "watch_stack"
    WATCH_SERVICE = "watch_service"


FIRST_STEP = {"update-existing": Step.RESOLVE, "create-fargate": Step.VALIDATE}


class StepEntry(BaseModel):
    """One thing a step did, with when."""

    step: str
    status: str  # started | completed | retrying | failed
    at: float
    detail: str = ""


class ServiceEvent(BaseModel):
    """An ECS service event seen while watching."""

    id: str
    created_at: str
    message: str


class StoppedTask(BaseModel):
    """A task that stopped during the rollout, with ECS's reasons."""

    task_arn: str
    task_definition_arn: str | None = None
    stop_code: str | None = None
    stopped_reason: str | None = None
    container_reasons: list[str] = Field(default_factory=list)


class StackEvent(BaseModel):
    """A CloudFormation stack event of this deployment's stack operation."""

    id: str
    timestamp: str
    logical_id: str
    resource_type: str
    status: str
    reason: str | None = None


class StackInfo(BaseModel):
    """The stack a create-Fargate deployment applies."""

    name: str
    id: str | None = None
    operation: str | None = None  # create | update | none
    status: str | None = None
    subnets: list[str] = Field(default_factory=list)
    security_groups: list[str] = Field(default_factory=list)
    target_group_arns: list[str] = Field(default_factory=list)
    events: list[StackEvent] = Field(default_factory=list)


class ErrorInfo(BaseModel):
    """Why a deployment failed; ``code`` is the AWS error code when AWS raised it."""

    type: str
    code: str
    message: str
    retryable: bool = False


class ProgressInfo(BaseModel):
    """Live counts of the deployment being watched."""

    running: int = 0
    desired: int = 0
    pending: int = 0
    failed_tasks: int = 0
    rollout_state: str | None = None
    latest_event: str | None = None


class DeploymentRecord(BaseModel):
    """Everything Conveyor knows about one deployment."""

    model_config = ConfigDict(extra="ignore")

    id: str
    kind: str = "update-existing"
    job: dict[str, Any]
    state: DeploymentState = DeploymentState.QUEUED
    step: Step = Step.RESOLVE  # see FIRST_STEP for other kinds
    seq: int = 0  # fences step messages: only the message carrying the current seq may act
    attempt: int = 0  # transient retries of the current step
    cluster: str
    service: str
    family: str | None = None
    base_task_definition_arn: str | None = None
    base_revision: int | None = None
    task_definition_arn: str | None = None
    previous_task_definition_arn: str | None = None
    ecs_deployment_id: str | None = None
    rollback_deployment_id: str | None = None
    rollback_task_definition_arn: str | None = None
    rolled_back_by_ecs: bool = False
    images: dict[str, dict[str, str]] = Field(default_factory=dict)  # container -> before/after
    steps: list[StepEntry] = Field(default_factory=list)
    events: list[ServiceEvent] = Field(default_factory=list)
    stopped_tasks: list[StoppedTask] = Field(default_factory=list)
    stack: StackInfo | None = None
    progress: ProgressInfo = Field(default_factory=ProgressInfo)
    warnings: list[str] = Field(default_factory=list)
    reason: str | None = None
    error: ErrorInfo | None = None
    cancel_requested_at: float | None = None
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    deadline: float | None = None

    @property
    def service_key(self) -> str:
        """``account/cluster/service`` by name: what one lease covers.

        The account is the assumed role's (``role_arn``), or ``self`` for the workers' own
        credentials; ARNs are reduced to names, so both spellings share one queue.
        """
        role = self.job.get("role_arn")
        parts = role.split(":") if isinstance(role, str) else []
        account = parts[4] if len(parts) > 4 and parts[4] else "self"
        cluster = self.cluster.rsplit("/", 1)[-1]
        return f"{account}/{cluster}/{self.service.rsplit('/', 1)[-1]}"

    @property
    def terminal(self) -> bool:
        """True once the deployment has a final state."""
        return self.state in TERMINAL_STATES
