"""The stack engine: stacks that move through CloudFormation's states in the background.

A request (CreateStack, UpdateStack, DeleteStack, CancelUpdateStack) checks what CloudFormation
checks, records the stack's new state and its first event, and leaves an *operation* behind: a
generator that does the work one step at a time. A background thread resumes every operation each
tick with the world lock held, so that operations, request handlers and the rollout simulator
never run at the same time. A step that waits (an ECS service that is not yet stable) yields.

States follow CloudFormation's: CREATE_IN_PROGRESS → CREATE_COMPLETE, or CREATE_FAILED →
ROLLBACK_IN_PROGRESS → ROLLBACK_COMPLETE; UPDATE_IN_PROGRESS → UPDATE_COMPLETE_CLEANUP_IN_PROGRESS
→ UPDATE_COMPLETE, or UPDATE_ROLLBACK_IN_PROGRESS → UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS →
UPDATE_ROLLBACK_COMPLETE; DELETE_IN_PROGRESS → DELETE_COMPLETE.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from localaws.cloudformation.changesets import NO_CHANGES, ChangeSet, diff
from localaws.cloudformation.resources import (
    AwsCaller,
    Physical,
    ResourceContext,
    ResourceFailed,
    ResourceType,
    WSGIApp,
    merged_tags,
    resource_type,
)
from localaws.cloudformation.template import (
    NO_VALUE,
    Evaluator,
    ParameterSpec,
    TemplateError,
    check_template,
    creation_order,
    parameter_specs,
    parameter_value,
    parse_template,
    references,
    resolve_parameters,
)

logger = logging.getLogger(__name__)

TICK_SECONDS = 0.1
STACK_TYPE = "AWS::CloudFormation::Stack"
MAX_STACK_NAME = 128
MAX_TAGS = 50
EVENTS_PAGE = 100
_STACK_NAME = re.compile(r"^[a-zA-Z][-a-zA-Z0-9]*$")
UPDATABLE_STATES = frozenset(
    {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "UPDATE_FAILED"}
)
REPLACING = "Requested update requires the creation of a new physical resource; hence creating one."

Steps = Generator[None, None, None]


class StackError(Exception):
    """Raised when a stack request is refused; ``code`` is the AWS error code."""

    def __init__(self, message: str, code: str = "ValidationError") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class UpdateCancelled(Exception):
    """Thrown into an update's operation by CancelUpdateStack."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass
class StackEvent:
    """One entry of DescribeStackEvents."""

    stack_id: str
    stack_name: str
    logical_id: str
    physical_id: str
    resource_type: str
    status: str
    reason: str | None
    properties: str | None
    token: str | None
    timestamp: datetime.datetime = field(default_factory=_now)
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def to_api(self) -> dict[str, Any]:
        """The StackEvent shape."""
        result: dict[str, Any] = {
            "StackId": self.stack_id,
            "EventId": self.event_id,
            "StackName": self.stack_name,
            "LogicalResourceId": self.logical_id,
            "PhysicalResourceId": self.physical_id,
            "ResourceType": self.resource_type,
            "Timestamp": self.timestamp,
            "ResourceStatus": self.status,
        }
        if self.reason:
            result["ResourceStatusReason"] = self.reason
        if self.properties is not None:
            result["ResourceProperties"] = self.properties
        if self.token:
            result["ClientRequestToken"] = self.token
        return result


@dataclass
class StackResource:
    """A resource of a stack as DescribeStackResources shows it."""

    logical_id: str
    resource_type: str
    status: str = ""
    reason: str | None = None
    physical: Physical | None = None
    updated: datetime.datetime = field(default_factory=_now)
    # The stack tags the physical resource was made with: a change of them is an update.
    stack_tags: list[tuple[str, str]] = field(default_factory=list)

    @property
    def physical_id(self) -> str:
        """The physical id, "" before the resource exists."""
        return self.physical.physical_id if self.physical is not None else ""


@dataclass
class Snapshot:
    """What an update changes, kept to roll back to."""

    body: str
    template: dict[str, Any]
    parameters: dict[str, str]
    resolved: dict[str, Any]
    tags: list[tuple[str, str]]
    outputs: list[dict[str, Any]]


