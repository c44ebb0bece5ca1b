"""CloudFormation templates as Conveyor writes them: checks, parameters, Ref and Fn::GetAtt.

Pure functions over plain data (no moto, no I/O). Errors are :class:`TemplateError` with the
message CloudFormation gives, so that the API layer answers with it as a ``ValidationError``.

Supported is what Conveyor's templates use (``producers/contract/stack_template.py``): JSON
bodies; the sections AWSTemplateFormatVersion, Description, Parameters, Resources and Outputs;
parameters of type String, ``List<AWS::EC2::Subnet::Id>`` and ``List<AWS::EC2::SecurityGroup::Id>``
with Description, MinLength and AllowedPattern; resources with Type, Properties, DeletionPolicy
and UpdateReplacePolicy; ``Ref`` (parameters, resources, pseudo parameters) and ``Fn::GetAtt``;
outputs with a Value. Anything else is refused when the template is checked, with a message that
says the local AWS does not support it: never accepted and then half-simulated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SECTIONS = ("AWSTemplateFormatVersion", "Description", "Parameters", "Resources", "Outputs")
RESOURCE_ATTRIBUTES = ("Type", "Properties", "DeletionPolicy", "UpdateReplacePolicy")
PARAMETER_ATTRIBUTES = ("Type", "Description", "MinLength", "AllowedPattern")
PARAMETER_TYPES = ("String", "List<AWS::EC2::Subnet::Id>", "List<AWS::EC2::SecurityGroup::Id>")
OUTPUT_ATTRIBUTES = ("Value",)
FUNCTIONS = ("Ref", "Fn::GetAtt")
PSEUDO_PARAMETERS = frozenset(
    {
        "AWS::AccountId",
        "AWS::Partition",
        "AWS::Region",
        "AWS::StackId",
        "AWS::StackName",
        "AWS::URLSuffix",
    }
)
_LOGICAL_ID = re.compile(r"^[A-Za-z0-9]+$")


class TemplateError(ValueError):
    """Raised when a template or a parameter value is invalid, or uses what is not supported."""


def _only(keys: Iterable[str], allowed: tuple[str, ...], what: str) -> None:
    extra = sorted(set(keys) - set(allowed))
    if extra:
        raise TemplateError(
            f"Template format error: {what} [{', '.join(extra)}] not supported by the local AWS "
            f"(supported: {', '.join(allowed)})"
        )


def parse_template(body: str) -> dict[str, Any]:
    """Parse a JSON template body; raise TemplateError in CloudFormation's words."""
    try:
        parsed = json.loads(body)
    except ValueError as exc:
        raise TemplateError(
            f"Template format error: JSON not well-formed. ({exc}) "
            "The local AWS reads JSON templates only."
        ) from exc
    if not isinstance(parsed, dict):
        raise TemplateError("Template format error: unsupported structure.")
    return parsed


