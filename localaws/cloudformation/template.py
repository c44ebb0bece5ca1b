"""CloudFormation templates: parsing, checks, parameters, conditions, intrinsic functions, ordering.

Pure functions over plain data (no moto, no I/O). Errors are :class:`TemplateError` with the
message CloudFormation gives, so that the API layer can answer with it as a ``ValidationError``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

SECTIONS = frozenset(
    {
        "AWSTemplateFormatVersion",
        "Description",
        "Metadata",
        "Parameters",
        "Rules",
        "Mappings",
        "Conditions",
        "Transform",
        "Resources",
        "Outputs",
    }
)
RESOURCE_ATTRIBUTES = frozenset(
    {
        "Type",
        "Properties",
        "DependsOn",
        "Condition",
        "DeletionPolicy",
        "UpdateReplacePolicy",
        "Metadata",
        "CreationPolicy",
        "UpdatePolicy",
        "Description",
    }
)
PARAMETER_TYPES = re.compile(
    r"^(String|Number|List<Number>|CommaDelimitedList|AWS::[A-Za-z0-9:]+|List<AWS::[A-Za-z0-9:]+>"
    r"|AWS::SSM::Parameter::Value<.+>)$"
)
PSEUDO_PARAMETERS = frozenset(
    {
        "AWS::AccountId",
        "AWS::NotificationARNs",
        "AWS::NoValue",
        "AWS::Partition",
        "AWS::Region",
        "AWS::StackId",
        "AWS::StackName",
        "AWS::URLSuffix",
    }
)
_SUB_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_LOGICAL_ID = re.compile(r"^[A-Za-z0-9]+$")


class TemplateError(ValueError):
    """Raised when a template, a parameter value or an intrinsic function is invalid."""


class _NoValue:
    """``Ref: AWS::NoValue``: the property it stands in is removed."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


# -- parsing -------------------------------------------------------------------------------------


