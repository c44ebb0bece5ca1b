"""The CloudFormation API of the local AWS: moto's request parsing and XML, Conveyor's stacks.

moto's ``CloudFormationResponse`` already recognises CloudFormation requests (credential scope
``cloudformation``, form field ``Action``), parses the query protocol and serializes answers and
errors through botocore's model of the API, which is exactly the XML AWS sends. Only the handlers
of the stack actions are replaced, so that every stack lives in :mod:`engine` instead of moto's
synchronous backend. Stack-set actions stay moto's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from localaws.cloudformation.engine import StackEngine, StackError, StackRequest
from localaws.cloudformation.template import TemplateError, parameter_specs

Handler = Callable[[Any], Any]

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
        "cancel_update_stack": _cancel_update_stack,
        "describe_stacks": _describe_stacks,
        "list_stacks": _list_stacks,
        "describe_stack_events": _describe_stack_events,
        "describe_stack_resources": _describe_stack_resources,
        "describe_stack_resource": _describe_stack_resource,
        "list_stack_resources": _list_stack_resources,
        "get_template": _get_template,
        "get_template_summary": _get_template_summary,
        "validate_template": _validate_template,
        "update_termination_protection": _update_termination_protection,
        "list_exports": _list_exports,
        "create_change_set": _create_change_set,
        "execute_change_set": _execute_change_set,
        "describe_change_set": _describe_change_set,
        "delete_change_set": _delete_change_set,
        "list_change_sets": _list_change_sets,
        "continue_update_rollback": _unsupported("ContinueUpdateRollback"),
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


def _stacks() -> StackEngine:
    if _engine is None:
        raise RuntimeError("localaws.cloudformation.api.install() was not called")
    return _engine


def _result(payload: Any) -> Any:
    from moto.core.responses import ActionResult

    return ActionResult(payload)


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


def _call(self: Any, action: Callable[[StackEngine, str, str], Any]) -> Any:
    try:
        return action(_stacks(), self.current_account, self.region)
    except (StackError, TemplateError) as error:
        raise _refuse(error) from error


def _body(self: Any) -> str | None:
    body = self._get_param("TemplateBody")
    url = self._get_param("TemplateURL")
    if body and url:
        raise _refuse(StackError("Specify exactly one of TemplateBody or TemplateUrl."))
    if url:
        return str(self._get_stack_from_s3_url(url))
    return str(body) if body is not None else None


def _request(self: Any) -> StackRequest:
    tags = self._get_param("Tags")
    notification_arns = self._get_param("NotificationARNs")
    timeout = self._get_param("TimeoutInMinutes")
    return StackRequest(
        name=str(self._get_param("StackName") or ""),
        body=_body(self),
        use_previous_template=bool(self._get_param("UsePreviousTemplate")),
        parameters=list(self._get_param("Parameters") or []),
        # Absent Tags keep the stack's tags on UpdateStack; an empty list removes them.
        tags=None if tags is None else [(str(t["Key"]), str(t.get("Value", ""))) for t in tags],
        disable_rollback=self._get_param("DisableRollback"),
        on_failure=self._get_param("OnFailure"),
        timeout=int(timeout) if timeout is not None else None,
        capabilities=list(self._get_param("Capabilities") or []),
        notification_arns=list(notification_arns) if notification_arns is not None else None,
        role_arn=self._get_param("RoleARN"),
        token=self._get_param("ClientRequestToken"),
        termination_protection=bool(self._get_param("EnableTerminationProtection")),
    )


# -- stacks --------------------------------------------------------------------------------------


def _create_stack(self: Any) -> Any:
    request = _request(self)
    stack = _call(
        self, lambda engine, account, region: engine.create_stack(account, region, request)
    )
    return _result({"StackId": stack.stack_id})


def _update_stack(self: Any) -> Any:
    request = _request(self)
    stack = _call(
        self, lambda engine, account, region: engine.update_stack(account, region, request)
    )
    return _result({"StackId": stack.stack_id})


def _delete_stack(self: Any) -> Any:
    name = str(self._get_param("StackName") or "")
    token = self._get_param("ClientRequestToken")
    _call(self, lambda engine, account, region: engine.delete_stack(account, region, name, token))
    return _result({})


def _cancel_update_stack(self: Any) -> Any:
    name = str(self._get_param("StackName") or "")
    _call(self, lambda engine, account, region: engine.cancel_update_stack(account, region, name))
    return _result({})


def _update_termination_protection(self: Any) -> Any:
    name = str(self._get_param("StackName") or "")
    enabled = bool(self._get_param("EnableTerminationProtection"))
    stack = _call(
        self,
        lambda engine, account, region: engine.set_termination_protection(
            account, region, name, enabled
        ),
    )
    return _result({"StackId": stack.stack_id})


def _describe_stacks(self: Any) -> Any:
    name = self._get_param("StackName")

    def describe(engine: StackEngine, account: str, region: str) -> list[dict[str, Any]]:
        if name:
            return [engine.get(account, region, str(name)).describe()]
        return [
            stack.describe()
            for stack in reversed(engine.stacks(account, region))
            if stack.status != "DELETE_COMPLETE"
        ]

    return _result({"Stacks": _call(self, describe)})


def _list_stacks(self: Any) -> Any:
    wanted = set(self._get_param("StackStatusFilter") or [])

    def summaries(engine: StackEngine, account: str, region: str) -> list[dict[str, Any]]:
        return [
            stack.summary()
            for stack in reversed(engine.stacks(account, region))
            if not wanted or stack.status in wanted
        ]

    return _result({"StackSummaries": _call(self, summaries)})


def _describe_stack_events(self: Any) -> Any:
    name = str(self._get_param("StackName") or "")
    token = self._get_param("NextToken")
    try:
        start = int(token) if token else 0
    except ValueError:
        raise _refuse(StackError("Invalid NextToken")) from None

    def page(engine: StackEngine, account: str, region: str) -> dict[str, Any]:
        from localaws.cloudformation.engine import EVENTS_PAGE

        events = list(reversed(engine.get(account, region, name).events))
        result: dict[str, Any] = {
            "StackEvents": [event.to_api() for event in events[start : start + EVENTS_PAGE]]
        }
        if start + EVENTS_PAGE < len(events):
            result["NextToken"] = str(start + EVENTS_PAGE)
        return result

    return _result(_call(self, page))


def _describe_stack_resources(self: Any) -> Any:
    name = self._get_param("StackName")
    physical_id = self._get_param("PhysicalResourceId")
    logical_id = self._get_param("LogicalResourceId")

    def describe(engine: StackEngine, account: str, region: str) -> list[dict[str, Any]]:
        if name:
            stack = engine.get(account, region, str(name))
        elif physical_id:
            found = [
                s
                for s in engine.stacks(account, region)
                if any(r.physical_id == physical_id for r in s.resources.values())
            ]
            if not found:
                raise StackError(f"Stack for {physical_id} does not exist")
            stack = found[-1]
        else:
            raise StackError("Either StackName or PhysicalResourceId must be specified.")
        return [
            stack.resource_to_api(resource, "resource")
            for resource in stack.resources.values()
            if not logical_id or resource.logical_id == logical_id
        ]

    return _result({"StackResources": _call(self, describe)})


def _describe_stack_resource(self: Any) -> Any:
    name = str(self._get_param("StackName") or "")
    logical_id = str(self._get_param("LogicalResourceId") or "")

    def describe(engine: StackEngine, account: str, region: str) -> dict[str, Any]:
        stack = engine.get(account, region, name)
        resource = stack.resources.get(logical_id)
        if resource is None:
            raise StackError(f"Resource {logical_id} does not exist for stack {name}")
        return stack.resource_to_api(resource, "detail")

    return _result({"StackResourceDetail": _call(self, describe)})


def _list_stack_resources(self: Any) -> Any:
    name = str(self._get_param("StackName") or "")

    def summaries(engine: StackEngine, account: str, region: str) -> list[dict[str, Any]]:
        stack = engine.get(account, region, name)
        return [stack.resource_to_api(r, "summary") for r in stack.resources.values()]

    return _result({"StackResourceSummaries": _call(self, summaries)})


def _get_template(self: Any) -> Any:
    name = str(self._get_param("StackName") or "")
    if self._get_param("ChangeSetName"):
        raise _refuse(StackError("Change sets are not supported by the local AWS"))
    stack = _call(self, lambda engine, account, region: engine.get(account, region, name))
    return _result({"TemplateBody": stack.body, "StagesAvailable": ["Original", "Processed"]})


def _template_for_summary(self: Any) -> str:
    name = self._get_param("StackName")
    if name:
        stack = _call(self, lambda engine, account, region: engine.get(account, region, str(name)))
        return str(stack.body)
    body = _body(self)
    if body is None:
        raise _refuse(StackError("Either Template URL or Template Body must be specified."))
    return body


def _get_template_summary(self: Any) -> Any:
    body = _template_for_summary(self)
    template = _call(self, lambda engine, account, region: engine.validate(body))
    parameters = [
        {
            "ParameterKey": spec.name,
            "ParameterType": spec.type,
            "NoEcho": spec.no_echo,
            "Description": spec.description,
            "ParameterConstraints": (
                {"AllowedValues": list(spec.allowed_values)} if spec.allowed_values else {}
            ),
            **({"DefaultValue": spec.default} if spec.default is not None else {}),
        }
        for spec in parameter_specs(template).values()
    ]
    resources = template.get("Resources") or {}
    result: dict[str, Any] = {
        "Parameters": parameters,
        "ResourceTypes": sorted({str(r["Type"]) for r in resources.values()}),
        "Capabilities": [],
        "DeclaredTransforms": [],
        "ResourceIdentifierSummaries": [],
    }
    if "AWSTemplateFormatVersion" in template:
        result["Version"] = str(template["AWSTemplateFormatVersion"])
    if "Description" in template:
        result["Description"] = str(template["Description"])
    return _result(result)


def _validate_template(self: Any) -> Any:
    body = _body(self)
    if body is None:
        raise _refuse(StackError("Either Template URL or Template Body must be specified."))
    template = _call(self, lambda engine, account, region: engine.validate(body))
    result: dict[str, Any] = {
        "Parameters": [
            {
                "ParameterKey": spec.name,
                "NoEcho": spec.no_echo,
                "Description": spec.description,
                **({"DefaultValue": spec.default} if spec.default is not None else {}),
            }
            for spec in parameter_specs(template).values()
        ],
        "Capabilities": [],
        "DeclaredTransforms": [],
    }
    if "Description" in template:
        result["Description"] = str(template["Description"])
    return _result(result)


def _list_exports(self: Any) -> Any:
    def exports(engine: StackEngine, account: str, region: str) -> list[dict[str, Any]]:
        return [
            {
                "ExportingStackId": stack.stack_id,
                "Name": output["ExportName"],
                "Value": output["OutputValue"],
            }
            for stack in engine.stacks(account, region)
            if stack.status != "DELETE_COMPLETE"
            for output in stack.outputs
            if "ExportName" in output
        ]

    return _result({"Exports": _call(self, exports)})


# -- change sets ---------------------------------------------------------------------------------


def _create_change_set(self: Any) -> Any:
    request = _request(self)
    name = str(self._get_param("ChangeSetName") or "")
    change_set_type = str(self._get_param("ChangeSetType") or "UPDATE")
    description = self._get_param("Description")
    change_set = _call(
        self,
        lambda engine, account, region: engine.create_change_set(
            account, region, request, name, change_set_type, description
        ),
    )
    return _result({"Id": change_set.change_set_id, "StackId": change_set.stack_id})


def _change_set_reference(self: Any) -> tuple[str, str | None]:
    stack_name = self._get_param("StackName")
    return str(self._get_param("ChangeSetName") or ""), str(stack_name) if stack_name else None


def _describe_change_set(self: Any) -> Any:
    name, stack_name = _change_set_reference(self)
    change_set = _call(
        self, lambda engine, account, region: engine.change_set(account, region, name, stack_name)
    )
    return _result(change_set.describe())


def _execute_change_set(self: Any) -> Any:
    name, stack_name = _change_set_reference(self)
    _call(
        self,
        lambda engine, account, region: engine.execute_change_set(
            account, region, name, stack_name
        ),
    )
    return _result({})


def _delete_change_set(self: Any) -> Any:
    name, stack_name = _change_set_reference(self)
    _call(
        self,
        lambda engine, account, region: engine.delete_change_set(account, region, name, stack_name),
    )
    return _result({})


def _list_change_sets(self: Any) -> Any:
    stack_name = str(self._get_param("StackName") or "")
    change_sets = _call(
        self, lambda engine, account, region: engine.change_sets(account, region, stack_name)
    )
    return _result({"Summaries": [change_set.summary() for change_set in change_sets]})


def _unsupported(action: str) -> Handler:
    def refuse(self: Any) -> Any:
        raise _refuse(
            StackError(
                f"{action} is not supported by the local AWS's CloudFormation: "
                "use CreateStack/UpdateStack"
            )
        )

    return refuse
