"""The deployment record: what producers read back about a deployment, by id.

Workers keep it in Redis, under Conveyor's own keys, independent of Celery's result expiry.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from producers.contract.enums import (
    TERMINAL_STATES,
    DeploymentState,
    JobKind,
    Step,
    StepStatus,
)
from producers.contract.patterns import account_of_arn
from producers.contract.stages import reached

__all__ = [
    "MAX_EVENTS",
    "MAX_STOPPED_TASKS",
    "PRE_DEPLOY_SCHEMA",
    "RECORD_SCHEMA",
    "TERMINAL_STATES",
    "BakeGateInfo",
    "BakeWindow",
    "DeploymentRecord",
    "DeploymentState",
    "ErrorInfo",
    "GateMeasurement",
    "JobKind",
    "PreDeployInfo",
    "ProgressInfo",
    "ServiceEvent",
    "StackEvent",
    "StackInfo",
    "Step",
    "StepEntry",
    "StepStatus",
    "StoppedTask",
]

# Raised whenever a record gains a state, a step or a field an older reader cannot parse, so
# that older readers leave such records to newer workers instead of quarantining them.
# 2: the steps of a pre-deploy task (run_task, watch_task). Only the records of jobs with a
# pre-deploy task are written with it (PRE_DEPLOY_SCHEMA): every other record stays readable by
# readers that know schema 1.
RECORD_SCHEMA = 2
PRE_DEPLOY_SCHEMA = 2
MAX_EVENTS = 100  # as many as ECS keeps per service
MAX_STOPPED_TASKS = 20


class StepEntry(BaseModel):
    """One thing a step did, with when."""

    step: str
    status: str  # a StepStatus, or the final state's value on the entry that ended it
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


class PreDeployInfo(BaseModel):
    """The pre-deploy task of a deployment: which task, how it ended, and its log's tail.

    ``task_arn`` is written before the task is waited for, so a re-run follows the same task.
    ``log_tail`` holds the newest lines the task's container wrote (its awslogs stream), never
    anything of the job's settings.
    """

    model_config = ConfigDict(extra="ignore")

    container: str
    task_arn: str | None = None
    started_at: float | None = None
    deadline: float | None = None
    last_status: str | None = None
    exit_code: int | None = None
    stopped_reason: str | None = None
    log_group: str | None = None
    log_stream: str | None = None
    log_tail: list[str] = Field(default_factory=list)


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


class Approval(BaseModel):
    """A person's answer to a deployment paused at a PAUSE lifecycle hook, and what came of it.

    ``approve``/``reject`` record the request (``action``, ``by``, ``requested_at``); the
    worker following the deployment sends it to ECS (ContinueServiceDeployment) and fills in
    the hook it answered, its stage, when, and the ``outcome``.
    """

    action: Literal["CONTINUE", "ROLLBACK"]  # approve or reject, in ECS's own words
    by: str
    requested_at: float
    hook_id: str | None = None
    stage: str | None = None
    acted_at: float | None = None
    outcome: str | None = None


class ProgressInfo(BaseModel):
    """Live counts of the deployment being watched."""

    running: int = 0
    desired: int = 0
    pending: int = 0
    failed_tasks: int = 0
    rollout_state: str | None = None
    latest_event: str | None = None
    # A service that ECS deploys blue/green, linear or canary (None: rolling, or not seen yet):
    # its service deployment's lifecycle stage, and since when Conveyor sees it there (at most
    # one poll after ECS entered it).
    strategy: str | None = None
    lifecycle_stage: str | None = None
    stage_seen_at: float | None = None
    # During BAKE_TIME: when the bake ends (seen at + the deployment's bake time).
    bake_ends_at: float | None = None
    # A PAUSE lifecycle hook waiting for ContinueServiceDeployment at ``lifecycle_stage``: its
    # id, when ECS stops waiting, and what ECS then does (ROLLBACK or CONTINUE).
    awaiting_hook_id: str | None = None
    hook_expires_at: float | None = None
    hook_timeout_action: str | None = None
    # The percent of production traffic ECS asks for the new revision (None: not said).
    production_traffic: float | None = None


# Measurements a record keeps of its bake gate: the newest, which always include the whole of
# the window being measured (a gate takes at most producers.contract.gates.MAX_COUNT).
MAX_GATE_MEASUREMENTS = 1000


class GateMeasurement(BaseModel):
    """One measurement of a bake gate: a value, no data (``value`` None), or an error."""

    at: float
    window: int  # the bake window it was taken in (1: the first)
    value: float | None = None
    error: str | None = None
    detail: str = ""


class BakeWindow(BaseModel):
    """One stretch of a deployment's bake with production traffic partly shifted (a canary's
    bake, one linear step's), and the gate's verdict on it."""

    number: int
    traffic: float  # the percent of production traffic ECS asks for the new revision
    started_at: float
    # measuring | passed | failed | inconclusive | unfinished (ECS moved on before a verdict).
    outcome: str = "measuring"
    reason: str | None = None


class BakeGateInfo(BaseModel):
    """The job's bake gate as measured so far: its windows and measurements, oldest first."""

    name: str
    condition: str
    windows: list[BakeWindow] = Field(default_factory=list)
    measurements: list[GateMeasurement] = Field(default_factory=list)