class _TemplateLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (``!Ref``, ``!Sub``, …) and no implicit dates.

    CloudFormation reads ``AWSTemplateFormatVersion: 2010-09-09`` as a string; PyYAML's safe loader
    would make it a date, which is neither comparable with JSON templates nor serializable.
    """


_TemplateLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _short_form(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        return {"Fn::GetAtt": value.split(".", 1)}
    return {f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _short_form)


def parse_template(body: str) -> dict[str, Any]:
    """Parse a JSON or YAML template body; raise TemplateError in CloudFormation's words."""
    if not body or not body.strip():
        raise TemplateError("Template format error: template body is empty")
    if body.lstrip().startswith("{"):
        try:
            parsed = json.loads(body)
        except ValueError as exc:
            raise TemplateError(f"Template format error: JSON not well-formed. ({exc})") from exc
    else:
        try:
            parsed = yaml.load(body, Loader=_TemplateLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise TemplateError(f"Template format error: YAML not well-formed.{where}") from exc
    if not isinstance(parsed, dict):
        raise TemplateError("Template format error: unsupported structure.")
    return parsed


def check_template(template: Mapping[str, Any], known_types: Callable[[str], bool]) -> None:
    """The checks CloudFormation makes before it accepts a template (ValidateTemplate, CreateStack).

    ``known_types(type)`` says whether a resource type can be created here.
    """
    unknown_sections = sorted(set(template) - SECTIONS)
    if unknown_sections:
        raise TemplateError(
            "Template format error: Invalid template property or properties "
            f"[{', '.join(unknown_sections)}]"
        )
    if "Transform" in template:
        raise TemplateError(
            "Template format error: Transform is not supported by the local AWS's CloudFormation"
        )
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
        extra = sorted(set(resource) - RESOURCE_ATTRIBUTES)
        if extra:
            raise TemplateError(f"Invalid template resource property '{extra[0]}'")
        properties = resource.get("Properties", {})
        if properties is not None and not isinstance(properties, dict):
            raise TemplateError(
                f"Template format error: [/Resources/{logical_id}/Properties] "
                "Every Properties member must be an object."
            )
        if not known_types(resource["Type"]) and resource["Type"] not in unknown_types:
            unknown_types.append(resource["Type"])
    if unknown_types:
        raise TemplateError(
            f"Template format error: Unrecognized resource types: [{', '.join(unknown_types)}]"
        )
    specs = parameter_specs(template)
    names = set(specs) | set(resources) | PSEUDO_PARAMETERS
    conditions = template.get("Conditions") or {}
    if not isinstance(conditions, dict):
        raise TemplateError("Template format error: Conditions must be an object.")
    outputs = template.get("Outputs") or {}
    if not isinstance(outputs, dict):
        raise TemplateError("Template format error: Outputs must be an object.")
    for output_id, output in outputs.items():
        if not isinstance(output, dict) or "Value" not in output:
            raise TemplateError(
                f"Template format error: Every Outputs member must contain a Value object, "
                f"the Outputs member {output_id} does not."
            )
    unresolved: list[str] = []
    for node in (resources, outputs):
        for kind, target, _ in references(node, set(resources)):
            if kind == "Ref" and target not in names and target not in unresolved:
                unresolved.append(target)
            elif kind == "GetAtt" and target not in resources:
                raise TemplateError(
                    f"Template error: instance of Fn::GetAtt references undefined resource {target}"
                )
    for resource in resources.values():
        for target in _depends_on(resource):
            if target not in resources and target not in unresolved:
                unresolved.append(target)
        condition = resource.get("Condition")
        if condition is not None and condition not in conditions:
            raise TemplateError(
                f"Template format error: Unresolved dependencies [{condition}]. "
                f"Cannot reference resources in the Conditions block of the template"
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
    default: str | None
    no_echo: bool
    description: str
    allowed_values: tuple[str, ...] | None
    allowed_pattern: str | None
    min_length: int | None
    max_length: int | None
    min_value: float | None
    max_value: float | None
    constraint_description: str | None

    @property
    def is_list(self) -> bool:
        """Whether ``Ref`` gives a list of strings."""
        return self.type == "CommaDelimitedList" or self.type.startswith("List<")

    @property
    def is_ssm(self) -> bool:
        """Whether the value names an SSM parameter whose value is used."""
        return self.type.startswith("AWS::SSM::Parameter::Value<")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(item) for item in value)
    return str(value)


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
        kind = str(body["Type"])
        if not PARAMETER_TYPES.match(kind):
            raise TemplateError(f"Template format error: Unrecognized parameter type: {kind}")
        allowed = body.get("AllowedValues")

        def number(key: str, body: dict[str, Any] = body) -> float | None:
            return float(body[key]) if key in body else None

        def integer(key: str, body: dict[str, Any] = body) -> int | None:
            return int(body[key]) if key in body else None

        specs[str(name)] = ParameterSpec(
            name=str(name),
            type=kind,
            default=_text(body["Default"]) if "Default" in body else None,
            no_echo=str(body.get("NoEcho", "false")).lower() == "true",
            description=str(body.get("Description", "")),
            allowed_values=tuple(_text(v) for v in allowed) if isinstance(allowed, list) else None,
            allowed_pattern=str(body["AllowedPattern"]) if "AllowedPattern" in body else None,
            min_length=integer("MinLength"),
            max_length=integer("MaxLength"),
            min_value=number("MinValue"),
            max_value=number("MaxValue"),
            constraint_description=(
                str(body["ConstraintDescription"]) if "ConstraintDescription" in body else None
            ),
        )
    return specs


def resolve_parameters(
    specs: Mapping[str, ParameterSpec],
    given: Iterable[Mapping[str, Any]],
    previous: Mapping[str, str] | None,
) -> dict[str, str]:
    """The raw (string) value of every parameter, from the request, previous values and defaults.

    ``given`` is the request's ``Parameters`` list (``ParameterKey``, ``ParameterValue``,
    ``UsePreviousValue``); ``previous`` the stack's current values on UpdateStack, else None.
    """
    values: dict[str, str] = {}
    unknown: list[str] = []
    for entry in given:
        key = str(entry.get("ParameterKey", ""))
        if key not in specs:
            unknown.append(key)
            continue
        if entry.get("UsePreviousValue"):
            if entry.get("ParameterValue") not in (None, ""):
                raise TemplateError(
                    f"Invalid input for parameter key {key}. Cannot specify usePreviousValue as "
                    "true and non empty value for a parameter"
                )
            if previous is None or key not in previous:
                raise TemplateError(
                    f"Invalid input for parameter key {key}. Cannot specify usePreviousValue as "
                    "true for a parameter key not in the previous template"
                )
            values[key] = previous[key]
        else:
            values[key] = _text(entry.get("ParameterValue", ""))
    if unknown:
        raise TemplateError(f"Parameters: [{', '.join(unknown)}] do not exist in the template")
    missing = []
    for name, spec in specs.items():
        if name not in values:
            if spec.default is None:
                missing.append(name)
            else:
                values[name] = spec.default
    if missing:
        raise TemplateError(f"Parameters: [{', '.join(missing)}] must have values")
    for name, spec in specs.items():
        _check_constraints(spec, values[name])
    return {name: values[name] for name in specs}


def _check_constraints(spec: ParameterSpec, value: str) -> None:
    def fail(message: str) -> TemplateError:
        if spec.constraint_description:
            return TemplateError(
                f"Parameter '{spec.name}' failed to satisfy constraint: "
                f"{spec.constraint_description}"
            )
        return TemplateError(message)

    items = [item.strip() for item in value.split(",")] if spec.is_list else [value]
    for item in items:
        if spec.allowed_values is not None and item not in spec.allowed_values:
            raise fail(f"Parameter '{spec.name}' must be one of AllowedValues")
        if spec.allowed_pattern is not None and not re.fullmatch(spec.allowed_pattern, item):
            raise fail(f"Parameter '{spec.name}' must match pattern {spec.allowed_pattern}")
        if spec.min_length is not None and len(item) < spec.min_length:
            raise fail(
                f"Parameter '{spec.name}' must contain at least {spec.min_length} characters"
            )
        if spec.max_length is not None and len(item) > spec.max_length:
            raise fail(f"Parameter '{spec.name}' must contain at most {spec.max_length} characters")
        if spec.type in ("Number", "List<Number>"):
            try:
                number = float(item)
            except ValueError:
                raise fail(f"Parameter '{spec.name}' must be a number.") from None
            if spec.min_value is not None and number < spec.min_value:
                raise fail(
                    f"Parameter '{spec.name}' must be a number not less than {spec.min_value:g}"
                )
            if spec.max_value is not None and number > spec.max_value:
                raise fail(
                    f"Parameter '{spec.name}' must be a number not greater than {spec.max_value:g}"
                )


def parameter_value(spec: ParameterSpec, raw: str) -> Any:
    """What ``Ref`` to the parameter gives: a string, or a list of strings for list types."""
    if spec.is_list:
        return [item.strip() for item in raw.split(",")] if raw != "" else []
    return raw


# -- intrinsic functions -------------------------------------------------------------------------


class Evaluator:
    """Evaluates intrinsic functions against parameters, pseudo parameters and resources.

    ``ref(logical_id)`` and ``get_att(logical_id, attribute)`` give what a resource exposes; they
    raise TemplateError when the resource has not been created (yet, or at all).
    """

    def __init__(
        self,
        *,
        parameters: Mapping[str, Any],
        pseudo: Mapping[str, Any],
        mappings: Mapping[str, Any],
        condition_bodies: Mapping[str, Any],
        ref: Callable[[str], Any],
        get_att: Callable[[str, str], Any],
    ) -> None:
        self.parameters = parameters
        self.pseudo = pseudo
        self.mappings = mappings
        self.condition_bodies = condition_bodies
        self._ref = ref
        self._get_att = get_att
        self._conditions: dict[str, bool] = {}
        self._evaluating: set[str] = set()

    def condition(self, name: str) -> bool:
        """The value of a named condition (evaluated once)."""
        if name in self._conditions:
            return self._conditions[name]
        if name not in self.condition_bodies:
            raise TemplateError(f"Template format error: Unresolved condition dependency {name}")
        if name in self._evaluating:
            raise TemplateError(f"Template format error: Circular condition dependency {name}")
        self._evaluating.add(name)
        try:
            result = self.value(self.condition_bodies[name])
        finally:
            self._evaluating.discard(name)
        if not isinstance(result, bool):
            raise TemplateError(
                f"Template format error: Condition {name} must evaluate to true or false"
            )
        self._conditions[name] = result
        return result

    def value(self, node: Any) -> Any:
        """Evaluate ``node``; ``AWS::NoValue`` leaves are removed from objects and lists."""
        if isinstance(node, list):
            items = [self.value(item) for item in node]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, argument),) = node.items()
            if key == "Ref":
                return self._ref_value(argument)
            if key == "Condition" and isinstance(argument, str):
                return self.condition(argument)
            if key.startswith("Fn::"):
                return self._function(key, argument)
        result = {}
        for key, item in node.items():
            evaluated = self.value(item)
            if evaluated is not NO_VALUE:
                result[key] = evaluated
        return result

    def _ref_value(self, name: Any) -> Any:
        if not isinstance(name, str):
            raise TemplateError(
                "Template format error: Every Ref object must have a single String value."
            )
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.parameters:
            return self.parameters[name]
        if name in self.pseudo:
            return self.pseudo[name]
        return self._ref(name)

    def _function(self, name: str, argument: Any) -> Any:
        handler = _FUNCTIONS.get(name)
        if handler is None:
            raise TemplateError(f"Template format error: Unsupported intrinsic function {name}")
        return handler(self, argument)

    def _get_att_value(self, argument: Any) -> Any:
        if isinstance(argument, str):
            argument = argument.split(".", 1)
        if not isinstance(argument, list) or len(argument) != 2:
            raise TemplateError(
                "Template error: every Fn::GetAtt object requires two non-empty parameters."
            )
        resource, attribute = argument[0], self.value(argument[1])
        return self._get_att(str(resource), str(attribute))

    def _sub(self, argument: Any) -> str:
        if isinstance(argument, str):
            text, variables = argument, {}
        elif isinstance(argument, list) and len(argument) == 2 and isinstance(argument[0], str):
            text = argument[0]
            variables = {k: self.value(v) for k, v in (argument[1] or {}).items()}
        else:
            raise TemplateError(
                "Template error: One or more Fn::Sub intrinsic functions don't specify expected "
                "arguments."
            )

        def replace(match: re.Match[str]) -> str:
            expression = match.group(1)
            if expression.startswith("!"):
                return "${" + expression[1:] + "}"
            if expression in variables:
                value = variables[expression]
            elif "." in expression and expression not in self.parameters:
                resource, attribute = expression.split(".", 1)
                value = self._get_att(resource, attribute)
            else:
                value = self._ref_value(expression)
            if isinstance(value, list | dict) or value is NO_VALUE:
                raise TemplateError(
                    f"Template error: variable {expression} in Fn::Sub expression does not "
                    "resolve to a string"
                )
            return _text(value)

        return _SUB_REFERENCE.sub(replace, text)

    def _join(self, argument: Any) -> str:
        if not isinstance(argument, list) or len(argument) != 2:
            raise TemplateError(
                "Template error: every Fn::Join object requires two parameters, (1) a string "
                "delimiter and (2) a list of strings to be joined or a function that returns a "
                "list of strings (such as Fn::GetAZs) to be joined."
            )
        delimiter, items = argument[0], self.value(argument[1])
        if not isinstance(items, list):
            raise TemplateError("Template error: Fn::Join requires a list of strings to join")
        return str(delimiter).join(_text(item) for item in items)

    def _select(self, argument: Any) -> Any:
        if not isinstance(argument, list) or len(argument) != 2:
            raise TemplateError(
                "Template error: Fn::Select requires a list argument with two elements: an integer "
                "index and a list"
            )
        index, items = self.value(argument[0]), self.value(argument[1])
        try:
            return items[int(index)]
        except (ValueError, TypeError, IndexError):
            raise TemplateError(
                "Template error: Fn::Select cannot select nonexistent value at index " + str(index)
            ) from None

    def _split(self, argument: Any) -> list[str]:
        if not isinstance(argument, list) or len(argument) != 2:
            raise TemplateError(
                "Template error: every Fn::Split object requires two parameters, (1) a string "
                "delimiter and (2) a string to be split or a function that returns a string to be "
                "split."
            )
        return str(self.value(argument[1])).split(str(argument[0]))

    def _if(self, argument: Any) -> Any:
        if not isinstance(argument, list) or len(argument) != 3:
            raise TemplateError(
                "Template error: Fn::If requires a list argument with three elements"
            )
        return self.value(argument[1] if self.condition(str(argument[0])) else argument[2])

    def _equals(self, argument: Any) -> bool:
        if not isinstance(argument, list) or len(argument) != 2:
            raise TemplateError(
                "Template error: Fn::Equals requires a list argument with two elements"
            )
        left, right = (self.value(item) for item in argument)
        return _text(left) == _text(right)

    def _boolean(self, node: Any) -> bool:
        value = self.value(node)
        if not isinstance(value, bool):
            raise TemplateError(
                "Template error: a condition function must evaluate to true or false"
            )
        return value

    def _and(self, argument: Any) -> bool:
        return all(self._boolean(item) for item in argument)

    def _or(self, argument: Any) -> bool:
        return any(self._boolean(item) for item in argument)

    def _not(self, argument: Any) -> bool:
        if not isinstance(argument, list) or len(argument) != 1:
            raise TemplateError("Template error: Fn::Not requires a list argument with one element")
        return not self._boolean(argument[0])

    def _find_in_map(self, argument: Any) -> Any:
        if not isinstance(argument, list) or len(argument) != 3:
            raise TemplateError(
                "Template error: every Fn::FindInMap object requires three parameters, the map "
                "name, map key and the attribute for return value"
            )
        map_name, top, second = (_text(self.value(item)) for item in argument)
        try:
            return self.mappings[map_name][top][second]
        except (KeyError, TypeError):
            raise TemplateError(
                f"Template error: Unable to get mapping for {map_name}::{top}::{second}"
            ) from None

    def _get_azs(self, argument: Any) -> list[str]:
        region = self.value(argument) or self.pseudo.get("AWS::Region")
        return [f"{region}{zone}" for zone in "abc"]

    def _base64(self, argument: Any) -> str:
        return base64.b64encode(_text(self.value(argument)).encode()).decode()


