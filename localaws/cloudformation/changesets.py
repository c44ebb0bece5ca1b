"""Change sets: what an update (or a creation) would do to each resource, computed before it runs.

The diff evaluates the new template against the stack's current resources. A value that depends
on a resource that the change set adds or replaces is not known until the update runs; it is
compared as CloudFormation's ``{{changeSet:KNOWN_AFTER_APPLY}}`` placeholder, which makes the
change *Dynamic* and its source a *ResourceReference*, as CloudFormation reports it.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from localaws.cloudformation.resources import Physical, resource_type
from localaws.cloudformation.template import (
    Evaluator,
    TemplateError,
    creation_order,
    references,
)

KNOWN_AFTER_APPLY = "{{changeSet:KNOWN_AFTER_APPLY}}"
NO_CHANGES = (
    "The submitted information didn't contain changes. Submit different information to create "
    "a change set."
)


@dataclass
class ChangeSet:
    """One change set of a stack."""

    change_set_id: str
    name: str
    stack_id: str
    stack_name: str
    change_set_type: str
    body: str
    template: dict[str, Any]
    parameters: dict[str, str]
    resolved: dict[str, Any]
    tags: list[tuple[str, str]]
    description: str | None
    changes: list[dict[str, Any]]
    status: str = "CREATE_COMPLETE"
    status_reason: str | None = None
    execution_status: str = "AVAILABLE"
    created: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))

    @staticmethod
    def new_id(region: str, account: str, name: str) -> str:
        """A change set ARN."""
        return f"arn:aws:cloudformation:{region}:{account}:changeSet/{name}/{uuid.uuid4()}"

    def summary(self) -> dict[str, Any]:
        """The ChangeSetSummary shape."""
        result: dict[str, Any] = {
            "StackId": self.stack_id,
            "StackName": self.stack_name,
            "ChangeSetId": self.change_set_id,
            "ChangeSetName": self.name,
            "ExecutionStatus": self.execution_status,
            "Status": self.status,
            "CreationTime": self.created,
            "IncludeNestedStacks": False,
        }
        if self.status_reason:
            result["StatusReason"] = self.status_reason
        if self.description:
            result["Description"] = self.description
        return result

    def describe(self) -> dict[str, Any]:
        """The DescribeChangeSet answer."""
        result = self.summary()
        result.update(
            Parameters=[
                {"ParameterKey": key, "ParameterValue": value}
                for key, value in self.parameters.items()
            ],
            Tags=[{"Key": key, "Value": value} for key, value in self.tags],
            Changes=self.changes,
            NotificationARNs=[],
            Capabilities=[],
            RollbackConfiguration={},
        )
        return result


def diff(
    template: Mapping[str, Any],
    old_template: Mapping[str, Any],
    resolved: Mapping[str, Any],
    old_resolved: Mapping[str, Any],
    tags: list[tuple[str, str]],
    old_tags: list[tuple[str, str]],
    current: Mapping[str, tuple[str, Physical | None, list[tuple[str, str]]]],
    pseudo: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """The Changes of a change set.

    ``current`` maps each live resource's logical id to (type, physical, stack tags it was made
    with); ``resolved`` are the new parameter values (as Ref gives them).
    """
    resources = template.get("Resources") or {}
    unknown: set[str] = set()  # resources whose physical id the update will change

    def ref(name: str) -> Any:
        entry = current.get(name)
        if name in unknown or entry is None or entry[1] is None:
            return KNOWN_AFTER_APPLY
        return entry[1].ref

    def get_att(name: str, attribute: str) -> Any:
        entry = current.get(name)
        if name in unknown or entry is None or entry[1] is None:
            return KNOWN_AFTER_APPLY
        handler = resource_type(entry[0])
        if handler is None:
            return KNOWN_AFTER_APPLY
        try:
            return handler.get_att(entry[1], attribute)
        except Exception:  # noqa: BLE001 - an attribute moto cannot give is unknown until applied
            return KNOWN_AFTER_APPLY

    evaluator = Evaluator(
        parameters=resolved,
        pseudo=pseudo,
        mappings=template.get("Mappings") or {},
        condition_bodies=template.get("Conditions") or {},
        ref=ref,
        get_att=get_att,
    )
    changed_parameters = {key for key in resolved if resolved.get(key) != old_resolved.get(key)}
    changes: list[dict[str, Any]] = []
    wanted: list[str] = []
    for logical_id in creation_order(resources):
        definition = resources[logical_id]
        condition = definition.get("Condition")
        if condition is not None and not evaluator.condition(str(condition)):
            continue
        wanted.append(logical_id)
        kind = str(definition["Type"])
        entry = current.get(logical_id)
        if entry is None or entry[1] is None or entry[0] != kind:
            unknown.add(logical_id)
            changes.append(_change("Add", logical_id, "", kind))
            continue
        _, physical, made_with_tags = entry
        handler = resource_type(kind)
        if handler is None or physical is None:
            continue
        try:
            properties = evaluator.value(definition.get("Properties") or {})
        except TemplateError:
            properties = {"__unresolved__": KNOWN_AFTER_APPLY}
        tags_changed = handler.supports_tags and made_with_tags != tags
        if properties == physical.properties and not tags_changed:
            continue
        replaced = properties != physical.properties and handler.needs_replacement(
            physical, properties
        )
        if replaced:
            unknown.add(logical_id)
        old_definition = (old_template.get("Resources") or {}).get(logical_id) or {}
        details = _details(
            properties,
            physical.properties,
            definition.get("Properties") or {},
            old_definition.get("Properties") or {},
            changed_parameters,
            set(resources),
            replaced,
        )
        scope = ["Properties"] if details else []
        if tags_changed:
            scope.append("Tags")
        change = _change("Modify", logical_id, physical.physical_id, kind)
        change["ResourceChange"].update(
            Replacement="True" if replaced else "False", Scope=scope, Details=details
        )
        changes.append(change)
    for logical_id, (kind, physical, _) in current.items():
        if logical_id not in wanted and physical is not None:
            changes.append(_change("Remove", logical_id, physical.physical_id, kind))
    return changes


def _change(action: str, logical_id: str, physical_id: str, kind: str) -> dict[str, Any]:
    change: dict[str, Any] = {
        "Action": action,
        "LogicalResourceId": logical_id,
        "ResourceType": kind,
        "Scope": [],
        "Details": [],
    }
    if physical_id:
        change["PhysicalResourceId"] = physical_id
    return {"Type": "Resource", "ResourceChange": change}


def _details(
    new: Mapping[str, Any],
    old: Mapping[str, Any],
    new_raw: Mapping[str, Any],
    old_raw: Mapping[str, Any],
    changed_parameters: set[str],
    resource_ids: set[str],
    replaced: bool,
) -> list[dict[str, Any]]:
    details = []
    for name in sorted(set(new) | set(old)):
        if new.get(name) == old.get(name):
            continue
        target = {
            "Attribute": "Properties",
            "Name": name,
            "RequiresRecreation": "Always" if replaced else "Never",
        }
        dynamic = KNOWN_AFTER_APPLY in repr(new.get(name))
        detail: dict[str, Any] = {
            "Target": target,
            "Evaluation": "Dynamic" if dynamic else "Static",
        }
        if new_raw.get(name) != old_raw.get(name):
            detail["ChangeSource"] = "DirectModification"
        else:
            refs = references(new_raw.get(name), resource_ids)
            causes = [t for _, t, _ in refs if t in resource_ids]
            parameters = [t for kind, t, _ in refs if kind == "Ref" and t in changed_parameters]
            if dynamic and causes:
                detail["ChangeSource"] = "ResourceReference"
                detail["CausingEntity"] = causes[0]
            elif parameters:
                detail["ChangeSource"] = "ParameterReference"
                detail["CausingEntity"] = parameters[0]
            else:
                detail["ChangeSource"] = "DirectModification"
        details.append(detail)
    return details
