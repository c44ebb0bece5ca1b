"""Conveyor's replacements for some of moto's ECS request handlers.

moto's ``EC2ContainerServiceResponse`` turns each ECS request into a backend call; the handlers
below take its place for the operations whose behaviour matters to deployments:

* CreateService / UpdateService / DeleteService hand the service's deployments to the rollout
  simulator (:mod:`localaws.rollout`), keep the parameters moto drops, and make the checks
  AWS makes (:mod:`localaws.validation`);
* RunTask's tasks run to an end: they stop with exit codes, write their awslogs streams and
  honour ``clientToken`` (:mod:`localaws.one_off_tasks`);
* ListTasks honours ``serviceName``, ``desiredStatus`` (RUNNING when absent, as on AWS) and pages;
  DescribeTasks finds tasks by ARN or id without scanning every task of every cluster;
* RegisterTaskDefinition keeps every top-level field of the request and adds ``registeredAt``;
  ListTaskDefinitions honours ``sort``, ``maxResults`` and ``nextToken``;
* DescribeServices refuses more than 10 services, and ListServices pages by 10 and leaves out
  deleted services, as AWS does;
* ListServiceDeployments, DescribeServiceDeployments, DescribeServiceRevisions,
  StopServiceDeployment and ContinueServiceDeployment (which moto lacks) answer from the
  simulator's deployment history;
* CreateService and UpdateService keep the strategy fields of ``deploymentConfiguration``
  (strategy, bakeTimeInMinutes, linearConfiguration, canaryConfiguration, lifecycleHooks, alarms)
  and refuse the values ECS refuses (:mod:`localaws.strategies`).

The handlers run under the world lock, which the WSGI layer takes for every moto request.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from collections.abc import Callable
from typing import Any

from botocore import xform_name
from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.ecs.exceptions import (
    EcsClientException,
    ECSException,
    InvalidParameterException,
    ServiceNotFoundException,
)
from moto.ecs.models import Task as MotoTask
from moto.ecs.responses import DESCRIBE_TASKS_TAGS, EC2ContainerServiceResponse
from moto.utilities.utils import get_partition

from localaws.one_off_tasks import OneOffTask, TaskRegistry
from localaws.rollout import Simulator
from localaws.rollout_history import (
    SERVICE_DEPLOYMENT_STATUSES,
    DeploymentConflict,
    DeploymentHistory,
)
from localaws.rollout_model import DEFAULT_DEPLOYMENT_CONFIGURATION, ServiceTask, service_key
from localaws.strategies import (
    HOOK_ACTIONS,
    HookError,
    StrategyConfigError,
    check_deployment_configuration,
)
from localaws.validation import (
    MAX_DESCRIBE_SERVICES,
    MAX_DESCRIBE_TASKS,
    normalize_network_configuration,
    validate_fargate_size,
    validate_load_balancers,
)

Handler = Callable[[Any], Any]

# Request parameters moto's create_service already stores on the Service model.
_CREATE_SERVICE_HANDLED = frozenset(
    {
        "cluster",
        "serviceName",
        "taskDefinition",
        "desiredCount",
        "loadBalancers",
        "schedulingStrategy",
        "serviceRegistries",
        "tags",
        "deploymentController",
        "launchType",
        "platformVersion",
        "propagateTags",
        "networkConfiguration",
        "role",
        "deploymentConfiguration",
    }
)
# UpdateService parameters that start a new deployment when their value changes (as on ECS).
_DEPLOYMENT_TRIGGERS = frozenset(
    {
        "networkConfiguration",
        "loadBalancers",
        "platformVersion",
        "capacityProviderStrategy",
        "serviceRegistries",
        "serviceConnectConfiguration",
        "volumeConfigurations",
        "vpcLatticeConfigurations",
    }
)
_UPDATE_SERVICE_HANDLED = frozenset(
    {
        "cluster",
        "service",
        "desiredCount",
        "taskDefinition",
        "forceNewDeployment",
        "deploymentConfiguration",
        "networkConfiguration",
    }
)
# Parameters of RegisterTaskDefinition that are not part of the returned TaskDefinition.
_TASK_DEFINITION_SKIPPED = frozenset({"family", "containerDefinitions", "tags"})
_LIST_TASKS_PAGE = 100
_LIST_SERVICES_PAGE = 10  # AWS's default for ListServices without maxResults
_LIST_PAGE_MAX = 100
_LIST_SERVICE_DEPLOYMENTS_PAGE = 20  # AWS's default for ListServiceDeployments
_LIST_TASK_DEFINITIONS_PAGE = 100
MAX_DESCRIBE_SERVICE_DEPLOYMENTS = 20  # also the limit of DescribeServiceRevisions
TASK_DEFINITION_STATUSES = ("ACTIVE", "INACTIVE", "DELETE_IN_PROGRESS")

_originals: dict[str, Handler] = {}
_simulator: Simulator | None = None
_tasks: TaskRegistry | None = None


class ConflictException(ECSException):
    """ECS's ConflictException: the resource's current state does not allow the request."""

    def __init__(self, message: str, resource_ids: list[str]) -> None:
        super().__init__("ConflictException", message)
        self.resource_ids = resource_ids


class ServiceDeploymentNotFoundException(ECSException):
    """StopServiceDeployment of an ARN that names no service deployment."""

    def __init__(self, arn: str) -> None:
        super().__init__(
            "ServiceDeploymentNotFoundException", f"The service deployment {arn} does not exist."
        )


def install(simulator: Simulator) -> None:
    """Route moto's ECS handlers through this module, with ``simulator`` moving rollouts.

    Patching the class is process-wide; installing again only swaps the simulator.
    """
    global _simulator
    _simulator = simulator
    if _originals:
        return
    replacements: dict[str, Handler] = {
        "create_service": _create_service,
        "update_service": _update_service,
        "delete_service": _delete_service,
        "describe_services": _describe_services,
        "list_services": _list_services,
        "list_tasks": _list_tasks,
        "describe_tasks": _describe_tasks,
        "stop_task": _stop_task,
        "run_task": _run_task,
        "register_task_definition": _register_task_definition,
        "deregister_task_definition": _deregister_task_definition,
        "list_task_definitions": _list_task_definitions,
        # Operations moto does not have at all.
        "list_service_deployments": _list_service_deployments,
        "describe_service_deployments": _describe_service_deployments,
        "describe_service_revisions": _describe_service_revisions,
        "stop_service_deployment": _stop_service_deployment,
        "continue_service_deployment": _continue_service_deployment,
    }
    for name, handler in replacements.items():
        original = getattr(EC2ContainerServiceResponse, name, None)
        if original is not None:
            _originals[name] = original
        setattr(EC2ContainerServiceResponse, name, handler)


def _sim() -> Simulator:
    if _simulator is None:
        raise RuntimeError("localaws.ecs_patches.install() was not called")
    return _simulator


# -- services ------------------------------------------------------------------------------------


def _create_service(self: Any) -> Any:
    params: dict[str, Any] = self.params
    backend = self.ecs_backend
    account, region = backend.account_id, backend.region_name
    cluster = backend._get_cluster(params.get("cluster") or "default")
    name = params.get("serviceName")
    existing = backend.services.get(f"{cluster.name}:{name}")
    if existing is not None and existing.status != "INACTIVE":
        raise InvalidParameterException("Creation of service was not idempotent.")
    _check_strategy(params.get("deploymentConfiguration"))
    task_definition = None
    if params.get("taskDefinition"):
        task_definition = usable_task_definition(backend, params["taskDefinition"])
        params["taskDefinition"] = task_definition.arn
        network = normalize_network_configuration(
            account, region, params.get("networkConfiguration"), task_definition.network_mode
        )
        if network is not None:
            params["networkConfiguration"] = network
        validate_load_balancers(account, region, params.get("loadBalancers") or [], task_definition)

    result = _originals["create_service"](self)
    service = result.result["service"]

    # moto counted desiredCount as pending tasks of the cluster; the simulator counts real tasks.
    cluster.pending_tasks_count = max(0, cluster.pending_tasks_count - service.pending_count)
    cluster.running_tasks_count = max(0, cluster.running_tasks_count - service.running_count)
    cluster.active_services_count += 1
    service.running_count = service.pending_count = 0
    _keep_extra_parameters(service, params, _CREATE_SERVICE_HANDLED)
    service.deployment_configuration = {
        **DEFAULT_DEPLOYMENT_CONFIGURATION,
        **(params.get("deploymentConfiguration") or {}),
    }
    for attribute, default in (
        ("enable_ecs_managed_tags", False),
        ("enable_execute_command", False),
        ("placement_constraints", []),
        ("placement_strategy", []),
    ):
        if getattr(service, attribute, None) is None:
            setattr(service, attribute, default)
    service.created_at = utcnow()
    service.created_by = f"arn:{get_partition(region)}:iam::{account}:root"
    if task_definition is not None and service.deployment_controller.get("type") == "ECS":
        _sim().adopt(backend, service)
    return ActionResult({"service": service})


def _update_service(self: Any) -> Any:
    params: dict[str, Any] = self.params
    backend = self.ecs_backend
    account, region = backend.account_id, backend.region_name
    service = backend._get_service(params.get("cluster") or "default", params["service"])
    if service.status != "ACTIVE":
        raise ECSException("ServiceNotActiveException", "Service was not ACTIVE.")
    _check_strategy(params.get("deploymentConfiguration"))
    simulator = _sim()
    sim = simulator.get(backend, service)
    if sim is None:
        # Not a service the simulator drives (e.g. CODE_DEPLOY controller): moto's behaviour.
        return _originals["update_service"](self)

    current_definition = sim.deployments[0].task_definition
    requested = params.get("taskDefinition")
    if requested:
        task_definition = usable_task_definition(backend, requested)
    else:
        task_definition = backend.describe_task_definition(current_definition)
    network = params.get("networkConfiguration")
    if network is not None or requested:
        network = normalize_network_configuration(
            account,
            region,
            network if network is not None else (service.network_configuration or None),
            task_definition.network_mode,
        )
        if "networkConfiguration" in params:
            # Compare and store the normalized form, so a defaulted security group is no change.
            params["networkConfiguration"] = network
    load_balancers = params.get("loadBalancers", service.load_balancers) or []
    if load_balancers and (requested or "loadBalancers" in params):
        validate_load_balancers(account, region, load_balancers, task_definition)

    changed = {
        key
        for key in _DEPLOYMENT_TRIGGERS
        if key in params and params[key] != getattr(service, xform_name(key), None)
    }
    if "networkConfiguration" in params and network is not None:
        service.network_configuration = service._validate_network(network)
    if params.get("desiredCount") is not None:
        service.desired_count = int(params["desiredCount"])
    if params.get("deploymentConfiguration") is not None:
        service.deployment_configuration = {
            **DEFAULT_DEPLOYMENT_CONFIGURATION,
            **(getattr(service, "deployment_configuration", None) or {}),
            **params["deploymentConfiguration"],
        }
    _keep_extra_parameters(service, params, _UPDATE_SERVICE_HANDLED)

    if params.get("forceNewDeployment") or task_definition.arn != current_definition or changed:
        simulator.start_deployment(sim, task_definition.arn)
    else:
        sim.deployments[0].desired_count = service.desired_count
        simulator.touch(sim)
    return ActionResult({"service": service})


def _delete_service(self: Any) -> Any:
    params: dict[str, Any] = self.params
    backend = self.ecs_backend
    cluster = backend._get_cluster(params.get("cluster") or "default")
    service = backend._get_service(cluster.name, params["service"])
    if service.desired_count > 0 and not params.get("force"):
        raise InvalidParameterException("The service cannot be stopped while it is scaled above 0.")
    simulator = _sim()
    sim = simulator.get(backend, service)
    was_active = service.status == "ACTIVE"
    if sim is not None:
        simulator.forget(sim)
    result = _originals["delete_service"](self)
    if was_active:
        cluster.active_services_count = max(0, cluster.active_services_count - 1)
    return result


def _describe_services(self: Any) -> Any:
    if len(self.params.get("services") or []) > MAX_DESCRIBE_SERVICES:
        raise InvalidParameterException("service names can have at most 10 items.")
    return _originals["describe_services"](self)


def _list_services(self: Any) -> Any:
    """ListServices without deleted (INACTIVE) services, 10 per page unless maxResults says."""
    params: dict[str, Any] = self.params
    backend = self.ecs_backend
    cluster = backend._get_cluster(params.get("cluster") or "default")
    services = [
        service
        for key, service in sorted(backend.services.items())
        if key.startswith(f"{cluster.name}:")
        and service.status != "INACTIVE"
        and params.get("launchType") in (None, service.launch_type)
        and params.get("schedulingStrategy") in (None, service.scheduling_strategy)
    ]
    start = _decode_token(params.get("nextToken"))
    size = min(int(params.get("maxResults") or _LIST_SERVICES_PAGE), _LIST_PAGE_MAX)
    result: dict[str, Any] = {"serviceArns": [s.arn for s in services[start : start + size]]}
    if start + size < len(services):
        result["nextToken"] = _encode_token(start + size)
    return ActionResult(result)


def _check_strategy(config: Any) -> None:
    """Refuse a deploymentConfiguration whose strategy fields ECS would refuse."""
    if config is None:
        return
    try:
        check_deployment_configuration(config)
    except StrategyConfigError as exc:
        raise InvalidParameterException(str(exc)) from exc


def _keep_extra_parameters(service: Any, params: dict[str, Any], handled: frozenset[str]) -> None:
    """Store request parameters moto ignores under the name its serializer looks for."""
    for key, value in params.items():
        if key not in handled and value is not None:
            setattr(service, xform_name(key), value)


# -- service deployments and service revisions ---------------------------------------------------


def _history() -> DeploymentHistory:
    return _sim().history


def _list_service_deployments(self: Any) -> Any:
    """The service's deployments, newest first, filtered by status and creation time, paged."""
    params: dict[str, Any] = self.params
    backend = self.ecs_backend
    service_ref: str = params.get("service") or ""
    cluster_ref = params.get("cluster") or _cluster_in_arn(service_ref) or "default"
    service = backend._get_service(cluster_ref, service_ref)
    statuses: list[str] = params.get("status") or []
    unknown = sorted(set(statuses) - SERVICE_DEPLOYMENT_STATUSES)
    if unknown:
        raise InvalidParameterException(f"Invalid service deployment status: {', '.join(unknown)}.")
    created = params.get("createdAt") or {}
    after = _timestamp(created.get("after"))
    before = _timestamp(created.get("before"))
    size = _page_size(params.get("maxResults"), _LIST_SERVICE_DEPLOYMENTS_PAGE)
    records = [
        record
        for record in _history().for_service(service_key(backend, service))
        if (not statuses or record.status in statuses)
        and (after is None or _aware(record.created_at) >= after)
        and (before is None or _aware(record.created_at) <= before)
    ]
    if params.get("nextToken"):
        # The token is the sequence number of the last deployment returned: newer deployments
        # created between pages do not shift the next page.
        last = _decode_token(params["nextToken"])
        records = [record for record in records if record.sequence < last]
    page = records[:size]
    result: dict[str, Any] = {"serviceDeployments": [record.brief() for record in page]}
    if len(records) > size:
        result["nextToken"] = _encode_token(page[-1].sequence)
    return ActionResult(result)


