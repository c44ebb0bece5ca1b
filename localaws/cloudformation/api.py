"""The CloudFormation API of the local AWS: request handling, in place of moto's stack handlers.

moto's ``CloudFormationResponse`` already recognises CloudFormation requests (credential scope
``cloudformation``, form field ``Action``), parses the query protocol and serializes answers and
errors through botocore's model of the API, which is exactly the XML AWS sends. The handlers of
the stack actions are replaced: each checks its request as CloudFormation does, updates the
:mod:`.model` and starts an operation of the :mod:`.engine`, and answers at once.

Served are the actions Conveyor uses: CreateStack, UpdateStack, DeleteStack, DescribeStacks,
ListStacks, DescribeStackEvents, and the change sets (CreateChangeSet, DescribeChangeSet,
DeleteChangeSet, ExecuteChangeSet). Every other stack action is refused with a ValidationError
that says it is not supported (rather than answered from moto's own, empty, stack backend), and
so is a request parameter an action does not simulate (``DisableRollback``, ``TemplateURL``,
``UsePreviousTemplate``, …). Stack-set actions stay moto's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from localaws.cloudformation.changesets import NO_CHANGES, diff
from localaws.cloudformation.engine import StackEngine
from localaws.cloudformation.model import ChangeSet, Snapshot, Stack, StackError, new_arn
from localaws.cloudformation.resources import ATTRIBUTES
from localaws.cloudformation.template import (
    TemplateError,
    check_template,
    parameter_specs,
    parameter_value,
    parse_template,
    resolve_parameters,
)

Handler = Callable[[Any], Any]

MAX_STACK_NAME = 128
MAX_TAGS = 50
EVENTS_PAGE = 100
_STACK_NAME = re.compile(r"^[a-zA-Z][-a-zA-Z0-9]*$")
UPDATABLE_STATES = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"})
# moto's stack actions, and those it lacks, that the local AWS does not serve.
UNSUPPORTED = (
    "cancel_update_stack",
    "continue_update_rollback",
    "describe_stack_resource",
    "describe_stack_resources",
    "list_stack_resources",
    "get_template",
    "get_template_summary",
    "validate_template",
    "list_exports",
    "list_change_sets",
    "update_termination_protection",
    "get_stack_policy",
    "set_stack_policy",
)
_STACK_PARAMETERS = ("StackName", "TemplateBody", "Parameters", "Tags", "ClientRequestToken")

_engine: StackEngine | None = None
_installed: list[str] = []


def install(engine: StackEngine) -> None:
    """Route moto's CloudFormation stack actions to ``engine`` (process-wide; idempotent)."""
    global _engine
    _engine = engine
    if _installed:
        return
    from moto.cloudformation.responses import CloudFormationResponse

    replacements: dict[str, Handler] = {
        "create_stack": _create_stack,
        "update_stack": _update_stack,
        "delete_stack": _delete_stack,
        "describe_stacks": _describe_stacks,
        "list_stacks": _list_stacks,
        "describe_stack_events": _describe_stack_events,
        "create_change_set": _create_change_set,
        "describe_change_set": _describe_change_set,
        "delete_change_set": _delete_change_set,
        "execute_change_set": _execute_change_set,
        **{name: _unsupported(name) for name in UNSUPPORTED},
    }
    for name, handler in replacements.items():
        setattr(CloudFormationResponse, name, handler)
        _installed.append(name)
    # moto reshapes some of its own objects on the way out; ours are already in the API's shape.
    CloudFormationResponse.RESPONSE_KEY_PATH_TO_TRANSFORMER = {
        path: transform
        for path, transform in CloudFormationResponse.RESPONSE_KEY_PATH_TO_TRANSFORMER.items()
        if "StackSet" in path
    }