class FreezeOverride(BaseModel):
    """A deployment or release enqueued inside a freeze window on purpose: who, why, when."""

    model_config = ConfigDict(extra="ignore")

    window: str
    reason: str
    by: str
    at: float


class DeploymentRecord(BaseModel):
    """Everything Conveyor knows about one deployment."""

    model_config = ConfigDict(extra="ignore")

    id: str
    schema_version: int = 1  # see RECORD_SCHEMA; a record of a pre-deploy job has 2
    kind: JobKind = JobKind.UPDATE_EXISTING
    job: dict[str, Any]
    state: DeploymentState = DeploymentState.QUEUED
    step: Step = Step.RESOLVE  # see kinds.FIRST_STEP for other kinds
    seq: int = 0  # fences step messages: only the message carrying the current seq may act
    attempt: int = 0  # transient retries of the current step
    cluster: str
    service: str
    account: str | None = None  # the AWS account the deployment acts in, once known
    release_id: str | None = None  # the release this deployment belongs to, if any
    # The lifecycle stage at which its release moves on to the next wave (None: at its end).
    release_move_on_at: str | None = None
    family: str | None = None
    base_task_definition_arn: str | None = None
    base_revision: int | None = None
    task_definition_arn: str | None = None
    previous_task_definition_arn: str | None = None
    ecs_deployment_id: str | None = None
    service_deployment_arn: str | None = None  # ECS's history entry of our deployment
    service_revision_arn: str | None = None  # the service revision ECS deployed for it
    previous_deployment_id: str | None = None  # the PRIMARY deployment when the job resolved
    rollback_deployment_id: str | None = None
    rollback_task_definition_arn: str | None = None
    rolled_back_by_ecs: bool = False
    # Conveyor's rollback, carried out by ECS after StopServiceDeployment (not the breaker's).
    ecs_stop_requested: bool = False
    images: dict[str, dict[str, str]] = Field(default_factory=dict)  # container -> before/after
    steps: list[StepEntry] = Field(default_factory=list)
    events: list[ServiceEvent] = Field(default_factory=list)
    stopped_tasks: list[StoppedTask] = Field(default_factory=list)
    stack: StackInfo | None = None
    pre_deploy: PreDeployInfo | None = None
    progress: ProgressInfo = Field(default_factory=ProgressInfo)
    warnings: list[str] = Field(default_factory=list)
    reason: str | None = None
    superseded_by: str | None = None  # the deployment that carries this one's change
    error: ErrorInfo | None = None
    cancel_requested_at: float | None = None
    # An approval or rejection not yet sent to ECS; once sent it moves to ``approvals``.
    approval_requested: Approval | None = None
    approvals: list[Approval] = Field(default_factory=list)
    freeze_override: FreezeOverride | None = None
    # The job's bake gate (bake_gate), once its deployment reached a bake window.
    bake_gate: BakeGateInfo | None = None
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    deadline: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _schema_of_new_records(cls, data: Any) -> Any:
        """A new record of a job with a pre-deploy task is written with PRE_DEPLOY_SCHEMA: its
        steps are unknown to older readers, which then leave it alone instead of quarantining
        it. A stored record keeps the schema it was written with."""
        if (
            isinstance(data, dict)
            and "schema_version" not in data
            and isinstance(data.get("job"), dict)
            and data["job"].get("pre_deploy")
        ):
            return {**data, "schema_version": PRE_DEPLOY_SCHEMA}
        return data

    @property
    def service_key(self) -> str:
        """``account/cluster/service`` by name: what one service queue covers.

        The account is the real one the deployment acts in: ``account`` once known (a worker
        asked STS, or published its own), else the assumed role's, else ``self``. ARNs are
        reduced to names, so both spellings share one queue.
        """
        role = self.job.get("role_arn")
        role_account = account_of_arn(role) if isinstance(role, str) else None
        account = self.account or role_account or "self"
        cluster = self.cluster.rsplit("/", 1)[-1]
        return f"{account}/{cluster}/{self.service.rsplit('/', 1)[-1]}"

    @property
    def terminal(self) -> bool:
        """True once the deployment has a final state."""
        return self.state in TERMINAL_STATES

    @property
    def passed_pre_deploy(self) -> bool:
        """Whether the deployment's pre-deploy task ran and its container exited 0."""
        return self.pre_deploy is not None and self.pre_deploy.exit_code == 0

    def reached_stage(self, stage: str) -> bool:
        """Whether ECS has taken this deployment to lifecycle ``stage`` (or past it), and not
        back: a deployment ECS is rolling back has not reached any stage of its way forward."""
        return not self.rolled_back_by_ecs and reached(self.progress.lifecycle_stage, stage)