def _describe_by_arn(self: Any, parameter: str, kind: str, answer_key: str) -> Any:
    """Describe history entries by ARN; unknown ones (or another account's) are failures."""
    backend = self.ecs_backend
    history = _history()
    lookup = history.deployment if kind == "deployment" else history.revision
    found: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    for arn in _arns(self.params, parameter):
        entry = lookup(backend.account_id, backend.region_name, arn)
        if entry is None:
            failures.append({"arn": arn, "reason": "MISSING"})
        else:
            found.append(entry.describe())
    return ActionResult({answer_key: found, "failures": failures})


def _describe_service_deployments(self: Any) -> Any:
    return _describe_by_arn(self, "serviceDeploymentArns", "deployment", "serviceDeployments")


def _describe_service_revisions(self: Any) -> Any:
    return _describe_by_arn(self, "serviceRevisionArns", "revision", "serviceRevisions")


def _stop_service_deployment(self: Any) -> Any:
    """StopServiceDeployment: ROLLBACK only (ABORT is not offered for rolling deployments)."""
    params: dict[str, Any] = self.params
    backend = self.ecs_backend
    arn: str = params.get("serviceDeploymentArn") or ""
    stop_type = params.get("stopType") or "ROLLBACK"
    if stop_type != "ROLLBACK":
        raise InvalidParameterException(
            f"stopType {stop_type} is not supported for this service deployment; use ROLLBACK."
        )
    record = _history().deployment(backend.account_id, backend.region_name, arn)
    if record is None:
        raise ServiceDeploymentNotFoundException(arn)
    try:
        _sim().request_rollback(record)
    except DeploymentConflict as exc:
        raise ConflictException(str(exc), [arn]) from exc
    return ActionResult({"serviceDeploymentArn": arn})