def check_template(template: Mapping[str, Any], attributes: Mapping[str, frozenset[str]]) -> None:
    """The checks CloudFormation makes before it accepts a template, and refusals of the rest.

    ``attributes`` maps each resource type that can be created here to its Fn::GetAtt attributes.
    """
    _only(template, SECTIONS, "template sections")
    resources = template.get("Resources")
    if not isinstance(resources, dict) or not resources:
        raise TemplateError("Template format error: At least one Resources member must be defined.")
    unknown_types: list[str] = []
    for logical_id, resource in resources.items():
        if not _LOGICAL_ID.match(str(logical_id)):
            raise TemplateError(
                f"Template format error: Resource name {logical_id} is non alphanumeric."
            )
        if not isinstance(resource, dict) or not isinstance(resource.get("Type"), str):
            raise TemplateError(
                f"Template format error: [/Resources/{logical_id}] Every Resources object must "
                "contain a Type member."
            )
        _only(resource, RESOURCE_ATTRIBUTES, f"attributes of resource {logical_id}")
        if not isinstance(resource.get("Properties", {}), dict):
            raise TemplateError(
                f"Template format error: [/Resources/{logical_id}/Properties] "
                "Every Properties member must be an object."
            )
        if resource["Type"] not in attributes and resource["Type"] not in unknown_types:
            unknown_types.append(resource["Type"])
    if unknown_types:
        raise TemplateError(
            f"Template format error: Unrecognized resource types: [{', '.join(unknown_types)}]"
        )
    names = set(parameter_specs(template)) | set(resources) | PSEUDO_PARAMETERS
    outputs = template.get("Outputs") or {}
    if not isinstance(outputs, dict):
        raise TemplateError("Template format error: Outputs must be an object.")
    for output_id, output in outputs.items():
        if not isinstance(output, dict) or "Value" not in output:
            raise TemplateError(
                f"Template format error: Every Outputs member must contain a Value object, "
                f"the Outputs member {output_id} does not."
            )
        _only(output, OUTPUT_ATTRIBUTES, f"attributes of output {output_id}")
    unresolved: list[str] = []
    for node in (resources, outputs):
        for kind, target, attribute in references(node):
            if kind == "Ref":
                if target not in names and target not in unresolved:
                    unresolved.append(target)
            elif target not in resources:
                raise TemplateError(
                    f"Template error: instance of Fn::GetAtt references undefined resource {target}"
                )
            elif attribute not in attributes[resources[target]["Type"]]:
                raise TemplateError(
                    f"Template error: resource {target} does not support attribute type "
                    f"{attribute} in Fn::GetAtt"
                )
    if unresolved:
        raise TemplateError(
            f"Template format error: Unresolved resource dependencies [{', '.join(unresolved)}] "
            "in the Resources block of the template"
        )
    creation_order(resources)


# -- parameters ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParameterSpec:
    """One entry of a template's Parameters section."""

    name: str
    type: str
    min_length: int | None
    allowed_pattern: str | None

    @property
    def is_list(self) -> bool:
        """Whether ``Ref`` gives a list of strings."""
        return self.type.startswith("List<")


def parameter_specs(template: Mapping[str, Any]) -> dict[str, ParameterSpec]:
    """The declared parameters, in template order."""
    declared = template.get("Parameters") or {}
    if not isinstance(declared, dict):
        raise TemplateError("Template format error: Parameters must be an object.")
    specs: dict[str, ParameterSpec] = {}
    for name, body in declared.items():
        if not isinstance(body, dict) or "Type" not in body:
            raise TemplateError(
                f"Template format error: Every Parameters object must contain a Type member."
                f" Parameter {name} does not."
            )
        _only(body, PARAMETER_ATTRIBUTES, f"attributes of parameter {name}")
        _only([str(body["Type"])], PARAMETER_TYPES, f"type of parameter {name}")
        specs[str(name)] = ParameterSpec(
            name=str(name),
            type=str(body["Type"]),
            min_length=int(body["MinLength"]) if "MinLength" in body else None,
            allowed_pattern=str(body["AllowedPattern"]) if "AllowedPattern" in body else None,
        )
    return specs


def resolve_parameters(
    specs: Mapping[str, ParameterSpec], given: Iterable[Mapping[str, Any]]
) -> dict[str, str]:
    """The raw (string) value of every parameter, from the request's ``Parameters`` list.

    Every parameter needs a value (there are no defaults, and no ``UsePreviousValue``).
    """
    values: dict[str, str] = {}
    unknown: list[str] = []
    for entry in given:
        key = str(entry.get("ParameterKey", ""))
        if key not in specs:
            unknown.append(key)
        elif entry.get("UsePreviousValue"):
            raise TemplateError(
                f"Invalid input for parameter key {key}. UsePreviousValue is not supported by "
                "the local AWS: give the value."
            )
        else:
            values[key] = str(entry.get("ParameterValue", ""))
    if unknown:
        raise TemplateError(f"Parameters: [{', '.join(unknown)}] do not exist in the template")
    missing = [name for name in specs if name not in values]
    if missing:
        raise TemplateError(f"Parameters: [{', '.join(missing)}] must have values")
    for name, spec in specs.items():
        value = values[name]
        for item in [item.strip() for item in value.split(",")] if spec.is_list else [value]:
            if spec.allowed_pattern is not None and not re.fullmatch(spec.allowed_pattern, item):
                raise TemplateError(f"Parameter '{name}' must match pattern {spec.allowed_pattern}")
            if spec.min_length is not None and len(item) < spec.min_length:
                raise TemplateError(
                    f"Parameter '{name}' must contain at least {spec.min_length} characters"
                )
    return {name: values[name] for name in specs}


