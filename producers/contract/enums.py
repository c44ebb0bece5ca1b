"""Every enumerated value that crosses the queue: job kinds, states, steps and error codes.

Values are the strings stored in records and messages; they never change meaning, since
records written by one version of Conveyor are read by the next.
"""

from __future__ import annotations

from enum import StrEnum


class JobKind(StrEnum):
    """What a job asks for."""

    UPDATE_EXISTING = "update-existing"  # new images into a service someone else owns
    CREATE_FARGATE = "create-fargate"  # a Fargate service owned by a Conveyor stack


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
    """The steps of a deployment; each kind uses its own, in order."""

    # update-existing
    RESOLVE = "resolve"
    REGISTER = "register"
    # A pre-deploy task, when the job has one: started on the new revision, then followed to
    # its exit code, all before UPDATE changes the service.
    RUN_TASK = "run_task"
    WATCH_TASK = "watch_task"
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


class StepStatus(StrEnum):
    """What one entry of a record's step log says happened.

    Besides these, a step that ends the deployment logs the final state's value.
    """

    STARTED = "started"
    COMPLETED = "completed"
    RETRYING = "retrying"  # a transient error; the step runs again after a backoff
    FAILED = "failed"  # the step saw the rollout fail; rollback may follow


class ErrorCode(StrEnum):
    """Conveyor's own error codes (an error raised by AWS carries AWS's code instead)."""

    CONVEYOR = "ConveyorError"
    PERMANENT = "PermanentError"
    TRANSIENT = "TransientError"
    INVALID_JOB = "InvalidJob"
    NOT_FOUND = "NotFound"
    UNKNOWN_CONTAINER = "UnknownContainer"
    AWS_REQUEST = "AwsRequestError"
    AWS_UNAVAILABLE = "AwsUnavailable"
    STEP_TIMEOUT = "StepTimeout"
    INTERNAL = "InternalError"
    NO_DEPLOYMENT = "NoDeployment"
    STACK_BUSY = "StackBusy"
    DELETE_FAILED = "DeleteFailed"
    # AWS's codes that Conveyor raises itself, for the same conditions AWS reports them
    SERVICE_NOT_FOUND = "ServiceNotFoundException"
    CLUSTER_NOT_FOUND = "ClusterNotFoundException"


# Failures caused by the job's own input, found by a worker before it changed anything: the CLI
# reports them as invalid input (exit 2). AWS's not-found codes for subnets and security groups
# are included, as resolved by the create-Fargate validation step.
INPUT_ERROR_CODES = frozenset(
    {
        ErrorCode.INVALID_JOB.value,
        ErrorCode.UNKNOWN_CONTAINER.value,
        ErrorCode.SERVICE_NOT_FOUND.value,
        ErrorCode.CLUSTER_NOT_FOUND.value,
        ErrorCode.NOT_FOUND.value,
        "InvalidSubnetID.NotFound",
        "InvalidGroup.NotFound",
    }
)