def _continue_service_deployment(self: Any) -> Any:
    """ContinueServiceDeployment: answer a PAUSE hook AWAITING_ACTION with CONTINUE (the
    default) or ROLLBACK."""
    params: dict[str, Any] = self.params
    backend = self.ecs_backend
    arn: str = params.get("serviceDeploymentArn") or ""
    hook_id: str = params.get("hookId") or ""
    action = params.get("action") or "CONTINUE"
    if action not in HOOK_ACTIONS:
        raise InvalidParameterException(
            f"action must be one of {', '.join(HOOK_ACTIONS)}; got {action!r}."
        )
    if not hook_id:
        raise InvalidParameterException(
            "hookId cannot be empty: read it from the lifecycleHookDetails of "
            "DescribeServiceDeployments."
        )
    record = _history().deployment(backend.account_id, backend.region_name, arn)
    if record is None:
        raise ServiceDeploymentNotFoundException(arn)
    try:
        _sim().continue_deployment(record, hook_id, action)
    except HookError as exc:
        raise InvalidParameterException(str(exc)) from exc
    except DeploymentConflict as exc:
        raise EcsClientException(str(exc)) from exc
    return ActionResult({"serviceDeploymentArn": arn})


def _arns(params: dict[str, Any], name: str) -> list[str]:
    arns: list[str] = params.get(name) or []
    if not arns:
        raise InvalidParameterException(f"{name} cannot be empty.")
    if len(arns) > MAX_DESCRIBE_SERVICE_DEPLOYMENTS:
        raise InvalidParameterException(
            f"{name} can have at most {MAX_DESCRIBE_SERVICE_DEPLOYMENTS} items."
        )
    return arns


