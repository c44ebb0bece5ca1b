"""Fidelity of the local AWS to botocore's model of the AWS APIs, checked both ways.

Requests: :class:`RequestChecker` sits in front of moto. For every operation in
:data:`MODELLED` it checks the request against botocore's input shape (unknown members, wrong
types, missing required members, values outside an enum) and then against the members the local
AWS models for that operation. A member that botocore knows but the local AWS would ignore is
refused with a 400 that names the operation and the member, instead of being silently dropped:
a test that sends it learns at once that the local AWS cannot show what AWS would do with it.

- JSON protocol (ECS, EventBridge, ECR, CloudWatch, CloudWatch Logs): the whole body, at every
  depth.
- Query protocol (ELBv2): the top-level members (the form's keys before the first dot).
  CloudFormation's actions check their parameters themselves (``localaws.cloudformation.api``).

Operations not in :data:`MODELLED` pass through unchecked.

Answers: :func:`answer_errors` (JSON) and :func:`xml_answer_errors` (query and EC2 protocols)
say where a body as sent departs from botocore's output shape: unknown members, wrong types,
values outside an enum, missing required members. botocore's parsers drop what they do not
know, so only the wire body shows it; the tests in ``tests/localaws/test_fidelity.py`` use them.

To model a new member: make the local AWS act on it (or store and return it where AWS only
stores it), add its path to the operation's tuple in :data:`MODELLED`, and add a test that
shows its effect.
"""

from __future__ import annotations

import base64
import datetime
import functools
import io
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs
from xml.etree import ElementTree

from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StructureShape

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

# Each operation's members that the local AWS acts on, or stores and returns as AWS does.
# A path names a member and everything below it; "a.b" models only ``b`` of the structure ``a``
# (and of each element, when ``a`` is a list).
_DEPLOYMENT_CONFIGURATION = (
    "deploymentConfiguration.deploymentCircuitBreaker.enable",
    "deploymentConfiguration.deploymentCircuitBreaker.rollback",
    "deploymentConfiguration.deploymentCircuitBreaker.resetOnHealthyTask",
    "deploymentConfiguration.deploymentCircuitBreaker.thresholdConfiguration",
    "deploymentConfiguration.maximumPercent",
    "deploymentConfiguration.minimumHealthyPercent",
    "deploymentConfiguration.alarms",
    "deploymentConfiguration.strategy",
    "deploymentConfiguration.bakeTimeInMinutes",
    "deploymentConfiguration.lifecycleHooks",
    "deploymentConfiguration.linearConfiguration",
    "deploymentConfiguration.canaryConfiguration",
)
# Stored on the service and answered by DescribeServices as sent.
_SERVICE_SETTINGS = (
    "loadBalancers",
    "serviceRegistries",
    "desiredCount",
    "launchType",
    "capacityProviderStrategy",
    "platformVersion",
    "placementConstraints",
    "placementStrategy",
    "networkConfiguration",
    "healthCheckGracePeriodSeconds",
    "schedulingStrategy",
    "deploymentController",
    "enableECSManagedTags",
    "propagateTags",
    "enableExecuteCommand",
    "availabilityZoneRebalancing",
)

