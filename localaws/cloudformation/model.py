"""The data model of the local CloudFormation: stacks, their resources and events, change sets.

Plain data and lookups; nothing here calls AWS or knows about threads (callers hold the world
lock: request handlers and the engine's tick). Invariants the rest of the package relies on:

* a stack's ``events`` only grow, oldest first; every change of the stack's status or of one of
  its resources' statuses appends exactly one event (:meth:`Stack.set_status`,
  :meth:`Stack.resource_event`), which carries the token of the operation that made it, so that a
  client can tell its own operation's events (``ClientRequestToken``) from anyone else's;
* a resource's ``physical`` is set as soon as the physical resource exists, before any wait, so
  that a rollback or a deletion finds everything that was made;
* template, parameters, tags and outputs change together: an update replaces them as one
  :class:`Snapshot`, and its rollback puts the previous one back;
* a stack is found by name while it is not DELETE_COMPLETE, and by id for ever.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass, field
from typing import Any

from localaws.cloudformation.resources import Physical

STACK_TYPE = "AWS::CloudFormation::Stack"


class StackError(Exception):
    """Raised when a stack request is refused; ``code`` is the AWS error code."""

    def __init__(self, message: str, code: str = "ValidationError") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def now() -> datetime.datetime:
    """The current time, as CloudFormation's timestamps give it (UTC)."""
    return datetime.datetime.now(datetime.UTC)


def new_arn(account: str, region: str, kind: str, name: str) -> str:
    """A new stack (``kind`` "stack") or change set ("changeSet") ARN."""
    return f"arn:aws:cloudformation:{region}:{account}:{kind}/{name}/{uuid.uuid4()}"


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
    token: str | None
    timestamp: datetime.datetime = field(default_factory=now)
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
        if self.token:
            result["ClientRequestToken"] = self.token
        return result


@dataclass
class StackResource:
    """One resource of a stack."""

    logical_id: str
    resource_type: str
    status: str = ""
    physical: Physical | None = None
    # The stack tags the physical resource was made with: a change of them is an update.
    stack_tags: list[tuple[str, str]] = field(default_factory=list)

    @property
    def physical_id(self) -> str:
        """The physical id, "" before the resource exists."""
        return self.physical.physical_id if self.physical is not None else ""


@dataclass
class Snapshot:
    """The parts of a stack that an update replaces, and that its rollback puts back."""

    body: str
    template: dict[str, Any]
    parameters: dict[str, str]  # as given (strings)
    resolved: dict[str, Any]  # as Ref gives them (lists for list types)
    tags: list[tuple[str, str]]
    outputs: list[dict[str, Any]] = field(default_factory=list)


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
    token: str | None = None  # ClientRequestToken of the operation in progress or last done
    status: str = "CREATE_IN_PROGRESS"
    status_reason: str | None = None
    created: datetime.datetime = field(default_factory=now)
    last_updated: datetime.datetime | None = None
    deleted: datetime.datetime | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    resources: dict[str, StackResource] = field(default_factory=dict)
    events: list[StackEvent] = field(default_factory=list)

    @property
    def pseudo(self) -> dict[str, Any]:
        """What Ref gives for the pseudo parameters."""
        return {
            "AWS::AccountId": self.account,
            "AWS::Region": self.region,
            "AWS::StackName": self.name,
            "AWS::StackId": self.stack_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }

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
        """Take the parts of a snapshot (an update's, or the previous one on rollback)."""
        self.body, self.template = snapshot.body, snapshot.template
        self.parameters, self.resolved = snapshot.parameters, snapshot.resolved
        self.tags, self.outputs = snapshot.tags, snapshot.outputs

    def set_status(self, status: str, reason: str | None = None) -> None:
        """Change the stack's status, with its event."""
        self.status, self.status_reason = status, reason
        if status == "DELETE_COMPLETE":
            self.deleted = now()
        self.events.append(
            StackEvent(
                self.stack_id,
                self.name,
                self.name,
                self.stack_id,
                STACK_TYPE,
                status,
                reason,
                self.token,
            )
        )

    def resource_event(
        self,
        resource: StackResource,
        status: str,
        reason: str | None = None,
        physical_id: str | None = None,
    ) -> None:
        """Change a resource's status, with its event.

        ``physical_id``: the event is about another physical resource than the resource's own
        (the old one of a replacement, deleted in the cleanup); the resource keeps its status.
        """
        if physical_id is None:
            resource.status = status
        self.events.append(
            StackEvent(
                self.stack_id,
                self.name,
                resource.logical_id,
                physical_id if physical_id is not None else resource.physical_id,
                resource.resource_type,
                status,
                reason,
                self.token,
            )
        )

    def describe(self) -> dict[str, Any]:
        """The Stack shape of DescribeStacks."""
        result: dict[str, Any] = {
            "StackId": self.stack_id,
            "StackName": self.name,
            "Parameters": [
                {"ParameterKey": key, "ParameterValue": value}
                for key, value in self.parameters.items()
            ],
            "CreationTime": self.created,
            "StackStatus": self.status,
            "Tags": [{"Key": key, "Value": value} for key, value in self.tags],
        }
        optional = {
            "Description": self.template.get("Description"),
            "StackStatusReason": self.status_reason,
            "LastUpdatedTime": self.last_updated,
            "DeletionTime": self.deleted,
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
        }
        optional = {
            "TemplateDescription": self.template.get("Description"),
            "StackStatusReason": self.status_reason,
            "LastUpdatedTime": self.last_updated,
            "DeletionTime": self.deleted,
        }
        result.update({key: value for key, value in optional.items() if value is not None})
        return result