def _cluster_in_arn(service_ref: str) -> str | None:
    """The cluster named in a long service ARN (``...:service/CLUSTER/NAME``)."""
    if service_ref.startswith("arn:"):
        parts = service_ref.split(":", 5)[-1].split("/")
        if len(parts) == 3:
            return parts[1]
    return None


def _timestamp(value: Any) -> datetime.datetime | None:
    """A request timestamp (parsed or epoch seconds) as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return _aware(value)
    if isinstance(value, int | float):
        return datetime.datetime.fromtimestamp(value, datetime.UTC)
    try:
        return datetime.datetime.fromtimestamp(float(value), datetime.UTC)
    except (TypeError, ValueError):
        pass
    try:
        return _aware(datetime.datetime.fromisoformat(str(value)))
    except ValueError as exc:
        raise InvalidParameterException(f"Invalid timestamp: {value}") from exc


def _aware(moment: datetime.datetime) -> datetime.datetime:
    """moto's times are naive UTC; compare them as aware ones."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


# -- tasks ---------------------------------------------------------------------------------------


def _list_tasks(self: Any) -> Any:
    params: dict[str, Any] = self.params
    backend = self.ecs_backend
    cluster = backend._get_cluster(params.get("cluster") or "default")
    tasks = list(backend.tasks.get(cluster.name, {}).values())

    service_name = params.get("serviceName")
    if service_name:
        name = service_name.split("/")[-1]
        if f"{cluster.name}:{name}" not in backend.services:
            raise ServiceNotFoundException
        tasks = [t for t in tasks if t.group == f"service:{name}"]
    desired_status = params.get("desiredStatus") or "RUNNING"
    tasks = [t for t in tasks if t.desired_status == desired_status]
    if params.get("family"):
        family = params["family"]
        tasks = [t for t in tasks if _family(t.task_definition_arn) == family]
    if params.get("startedBy"):
        tasks = [t for t in tasks if t.started_by == params["startedBy"]]
    if params.get("launchType"):
        tasks = [t for t in tasks if t.launch_type == params["launchType"]]
    if params.get("containerInstance"):
        instance = params["containerInstance"]
        tasks = [t for t in tasks if instance in (t.container_instance_arn or "")]

    start = _decode_token(params.get("nextToken"))
    size = min(int(params.get("maxResults") or _LIST_TASKS_PAGE), _LIST_PAGE_MAX)
    page = tasks[start : start + size]
    result: dict[str, Any] = {"taskArns": [t.task_arn for t in page]}
    if start + size < len(tasks):
        result["nextToken"] = _encode_token(start + size)
    return ActionResult(result)