def parameter_value(spec: ParameterSpec, raw: str) -> Any:
    """What ``Ref`` to the parameter gives: a string, or a list of strings for list types."""
    if spec.is_list:
        return [item.strip() for item in raw.split(",")] if raw != "" else []
    return raw


# -- Ref and Fn::GetAtt ----------------------------------------------------------------------------


class Evaluator:
    """Replaces ``Ref`` and ``Fn::GetAtt`` in a checked template by their values.

    ``values`` are the parameters (as Ref gives them) and pseudo parameters; ``ref(logical_id)``
    and ``get_att(logical_id, attribute)`` give what a resource exposes, and raise TemplateError
    when it does not exist (yet).
    """

    def __init__(
        self,
        values: Mapping[str, Any],
        ref: Callable[[str], Any],
        get_att: Callable[[str, str], Any],
    ) -> None:
        self.values = values
        self._ref = ref
        self._get_att = get_att

    def value(self, node: Any) -> Any:
        """Evaluate ``node``."""
        if isinstance(node, list):
            return [self.value(item) for item in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, argument),) = node.items()
            if key == "Ref":
                return self.values[argument] if argument in self.values else self._ref(argument)
            if key == "Fn::GetAtt":
                return self._get_att(str(argument[0]), str(argument[1]))
        return {key: self.value(item) for key, item in node.items()}


def references(node: Any) -> list[tuple[str, str, str]]:
    """Every ("Ref", name, "") and ("GetAtt", resource, attribute) in ``node``.

    Any other intrinsic function (``Fn::Sub``, ``Fn::Join``, ...) is refused.
    """
    found: list[tuple[str, str, str]] = []

    def visit(item: Any) -> None:
        if isinstance(item, list):
            for element in item:
                visit(element)
            return
        if not isinstance(item, dict):
            return
        if len(item) == 1:
            ((key, argument),) = item.items()
            if key == "Ref":
                if not isinstance(argument, str):
                    raise TemplateError(
                        "Template format error: Every Ref object must have a single String value."
                    )
                found.append(("Ref", argument, ""))
                return
            if key == "Fn::GetAtt":
                if not (
                    isinstance(argument, list)
                    and len(argument) == 2
                    and all(isinstance(part, str) and part for part in argument)
                ):
                    raise TemplateError(
                        "Template error: every Fn::GetAtt object requires two non-empty parameters."
                    )
                found.append(("GetAtt", argument[0], argument[1]))
                return
        _only([key for key in item if key.startswith("Fn::")], FUNCTIONS, "intrinsic functions")
        for value in item.values():
            visit(value)

    visit(node)
    return found


def creation_order(resources: Mapping[str, Any]) -> list[str]:
    """Logical ids with every resource after those it references; template order breaks ties."""
    ids = set(resources)
    pending = {
        logical_id: {target for _, target, _ in references(resource.get("Properties") or {})} & ids
        for logical_id, resource in resources.items()
    }
    order: list[str] = []
    while pending:
        ready = [logical_id for logical_id, needs in pending.items() if not needs - set(order)]
        if not ready:
            raise TemplateError(
                f"Circular dependency between resources: [{', '.join(sorted(pending))}]"
            )
        for logical_id in ready:
            order.append(logical_id)
            del pending[logical_id]
    return order