MODELLED: dict[str, dict[str, tuple[str, ...]]] = {
    "ecs": {
        "CreateCluster": ("clusterName", "tags", "settings", "configuration"),
        "DescribeClusters": ("clusters", "include"),
        "ListClusters": ("nextToken", "maxResults"),
        "CreateService": (
            "cluster",
            "serviceName",
            "taskDefinition",
            "role",
            "clientToken",  # an idempotency token: SDKs fill it in; every call is a new one
            "tags",
            *_SERVICE_SETTINGS,
            *_DEPLOYMENT_CONFIGURATION,
        ),
        "UpdateService": (
            "cluster",
            "service",
            "taskDefinition",
            "forceNewDeployment",
            *(s for s in _SERVICE_SETTINGS if s not in ("launchType", "schedulingStrategy")),
            *_DEPLOYMENT_CONFIGURATION,
        ),
        "DeleteService": ("cluster", "service", "force"),
        "DescribeServices": ("cluster", "services", "include"),
        "ListServices": ("cluster", "nextToken", "maxResults", "launchType", "schedulingStrategy"),
        # A task definition is pass-through data: every member is stored and described.
        "RegisterTaskDefinition": (
            "family",
            "taskRoleArn",
            "executionRoleArn",
            "networkMode",
            "containerDefinitions",
            "volumes",
            "placementConstraints",
            "requiresCompatibilities",
            "cpu",
            "memory",
            "tags",
            "pidMode",
            "ipcMode",
            "proxyConfiguration",
            "inferenceAccelerators",
            "ephemeralStorage",
            "runtimePlatform",
            "enableFaultInjection",
        ),
        "DescribeTaskDefinition": ("taskDefinition", "include"),
        "DeregisterTaskDefinition": ("taskDefinition",),
        "ListTaskDefinitions": ("familyPrefix", "status", "sort", "nextToken", "maxResults"),
        "TagResource": ("resourceArn", "tags"),
        "ListTasks": (
            "cluster",
            "containerInstance",
            "family",
            "nextToken",
            "maxResults",
            "startedBy",
            "serviceName",
            "desiredStatus",
            "launchType",
        ),
        "DescribeTasks": ("cluster", "tasks", "include"),
        "RunTask": (
            "cluster",
            "taskDefinition",
            "count",
            "startedBy",
            "tags",
            "launchType",
            "networkConfiguration",
            "overrides",
            "group",
            "platformVersion",
            "capacityProviderStrategy",
            "clientToken",  # honoured: a repeated token returns the task it started
        ),
        "StopTask": ("cluster", "task", "reason"),
        "ListServiceDeployments": (
            "service",
            "cluster",
            "status",
            "createdAt",
            "nextToken",
            "maxResults",
        ),
        "DescribeServiceDeployments": ("serviceDeploymentArns",),
        "DescribeServiceRevisions": ("serviceRevisionArns",),
        "StopServiceDeployment": ("serviceDeploymentArn", "stopType"),
        "ContinueServiceDeployment": ("serviceDeploymentArn", "hookId", "action"),
    },
    "events": {
        "ListRules": ("NamePrefix", "EventBusName", "NextToken", "Limit"),
        "ListTargetsByRule": ("Rule", "EventBusName", "NextToken", "Limit"),
    },
    "ecr": {
        "DescribeImages": ("registryId", "repositoryName", "imageIds", "filter.tagStatus"),
    },
    "elbv2": {
        "DescribeTargetGroups": ("LoadBalancerArn", "TargetGroupArns", "Names"),
    },
    # The tail of a task's awslogs stream; one-off tasks write it (localaws.one_off_tasks).
    "logs": {
        "GetLogEvents": (
            "logGroupName",
            "logStreamName",
            "startTime",
            "endTime",
            "nextToken",
            "limit",
            "startFromHead",
        ),
    },
    # moto answers metric-math Expressions (but SELECT) with no datapoints: not modelled.
    "cloudwatch": {
        "GetMetricData": (
            "MetricDataQueries.Id",
            "MetricDataQueries.MetricStat",
            "MetricDataQueries.Label",
            "MetricDataQueries.ReturnData",
            "StartTime",
            "EndTime",
            "ScanBy",
        ),
    },
}

# The X-Amz-Target prefix of each JSON protocol service, and the error code it answers a bad
# parameter with.
_JSON_TARGETS = {
    "AmazonEC2ContainerServiceV20141113": ("ecs", "InvalidParameterException"),
    "AWSEvents": ("events", "ValidationException"),
    "AmazonEC2ContainerRegistry_V20150921": ("ecr", "InvalidParameterException"),
    # botocore sends CloudWatch as JSON too (X-Amz-Target GraniteServiceVersion20100801.<op>).
    "GraniteServiceVersion20100801": ("cloudwatch", "InvalidParameterValue"),
    "Logs_20140328": ("logs", "InvalidParameterException"),
}
# Query protocol services, recognised by the credential scope of the request's signature.
_QUERY_SERVICES = {"elasticloadbalancing": "elbv2"}
_QUERY_ENVELOPE = frozenset({"Action", "Version"})
_ALL: dict[str, Any] = {}  # the subtree marker: every member below is modelled