def _describe_tasks(self: Any) -> Any:
    params: dict[str, Any] = self.params
    backend = self.ecs_backend
    cluster = backend._get_cluster(params.get("cluster") or "default")
    references: list[str] = params.get("tasks") or []
    if not references:
        raise InvalidParameterException("Tasks cannot be empty.")
    if len(references) > MAX_DESCRIBE_TASKS:
        raise InvalidParameterException("tasks can have at most 100 items.")
    found: list[Any] = []
    failures: list[dict[str, str]] = []
    for reference in references:
        task = _find_task(backend, cluster, reference)
        if task is None:
            failures.append(
                {"arn": _task_arn(backend, cluster.name, reference), "reason": "MISSING"}
            )
        else:
            task.advance()
            found.append(task)
    if "TAGS" in (params.get("include") or []):
        self._include_in_response(DESCRIBE_TASKS_TAGS)
    else:
        self._exclude_from_response(DESCRIBE_TASKS_TAGS)
    return ActionResult({"tasks": found, "failures": failures})


def install_tasks(registry: TaskRegistry) -> None:
    """Have RunTask's tasks stop with exit codes and logs (:mod:`localaws.one_off_tasks`)."""
    global _tasks
    _tasks = registry


def _run_task(self: Any) -> Any:
    params: dict[str, Any] = self.params
    backend = self.ecs_backend
    definition = None
    if params.get("taskDefinition"):
        definition = usable_task_definition(backend, params["taskDefinition"])
        params["taskDefinition"] = definition.arn
    if _tasks is None or definition is None:
        return _originals["run_task"](self)
    cluster = backend._get_cluster(params.get("cluster") or "default")
    token = params.get("clientToken")
    key = f"{backend.account_id}:{backend.region_name}:{token}"
    if token and key in _tasks.tokens:
        # An idempotent retry: the task the first request started.
        earlier = backend.tasks.get(cluster.name, {}).get(_tasks.tokens[key])
        if earlier is not None:
            return ActionResult({"tasks": [earlier], "failures": []})
    before = set(backend.tasks.get(cluster.name, {}))
    if _needs_instances(backend, cluster, params):
        # moto places EC2 tasks only on registered container instances (and answers 500
        # without any); here tasks need none, as the service tasks of the simulator.
        _place_without_instances(backend, cluster, definition, params)
    else:
        _originals["run_task"](self)
    tasks = backend.tasks.get(cluster.name, {})
    started = []
    for arn in [a for a in tasks if a not in before]:
        task = _tasks.adopt(backend, tasks[arn], definition)
        tasks[arn] = task
        started.append(task)
    if token and started:
        _tasks.tokens[key] = started[0].task_arn
    return ActionResult({"tasks": started, "failures": []})


