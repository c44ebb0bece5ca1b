"""The resource types of Conveyor's stacks, and how the local CloudFormation talks to ECS and Logs.

Three types, those ``producers/contract/stack_template.py`` renders: ``AWS::ECS::TaskDefinition``,
``AWS::ECS::Service`` and ``AWS::Logs::LogGroup``. Any other type is refused when the template is
checked.

Every ECS and CloudWatch Logs call goes through the same WSGI application as a client's request
(:class:`AwsCaller`), so that the patched ECS handlers, their validations and the rollout
simulator apply exactly as they do to direct API calls. ECS properties are converted from
CloudFormation's PascalCase to the API's members by walking botocore's model of the ECS API, which
also gives each value its API type (``desiredCount`` is an integer, ``cpu`` of a task a string).

A handler's ``create``/``update``/``delete`` are generators: they yield while they wait (for an ECS
service to become stable, for its tasks to stop) and the stack engine resumes them on its next
tick, with the world lock held. ``create`` reports the physical resource through
``ResourceContext.on_created`` before its first wait, so that a rollback finds it.
"""

from __future__ import annotations

import copy
import datetime
import io
import json
import random
import string
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar

from localaws.rollout_model import DEFAULT_DEPLOYMENT_CONFIGURATION

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Steps = Generator[None, None, Any]

JSON_TARGETS = {"ecs": "AmazonEC2ContainerServiceV20141113", "logs": "Logs_20140328"}
SERVICE_LABELS = {"ecs": "Ecs", "logs": "CloudWatchLogs"}
_NOT_FOUND_CODES = frozenset(
    {"ClusterNotFoundException", "ServiceNotFoundException", "ResourceNotFoundException"}
)
BREAKER_MESSAGE = "Error occurred during operation 'ECS Deployment Circuit Breaker was triggered'."


