"""Checks that ECS makes on CreateService/UpdateService/RegisterTaskDefinition and moto skips.

Each check raises moto's own ECS exceptions, so that the error reaches the client as the JSON error
AWS sends (``InvalidParameterException`` or ``ClientException``) with AWS's wording, as seen in
AWS's answers quoted in public issue trackers.
"""

from __future__ import annotations

import copy
from typing import Any

from moto.ec2.exceptions import InvalidSubnetIdError
from moto.ec2.models import ec2_backends
from moto.ecs.exceptions import EcsClientException, InvalidParameterException
from moto.elbv2.models import elbv2_backends

MAX_DESCRIBE_SERVICES = 10
MAX_DESCRIBE_TASKS = 100

# AWS answers a target group ARN it cannot find with this message (it tries to read it with the
# service's role first).
TARGET_GROUP_NOT_FOUND = (
    "Unable to assume role and validate the specified targetGroupArn. "
    "Please verify that the ECS service role being passed has the proper permissions."
)

# Task memory (MiB) that Fargate accepts for each task cpu value.
FARGATE_MEMORY_BY_CPU: dict[int, range] = {
    256: range(512, 2049, 512),
    512: range(1024, 4097, 1024),
    1024: range(2048, 8193, 1024),
    2048: range(4096, 16385, 1024),
    4096: range(8192, 30721, 1024),
    8192: range(16384, 61441, 4096),
    16384: range(32768, 122881, 8192),
}


def validate_load_balancers(
    account_id: str,
    region: str,
    load_balancers: list[dict[str, Any]],
    task_definition: Any,
) -> None:
    """Reject load balancer links that ECS would reject for this task definition."""
    elbv2 = elbv2_backends[account_id][region]
    for link in load_balancers:
        target_group_arn = link.get("targetGroupArn")
        if target_group_arn:
            target_group = elbv2.target_groups.get(target_group_arn)
            if target_group is None:
                raise InvalidParameterException(TARGET_GROUP_NOT_FOUND)
            if not target_group.load_balancer_arns:
                raise InvalidParameterException(
                    f"The target group with targetGroupArn {target_group_arn} "
                    "does not have an associated load balancer."
                )
            if task_definition.network_mode == "awsvpc" and target_group.target_type != "ip":
                raise InvalidParameterException(
                    f"The provided target group {target_group_arn} has target type "
                    f"{target_group.target_type}, which is incompatible with the awsvpc network "
                    "mode specified in the task definition."
                )
        container_name = link.get("containerName")
        if not container_name:
            raise InvalidParameterException("Container Name can not be blank.")
        container = next(
            (c for c in task_definition.container_definitions if c.get("name") == container_name),
            None,
        )
        if container is None:
            raise InvalidParameterException(
                f"The container {container_name} does not exist in the task definition."
            )
        port = link.get("containerPort")
        ports = {mapping.get("containerPort") for mapping in container.get("portMappings") or []}
        if port not in ports:
            raise InvalidParameterException(
                f"The container {container_name} did not have a container port {port} defined."
            )


def normalize_network_configuration(
    account_id: str,
    region: str,
    network_configuration: dict[str, Any] | None,
    network_mode: str | None,
) -> dict[str, Any] | None:
    """Check a service's network configuration against the task's network mode.

    Returns a copy in which missing ``securityGroups`` are the VPC's default group, as ECS does
    (moto answers HTTP 500 without them).
    """
    if network_mode != "awsvpc":
        if network_configuration:
            raise InvalidParameterException(
                "Network Configuration is not valid for the given networkMode of this task "
                "definition."
            )
        return network_configuration
    if not network_configuration or not network_configuration.get("awsvpcConfiguration"):
        raise InvalidParameterException(
            "Network Configuration must be provided when networkMode 'awsvpc' is specified."
        )
    result = copy.deepcopy(network_configuration)
    awsvpc = result["awsvpcConfiguration"]
    subnets = awsvpc.get("subnets") or []
    if not subnets:
        raise InvalidParameterException("subnets can not be empty.")
    if not awsvpc.get("securityGroups"):
        ec2 = ec2_backends[account_id][region]
        try:
            subnet = ec2.get_subnet(subnets[0])
        except InvalidSubnetIdError as exc:
            raise InvalidParameterException(
                f"Error retrieving subnet information for [{subnets[0]}]: {exc.message} "
                f"(ErrorCode: {exc.code})"
            ) from exc
        default_group = ec2.get_default_security_group(subnet.vpc_id)
        if default_group is not None:
            awsvpc["securityGroups"] = [default_group.id]
    return result


def validate_fargate_size(
    requires_compatibilities: list[str] | None, cpu: str | None, memory: str | None
) -> None:
    """Reject Fargate task definitions whose task cpu/memory pair Fargate does not offer."""
    if not requires_compatibilities or "FARGATE" not in requires_compatibilities:
        return
    if not cpu:
        raise EcsClientException("Fargate requires that 'cpu' be defined at the task level.")
    if not memory:
        raise EcsClientException("Fargate requires that 'memory' be defined at the task level.")
    cpu_units, memory_mib = _cpu_units(cpu), _memory_mib(memory)
    allowed = FARGATE_MEMORY_BY_CPU.get(cpu_units) if cpu_units is not None else None
    if allowed is None or memory_mib not in allowed:
        raise EcsClientException(
            f"No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. "
            "See the Amazon ECS documentation for the valid values."
        )


def _cpu_units(value: str) -> int | None:
    text = value.strip().lower()
    try:
        if text.endswith("vcpu"):
            return int(float(text[:-4]) * 1024)
        return int(text)
    except ValueError:
        return None


def _memory_mib(value: str) -> int | None:
    text = value.strip().lower()
    try:
        if text.endswith("gb"):
            return int(float(text[:-2]) * 1024)
        return int(text)
    except ValueError:
        return None