def _needs_instances(backend: Any, cluster: Any, params: dict[str, Any]) -> bool:
    """Whether moto's RunTask would look for container instances the cluster does not have."""
    strategy = params.get("capacityProviderStrategy") or []
    provider = strategy[0].get("capacityProvider") if strategy else None
    fargate = params.get("launchType") == "FARGATE" or provider in ("FARGATE", "FARGATE_SPOT")
    return not fargate and not backend.container_instances.get(cluster.name)


def _place_without_instances(
    backend: Any, cluster: Any, definition: Any, params: dict[str, Any]
) -> None:
    """Make RunTask's tasks as moto makes Fargate ones, keeping the launch type asked for."""
    strategy = params.get("capacityProviderStrategy") or []
    backend.tasks.setdefault(cluster.name, {})
    for _ in range(int(params.get("count") or 1)):
        task = MotoTask(
            cluster=cluster,
            task_definition=definition,
            container_instance_arn=None,
            resource_requirements=backend._calculate_task_resource_requirements(definition),
            backend=backend,
            group=params.get("group") or f"family:{definition.family}",
            overrides=params.get("overrides") or {},
            started_by=params.get("startedBy") or "",
            tags=params.get("tags") or [],
            launch_type=params.get("launchType") or ("" if strategy else "EC2"),
            networking_configuration=params.get("networkConfiguration"),
            platform_version=params.get("platformVersion"),
            capacity_provider_name=strategy[0].get("capacityProvider") if strategy else None,
        )
        backend.tasks[cluster.name][task.task_arn] = task