@dataclass
class ChangeSet:
    """One change set of a stack: the update (or creation) it describes, and its Changes."""

    change_set_id: str
    name: str
    stack_id: str
    stack_name: str
    change_set_type: str  # CREATE or UPDATE
    update: Snapshot
    description: str | None
    changes: list[dict[str, Any]]
    status: str = "CREATE_COMPLETE"
    status_reason: str | None = None
    execution_status: str = "AVAILABLE"
    created: datetime.datetime = field(default_factory=now)

    def describe(self) -> dict[str, Any]:
        """The DescribeChangeSet answer."""
        result: dict[str, Any] = {
            "StackId": self.stack_id,
            "StackName": self.stack_name,
            "ChangeSetId": self.change_set_id,
            "ChangeSetName": self.name,
            "ExecutionStatus": self.execution_status,
            "Status": self.status,
            "CreationTime": self.created,
            "Parameters": [
                {"ParameterKey": key, "ParameterValue": value}
                for key, value in self.update.parameters.items()
            ],
            "Tags": [{"Key": key, "Value": value} for key, value in self.update.tags],
            "Changes": self.changes,
        }
        if self.status_reason:
            result["StatusReason"] = self.status_reason
        if self.description:
            result["Description"] = self.description
        return result


class Registry:
    """Every stack and change set of one local AWS process, and how AWS looks them up."""

    def __init__(self) -> None:
        self.stacks: list[Stack] = []
        self.change_sets: list[ChangeSet] = []

    def clear(self) -> None:
        """Forget everything."""
        self.stacks.clear()
        self.change_sets.clear()

    def of(self, account: str, region: str) -> list[Stack]:
        """Every stack of an account and region, deleted ones included, oldest first."""
        return [s for s in self.stacks if s.account == account and s.region == region]

    def find(self, account: str, region: str, name_or_id: str) -> Stack | None:
        """A stack by id (deleted ones too) or by name (live ones only)."""
        for stack in reversed(self.of(account, region)):
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

    def change_set(
        self, account: str, region: str, name_or_id: str, stack_name: str | None
    ) -> ChangeSet:
        """A change set by ARN, or by name within a stack."""
        stack = self.find(account, region, stack_name) if stack_name else None
        for change_set in self.change_sets:
            if change_set.change_set_id == name_or_id or (
                stack is not None
                and change_set.stack_id == stack.stack_id
                and change_set.name == name_or_id
            ):
                return change_set
        raise StackError(f"ChangeSet [{name_or_id}] does not exist", "ChangeSetNotFound")