# Enum values AWS sends that botocore's model lacks: CloudFormation's events of the stack itself
# carry the stack's status as ResourceStatus, cleanup states included.
AWS_ENUM_EXTENSIONS: dict[str, frozenset[str]] = {
    "ResourceStatus": frozenset(
        {"UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"}
    ),
}


class RequestRefused(Exception):
    """Raised when a request departs from the input shape or sends a member not modelled."""


@functools.cache
def service_model(service: str) -> ServiceModel:
    """botocore's model of ``service`` (cached: loading one takes tens of milliseconds)."""
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


@functools.cache
def _modelled_tree(service: str, operation: str) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in MODELLED[service][operation]:
        node = tree
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _ALL
    return tree


def check_request(service: str, operation: str, params: Mapping[str, Any]) -> None:
    """Refuse ``params`` (as sent on the wire, JSON protocol) unless they fit botocore's input
    shape of ``operation`` and name only members the local AWS models for it."""
    from botocore.validate import ParamValidator

    model = service_model(service).operation_model(operation)
    shape = model.input_shape
    if shape is None:
        return
    report = ParamValidator().validate(dict(params), shape)
    if report.has_errors():
        raise RequestRefused(f"{operation}: {report.generate_report()}")
    problems = _enum_errors(params, shape, "")
    if problems:
        raise RequestRefused(f"{operation}: {problems[0]}")
    _check_modelled(operation, params, _modelled_tree(service, operation), "")


def check_query_request(service: str, operation: str, keys: Iterable[str]) -> None:
    """Refuse a query protocol request whose form ``keys`` name a top-level member that
    botocore's input shape of ``operation`` lacks or that the local AWS does not model."""
    shape = service_model(service).operation_model(operation).input_shape
    members = set(shape.members) if shape is not None else set()
    modelled = _modelled_tree(service, operation)
    for name in sorted({key.split(".", 1)[0] for key in keys} - _QUERY_ENVELOPE):
        if name not in members:
            raise RequestRefused(f"{operation}: unknown parameter {name!r}")
        if name not in modelled:
            raise RequestRefused(_not_modelled(operation, name))


def _not_modelled(operation: str, path: str) -> str:
    return (
        f"{operation}: {path} is not modelled by the local AWS, which would ignore it; "
        "see docs/localaws-fidelity.md to model it"
    )


def _check_modelled(operation: str, value: Any, tree: dict[str, Any], path: str) -> None:
    if tree is _ALL:
        return
    if isinstance(value, list):
        for item in value:
            _check_modelled(operation, item, tree, path)
        return
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        if item is None:
            continue
        where = f"{path}.{key}" if path else key
        if key not in tree:
            raise RequestRefused(_not_modelled(operation, where))
        _check_modelled(operation, item, tree[key], where)


def _enum_errors(value: Any, shape: Shape, path: str) -> list[str]:
    # botocore's ParamValidator checks types but not enums.
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        return [
            error
            for key, item in value.items()
            if key in shape.members
            for error in _enum_errors(item, shape.members[key], f"{path}.{key}" if path else key)
        ]
    if isinstance(shape, ListShape) and isinstance(value, list):
        return [
            e for i, v in enumerate(value) for e in _enum_errors(v, shape.member, f"{path}[{i}]")
        ]
    if isinstance(shape, MapShape) and isinstance(value, dict):
        return [e for v in value.values() for e in _enum_errors(v, shape.value, path)]
    enum = getattr(shape, "enum", None)
    if enum and isinstance(value, str) and value not in enum:
        return [f"{path}: {value!r} is not one of {', '.join(enum)}"]
    return []


# -- the WSGI middleware -------------------------------------------------------------------------