def _stop_task(self: Any) -> Any:
    params: dict[str, Any] = self.params
    backend = self.ecs_backend
    cluster = backend._get_cluster(params.get("cluster") or "default")
    task = _find_task(backend, cluster, params.get("task") or "")
    if isinstance(task, OneOffTask):
        task.stop_by_user(params.get("reason"))
        return ActionResult({"task": task})
    if not isinstance(task, ServiceTask):
        return _originals["stop_task"](self)
    service = backend.services.get(f"{cluster.name}:{task.group.removeprefix('service:')}")
    simulator = _sim()
    sim = simulator.get(backend, service) if service is not None else None
    if sim is not None and task.last_status != "STOPPED":
        simulator.stop_task_by_user(sim, task, params.get("reason"))
    return ActionResult({"task": task})


def _find_task(backend: Any, cluster: Any, reference: str) -> Any:
    tasks = backend.tasks.get(cluster.name, {})
    task = tasks.get(reference)
    if task is not None:
        return task
    task_id = reference.rsplit("/", 1)[-1]
    task = tasks.get(_task_arn(backend, cluster.name, task_id))
    if task is not None:
        return task
    # Tasks from moto's own RunTask may use the short ARN format.
    suffix = f"/{task_id}"
    return next((t for arn, t in tasks.items() if arn.endswith(suffix)), None)


def _task_arn(backend: Any, cluster_name: str, reference: str) -> str:
    if reference.startswith("arn:"):
        return reference
    region = backend.region_name
    prefix = f"arn:{get_partition(region)}:ecs:{region}:{backend.account_id}"
    return f"{prefix}:task/{cluster_name}/{reference}"


def _family(task_definition_arn: str) -> str:
    return task_definition_arn.rsplit("/", 1)[-1].rsplit(":", 1)[0]


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"localaws:{offset}".encode()).decode()


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        prefix, _, offset = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        start = int(offset)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidParameterException("Invalid token") from exc
    if prefix != "localaws" or start < 0:
        raise InvalidParameterException("Invalid token")
    return start


# -- task definitions ----------------------------------------------------------------------------


def _register_task_definition(self: Any) -> Any:
    params: dict[str, Any] = self.params
    if "tags" in params and not params["tags"]:
        raise EcsClientException("Tags can not be empty.")
    validate_fargate_size(
        params.get("requiresCompatibilities"), params.get("cpu"), params.get("memory")
    )
    result = _originals["register_task_definition"](self)
    task_definition = result.result["taskDefinition"]
    for key, value in params.items():
        attribute = xform_name(key)
        if (
            key not in _TASK_DEFINITION_SKIPPED
            and getattr(task_definition, attribute, None) is None
        ):
            setattr(task_definition, attribute, value)
    _complete_registration(self.ecs_backend, task_definition)
    return result


def usable_task_definition(backend: Any, reference: str) -> Any:
    """The revision a service or task may start from, as ECS resolves ``reference``.

    A revision named by ARN or ``family:revision`` must be ACTIVE: ECS refuses an INACTIVE one
    with ClientException "TaskDefinition is inactive" (moto accepts it). A family alone means its
    latest ACTIVE revision (moto takes the latest, whatever its status).
    """
    name = reference.rsplit("/", 1)[-1]
    if ":" in name:
        task_definition = backend.describe_task_definition(reference)
        if task_definition.status != "ACTIVE":
            raise EcsClientException("TaskDefinition is inactive")
        return task_definition
    active = [
        revision
        for revision, task_definition in backend.task_definitions.get(name, {}).items()
        if task_definition.status == "ACTIVE"
    ]
    if not active:
        raise EcsClientException("Unable to describe task definition.")
    return backend.task_definitions[name][max(active)]


