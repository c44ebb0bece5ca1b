"""Conveyor's replacements for some of moto's ECS request handlers.

moto's ``EC2ContainerServiceResponse`` turns each ECS request into a backend call; the handlers
below take its place for the operations whose behaviour matters to deployments:

* CreateService / UpdateService / DeleteService hand the service's deployments to the rollout
  simulator (:mod:`localaws.rollout`), keep the parameters moto drops, and make the checks
  AWS makes (:mod:`localaws.validation`);
* ListTasks honours ``serviceName``, ``desiredStatus`` (RUNNING when absent, as on AWS) and pages;
  DescribeTasks finds tasks by ARN or id without scanning every task of every cluster;
* RegisterTaskDefinition keeps every top-level field of the request and adds ``registeredAt``;
* DescribeServices refuses more than 10 services, and ListServices pages by 10 and leaves out
  deleted services, as AWS does.

The handlers run under the world lock, which the WSGI layer takes for every moto request.
"""

from __future__ import annotations

import base64
import binascii
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
from moto.ecs.responses import DESCRIBE_TASKS_TAGS, EC2ContainerServiceResponse
from moto.utilities.utils import get_partition

from localaws.rollout import (
    DEFAULT_DEPLOYMENT_CONFIGURATION,
    ServiceTask,
    Simulator,
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

_originals: dict[str, Handler] = {}
_simulator: Simulator | None = None


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
        "register_task_definition": _register_task_definition,
        "deregister_task_definition": _deregister_task_definition,
    }
    for name, handler in replacements.items():
        _originals[name] = getattr(EC2ContainerServiceResponse, name)
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
    task_definition = None
    if params.get("taskDefinition"):
        task_definition = backend.describe_task_definition(params["taskDefinition"])
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
    simulator = _sim()
    sim = simulator.get(backend, service)
    if sim is None:
        # Not a service the simulator drives (e.g. CODE_DEPLOY controller): moto's behaviour.
        return _originals["update_service"](self)

    current_definition = sim.deployments[0].task_definition
    requested = params.get("taskDefinition")
    task_definition = backend.describe_task_definition(requested or current_definition)
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


def _keep_extra_parameters(service: Any, params: dict[str, Any], handled: frozenset[str]) -> None:
    """Store request parameters moto ignores under the name its serializer looks for."""
    for key, value in params.items():
        if key not in handled and value is not None:
            setattr(service, xform_name(key), value)


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


def _stop_task(self: Any) -> Any:
    params: dict[str, Any] = self.params
    backend = self.ecs_backend
    cluster = backend._get_cluster(params.get("cluster") or "default")
    task = _find_task(backend, cluster, params.get("task") or "")
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
    backend = self.ecs_backend
    region = backend.region_name
    task_definition.registered_at = utcnow()
    task_definition.registered_by = f"arn:{get_partition(region)}:iam::{backend.account_id}:root"
    # Real task definitions list the capabilities they need; tools must strip this read-only key
    # before registering a copy, so it is worth having here.
    requires = [{"name": "com.amazonaws.ecs.capability.docker-remote-api.1.18"}]
    if task_definition.network_mode == "awsvpc":
        requires.append({"name": "ecs.capability.task-eni"})
    task_definition.requires_attributes = requires
    return result


def _deregister_task_definition(self: Any) -> Any:
    result = _originals["deregister_task_definition"](self)
    task_definition = result.result["taskDefinition"]
    if getattr(task_definition, "deregistered_at", None) is None:
        task_definition.deregistered_at = utcnow()
    return result