class RequestChecker:
    """WSGI middleware: refuse requests that :func:`check_request` refuses, pass the rest."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Check one request, then hand it on (its body restored) unless refused."""
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        prefix, _, operation = target.partition(".")
        try:
            if prefix in _JSON_TARGETS:
                service, code = _JSON_TARGETS[prefix]
                if operation in MODELLED[service]:
                    body = _read_body(environ)
                    try:
                        params = json.loads(body or b"{}")
                    except ValueError:
                        params = None
                    if isinstance(params, dict):
                        check_request(service, operation, params)
            else:
                query_service = _query_service(environ)
                if query_service is not None:
                    code = "ValidationError"
                    form = parse_qs(_read_body(environ).decode(), keep_blank_values=True)
                    action = (form.get("Action") or [""])[0]
                    if action in MODELLED[query_service]:
                        check_query_request(query_service, action, form)
        except RequestRefused as refused:
            if prefix in _JSON_TARGETS:
                return _json_error(start_response, code, str(refused))
            return _xml_error(start_response, code, str(refused))
        return self.app(environ, start_response)


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request body; put back so that the application reads it again."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body: bytes = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _query_service(environ: dict[str, Any]) -> str | None:
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    for scope, service in _QUERY_SERVICES.items():
        if f"/{scope}/aws4_request" in authorization:
            return service
    return None


def _json_error(start_response: StartResponse, code: str, message: str) -> list[bytes]:
    data = json.dumps({"__type": code, "message": message}).encode()
    start_response(
        "400 Bad Request",
        [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("Content-Length", str(len(data))),
            ("x-amzn-RequestId", str(uuid.uuid4())),
        ],
    )
    return [data]


def _xml_error(start_response: StartResponse, code: str, message: str) -> list[bytes]:
    error = ElementTree.Element("ErrorResponse")
    detail = ElementTree.SubElement(error, "Error")
    ElementTree.SubElement(detail, "Type").text = "Sender"
    ElementTree.SubElement(detail, "Code").text = code
    ElementTree.SubElement(detail, "Message").text = message
    ElementTree.SubElement(error, "RequestId").text = str(uuid.uuid4())
    data = ElementTree.tostring(error)
    start_response(
        "400 Bad Request",
        [("Content-Type", "text/xml"), ("Content-Length", str(len(data)))],
    )
    return [data]


# -- answers -------------------------------------------------------------------------------------


def answer_errors(value: Any, shape: Shape | None, path: str = "") -> list[str]:
    """Where ``value`` (a JSON answer as sent) departs from botocore's output ``shape``:
    unknown members, missing required members, wrong types, values outside an enum."""
    if shape is None:
        return [] if value in ({}, None) else [f"{path or '.'}: an answer where none is modelled"]
    if isinstance(shape, StructureShape):
        if shape.is_document_type:
            return []  # free-form JSON (a hook's details)
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__}, not an object ({shape.name})"]
        errors = [
            f"{path}.{name}: required member of {shape.name} is missing"
            for name in shape.required_members
            if name not in value
        ]
        for key, item in value.items():
            if key not in shape.members:
                errors.append(f"{path}.{key}: not a member of {shape.name}")
            else:
                errors += answer_errors(item, shape.members[key], f"{path}.{key}")
        return errors
    if isinstance(shape, ListShape):
        if not isinstance(value, list):
            return [f"{path}: {type(value).__name__}, not a list ({shape.name})"]
        return [
            e for i, v in enumerate(value) for e in answer_errors(v, shape.member, f"{path}[{i}]")
        ]
    if isinstance(shape, MapShape):
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__}, not a map ({shape.name})"]
        return [
            e
            for k, v in value.items()
            for e in answer_errors(k, shape.key, f"{path}<key>")
            + answer_errors(v, shape.value, f"{path}[{k}]")
        ]
    return _scalar_errors(value, shape, path)