def _complete_registration(backend: Any, task_definition: Any) -> None:
    """Add what ECS returns for every registered revision and moto leaves out."""
    region = backend.region_name
    task_definition.registered_at = utcnow()
    task_definition.registered_by = f"arn:{get_partition(region)}:iam::{backend.account_id}:root"
    # Real task definitions list the capabilities they need; tools must strip this read-only key
    # before registering a copy, so it is worth having here.
    requires = [{"name": "com.amazonaws.ecs.capability.docker-remote-api.1.18"}]
    if task_definition.network_mode == "awsvpc":
        requires.append({"name": "ecs.capability.task-eni"})
    task_definition.requires_attributes = requires


def register_revisions(
    account: str, region: str, family: str, count: int, container: dict[str, Any]
) -> list[int]:
    """Register ``count`` revisions of ``family`` straight into moto (the control API's bulk
    seeding); each is what RegisterTaskDefinition with this one container would make.

    The caller holds the world lock. Returns the first and the last revision numbers.
    """
    from moto.ecs.models import ecs_backends

    backend = ecs_backends[account][region]
    revisions: list[int] = []
    for _ in range(count):
        task_definition = backend.register_task_definition(family, [dict(container)])
        _complete_registration(backend, task_definition)
        revisions.append(int(task_definition.revision))
    return [revisions[0], revisions[-1]] if revisions else []


def _list_task_definitions(self: Any) -> Any:
    """ListTaskDefinitions as AWS orders and pages it.

    ASC (the default) lists families lexicographically and revisions in ascending numerical
    order; DESC reverses both, so the newest revision of a family comes first. Pages of
    ``maxResults`` (1-100, default 100); the token remembers the last revision returned, so
    registering more revisions between pages neither repeats nor skips one.
    ``familyPrefix`` matches the whole family name, as in moto (and as AWS documents it).
    """
    params: dict[str, Any] = self.params
    backend = self.ecs_backend
    family = params.get("familyPrefix")
    status = params.get("status") or "ACTIVE"
    if status not in TASK_DEFINITION_STATUSES:
        raise InvalidParameterException(
            f"status must be one of {', '.join(TASK_DEFINITION_STATUSES)}."
        )
    order = params.get("sort") or "ASC"
    if order not in ("ASC", "DESC"):
        raise InvalidParameterException("sort must be one of ASC, DESC.")
    size = _page_size(params.get("maxResults"), _LIST_TASK_DEFINITIONS_PAGE)
    descending = order == "DESC"
    keys = sorted(
        (
            (name, revision)
            for name, revisions in backend.task_definitions.items()
            if family is None or name == family
            for revision, definition in revisions.items()
            if definition.status == status
        ),
        reverse=descending,
    )
    if params.get("nextToken"):
        last = _decode_key_token(params["nextToken"])
        keys = [key for key in keys if (key < last if descending else key > last)]
    page = keys[:size]
    result: dict[str, Any] = {
        "taskDefinitionArns": [backend.task_definitions[name][rev].arn for name, rev in page]
    }
    if len(keys) > size:
        result["nextToken"] = _encode_key_token(page[-1])
    return ActionResult(result)


def _encode_key_token(key: tuple[str, int]) -> str:
    raw = json.dumps(["localaws-td", key[0], key[1]]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_key_token(token: str) -> tuple[str, int]:
    try:
        prefix, family, revision = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidParameterException("Invalid token") from exc
    if prefix != "localaws-td" or not isinstance(family, str) or not isinstance(revision, int):
        raise InvalidParameterException("Invalid token")
    return family, revision


def _page_size(value: Any, default: int) -> int:
    if value is None:
        return default
    size = int(value)
    if not 1 <= size <= _LIST_PAGE_MAX:
        raise InvalidParameterException("maxResults must be between 1 and 100.")
    return size


def _deregister_task_definition(self: Any) -> Any:
    result = _originals["deregister_task_definition"](self)
    task_definition = result.result["taskDefinition"]
    if getattr(task_definition, "deregistered_at", None) is None:
        task_definition.deregistered_at = utcnow()
    return result