class AwsError(Exception):
    """Raised when an in-process AWS call answers with an error."""

    def __init__(self, service: str, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.service = service
        self.status = status
        self.code = code
        self.message = message


class ResourceFailed(Exception):
    """Raised when a resource cannot be created, updated or deleted.

    The message is the event's ResourceStatusReason, in CloudFormation's words.
    """


def handler_message(message: str, code: str = "GeneralServiceException") -> str:
    """A reason as CloudFormation's resource handlers phrase it."""
    return (
        f'Resource handler returned message: "{message}" '
        f"(RequestToken: {uuid.uuid4()}, HandlerErrorCode: {code})"
    )


def failure_from(error: AwsError) -> ResourceFailed:
    """The ResourceFailed that CloudFormation reports for an API error of a resource handler."""
    detail = (
        f"{error.message} (Service: {SERVICE_LABELS.get(error.service, error.service)}, "
        f"Status Code: {error.status}, Request ID: {uuid.uuid4()})"
    )
    if error.code in _NOT_FOUND_CODES:
        return ResourceFailed(handler_message(detail, "NotFound"))
    if error.status >= 500:
        return ResourceFailed(handler_message(detail, "ServiceInternalError"))
    return ResourceFailed(handler_message(f"Invalid request provided: {detail}", "InvalidRequest"))


class AwsCaller:
    """Makes AWS JSON-protocol calls to the in-process WSGI application (moto and its patches)."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def call(
        self, service: str, operation: str, params: Mapping[str, Any], account: str, region: str
    ) -> dict[str, Any]:
        """Call ``service``'s ``operation``; return the decoded answer or raise AwsError."""
        from werkzeug.test import EnvironBuilder

        body = json.dumps(params).encode()
        date = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d")
        builder = EnvironBuilder(
            path="/",
            method="POST",
            input_stream=io.BytesIO(body),
            content_length=len(body),
            content_type="application/x-amz-json-1.1",
            headers=[
                ("X-Amz-Target", f"{JSON_TARGETS[service]}.{operation}"),
                # moto's dispatcher picks the backend and region from the credential scope.
                (
                    "Authorization",
                    f"AWS4-HMAC-SHA256 Credential=cloudformation/{date}/{region}/{service}/"
                    "aws4_request, SignedHeaders=host, Signature=0",
                ),
                ("x-moto-account-id", account),
            ],
        )
        status: list[int] = []

        def start_response(line: str, headers: Any, *args: Any) -> None:
            status.append(int(line.split(" ", 1)[0]))

        try:
            chunks = b"".join(self.app(builder.get_environ(), start_response))
        finally:
            builder.close()
        code = status[0] if status else 500
        try:
            answer = json.loads(chunks) if chunks.strip() else {}
        except ValueError:
            answer = {"__type": "InternalFailure", "message": chunks.decode(errors="replace")[:300]}
        if code >= 400:
            error_type = str(answer.get("__type", "InternalFailure")).rsplit("#", 1)[-1]
            message = str(answer.get("message") or answer.get("Message") or error_type)
            raise AwsError(service, code, error_type, message)
        result: dict[str, Any] = answer
        return result


# -- properties ----------------------------------------------------------------------------------


@cache
def _ecs_model() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("ecs")


def to_api(logical_id: str, properties: Mapping[str, Any], operation: str) -> dict[str, Any]:
    """Convert CloudFormation properties into the request of an ECS ``operation``.

    Keys are matched to the API's members case-insensitively (``EFSVolumeConfiguration`` is
    ``efsVolumeConfiguration``), map keys are kept, scalars get the member's type. An unknown key
    fails as CloudFormation's schema validation does.
    """
    shape = _ecs_model().operation_model(operation).input_shape
    converted: dict[str, Any] = _convert(logical_id, properties, shape, "")
    return converted


def _convert(logical_id: str, value: Any, shape: Any, path: str) -> Any:
    kind = shape.type_name

    def invalid(expected: str) -> ResourceFailed:
        return ResourceFailed(
            f"Properties validation failed for resource {logical_id} with message: "
            f"[#{path}: expected type: {expected}, found: {type(value).__name__}]"
        )

    if kind == "structure":
        if not isinstance(value, dict):
            raise invalid("JSONObject")
        members = {name.lower(): name for name in shape.members}
        result = {}
        for key, item in value.items():
            member = members.get(key.lower())
            if member is None:
                raise ResourceFailed(
                    f"Properties validation failed for resource {logical_id} with message: "
                    f"[#{path}: extraneous key [{key}] is not permitted]"
                )
            result[member] = _convert(logical_id, item, shape.members[member], f"{path}/{key}")
        return result
    if kind == "list":
        if not isinstance(value, list):
            raise invalid("JSONArray")
        return [
            _convert(logical_id, item, shape.member, f"{path}/{index}")
            for index, item in enumerate(value)
        ]
    if kind == "map":
        if not isinstance(value, dict):
            raise invalid("JSONObject")
        return {
            str(key): _convert(logical_id, item, shape.value, f"{path}/{key}")
            for key, item in value.items()
        }
    if isinstance(value, dict | list):
        raise invalid(kind)
    try:
        if kind in ("integer", "long"):
            return int(value)
        if kind in ("double", "float"):
            return float(value)
    except (TypeError, ValueError):
        raise invalid(kind.capitalize()) from None
    if kind == "boolean":
        if isinstance(value, str):
            if value.lower() not in ("true", "false"):
                raise invalid("Boolean")
            return value.lower() == "true"
        return bool(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if kind == "string" else value


def merged_tags(resource_tags: Any, stack_tags: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The resource's own Tags, then the stack's tags it does not override (as AWS applies them)."""
    own: dict[str, str] = {}
    for tag in resource_tags or []:
        if isinstance(tag, dict) and "Key" in tag:
            own[str(tag["Key"])] = str(tag.get("Value", ""))
    result = list(own.items())
    result.extend((key, value) for key, value in stack_tags if key not in own)
    return result


def _without(properties: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {key: value for key, value in properties.items() if key not in keys}


# -- handlers ------------------------------------------------------------------------------------


@dataclass
class Physical:
    """A physical resource a handler made, and what it was made from."""

    physical_id: str
    ref: Any
    attributes: dict[str, Any]
    properties: dict[str, Any]
    tags: list[tuple[str, str]]
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class ResourceContext:
    """What a handler knows about the stack it works for."""

    caller: AwsCaller
    account: str
    region: str
    stack_name: str
    logical_id: str
    stack_tags: list[tuple[str, str]]
    rollout_seconds: float
    # Called as soon as the physical resource exists, before any wait: a rollback must find it.
    on_created: Callable[[Physical], None] = lambda physical: None

    def aws(self, service: str, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Call an AWS API as CloudFormation does; API errors become ResourceFailed."""
        try:
            return self.caller.call(service, operation, params, self.account, self.region)
        except AwsError as error:
            raise failure_from(error) from error

    def delete_call(
        self,
        service: str,
        operation: str,
        params: Mapping[str, Any],
        gone: frozenset[str] = _NOT_FOUND_CODES,
    ) -> None:
        """Like :meth:`aws` for a deletion: an error code in ``gone`` (already deleted) is none."""
        try:
            self.caller.call(service, operation, params, self.account, self.region)
        except AwsError as error:
            if error.code not in gone:
                raise failure_from(error) from error

    def generated_name(self, max_length: int = 255) -> str:
        """A name like CloudFormation's ``{stack}-{logical id}-{random}``."""
        suffix = "".join(random.choices(string.ascii_uppercase + string.digits, k=12))
        prefix = f"{self.stack_name}-{self.logical_id}"[: max_length - len(suffix) - 1]
        return f"{prefix}-{suffix}"


class ResourceType:
    """How one CloudFormation resource type is created, updated and deleted."""

    type_name: ClassVar[str]
    attributes: ClassVar[frozenset[str]]

    def get_att(self, physical: Physical, name: str) -> Any:
        """The value of Fn::GetAtt for ``name``."""
        return physical.attributes[name]

    def create(self, ctx: ResourceContext, properties: dict[str, Any]) -> Steps:
        """Create the resource; return its Physical."""
        raise NotImplementedError

    def needs_replacement(self, old: Physical, properties: dict[str, Any]) -> bool:
        """Whether moving to ``properties`` needs a new physical resource."""
        raise NotImplementedError

    def update(self, ctx: ResourceContext, old: Physical, properties: dict[str, Any]) -> Steps:
        """Update the resource in place; return its new Physical."""
        raise NotImplementedError

    def delete(self, ctx: ResourceContext, physical: Physical) -> Steps:
        """Delete the resource; a resource that is already gone is not an error."""
        raise NotImplementedError


def _done() -> Generator[None, None, None]:
    """An empty wait, so that a handler without waits is a generator too."""
    yield from ()


def _ecs_tags(tags: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"key": key, "value": value} for key, value in tags]


def _retag_ecs(
    ctx: ResourceContext, arn: str, old: list[tuple[str, str]], new: list[tuple[str, str]]
) -> None:
    removed = sorted({key for key, _ in old} - {key for key, _ in new})
    if removed:
        ctx.aws("ecs", "UntagResource", {"resourceArn": arn, "tagKeys": removed})
    changed = [(key, value) for key, value in new if (key, value) not in old]
    if changed:
        ctx.aws("ecs", "TagResource", {"resourceArn": arn, "tags": _ecs_tags(changed)})


class TaskDefinitionType(ResourceType):
    """AWS::ECS::TaskDefinition: a revision; any change but tags registers a new one."""

    type_name = "AWS::ECS::TaskDefinition"
    attributes = frozenset({"TaskDefinitionArn"})

    def create(self, ctx: ResourceContext, properties: dict[str, Any]) -> Steps:
        """RegisterTaskDefinition with every property."""
        request = to_api(ctx.logical_id, _without(properties, "Tags"), "RegisterTaskDefinition")
        request.setdefault("family", ctx.generated_name())
        tags = merged_tags(properties.get("Tags"), ctx.stack_tags)
        if tags:
            request["tags"] = _ecs_tags(tags)
        answer = ctx.aws("ecs", "RegisterTaskDefinition", request)
        arn = answer["taskDefinition"]["taskDefinitionArn"]
        physical = Physical(arn, arn, {"TaskDefinitionArn": arn}, properties, tags)
        ctx.on_created(physical)
        yield from _done()
        return physical

    def needs_replacement(self, old: Physical, properties: dict[str, Any]) -> bool:
        """A revision is immutable: only its tags can change in place."""
        return _without(old.properties, "Tags") != _without(properties, "Tags")

    def update(self, ctx: ResourceContext, old: Physical, properties: dict[str, Any]) -> Steps:
        """Change the revision's tags."""
        tags = merged_tags(properties.get("Tags"), ctx.stack_tags)
        _retag_ecs(ctx, old.physical_id, old.tags, tags)
        yield from _done()
        return Physical(old.physical_id, old.ref, old.attributes, properties, tags, old.state)

    def delete(self, ctx: ResourceContext, physical: Physical) -> Steps:
        """DeregisterTaskDefinition (the revision stays describable as INACTIVE)."""
        try:
            ctx.caller.call(
                "ecs",
                "DeregisterTaskDefinition",
                {"taskDefinition": physical.physical_id},
                ctx.account,
                ctx.region,
            )
        except AwsError as error:
            if error.status >= 500:
                raise failure_from(error) from error
        yield from _done()


# UpdateService parameters a stack update can change in place.
_SERVICE_UPDATABLE = (
    "taskDefinition",
    "desiredCount",
    "deploymentConfiguration",
    "networkConfiguration",
    "loadBalancers",
    "healthCheckGracePeriodSeconds",
    "platformVersion",
    "enableExecuteCommand",
    "enableECSManagedTags",
    "propagateTags",
    "capacityProviderStrategy",
    "placementConstraints",
    "placementStrategy",
    "serviceRegistries",
    "serviceConnectConfiguration",
    "volumeConfigurations",
    "vpcLatticeConfigurations",
    "availabilityZoneRebalancing",
)
# What a removed property goes back to (properties not listed keep their value, as on AWS).
_SERVICE_RESET: dict[str, Any] = {
    "deploymentConfiguration": DEFAULT_DEPLOYMENT_CONFIGURATION,
    "loadBalancers": [],
    "healthCheckGracePeriodSeconds": 0,
    "enableExecuteCommand": False,
    "enableECSManagedTags": False,
    "propagateTags": "NONE",
    "placementConstraints": [],
    "placementStrategy": [],
    "serviceRegistries": [],
}
_SERVICE_REPLACED_BY = ("Cluster", "ServiceName", "LaunchType", "Role", "SchedulingStrategy")


class ServiceType(ResourceType):
    """AWS::ECS::Service: complete once ECS reports the deployment done, failed by the breaker."""

    type_name = "AWS::ECS::Service"
    attributes = frozenset({"Name", "ServiceArn"})

    def create(self, ctx: ResourceContext, properties: dict[str, Any]) -> Steps:
        """CreateService, then wait until its first deployment is COMPLETED."""
        request = to_api(ctx.logical_id, _without(properties, "Tags"), "CreateService")
        request.setdefault("serviceName", ctx.generated_name())
        tags = merged_tags(properties.get("Tags"), ctx.stack_tags)
        if tags:
            request["tags"] = _ecs_tags(tags)
        service = ctx.aws("ecs", "CreateService", request)["service"]
        arn, name, cluster = service["serviceArn"], service["serviceName"], service["clusterArn"]
        physical = Physical(
            arn, arn, {"Name": name, "ServiceArn": arn}, properties, tags, {"cluster": cluster}
        )
        ctx.on_created(physical)
        deployments = service.get("deployments") or [{}]
        yield from self._wait_stable(ctx, cluster, arn, deployments[0].get("id"))
        return physical

    def needs_replacement(self, old: Physical, properties: dict[str, Any]) -> bool:
        """Cluster, name, launch type, role and scheduling strategy cannot change in place."""
        return any(old.properties.get(key) != properties.get(key) for key in _SERVICE_REPLACED_BY)

    def update(self, ctx: ResourceContext, old: Physical, properties: dict[str, Any]) -> Steps:
        """UpdateService with what changed, then wait until the service is stable again."""
        cluster, arn = old.state["cluster"], old.physical_id
        before = to_api(ctx.logical_id, _without(old.properties, "Tags"), "CreateService")
        after = to_api(ctx.logical_id, _without(properties, "Tags"), "CreateService")
        params: dict[str, Any] = {"cluster": cluster, "service": arn}
        for key in _SERVICE_UPDATABLE:
            if after.get(key) == before.get(key):
                continue
            if key in after:
                params[key] = after[key]
            elif key in _SERVICE_RESET:
                params[key] = copy.deepcopy(_SERVICE_RESET[key])
        tags = merged_tags(properties.get("Tags"), ctx.stack_tags)
        _retag_ecs(ctx, arn, old.tags, tags)
        if len(params) > 2:
            service = ctx.aws("ecs", "UpdateService", params)["service"]
            deployments = service.get("deployments") or [{}]
            yield from self._wait_stable(ctx, cluster, arn, deployments[0].get("id"))
        return Physical(arn, arn, old.attributes, properties, tags, old.state)

    def delete(self, ctx: ResourceContext, physical: Physical) -> Steps:
        """Scale to 0, wait for the tasks to stop (bounded), then DeleteService."""
        cluster, arn = physical.state["cluster"], physical.physical_id
        service = self._describe(ctx, cluster, arn)
        if service is None or service.get("status") != "ACTIVE":
            return
        if service.get("desiredCount", 0) > 0:
            ctx.aws("ecs", "UpdateService", {"cluster": cluster, "service": arn, "desiredCount": 0})
        deadline = time.monotonic() + max(10.0, 3 * ctx.rollout_seconds)
        while time.monotonic() < deadline:
            service = self._describe(ctx, cluster, arn)
            if (
                service is None
                or service.get("runningCount", 0) + service.get("pendingCount", 0) == 0
            ):
                break
            yield
        ctx.delete_call(
            "ecs",
            "DeleteService",
            {"cluster": cluster, "service": arn, "force": True},
            _NOT_FOUND_CODES | {"ServiceNotActiveException"},
        )

    def _describe(self, ctx: ResourceContext, cluster: str, arn: str) -> dict[str, Any] | None:
        answer = ctx.aws("ecs", "DescribeServices", {"cluster": cluster, "services": [arn]})
        services: list[dict[str, Any]] = answer.get("services") or []
        return services[0] if services else None

    def _wait_stable(
        self, ctx: ResourceContext, cluster: str, arn: str, deployment_id: str | None
    ) -> Generator[None, None, None]:
        """Wait until ``deployment_id`` is the only deployment, COMPLETED, with every task running.

        A deployment that the circuit breaker failed (or rolled back, which puts another PRIMARY
        in front) fails the resource, as it does on AWS.
        """
        while True:
            yield
            service = self._describe(ctx, cluster, arn)
            if service is None or service.get("status") != "ACTIVE":
                raise ResourceFailed(handler_message(f"Service {arn} is not ACTIVE.", "NotFound"))
            deployments: list[dict[str, Any]] = service.get("deployments") or []
            if not deployments:
                continue
            tracked = next((d for d in deployments if d.get("id") == deployment_id), None)
            if tracked is None:
                primary = deployments[0]
                if "circuit breaker" in str(primary.get("rolloutStateReason", "")):
                    raise ResourceFailed(handler_message(BREAKER_MESSAGE))
                # Someone else started a deployment: the service is stable when that one is.
                deployment_id, tracked = primary.get("id"), primary
            if tracked.get("rolloutState") == "FAILED":
                raise ResourceFailed(handler_message(BREAKER_MESSAGE))
            if tracked.get("status") != "PRIMARY":
                if "circuit breaker" in str(deployments[0].get("rolloutStateReason", "")):
                    raise ResourceFailed(handler_message(BREAKER_MESSAGE))
                deployment_id = deployments[0].get("id")
                continue
            if (
                len(deployments) == 1
                and tracked.get("rolloutState", "COMPLETED") == "COMPLETED"
                and service.get("runningCount") == service.get("desiredCount")
                and service.get("pendingCount", 0) == 0
            ):
                return


_LOG_GROUP_PROPERTIES = ("LogGroupName", "RetentionInDays", "Tags")


class LogGroupType(ResourceType):
    """AWS::Logs::LogGroup, in moto's CloudWatch Logs: a name, a retention, tags."""

    type_name = "AWS::Logs::LogGroup"
    attributes = frozenset({"Arn"})

    def _check(self, ctx: ResourceContext, properties: dict[str, Any]) -> None:
        for key in properties:
            if key not in _LOG_GROUP_PROPERTIES:
                raise ResourceFailed(
                    f"Properties validation failed for resource {ctx.logical_id} with message: "
                    f"[#: extraneous key [{key}] is not permitted (the local AWS supports "
                    f"{', '.join(_LOG_GROUP_PROPERTIES)})]"
                )

    def _retention(self, ctx: ResourceContext, name: str, properties: dict[str, Any]) -> None:
        if "RetentionInDays" in properties:
            days = int(properties["RetentionInDays"])
            ctx.aws("logs", "PutRetentionPolicy", {"logGroupName": name, "retentionInDays": days})
        else:
            ctx.aws("logs", "DeleteRetentionPolicy", {"logGroupName": name})

    def create(self, ctx: ResourceContext, properties: dict[str, Any]) -> Steps:
        """CreateLogGroup, then PutRetentionPolicy when RetentionInDays is set."""
        self._check(ctx, properties)
        name = str(properties.get("LogGroupName") or ctx.generated_name(512))
        tags = merged_tags(properties.get("Tags"), ctx.stack_tags)
        request: dict[str, Any] = {"logGroupName": name}
        if tags:
            request["tags"] = dict(tags)
        ctx.aws("logs", "CreateLogGroup", request)
        arn = f"arn:aws:logs:{ctx.region}:{ctx.account}:log-group:{name}:*"
        physical = Physical(name, name, {"Arn": arn}, properties, tags)
        ctx.on_created(physical)
        if "RetentionInDays" in properties:
            self._retention(ctx, name, properties)
        yield from _done()
        return physical

    def needs_replacement(self, old: Physical, properties: dict[str, Any]) -> bool:
        """A new name needs a new log group."""
        return old.properties.get("LogGroupName") != properties.get("LogGroupName")

    def update(self, ctx: ResourceContext, old: Physical, properties: dict[str, Any]) -> Steps:
        """Retention and tags change in place."""
        self._check(ctx, properties)
        name = old.physical_id
        if old.properties.get("RetentionInDays") != properties.get("RetentionInDays"):
            self._retention(ctx, name, properties)
        tags = merged_tags(properties.get("Tags"), ctx.stack_tags)
        removed = sorted({key for key, _ in old.tags} - {key for key, _ in tags})
        if removed:
            ctx.aws("logs", "UntagLogGroup", {"logGroupName": name, "tags": removed})
        if tags != old.tags and tags:
            ctx.aws("logs", "TagLogGroup", {"logGroupName": name, "tags": dict(tags)})
        yield from _done()
        return Physical(name, name, old.attributes, properties, tags, old.state)

    def delete(self, ctx: ResourceContext, physical: Physical) -> Steps:
        """DeleteLogGroup."""
        ctx.delete_call("logs", "DeleteLogGroup", {"logGroupName": physical.physical_id})
        yield from _done()


RESOURCE_TYPES: dict[str, ResourceType] = {
    handler.type_name: handler for handler in (TaskDefinitionType(), ServiceType(), LogGroupType())
}
# What the template checks need to know: the types, and the Fn::GetAtt attributes of each.
ATTRIBUTES = {name: handler.attributes for name, handler in RESOURCE_TYPES.items()}