_FUNCTIONS: dict[str, Callable[[Evaluator, Any], Any]] = {
    "Fn::GetAtt": Evaluator._get_att_value,
    "Fn::Sub": Evaluator._sub,
    "Fn::Join": Evaluator._join,
    "Fn::Select": Evaluator._select,
    "Fn::Split": Evaluator._split,
    "Fn::If": Evaluator._if,
    "Fn::Equals": Evaluator._equals,
    "Fn::And": Evaluator._and,
    "Fn::Or": Evaluator._or,
    "Fn::Not": Evaluator._not,
    "Fn::FindInMap": Evaluator._find_in_map,
    "Fn::GetAZs": Evaluator._get_azs,
    "Fn::Base64": Evaluator._base64,
}


# -- dependencies --------------------------------------------------------------------------------


def references(node: Any, resource_ids: set[str]) -> list[tuple[str, str, str]]:
    """Every ("Ref", name, "") and ("GetAtt", resource, attribute) in ``node``, Fn::Sub included.

    The attribute is "" when it is not a literal string.
    """
    found: list[tuple[str, str, str]] = []

    def visit(item: Any, sub_variables: frozenset[str] = frozenset()) -> None:
        if isinstance(item, list):
            for element in item:
                visit(element, sub_variables)
            return
        if not isinstance(item, dict):
            return
        if len(item) == 1:
            ((key, argument),) = item.items()
            if key == "Ref" and isinstance(argument, str):
                found.append(("Ref", argument, ""))
                return
            if key == "Fn::GetAtt":
                parts = argument.split(".", 1) if isinstance(argument, str) else argument
                if isinstance(parts, list) and parts:
                    attribute = parts[1] if len(parts) > 1 and isinstance(parts[1], str) else ""
                    found.append(("GetAtt", str(parts[0]), attribute))
                if isinstance(argument, list) and len(argument) > 1:
                    visit(argument[1])
                return
            if key == "Fn::Sub":
                text: str | None = argument if isinstance(argument, str) else None
                variables: dict[str, Any] = {}
                if isinstance(argument, list) and argument and isinstance(argument[0], str):
                    text = argument[0]
                    variables = (
                        argument[1] if len(argument) > 1 and isinstance(argument[1], dict) else {}
                    )
                    visit(list(variables.values()))
                if text is not None:
                    for expression in _SUB_REFERENCE.findall(text):
                        if expression.startswith("!") or expression in (variables or {}):
                            continue
                        head, _, attribute = expression.partition(".")
                        if attribute and head in resource_ids:
                            found.append(("GetAtt", head, attribute))
                        else:
                            found.append(("Ref", expression, ""))
                return
        for value in item.values():
            visit(value, sub_variables)

    visit(node)
    return found


def _depends_on(resource: Mapping[str, Any]) -> list[str]:
    value = resource.get("DependsOn")
    if value is None:
        return []
    return [str(value)] if isinstance(value, str) else [str(v) for v in value]


def dependencies(resource: Mapping[str, Any], resource_ids: set[str]) -> set[str]:
    """The resources that must exist before this one: Ref, Fn::GetAtt, Fn::Sub and DependsOn."""
    needed = set(_depends_on(resource))
    for _, target, _ in references(resource.get("Properties") or {}, resource_ids):
        if target in resource_ids:
            needed.add(target)
    return needed


def creation_order(resources: Mapping[str, Any]) -> list[str]:
    """Logical ids with every resource after its dependencies; template order breaks ties."""
    ids = set(resources)
    pending = {
        logical_id: dependencies(resource, ids) & ids for logical_id, resource in resources.items()
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
