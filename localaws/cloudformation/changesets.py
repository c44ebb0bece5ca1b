"""Change sets: what an update (or a creation) would do to each resource, computed before it runs.

The diff evaluates the new template against the stack's current resources. A value that depends
on a resource that the change set adds or replaces is not known until the change runs; it is
compared as CloudFormation's ``{{changeSet:KNOWN_AFTER_APPLY}}`` placeholder, which makes the
change *Dynamic* and its source a *ResourceReference*, as CloudFormation reports it.

An update never adds, removes or retypes resources (the API refuses such templates), so the
Changes of an UPDATE change set are all *Modify*, and those of a CREATE change set all *Add*.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from localaws.cloudformation.model import Snapshot, StackResource
from localaws.cloudformation.resources import RESOURCE_TYPES, Physical
from localaws.cloudformation.template import Evaluator, creation_order, references

KNOWN_AFTER_APPLY = "{{changeSet:KNOWN_AFTER_APPLY}}"
NO_CHANGES = (
    "The submitted information didn't contain changes. Submit different information to create "
    "a change set."
)


def diff(
    update: Snapshot,
    old: Snapshot,
    current: Mapping[str, StackResource],
    pseudo: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """The Changes of a change set that moves ``current`` resources from ``old`` to ``update``.

    ``current`` is empty for a CREATE change set.
    """
    resources = update.template["Resources"]
    unknown: set[str] = set()  # resources whose physical id the change will change

    def made(name: str) -> Physical | None:
        resource = current.get(name)
        return None if name in unknown or resource is None else resource.physical

    def ref(name: str) -> Any:
        found = made(name)
        return KNOWN_AFTER_APPLY if found is None else found.ref

    def get_att(name: str, attribute: str) -> Any:
        found = made(name)
        if found is None:
            return KNOWN_AFTER_APPLY
        return RESOURCE_TYPES[current[name].resource_type].get_att(found, attribute)

    evaluator = Evaluator({**pseudo, **update.resolved}, ref, get_att)
    changed_parameters = {
        key for key in update.resolved if update.resolved.get(key) != old.resolved.get(key)
    }
    changes: list[dict[str, Any]] = []
    for logical_id in creation_order(resources):
        definition = resources[logical_id]
        kind = str(definition["Type"])
        resource = current.get(logical_id)
        if resource is None or resource.physical is None:
            unknown.add(logical_id)
            changes.append(_change("Add", logical_id, "", kind))
            continue
        physical = resource.physical
        properties = evaluator.value(definition.get("Properties") or {})
        tags_changed = resource.stack_tags != update.tags
        if properties == physical.properties and not tags_changed:
            continue
        replaced = properties != physical.properties and RESOURCE_TYPES[kind].needs_replacement(
            physical, properties
        )
        if replaced:
            unknown.add(logical_id)
        old_definition = (old.template.get("Resources") or {}).get(logical_id) or {}
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
            refs = references(new_raw.get(name))
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