@dataclass
class Stack:
    """One stack, live or deleted."""

    stack_id: str
    name: str
    account: str
    region: str
    body: str
    template: dict[str, Any]
    parameters: dict[str, str]
    resolved: dict[str, Any]
    tags: list[tuple[str, str]]
    status: str = "CREATE_IN_PROGRESS"
    status_reason: str | None = None
    created: datetime.datetime = field(default_factory=_now)
    last_updated: datetime.datetime | None = None
    deleted: datetime.datetime | None = None
    disable_rollback: bool = False
    on_failure: str = "ROLLBACK"
    termination_protection: bool = False
    timeout: int | None = None
    capabilities: list[str] = field(default_factory=list)
    notification_arns: list[str] = field(default_factory=list)
    role_arn: str | None = None
    token: str | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    resources: dict[str, StackResource] = field(default_factory=dict)
    events: list[StackEvent] = field(default_factory=list)

    @property
    def specs(self) -> dict[str, ParameterSpec]:
        """The template's parameter declarations."""
        return parameter_specs(self.template)

    @property
    def description(self) -> str | None:
        """The template's Description."""
        value = self.template.get("Description")
        return str(value) if value is not None else None

    def snapshot(self) -> Snapshot:
        """The parts an update replaces."""
        return Snapshot(
            self.body,
            self.template,
            dict(self.parameters),
            dict(self.resolved),
            list(self.tags),
            list(self.outputs),
        )

    def restore(self, snapshot: Snapshot) -> None:
        """Go back to a snapshot (rollback)."""
        self.body, self.template = snapshot.body, snapshot.template
        self.parameters, self.resolved = snapshot.parameters, snapshot.resolved
        self.tags, self.outputs = snapshot.tags, snapshot.outputs

    def describe(self) -> dict[str, Any]:
        """The Stack shape of DescribeStacks."""
        specs = self.specs
        parameters = []
        for key, value in self.parameters.items():
            spec = specs.get(key)
            entry: dict[str, Any] = {
                "ParameterKey": key,
                "ParameterValue": "****" if spec is not None and spec.no_echo else value,
            }
            if spec is not None and spec.is_ssm:
                entry["ResolvedValue"] = self.resolved.get(key)
            parameters.append(entry)
        result: dict[str, Any] = {
            "StackId": self.stack_id,
            "StackName": self.name,
            "Parameters": parameters,
            "CreationTime": self.created,
            "RollbackConfiguration": {},
            "StackStatus": self.status,
            "DisableRollback": self.disable_rollback,
            "NotificationARNs": self.notification_arns,
            "Capabilities": self.capabilities,
            "Tags": [{"Key": key, "Value": value} for key, value in self.tags],
            "EnableTerminationProtection": self.termination_protection,
            "DriftInformation": {"StackDriftStatus": "NOT_CHECKED"},
        }
        optional = {
            "Description": self.description,
            "StackStatusReason": self.status_reason,
            "LastUpdatedTime": self.last_updated,
            "DeletionTime": self.deleted,
            "TimeoutInMinutes": self.timeout,
            "RoleARN": self.role_arn,
        }
        result.update({key: value for key, value in optional.items() if value is not None})
        if self.outputs:
            result["Outputs"] = self.outputs
        return result

    def summary(self) -> dict[str, Any]:
        """The StackSummary shape of ListStacks."""
        result: dict[str, Any] = {
            "StackId": self.stack_id,
            "StackName": self.name,
            "CreationTime": self.created,
            "StackStatus": self.status,
            "DriftInformation": {"StackDriftStatus": "NOT_CHECKED"},
        }
        optional = {
            "TemplateDescription": self.description,
            "StackStatusReason": self.status_reason,
            "LastUpdatedTime": self.last_updated,
            "DeletionTime": self.deleted,
        }
        result.update({key: value for key, value in optional.items() if value is not None})
        return result

    def resource_to_api(self, resource: StackResource, shape: str) -> dict[str, Any]:
        """A resource as StackResource, StackResourceDetail or StackResourceSummary."""
        result: dict[str, Any] = {
            "LogicalResourceId": resource.logical_id,
            "PhysicalResourceId": resource.physical_id,
            "ResourceType": resource.resource_type,
            "ResourceStatus": resource.status,
        }
        if resource.reason:
            result["ResourceStatusReason"] = resource.reason
        if shape == "summary":
            result["LastUpdatedTimestamp"] = resource.updated
            result["DriftInformation"] = {"StackResourceDriftStatus": "NOT_CHECKED"}
            return result
        result.update(StackName=self.name, StackId=self.stack_id)
        if shape == "detail":
            result["LastUpdatedTimestamp"] = resource.updated
            definition = (self.template.get("Resources") or {}).get(resource.logical_id) or {}
            if "Metadata" in definition:
                result["Metadata"] = json.dumps(definition["Metadata"])
        else:
            result["Timestamp"] = resource.updated
        result["DriftInformation"] = {"StackResourceDriftStatus": "NOT_CHECKED"}
        return result


@dataclass
class StackRequest:
    """The parts of CreateStack/UpdateStack the engine uses, read by the API layer."""

    name: str
    body: str | None = None
    use_previous_template: bool = False
    parameters: list[dict[str, Any]] = field(default_factory=list)
    tags: list[tuple[str, str]] | None = None
    disable_rollback: bool | None = None
    on_failure: str | None = None
    timeout: int | None = None
    capabilities: list[str] = field(default_factory=list)
    notification_arns: list[str] | None = None
    role_arn: str | None = None
    token: str | None = None
    termination_protection: bool = False


@dataclass
class _Operation:
    stack: Stack
    steps: Steps
    kind: str
    cancel: bool = False


@dataclass
class _Change:
    """What an update did to one resource, for its rollback and cleanup."""

    kind: str  # "created", "updated", "replaced" or "removed" (its type changed)
    logical_id: str
    before: Physical | None  # the physical resource before the update
    attempted: Physical | None = None  # what an in-place update was moving to
    before_tags: list[tuple[str, str]] = field(default_factory=list)
    before_type: str | None = None  # for "removed": the type ``before`` has