def _scalar_errors(value: Any, shape: Shape, path: str) -> list[str]:
    kind = shape.type_name
    if kind == "string":
        if not isinstance(value, str):
            return [f"{path}: {value!r} is not a string"]
        if not _in_enum(value, shape):
            return [f"{path}: {value!r} is not one of {shape.name} {shape.enum}"]  # type: ignore[attr-defined]
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{path}: {value!r} is not an integer"]
    elif kind in ("double", "float", "timestamp"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return [f"{path}: {value!r} is not a number"]
    elif kind == "boolean":
        if not isinstance(value, bool):
            return [f"{path}: {value!r} is not a boolean"]
    elif kind == "blob":
        try:
            base64.b64decode(value, validate=True)
        except (TypeError, ValueError):
            return [f"{path}: {value!r} is not base64"]
    return []


def xml_answer_errors(body: bytes, operation: OperationModel) -> list[str]:
    """Where an XML answer (query or EC2 protocol) departs from the operation's output shape."""
    root = ElementTree.fromstring(body)  # noqa: S314 - our own server's answer, in a test
    elements = [_strip(child) for child in root]
    shape = operation.output_shape
    if operation.metadata["protocol"] == "query":
        if shape is None:
            return []
        wrapper = shape.serialization.get("resultWrapper")
        results = [e for e in root if _strip(e) == wrapper]
        if len(results) != 1:
            return [f"{_strip(root)}: no single {wrapper} element, has {elements}"]
        return _xml_errors(results[0], shape, "")
    assert shape is not None
    return _xml_errors(root, shape, "", ignore=frozenset({"requestId"}))


def _strip(element: ElementTree.Element) -> str:
    return element.tag.rsplit("}", 1)[-1]


def _xml_name(name: str, shape: Shape) -> str:
    return str(shape.serialization.get("name", name))


def _xml_errors(
    element: ElementTree.Element, shape: Shape, path: str, ignore: frozenset[str] = frozenset()
) -> list[str]:
    if isinstance(shape, StructureShape):
        by_wire = {_xml_name(name, member): name for name, member in shape.members.items()}
        present = {_strip(child) for child in element}
        errors = [
            f"{path}.{name}: required member of {shape.name} is missing"
            for name in shape.required_members
            if _xml_name(name, shape.members[name]) not in present
        ]
        for child in element:
            tag = _strip(child)
            if tag in ignore:
                continue
            if tag not in by_wire:
                errors.append(f"{path}.{tag}: not a member of {shape.name}")
                continue
            member = shape.members[by_wire[tag]]
            if isinstance(member, ListShape) and member.serialization.get("flattened"):
                errors += _xml_errors(child, member.member, f"{path}.{tag}")
            else:
                errors += _xml_errors(child, member, f"{path}.{tag}")
        return errors
    if isinstance(shape, ListShape):
        item = str(shape.member.serialization.get("name", "member"))
        errors = []
        for index, child in enumerate(element):
            if _strip(child) != item:
                errors.append(f"{path}: element {_strip(child)}, not {item}")
            else:
                errors += _xml_errors(child, shape.member, f"{path}[{index}]")
        return errors
    if isinstance(shape, MapShape):
        errors = []
        for entry in element:
            for part in entry:
                sub = shape.key if _strip(part) == "key" else shape.value
                errors += _xml_errors(part, sub, f"{path}.{_strip(entry)}")
        return errors
    if len(element):
        return [f"{path}: {shape.type_name} has child elements"]
    return _xml_scalar_errors(element.text or "", shape, path)


def _xml_scalar_errors(text: str, shape: Shape, path: str) -> list[str]:
    kind = shape.type_name
    if kind in ("integer", "long"):
        try:
            int(text)
        except ValueError:
            return [f"{path}: {text!r} is not an integer"]
    elif kind in ("double", "float"):
        try:
            float(text)
        except ValueError:
            return [f"{path}: {text!r} is not a number"]
    elif kind == "boolean":
        if text not in ("true", "false"):
            return [f"{path}: {text!r} is not a boolean"]
    elif kind == "timestamp":
        try:
            datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return [f"{path}: {text!r} is not an ISO 8601 timestamp"]
    elif kind == "string" and not _in_enum(text, shape):
        return [f"{path}: {text!r} is not one of {shape.name} {shape.enum}"]  # type: ignore[attr-defined]
    return []


def _in_enum(value: str, shape: Shape) -> bool:
    enum = getattr(shape, "enum", None)
    return not enum or value in enum or value in AWS_ENUM_EXTENSIONS.get(shape.name, ())