@dataclass
class _Call:
    """One request: its parameters, and where it looks for stacks."""

    params: dict[str, Any]
    engine: StackEngine
    account: str
    region: str

    def text(self, name: str) -> str:
        """A string parameter, "" when absent."""
        return str(self.params.get(name) or "")

    def find(self, name_or_id: str) -> Stack | None:
        """A stack by name or id, or None."""
        return self.engine.registry.find(self.account, self.region, name_or_id)

    def get(self, name_or_id: str) -> Stack:
        """A stack by name or id; an unknown one is AWS's ValidationError."""
        return self.engine.registry.get(self.account, self.region, name_or_id)

    def change_set(self) -> ChangeSet:
        """The change set the request names (ARN, or name and StackName)."""
        return self.engine.registry.change_set(
            self.account, self.region, self.text("ChangeSetName"), self.text("StackName") or None
        )


def _refuse(error: StackError | TemplateError) -> Exception:
    # moto finds an error's HTTP status through the module of its class: they must be moto's.
    from moto.cloudformation.exceptions import (
        AlreadyExistsException,
        CloudFormationError,
        ValidationError,
    )

    code = error.code if isinstance(error, StackError) else "ValidationError"
    if code == "AlreadyExistsException":
        return AlreadyExistsException(str(error))
    if code == "ValidationError":
        return ValidationError(message=str(error))
    return CloudFormationError(code, str(error))


def _action(*allowed: str) -> Callable[[Callable[[_Call], dict[str, Any]]], Handler]:
    """Make ``function(call)`` a moto handler that accepts the ``allowed`` parameters only."""

    def wrap(function: Callable[[_Call], dict[str, Any]]) -> Handler:
        def handler(self: Any) -> Any:
            from moto.core.responses import ActionResult

            if _engine is None:
                raise RuntimeError("localaws.cloudformation.api.install() was not called")
            params: dict[str, Any] = dict(self.params)
            extra = sorted(set(params) - set(allowed))
            if extra:
                message = f"{', '.join(extra)}: not supported by the local AWS's CloudFormation"
                raise _refuse(StackError(message))
            try:
                answer = function(_Call(params, _engine, self.current_account, self.region))
            except (StackError, TemplateError) as error:
                raise _refuse(error) from error
            return ActionResult(answer)

        return handler

    return wrap


def _unsupported(name: str) -> Handler:
    action = "".join(part.capitalize() for part in name.split("_"))

    def refuse(self: Any) -> Any:
        raise _refuse(StackError(f"{action} is not supported by the local AWS's CloudFormation"))

    return refuse


# -- checks --------------------------------------------------------------------------------------


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


def _tags(call: _Call) -> list[tuple[str, str]] | None:
    """The request's tags; None when absent (UpdateStack keeps the stack's; [] removes them)."""
    if call.params.get("Tags") is None:
        return None
    tags = [(str(t["Key"]), str(t.get("Value", ""))) for t in call.params["Tags"]]
    if len(tags) > MAX_TAGS:
        raise StackError(
            f"1 validation error detected: Value at 'tags' failed to satisfy constraint: Member "
            f"must have length less than or equal to {MAX_TAGS}"
        )
    for key, _ in tags:
        if key.lower().startswith("aws:"):
            raise StackError("Tag keys can not start with 'aws:'")
    return tags


def _template(call: _Call) -> dict[str, Any]:
    body = call.params.get("TemplateBody")
    if body is None:
        raise StackError("Either Template URL or Template Body must be specified.")
    template = parse_template(str(body))
    check_template(template, ATTRIBUTES)
    return template