class StackEngine:
    """All stacks of one local AWS process, and the thread that moves them."""

    def __init__(
        self, lock: threading.RLock, rollout_seconds: float, tick: float = TICK_SECONDS
    ) -> None:
        self.lock = lock
        self.rollout_seconds = rollout_seconds
        self.tick_seconds = tick
        self.caller: AwsCaller | None = None
        self._stacks: list[Stack] = []
        self._operations: dict[str, _Operation] = {}
        self._change_sets: list[ChangeSet] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def attach(self, app: WSGIApp) -> None:
        """Make resources through ``app`` (the WSGI application that serves moto)."""
        self.caller = AwsCaller(app)

    def start(self) -> None:
        """Start the background thread."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="localaws-cloudformation", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def reset(self) -> None:
        """Forget every stack (the resources they made are being reset with moto)."""
        for operation in self._operations.values():
            operation.steps.close()
        self._operations.clear()
        self._stacks.clear()
        self._change_sets.clear()

    def active_count(self) -> int:
        """How many stack operations are in progress."""
        return len(self._operations)

    def _start(self, stack: Stack, steps: Steps, kind: str) -> None:
        # Every operation starts with a bare ``yield``: advancing to it now means that a
        # CancelUpdateStack before the first tick is thrown where the operation can handle it.
        next(steps)
        self._operations[stack.stack_id] = _Operation(stack, steps, kind)

    def _run(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            with self.lock:
                self.tick()

    def tick(self) -> None:
        """Resume every operation once (caller holds the lock)."""
        for stack_id, operation in list(self._operations.items()):
            try:
                if operation.cancel and operation.stack.status == "UPDATE_IN_PROGRESS":
                    operation.cancel = False
                    operation.steps.throw(UpdateCancelled())
                else:
                    next(operation.steps)
            except StopIteration:
                self._operations.pop(stack_id, None)
                self._finish_change_sets(operation.stack)
            except Exception:
                # A bug in one operation must not stop the others: fail this stack visibly.
                logger.exception("stack operation failed on %s", operation.stack.name)
                stack = operation.stack
                failed = {
                    "CREATE": "CREATE_FAILED",
                    "UPDATE": "UPDATE_ROLLBACK_FAILED",
                    "DELETE": "DELETE_FAILED",
                }[operation.kind]
                self._set_status(stack, failed, "Internal failure of the local AWS (see its log).")
                self._operations.pop(stack_id, None)
                self._finish_change_sets(stack)

    # -- lookups ---------------------------------------------------------------------------------

    def stacks(self, account: str, region: str) -> list[Stack]:
        """Every stack of an account and region, deleted ones included, oldest first."""
        return [s for s in self._stacks if s.account == account and s.region == region]

    def find(self, account: str, region: str, name_or_id: str) -> Stack | None:
        """A stack by id (deleted ones too) or by name (live ones only), as AWS looks them up."""
        for stack in reversed(self.stacks(account, region)):
            if stack.stack_id == name_or_id:
                return stack
            if stack.name == name_or_id and stack.status != "DELETE_COMPLETE":
                return stack
        return None

    def get(self, account: str, region: str, name_or_id: str) -> Stack:
        """Like find, but an unknown stack is AWS's ValidationError."""
        stack = self.find(account, region, name_or_id)
        if stack is None:
            raise StackError(f"Stack with id {name_or_id} does not exist")
        return stack

    # -- requests --------------------------------------------------------------------------------

    def validate(self, body: str) -> dict[str, Any]:
        """Parse and check a template as ValidateTemplate and CreateStack do."""
        try:
            template = parse_template(body)
            check_template(template, lambda kind: resource_type(kind) is not None)
            self._check_attributes(template)
        except TemplateError as exc:
            raise StackError(str(exc)) from exc
        return template

    def create_stack(self, account: str, region: str, request: StackRequest) -> Stack:
        """CreateStack: check, record CREATE_IN_PROGRESS, start creating in the background."""
        stack = self._new_stack(account, region, request)
        self._begin_create(stack)
        return stack

    def _new_stack(self, account: str, region: str, request: StackRequest) -> Stack:
        name = request.name
        _check_name(name)
        if self.find(account, region, name) is not None:
            raise StackError(f"Stack [{name}] already exists", "AlreadyExistsException")
        if request.body is None:
            raise StackError("Either Template URL or Template Body must be specified.")
        template = self.validate(request.body)
        tags = _check_tags(request.tags or [])
        parameters, resolved = self._parameters(account, region, template, request.parameters, None)
        stack = Stack(
            stack_id=f"arn:aws:cloudformation:{region}:{account}:stack/{name}/{uuid.uuid4()}",
            name=name,
            account=account,
            region=region,
            body=request.body,
            template=template,
            parameters=parameters,
            resolved=resolved,
            tags=tags,
            disable_rollback=bool(request.disable_rollback) or request.on_failure == "DO_NOTHING",
            on_failure=request.on_failure or "ROLLBACK",
            termination_protection=request.termination_protection,
            timeout=request.timeout,
            capabilities=request.capabilities,
            notification_arns=request.notification_arns or [],
            role_arn=request.role_arn,
            token=request.token,
        )
        self._stacks.append(stack)
        return stack

    def _begin_create(self, stack: Stack) -> None:
        self._set_status(stack, "CREATE_IN_PROGRESS", "User Initiated")
        self._start(stack, self._create(stack), "CREATE")

    def update_stack(self, account: str, region: str, request: StackRequest) -> Stack:
        """UpdateStack: check, record UPDATE_IN_PROGRESS, start updating in the background."""
        stack = self.get(account, region, request.name)
        update = self._update_inputs(stack, request)
        if (
            update.template == stack.template
            and update.parameters == stack.parameters
            and update.tags == stack.tags
        ):
            raise StackError("No updates are to be performed.")
        self._begin_update(stack, update, request)
        return stack

    def _update_inputs(self, stack: Stack, request: StackRequest) -> Snapshot:
        """The template, parameters and tags an update request asks for, checked."""
        if stack.status not in UPDATABLE_STATES:
            raise StackError(
                f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated."
            )
        if request.use_previous_template:
            if request.body is not None:
                raise StackError(
                    "You cannot specify both usePreviousTemplate and Template Body/Template URL."
                )
            body, template = stack.body, stack.template
        elif request.body is None:
            raise StackError("Either Template URL or Template Body must be specified.")
        else:
            body, template = request.body, self.validate(request.body)
        tags = _check_tags(request.tags) if request.tags is not None else list(stack.tags)
        parameters, resolved = self._parameters(
            stack.account, stack.region, template, request.parameters, stack.parameters
        )
        return Snapshot(body, template, parameters, resolved, tags, [])

    def _begin_update(self, stack: Stack, update: Snapshot, request: StackRequest) -> None:
        previous = stack.snapshot()
        stack.body, stack.template = update.body, update.template
        stack.parameters, stack.resolved, stack.tags = (
            update.parameters,
            update.resolved,
            update.tags,
        )
        if request.notification_arns is not None:
            stack.notification_arns = request.notification_arns
        if request.role_arn:
            stack.role_arn = request.role_arn
        stack.capabilities = request.capabilities or stack.capabilities
        stack.token = request.token
        stack.last_updated = _now()
        self._set_status(stack, "UPDATE_IN_PROGRESS", "User Initiated")
        self._start(stack, self._update(stack, previous, bool(request.disable_rollback)), "UPDATE")

    # -- change sets -----------------------------------------------------------------------------

    def create_change_set(
        self,
        account: str,
        region: str,
        request: StackRequest,
        name: str,
        change_set_type: str,
        description: str | None,
    ) -> ChangeSet:
        """CreateChangeSet: the diff is computed at once, so the change set is CREATE_COMPLETE
        (or FAILED when nothing would change) when the call returns."""
        _check_name(name, "changeSetName")
        stack = self.find(account, region, request.name)
        if change_set_type == "CREATE":
            if stack is not None and stack.status != "REVIEW_IN_PROGRESS":
                raise StackError(
                    f"Stack [{request.name}] already exists and cannot be created again with the "
                    f"changeSet [{name}].",
                    "AlreadyExistsException",
                )
            if stack is None:
                stack = self._new_stack(account, region, request)
                self._set_status(stack, "REVIEW_IN_PROGRESS", "User Initiated")
            update = Snapshot(
                stack.body, stack.template, stack.parameters, stack.resolved, stack.tags, []
            )
            current: dict[str, tuple[str, Physical | None, list[tuple[str, str]]]] = {}
            old_template: dict[str, Any] = {}
            old_resolved: dict[str, Any] = {}
            old_tags: list[tuple[str, str]] = []
        elif change_set_type == "UPDATE":
            if stack is None:
                raise StackError(f"Stack [{request.name}] does not exist")
            update = self._update_inputs(stack, request)
            current = {
                r.logical_id: (r.resource_type, r.physical, r.stack_tags)
                for r in stack.resources.values()
                if r.physical is not None and not r.status.startswith("DELETE")
            }
            old_template, old_resolved, old_tags = stack.template, stack.resolved, stack.tags
        else:
            raise StackError(f"ChangeSetType {change_set_type} is not supported by the local AWS")
        if any(c.name == name for c in self._change_sets if c.stack_id == stack.stack_id):
            raise StackError(f"ChangeSet [{name}] already exists", "AlreadyExistsException")
        try:
            changes = diff(
                update.template,
                old_template,
                update.resolved,
                old_resolved,
                update.tags,
                old_tags,
                current,
                self._evaluator(stack).pseudo,
            )
        except TemplateError as exc:
            raise StackError(str(exc)) from exc
        change_set = ChangeSet(
            change_set_id=ChangeSet.new_id(region, account, name),
            name=name,
            stack_id=stack.stack_id,
            stack_name=stack.name,
            change_set_type=change_set_type,
            body=update.body,
            template=update.template,
            parameters=update.parameters,
            resolved=update.resolved,
            tags=update.tags,
            description=description,
            changes=changes,
        )
        unchanged = (
            update.template == old_template
            and update.parameters == stack.parameters
            and update.tags == old_tags
        )
        if change_set_type == "UPDATE" and (unchanged or not changes):
            change_set.status, change_set.status_reason = "FAILED", NO_CHANGES
            change_set.execution_status = "UNAVAILABLE"
        self._change_sets.append(change_set)
        return change_set

    def change_set(
        self, account: str, region: str, name_or_id: str, stack_name: str | None
    ) -> ChangeSet:
        """A change set by ARN, or by name within a stack."""
        stack = self.find(account, region, stack_name) if stack_name else None
        for change_set in self._change_sets:
            if change_set.change_set_id == name_or_id or (
                stack is not None
                and change_set.stack_id == stack.stack_id
                and change_set.name == name_or_id
            ):
                return change_set
        raise StackError(f"ChangeSet [{name_or_id}] does not exist", "ChangeSetNotFound")

    def change_sets(self, account: str, region: str, stack_name: str) -> list[ChangeSet]:
        """The change sets of a stack."""
        stack = self.get(account, region, stack_name)
        return [c for c in self._change_sets if c.stack_id == stack.stack_id]

    def delete_change_set(
        self, account: str, region: str, name_or_id: str, stack_name: str | None
    ) -> None:
        """DeleteChangeSet."""
        change_set = self.change_set(account, region, name_or_id, stack_name)
        if change_set.execution_status == "EXECUTE_IN_PROGRESS":
            raise StackError(
                f"ChangeSet [{change_set.change_set_id}] cannot be deleted in its current status "
                "of [EXECUTE_IN_PROGRESS]",
                "InvalidChangeSetStatus",
            )
        self._change_sets.remove(change_set)

    def execute_change_set(
        self, account: str, region: str, name_or_id: str, stack_name: str | None
    ) -> None:
        """ExecuteChangeSet: start the creation or update it describes."""
        change_set = self.change_set(account, region, name_or_id, stack_name)
        if change_set.execution_status != "AVAILABLE":
            raise StackError(
                f"ChangeSet [{change_set.change_set_id}] cannot be executed in its current status "
                f"of [{change_set.status}]",
                "InvalidChangeSetStatus",
            )
        stack = self.get(account, region, change_set.stack_id)
        request = StackRequest(name=stack.name)
        if change_set.change_set_type == "CREATE":
            if stack.status != "REVIEW_IN_PROGRESS":
                raise StackError(
                    f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated."
                )
            self._begin_create(stack)
        else:
            if stack.status not in UPDATABLE_STATES:
                raise StackError(
                    f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated."
                )
            update = Snapshot(
                change_set.body,
                change_set.template,
                change_set.parameters,
                change_set.resolved,
                change_set.tags,
                [],
            )
            self._begin_update(stack, update, request)
        change_set.execution_status = "EXECUTE_IN_PROGRESS"
        # As on AWS, executing one change set deletes the stack's others.
        self._change_sets = [
            c for c in self._change_sets if c.stack_id != stack.stack_id or c is change_set
        ]

    def _finish_change_sets(self, stack: Stack) -> None:
        succeeded = stack.status in ("CREATE_COMPLETE", "UPDATE_COMPLETE")
        for change_set in self._change_sets:
            if (
                change_set.stack_id == stack.stack_id
                and change_set.execution_status == "EXECUTE_IN_PROGRESS"
            ):
                change_set.execution_status = "EXECUTE_COMPLETE" if succeeded else "EXECUTE_FAILED"

    def delete_stack(self, account: str, region: str, name_or_id: str, token: str | None) -> None:
        """DeleteStack: an unknown or deleted stack is no error; a creation in progress stops."""
        stack = self.find(account, region, name_or_id)
        if stack is None or stack.status in ("DELETE_COMPLETE", "DELETE_IN_PROGRESS"):
            return
        if stack.termination_protection:
            raise StackError(
                f"Stack [{stack.name}] cannot be deleted while TerminationProtection is enabled"
            )
        operation = self._operations.get(stack.stack_id)
        if operation is not None:
            if stack.status != "CREATE_IN_PROGRESS":
                raise StackError(
                    f"Stack [{stack.name}] cannot be deleted while in status {stack.status}"
                )
            # As on AWS, deleting a stack being created cancels the creation.
            operation.steps.close()
        stack.token = token
        self._set_status(stack, "DELETE_IN_PROGRESS", "User Initiated")
        self._start(stack, self._delete(stack), "DELETE")

    def cancel_update_stack(self, account: str, region: str, name_or_id: str) -> None:
        """CancelUpdateStack: the update fails at its next step and rolls back."""
        stack = self.get(account, region, name_or_id)
        operation = self._operations.get(stack.stack_id)
        if stack.status != "UPDATE_IN_PROGRESS" or operation is None:
            raise StackError("CancelUpdateStack cannot be called from current stack status")
        operation.cancel = True

    def set_termination_protection(
        self, account: str, region: str, name_or_id: str, enabled: bool
    ) -> Stack:
        """UpdateTerminationProtection."""
        stack = self.get(account, region, name_or_id)
        stack.termination_protection = enabled
        return stack

    # -- checks ----------------------------------------------------------------------------------

    def _check_attributes(self, template: Mapping[str, Any]) -> None:
        resources = template.get("Resources") or {}
        for node in (resources, template.get("Outputs") or {}):
            for kind, target, attribute in references(node, set(resources)):
                if kind != "GetAtt" or not attribute or target not in resources:
                    continue
                handler = resource_type(resources[target]["Type"])
                if handler is not None and not handler.has_attribute(attribute):
                    raise TemplateError(
                        f"Template error: resource {target} does not support attribute type "
                        f"{attribute} in Fn::GetAtt"
                    )

    def _parameters(
        self,
        account: str,
        region: str,
        template: Mapping[str, Any],
        given: list[dict[str, Any]],
        previous: Mapping[str, str] | None,
    ) -> tuple[dict[str, str], dict[str, Any]]:
        try:
            specs = parameter_specs(template)
            raw = resolve_parameters(specs, given, previous)
        except TemplateError as exc:
            raise StackError(str(exc)) from exc
        resolved: dict[str, Any] = {}
        for name, spec in specs.items():
            value = raw[name]
            if spec.is_ssm:
                value = _ssm_value(account, region, name, value)
            resolved[name] = parameter_value(spec, value)
        return raw, resolved

    # -- events and states -----------------------------------------------------------------------

    def _set_status(self, stack: Stack, status: str, reason: str | None = None) -> None:
        stack.status = status
        stack.status_reason = reason
        if status == "DELETE_COMPLETE":
            stack.deleted = _now()
        stack.events.append(
            StackEvent(
                stack.stack_id,
                stack.name,
                stack.name,
                stack.stack_id,
                STACK_TYPE,
                status,
                reason,
                None,
                stack.token,
            )
        )

    def _resource_event(
        self,
        stack: Stack,
        resource: StackResource,
        status: str,
        reason: str | None = None,
        physical_id: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> None:
        if physical_id is None:
            resource.status, resource.reason, resource.updated = status, reason, _now()
        stack.events.append(
            StackEvent(
                stack.stack_id,
                stack.name,
                resource.logical_id,
                physical_id if physical_id is not None else resource.physical_id,
                resource.resource_type,
                status,
                reason,
                json.dumps(properties, default=str) if properties is not None else None,
                stack.token,
            )
        )

    # -- helpers for operations ------------------------------------------------------------------

    def _evaluator(self, stack: Stack) -> Evaluator:
        def ref(name: str) -> Any:
            resource = stack.resources.get(name)
            if resource is None or resource.physical is None:
                raise TemplateError(
                    f"Template format error: Unresolved resource dependencies [{name}] in the "
                    "Resources block of the template"
                )
            return resource.physical.ref

        def get_att(name: str, attribute: str) -> Any:
            resource = stack.resources.get(name)
            if resource is None or resource.physical is None:
                raise TemplateError(
                    f"Template error: instance of Fn::GetAtt references undefined resource {name}"
                )
            handler = _handler(resource.resource_type)
            try:
                return handler.get_att(resource.physical, attribute)
            except Exception:  # noqa: BLE001 - moto's models raise their own errors here
                raise TemplateError(
                    f"Template error: resource {name} does not support attribute type "
                    f"{attribute} in Fn::GetAtt"
                ) from None

        return Evaluator(
            parameters=stack.resolved,
            pseudo={
                "AWS::AccountId": stack.account,
                "AWS::Region": stack.region,
                "AWS::StackName": stack.name,
                "AWS::StackId": stack.stack_id,
                "AWS::Partition": "aws",
                "AWS::URLSuffix": "amazonaws.com",
                "AWS::NotificationARNs": list(stack.notification_arns),
            },
            mappings=stack.template.get("Mappings") or {},
            condition_bodies=stack.template.get("Conditions") or {},
            ref=ref,
            get_att=get_att,
        )

    def _context(
        self,
        stack: Stack,
        logical_id: str,
        on_created: Callable[[Physical], None] | None = None,
        stack_tags: list[tuple[str, str]] | None = None,
    ) -> ResourceContext:
        if self.caller is None:
            raise RuntimeError("StackEngine.attach() was not called")
        context = ResourceContext(
            caller=self.caller,
            account=stack.account,
            region=stack.region,
            stack_name=stack.name,
            stack_id=stack.stack_id,
            logical_id=logical_id,
            stack_tags=list(stack.tags if stack_tags is None else stack_tags),
            rollout_seconds=self.rollout_seconds,
        )
        if on_created is not None:
            context.on_created = on_created
        return context

    @staticmethod
    def _wanted(evaluator: Evaluator, definition: Mapping[str, Any]) -> bool:
        condition = definition.get("Condition")
        return condition is None or evaluator.condition(str(condition))

    @staticmethod
    def _properties(
        evaluator: Evaluator, logical_id: str, definition: Mapping[str, Any]
    ) -> dict[str, Any]:
        try:
            value = evaluator.value(definition.get("Properties") or {})
        except TemplateError as exc:
            raise ResourceFailed(str(exc)) from exc
        if value is NO_VALUE:
            return {}
        if not isinstance(value, dict):
            raise ResourceFailed(
                f"Properties validation failed for resource {logical_id} with message: "
                "[#: expected type: JSONObject]"
            )
        return value

    def _outputs(self, stack: Stack, evaluator: Evaluator) -> list[dict[str, Any]]:
        outputs = []
        for key, body in (stack.template.get("Outputs") or {}).items():
            if "Condition" in body and not evaluator.condition(str(body["Condition"])):
                continue
            value = evaluator.value(body.get("Value"))
            entry: dict[str, Any] = {
                "OutputKey": key,
                "OutputValue": ",".join(map(str, value)) if isinstance(value, list) else str(value),
            }
            if "Description" in body:
                entry["Description"] = str(evaluator.value(body["Description"]))
            export = body.get("Export") or {}
            if "Name" in export:
                entry["ExportName"] = str(evaluator.value(export["Name"]))
            outputs.append(entry)
        return outputs

    def _create_resource(
        self, stack: Stack, logical_id: str, definition: Mapping[str, Any], evaluator: Evaluator
    ) -> Generator[None, None, None]:
        resource = StackResource(logical_id, str(definition["Type"]), stack_tags=list(stack.tags))
        stack.resources[logical_id] = resource
        handler = _handler(resource.resource_type)
        self._resource_event(stack, resource, "CREATE_IN_PROGRESS")
        try:
            properties = self._properties(evaluator, logical_id, definition)

            def created(physical: Physical) -> None:
                resource.physical = physical
                self._resource_event(
                    stack,
                    resource,
                    "CREATE_IN_PROGRESS",
                    "Resource creation Initiated",
                    properties=properties,
                )

            physical = yield from handler.create(
                self._context(stack, logical_id, created), properties
            )
        except ResourceFailed as failure:
            self._resource_event(stack, resource, "CREATE_FAILED", str(failure))
            raise
        resource.physical = physical
        self._resource_event(stack, resource, "CREATE_COMPLETE")

    def _delete_resource(
        self,
        stack: Stack,
        resource: StackResource,
        physical: Physical,
        *,
        keep_status: bool = False,
        type_name: str | None = None,
    ) -> Generator[None, None, None]:
        """Delete one physical resource with its two events.

        ``keep_status``: an old physical resource of a replaced resource; the resource itself
        keeps its status (the events still name the old physical id). ``type_name``: the type
        of ``physical`` when the resource's type has changed.
        """
        handler = _handler(type_name or resource.resource_type)
        physical_id = physical.physical_id if keep_status else None
        self._resource_event(stack, resource, "DELETE_IN_PROGRESS", physical_id=physical_id)
        try:
            yield from handler.delete(self._context(stack, resource.logical_id), physical)
        except ResourceFailed as failure:
            self._resource_event(
                stack, resource, "DELETE_FAILED", str(failure), physical_id=physical_id
            )
            raise
        self._resource_event(stack, resource, "DELETE_COMPLETE", physical_id=physical_id)

    def _deletion_order(self, stack: Stack, template: Mapping[str, Any]) -> list[StackResource]:
        """Live resources, dependents first."""
        try:
            order = creation_order(template.get("Resources") or {})
        except TemplateError:
            order = []
        known = [stack.resources[name] for name in order if name in stack.resources]
        others = [r for name, r in stack.resources.items() if name not in order]
        return list(reversed(others + known))

    # -- operations ------------------------------------------------------------------------------

    def _create(self, stack: Stack) -> Steps:
        yield
        evaluator = self._evaluator(stack)
        resources = stack.template["Resources"]
        failed: str | None = None
        try:
            for logical_id in creation_order(resources):
                definition = resources[logical_id]
                try:
                    wanted = self._wanted(evaluator, definition)
                except TemplateError as exc:
                    raise ResourceFailed(str(exc)) from exc
                if not wanted:
                    continue
                failed = logical_id
                yield from self._create_resource(stack, logical_id, definition, evaluator)
                failed = None
                yield
            stack.outputs = self._outputs(stack, evaluator)
        except (ResourceFailed, TemplateError) as failure:
            if failed is None:
                reason = str(failure)
            else:
                reason = f"The following resource(s) failed to create: [{failed}]. "
            if stack.disable_rollback:
                self._set_status(stack, "CREATE_FAILED", reason)
                return
            self._set_status(stack, "ROLLBACK_IN_PROGRESS", reason + "Rollback requested by user.")
            yield
            for resource in self._deletion_order(stack, stack.template):
                if resource.physical is None:
                    self._resource_event(stack, resource, "DELETE_COMPLETE")
                    continue
                try:
                    yield from self._delete_resource(stack, resource, resource.physical)
                except ResourceFailed:
                    self._set_status(
                        stack,
                        "ROLLBACK_FAILED",
                        f"The following resource(s) failed to delete: [{resource.logical_id}]. ",
                    )
                    return
            self._set_status(stack, "ROLLBACK_COMPLETE")
            if stack.on_failure == "DELETE":
                self._set_status(stack, "DELETE_IN_PROGRESS", "User Initiated")
                yield
                self._set_status(stack, "DELETE_COMPLETE")
            return
        self._set_status(stack, "CREATE_COMPLETE")

    def _update(self, stack: Stack, previous: Snapshot, disable_rollback: bool) -> Steps:
        evaluator = self._evaluator(stack)
        resources = stack.template["Resources"]
        changes: list[_Change] = []
        in_flight: _Change | None = None
        failed: str | None = None
        try:
            yield
            for logical_id in creation_order(resources):
                definition = resources[logical_id]
                try:
                    wanted = self._wanted(evaluator, definition)
                except TemplateError as exc:
                    raise ResourceFailed(str(exc)) from exc
                if not wanted:
                    continue
                resource = stack.resources.get(logical_id)
                failed = logical_id
                if (
                    resource is None
                    or resource.physical is None
                    or resource.resource_type != definition["Type"]
                    or resource.status.startswith("DELETE")
                ):
                    if resource is not None and resource.physical is not None:
                        # A new type under an old name: the old resource goes in the cleanup.
                        changes.append(
                            _Change(
                                "removed",
                                logical_id,
                                resource.physical,
                                before_tags=list(resource.stack_tags),
                                before_type=resource.resource_type,
                            )
                        )
                    in_flight = _Change("created", logical_id, None)
                    yield from self._create_resource(stack, logical_id, definition, evaluator)
                    changes.append(in_flight)
                    in_flight, failed = None, None
                    yield
                    continue
                change = yield from self._update_resource(
                    stack, resource, definition, evaluator, lambda c: changes.append(c)
                )
                if change is not None:
                    yield
                failed = None
        except (ResourceFailed, UpdateCancelled) as failure:
            cancelled = isinstance(failure, UpdateCancelled)
            if cancelled and failed is not None and failed in stack.resources:
                resource = stack.resources[failed]
                if resource.status.endswith("_IN_PROGRESS"):
                    self._resource_event(
                        stack, resource, "UPDATE_FAILED", "Resource update cancelled"
                    )
            if cancelled:
                reason = "Stack update cancelled"
            elif failed is None:
                reason = str(failure)
            else:
                reason = f"The following resource(s) failed to update: [{failed}]. "
            if disable_rollback and not cancelled:
                self._set_status(stack, "UPDATE_FAILED", reason)
                return
            yield from self._rollback_update(stack, previous, changes, in_flight, reason)
            return
        self._set_status(stack, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS")
        yield
        for change in reversed(changes):
            if change.kind in ("replaced", "removed") and change.before is not None:
                resource = stack.resources[change.logical_id]
                # AWS leaves a resource it fails to clean up behind, with a DELETE_FAILED event;
                # the update stands.
                with contextlib.suppress(ResourceFailed):
                    yield from self._delete_resource(
                        stack,
                        resource,
                        change.before,
                        keep_status=True,
                        type_name=change.before_type,
                    )
        kept = [
            name for name, definition in resources.items() if self._wanted(evaluator, definition)
        ]
        gone = [
            r for r in self._deletion_order(stack, previous.template) if r.logical_id not in kept
        ]
        for resource in gone:
            if resource.physical is not None and not resource.status.startswith("DELETE"):
                try:
                    yield from self._delete_resource(stack, resource, resource.physical)
                except ResourceFailed:
                    continue
            stack.resources.pop(resource.logical_id, None)
        stack.outputs = self._outputs(stack, evaluator)
        self._set_status(stack, "UPDATE_COMPLETE")

    def _update_resource(
        self,
        stack: Stack,
        resource: StackResource,
        definition: Mapping[str, Any],
        evaluator: Evaluator,
        record: Callable[[_Change], None],
    ) -> Generator[None, None, _Change | None]:
        """Update one existing resource if its properties or tags changed; record the change."""
        handler = _handler(resource.resource_type)
        before = resource.physical
        assert before is not None
        logical_id = resource.logical_id
        try:
            properties = self._properties(evaluator, logical_id, definition)
        except ResourceFailed as failure:
            self._resource_event(stack, resource, "UPDATE_FAILED", str(failure))
            raise
        tags_changed = handler.supports_tags and resource.stack_tags != stack.tags
        if properties == before.properties and not tags_changed:
            return None
        before_tags = list(resource.stack_tags)
        if handler.needs_replacement(before, properties):
            change = _Change("replaced", logical_id, before, before_tags=before_tags)
            name_property = handler.name_property
            if (
                name_property
                and properties.get(name_property)
                and (properties.get(name_property) == before.properties.get(name_property))
            ):
                self._resource_event(
                    stack,
                    resource,
                    "UPDATE_FAILED",
                    "CloudFormation cannot update a stack when a custom-named resource requires "
                    f"replacing. Rename {properties[name_property]} and update the stack again.",
                )
                raise ResourceFailed(f"custom-named {logical_id} needs replacing")
            self._resource_event(stack, resource, "UPDATE_IN_PROGRESS", REPLACING)

            def created(physical: Physical) -> None:
                resource.physical = physical
                record(change)
                self._resource_event(
                    stack,
                    resource,
                    "UPDATE_IN_PROGRESS",
                    "Resource creation Initiated",
                    properties=properties,
                )

            context = self._context(stack, logical_id, created)
            try:
                physical = yield from handler.create(context, properties)
            except ResourceFailed as failure:
                self._resource_event(stack, resource, "UPDATE_FAILED", str(failure))
                raise
        else:
            attempted_tags = (
                merged_tags(properties.get("Tags"), stack.tags) if handler.supports_tags else []
            )
            attempted = Physical(
                before.physical_id,
                before.ref,
                before.attributes,
                properties,
                attempted_tags,
                before.state,
            )
            change = _Change("updated", logical_id, before, attempted, before_tags)
            # Recorded before the handler runs: a failed or cancelled in-place update may have
            # changed the resource already and must be reverted too.
            record(change)
            self._resource_event(stack, resource, "UPDATE_IN_PROGRESS", properties=properties)
            try:
                physical = yield from handler.update(
                    self._context(stack, logical_id), before, properties
                )
            except ResourceFailed as failure:
                self._resource_event(stack, resource, "UPDATE_FAILED", str(failure))
                raise
        resource.physical = physical
        resource.stack_tags = list(stack.tags)
        self._resource_event(stack, resource, "UPDATE_COMPLETE")
        return change

    def _rollback_update(
        self,
        stack: Stack,
        previous: Snapshot,
        changes: list[_Change],
        in_flight: _Change | None,
        reason: str,
    ) -> Steps:
        self._set_status(stack, "UPDATE_ROLLBACK_IN_PROGRESS", reason)
        stack.restore(previous)
        yield
        leftovers: list[tuple[StackResource, Physical, bool]] = []
        if in_flight is not None and in_flight.kind == "created":
            changes = [*changes, in_flight]
        for change in reversed(changes):
            resource = stack.resources.get(change.logical_id)
            if resource is None:
                continue
            if change.kind == "created":
                if resource.physical is not None:
                    leftovers.append((resource, resource.physical, False))
                else:
                    leftovers.append((resource, Physical("", "", {}, {}, []), False))
                continue
            if change.kind == "removed":
                # The resource whose type the update changed comes back as it was.
                stack.resources[change.logical_id] = StackResource(
                    change.logical_id,
                    change.before_type or resource.resource_type,
                    status="UPDATE_COMPLETE",
                    physical=change.before,
                    stack_tags=change.before_tags,
                )
                continue
            before = change.before
            assert before is not None
            if change.kind == "replaced":
                newer = resource.physical
                self._resource_event(stack, resource, "UPDATE_IN_PROGRESS")
                resource.physical = before
                resource.stack_tags = change.before_tags
                self._resource_event(stack, resource, "UPDATE_COMPLETE")
                if newer is not None and newer is not before:
                    leftovers.append((resource, newer, True))
                continue
            current = change.attempted or resource.physical or before
            handler = _handler(resource.resource_type)
            self._resource_event(
                stack, resource, "UPDATE_IN_PROGRESS", properties=before.properties
            )
            try:
                reverted = yield from handler.update(
                    self._context(stack, resource.logical_id, stack_tags=change.before_tags),
                    current,
                    before.properties,
                )
            except ResourceFailed as failure:
                self._resource_event(stack, resource, "UPDATE_FAILED", str(failure))
                self._set_status(
                    stack,
                    "UPDATE_ROLLBACK_FAILED",
                    f"The following resource(s) failed to update: [{resource.logical_id}]. ",
                )
                return
            resource.physical = reverted
            resource.stack_tags = change.before_tags
            self._resource_event(stack, resource, "UPDATE_COMPLETE")
            yield
        self._set_status(stack, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS")
        yield
        for resource, physical, replaced in leftovers:
            if physical.physical_id:
                try:
                    yield from self._delete_resource(
                        stack, resource, physical, keep_status=replaced
                    )
                except ResourceFailed:
                    continue
            elif not replaced:
                self._resource_event(stack, resource, "DELETE_COMPLETE")
            if not replaced and stack.resources.get(resource.logical_id) is resource:
                del stack.resources[resource.logical_id]
        self._set_status(stack, "UPDATE_ROLLBACK_COMPLETE")

    def _delete(self, stack: Stack) -> Steps:
        yield
        resources = stack.template.get("Resources") or {}
        for resource in self._deletion_order(stack, stack.template):
            if resource.status == "DELETE_COMPLETE":
                continue
            definition = resources.get(resource.logical_id) or {}
            if definition.get("DeletionPolicy") == "Retain" and resource.physical is not None:
                self._resource_event(stack, resource, "DELETE_SKIPPED")
                continue
            if resource.physical is None:
                self._resource_event(stack, resource, "DELETE_COMPLETE")
                continue
            try:
                yield from self._delete_resource(stack, resource, resource.physical)
            except ResourceFailed:
                self._set_status(
                    stack,
                    "DELETE_FAILED",
                    f"The following resource(s) failed to delete: [{resource.logical_id}]. ",
                )
                return
            yield
        self._set_status(stack, "DELETE_COMPLETE")


def _handler(type_name: str) -> ResourceType:
    handler = resource_type(type_name)
    if handler is None:
        raise ResourceFailed(f"Unrecognized resource type {type_name}")
    return handler


def _check_name(name: str, member: str = "stackName") -> None:
    if len(name) > MAX_STACK_NAME:
        raise StackError(
            f"1 validation error detected: Value '{name}' at '{member}' failed to satisfy "
            f"constraint: Member must have length less than or equal to {MAX_STACK_NAME}"
        )
    if not _STACK_NAME.match(name):
        raise StackError(
            f"1 validation error detected: Value '{name}' at '{member}' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: [a-zA-Z][-a-zA-Z0-9]*"
        )


def _check_tags(tags: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    result = list(tags)
    if len(result) > MAX_TAGS:
        raise StackError(
            f"1 validation error detected: Value at 'tags' failed to satisfy constraint: Member "
            f"must have length less than or equal to {MAX_TAGS}"
        )
    for key, _ in result:
        if key.lower().startswith("aws:"):
            raise StackError("Tag keys can not start with 'aws:'")
    return result


def _ssm_value(account: str, region: str, parameter: str, name: str) -> str:
    from moto.ssm.models import ssm_backends

    try:
        found = ssm_backends[account][region].get_parameter(name)
    except Exception:  # noqa: BLE001 - moto raises its own not-found errors
        found = None
    if found is None:
        raise StackError(
            f"Parameters: [{name}] referenced by template parameter {parameter} cannot be found."
        )
    return str(found.value)