def _parameters(call: _Call, template: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """The parameter values as given, and as Ref gives them."""
    specs = parameter_specs(template)
    raw = resolve_parameters(specs, call.params.get("Parameters") or [])
    return raw, {name: parameter_value(spec, raw[name]) for name, spec in specs.items()}


def _new_stack(call: _Call) -> Stack:
    """A stack from CreateStack's parameters (or CreateChangeSet's), checked and registered."""
    name = call.text("StackName")
    _check_name(name)
    if call.find(name) is not None:
        raise StackError(f"Stack [{name}] already exists", "AlreadyExistsException")
    template = _template(call)
    tags = _tags(call) or []
    parameters, resolved = _parameters(call, template)
    stack = Stack(
        stack_id=new_arn(call.account, call.region, "stack", name),
        name=name,
        account=call.account,
        region=call.region,
        body=str(call.params["TemplateBody"]),
        template=template,
        parameters=parameters,
        resolved=resolved,
        tags=tags,
        token=call.params.get("ClientRequestToken"),
    )
    call.engine.registry.stacks.append(stack)
    return stack


def _update_inputs(stack: Stack, call: _Call) -> Snapshot:
    """The template, parameters and tags that UpdateStack (or CreateChangeSet) asks for, checked."""
    if stack.status not in UPDATABLE_STATES:
        raise StackError(
            f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated."
        )
    template = _template(call)
    old = {key: value["Type"] for key, value in stack.template["Resources"].items()}
    new = {key: value["Type"] for key, value in template["Resources"].items()}
    retyped = [key for key in new if key in old and new[key] != old[key]]
    if retyped:
        raise StackError(
            "Update of resource type is not permitted. The new template modifies resource type "
            f"of the following resources: [{', '.join(retyped)}]"
        )
    if set(new) != set(old):
        raise StackError(
            "The local AWS's CloudFormation does not add or remove resources in an update "
            f"(added: [{', '.join(k for k in new if k not in old)}], removed: "
            f"[{', '.join(k for k in old if k not in new)}]): delete the stack and create it again"
        )
    tags = _tags(call)
    parameters, resolved = _parameters(call, template)
    return Snapshot(
        str(call.params["TemplateBody"]),
        template,
        parameters,
        resolved,
        list(stack.tags) if tags is None else tags,
    )


# -- stacks --------------------------------------------------------------------------------------


@_action(*_STACK_PARAMETERS)
def _create_stack(call: _Call) -> dict[str, Any]:
    stack = _new_stack(call)
    call.engine.begin_create(stack)
    return {"StackId": stack.stack_id}


@_action(*_STACK_PARAMETERS)
def _update_stack(call: _Call) -> dict[str, Any]:
    stack = call.get(call.text("StackName"))
    update = _update_inputs(stack, call)
    if (update.template, update.parameters, update.tags) == (
        stack.template,
        stack.parameters,
        stack.tags,
    ):
        raise StackError("No updates are to be performed.")
    call.engine.begin_update(stack, update, call.params.get("ClientRequestToken"))
    return {"StackId": stack.stack_id}


@_action("StackName", "ClientRequestToken")
def _delete_stack(call: _Call) -> dict[str, Any]:
    """An unknown or deleted stack is no error; a creation in progress is cancelled."""
    stack = call.find(call.text("StackName"))
    if stack is None or stack.status in ("DELETE_COMPLETE", "DELETE_IN_PROGRESS"):
        return {}
    if call.engine.busy(stack) and stack.status != "CREATE_IN_PROGRESS":
        raise StackError(f"Stack [{stack.name}] cannot be deleted while in status {stack.status}")
    call.engine.begin_delete(stack, call.params.get("ClientRequestToken"))
    return {}


@_action("StackName")
def _describe_stacks(call: _Call) -> dict[str, Any]:
    name = call.text("StackName")
    if name:
        return {"Stacks": [call.get(name).describe()]}
    stacks = reversed(call.engine.registry.of(call.account, call.region))
    return {"Stacks": [s.describe() for s in stacks if s.status != "DELETE_COMPLETE"]}


@_action("StackStatusFilter")
def _list_stacks(call: _Call) -> dict[str, Any]:
    wanted = set(call.params.get("StackStatusFilter") or [])
    stacks = reversed(call.engine.registry.of(call.account, call.region))
    return {"StackSummaries": [s.summary() for s in stacks if not wanted or s.status in wanted]}


@_action("StackName", "NextToken")
def _describe_stack_events(call: _Call) -> dict[str, Any]:
    """Newest first, in pages of EVENTS_PAGE."""
    token = call.text("NextToken")
    try:
        start = int(token) if token else 0
    except ValueError:
        raise StackError("Invalid NextToken") from None
    events = list(reversed(call.get(call.text("StackName")).events))
    result: dict[str, Any] = {
        "StackEvents": [event.to_api() for event in events[start : start + EVENTS_PAGE]]
    }
    if start + EVENTS_PAGE < len(events):
        result["NextToken"] = str(start + EVENTS_PAGE)
    return result


# -- change sets ---------------------------------------------------------------------------------


@_action(
    "StackName",
    "TemplateBody",
    "Parameters",
    "Tags",
    "ChangeSetName",
    "ChangeSetType",
    "Description",
)
def _create_change_set(call: _Call) -> dict[str, Any]:
    """The diff is computed at once: the change set is CREATE_COMPLETE (or FAILED when nothing
    would change) when the call returns. A CREATE change set makes a REVIEW_IN_PROGRESS stack."""
    name = call.text("ChangeSetName")
    _check_name(name, "changeSetName")
    kind = call.text("ChangeSetType") or "UPDATE"
    stack = call.find(call.text("StackName"))
    if kind == "CREATE":
        if stack is not None and stack.status != "REVIEW_IN_PROGRESS":
            raise StackError(
                f"Stack [{stack.name}] already exists and cannot be created again with the "
                f"changeSet [{name}].",
                "AlreadyExistsException",
            )
        if stack is None:
            stack = _new_stack(call)
            stack.set_status("REVIEW_IN_PROGRESS", "User Initiated")
        update, old, current = stack.snapshot(), Snapshot("", {}, {}, {}, []), {}
    elif kind == "UPDATE":
        if stack is None:
            raise StackError(f"Stack [{call.text('StackName')}] does not exist")
        update, old, current = _update_inputs(stack, call), stack.snapshot(), stack.resources
    else:
        raise StackError(f"ChangeSetType {kind} is not supported by the local AWS")
    registry = call.engine.registry
    if any(c.name == name for c in registry.change_sets if c.stack_id == stack.stack_id):
        raise StackError(f"ChangeSet [{name}] already exists", "AlreadyExistsException")
    change_set = ChangeSet(
        change_set_id=new_arn(call.account, call.region, "changeSet", name),
        name=name,
        stack_id=stack.stack_id,
        stack_name=stack.name,
        change_set_type=kind,
        update=update,
        description=call.params.get("Description"),
        changes=diff(update, old, current, stack.pseudo),
    )
    unchanged = (update.template, update.parameters, update.tags) == (
        old.template,
        old.parameters,
        old.tags,
    )
    if kind == "UPDATE" and (unchanged or not change_set.changes):
        change_set.status, change_set.status_reason = "FAILED", NO_CHANGES
        change_set.execution_status = "UNAVAILABLE"
    registry.change_sets.append(change_set)
    return {"Id": change_set.change_set_id, "StackId": change_set.stack_id}


@_action("ChangeSetName", "StackName")
def _describe_change_set(call: _Call) -> dict[str, Any]:
    return call.change_set().describe()


@_action("ChangeSetName", "StackName")
def _delete_change_set(call: _Call) -> dict[str, Any]:
    change_set = call.change_set()
    if change_set.execution_status == "EXECUTE_IN_PROGRESS":
        raise StackError(
            f"ChangeSet [{change_set.change_set_id}] cannot be deleted in its current status "
            "of [EXECUTE_IN_PROGRESS]",
            "InvalidChangeSetStatus",
        )
    call.engine.registry.change_sets.remove(change_set)
    return {}


@_action("ChangeSetName", "StackName")
def _execute_change_set(call: _Call) -> dict[str, Any]:
    """Start the creation or update the change set describes; the stack's others are deleted."""
    change_set = call.change_set()
    if change_set.execution_status != "AVAILABLE":
        raise StackError(
            f"ChangeSet [{change_set.change_set_id}] cannot be executed in its current status "
            f"of [{change_set.status}]",
            "InvalidChangeSetStatus",
        )
    stack = call.get(change_set.stack_id)
    wanted = {"REVIEW_IN_PROGRESS"} if change_set.change_set_type == "CREATE" else UPDATABLE_STATES
    if stack.status not in wanted:
        raise StackError(
            f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated."
        )
    if change_set.change_set_type == "CREATE":
        call.engine.begin_create(stack)
    else:
        call.engine.begin_update(stack, change_set.update, None)
    change_set.execution_status = "EXECUTE_IN_PROGRESS"
    registry = call.engine.registry
    registry.change_sets = [
        c for c in registry.change_sets if c.stack_id != stack.stack_id or c is change_set
    ]
    return {}
