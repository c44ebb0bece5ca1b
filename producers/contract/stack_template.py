"""Render a Fargate service job as one CloudFormation template. Pure: no I/O.

Images, subnets, security groups and target group ARNs are template parameters: a new image is
a parameter change, and the template renders without AWS access (``conveyor fargate render``);
names in the spec are resolved to ids and ARNs only when the stack is applied.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from producers.contract.fargate_spec import Container, FargateServiceJob, logical_id

MANAGED_BY_TAG = "conveyor:managed-by"
STACK_TAG = "conveyor:stack"
MAX_STACK_NAME = 128
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9-]+")


def stack_name(cluster: str, service: str) -> str:
    """The stack name for a service: ``conveyor-CLUSTER-SERVICE``, at most 128 characters.

    Characters CloudFormation refuses become '-'; a name that would be too long is cut and
    given a hash of the full name, so two long names never collide.
    """
    raw = f"conveyor-{cluster}-{service}"
    name = _NOT_ALLOWED.sub("-", raw).strip("-")
    if len(name) <= MAX_STACK_NAME and name == raw:
        return name
    digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
    return f"{name[: MAX_STACK_NAME - 11].rstrip('-')}-{digest}"


def image_parameter(container: str) -> str:
    """The template parameter that holds a container's image."""
    return f"Image{logical_id(container)}"


def target_group_parameter(index: int) -> str:
    """The template parameter that holds the ARN of the index-th load balancer link."""
    return f"TargetGroup{index}Arn"


def _container(c: Container, region_ref: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Name": c.name,
        "Image": {"Ref": image_parameter(c.name)},
        "Essential": c.essential,
        "Cpu": c.cpu,
        "PortMappings": [
            {
                "ContainerPort": p.container_port,
                "Protocol": p.protocol,
                **({"Name": p.name} if p.name else {}),
            }
            for p in c.port_mappings
        ],
        "Environment": [{"Name": k, "Value": v} for k, v in sorted(c.environment.items())],
    }
    if c.memory is not None:
        out["Memory"] = c.memory
    if c.memory_reservation is not None:
        out["MemoryReservation"] = c.memory_reservation
    if c.secrets:
        out["Secrets"] = [{"Name": k, "ValueFrom": v} for k, v in sorted(c.secrets.items())]
    if c.command:
        out["Command"] = list(c.command)
    if c.health_check is not None:
        h = c.health_check
        out["HealthCheck"] = {
            "Command": list(h.command),
            "Interval": h.interval,
            "Timeout": h.timeout,
            "Retries": h.retries,
            "StartPeriod": h.start_period,
        }
    if c.log_configuration is not None:
        out["LogConfiguration"] = {
            "LogDriver": c.log_configuration.log_driver,
            "Options": dict(c.log_configuration.options),
        }
    else:
        out["LogConfiguration"] = {
            "LogDriver": "awslogs",
            "Options": {
                "awslogs-group": {"Ref": "LogGroup"},
                "awslogs-region": region_ref,
                "awslogs-stream-prefix": c.name,
            },
        }
    return out


def render_template(job: FargateServiceJob) -> dict[str, Any]:
    """Return the CloudFormation template (as a dict) for ``job``."""
    region: dict[str, Any] = {"Ref": "AWS::Region"}
    name = stack_name(job.cluster, job.service)
    tags = [
        *({"Key": k, "Value": v} for k, v in sorted(job.tags.items())),
        {"Key": MANAGED_BY_TAG, "Value": "conveyor"},
        {"Key": STACK_TAG, "Value": name},
    ]
    parameters: dict[str, Any] = {
        image_parameter(c.name): {
            "Type": "String",
            "Description": f"Image of container {c.name}",
            "MinLength": 1,
        }
        for c in job.containers
    }
    parameters["Subnets"] = {
        "Type": "List<AWS::EC2::Subnet::Id>",
        "Description": "Subnets of the service's tasks",
    }
    parameters["SecurityGroups"] = {
        "Type": "List<AWS::EC2::SecurityGroup::Id>",
        "Description": "Security groups of the service's tasks",
    }
    for i, _ in enumerate(job.load_balancers):
        parameters[target_group_parameter(i)] = {
            "Type": "String",
            "Description": f"ARN of the target group of load balancer link {i}",
            "AllowedPattern": "^arn:aws[a-zA-Z-]*:elasticloadbalancing:.+:targetgroup/.+$",
        }

    task: dict[str, Any] = {
        "Family": job.service,
        "Cpu": str(job.cpu),
        "Memory": str(job.memory),
        "NetworkMode": "awsvpc",
        "RequiresCompatibilities": ["FARGATE"],
        "RuntimePlatform": {
            "CpuArchitecture": job.runtime_platform.cpu_architecture,
            "OperatingSystemFamily": job.runtime_platform.operating_system_family,
        },
        "ContainerDefinitions": [_container(c, region) for c in job.containers],
        "Tags": tags,
    }
    if job.execution_role_arn:
        task["ExecutionRoleArn"] = job.execution_role_arn
    if job.task_role_arn:
        task["TaskRoleArn"] = job.task_role_arn

    breaker = job.deployment.circuit_breaker
    service: dict[str, Any] = {
        "Cluster": job.cluster,
        "ServiceName": job.service,
        "LaunchType": "FARGATE",
        "TaskDefinition": {"Ref": "TaskDefinition"},
        "DesiredCount": job.desired_count,
        "NetworkConfiguration": {
            "AwsvpcConfiguration": {
                "Subnets": {"Ref": "Subnets"},
                "SecurityGroups": {"Ref": "SecurityGroups"},
                "AssignPublicIp": "ENABLED" if job.network.assign_public_ip else "DISABLED",
            }
        },
        "DeploymentConfiguration": {
            "MinimumHealthyPercent": job.deployment.minimum_healthy_percent,
            "MaximumPercent": job.deployment.maximum_percent,
            "DeploymentCircuitBreaker": {"Enable": breaker.enable, "Rollback": breaker.rollback},
        },
        "PropagateTags": "SERVICE",
        "EnableECSManagedTags": True,
        "Tags": tags,
    }
    if job.load_balancers:
        service["LoadBalancers"] = [
            {
                "TargetGroupArn": {"Ref": target_group_parameter(i)},
                "ContainerName": link.container_name,
                "ContainerPort": link.container_port,
            }
            for i, link in enumerate(job.load_balancers)
        ]
        # Only valid with a load balancer; without one ECS rejects the property.
        service["HealthCheckGracePeriodSeconds"] = job.health_check_grace_period_seconds

    resources: dict[str, Any] = {
        "LogGroup": {
            "Type": "AWS::Logs::LogGroup",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "LogGroupName": f"/conveyor/{job.cluster}/{job.service}",
                "RetentionInDays": 30,
            },
        },
        "TaskDefinition": {"Type": "AWS::ECS::TaskDefinition", "Properties": task},
        "Service": {"Type": "AWS::ECS::Service", "Properties": service},
    }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"Conveyor: Fargate service {job.service} on cluster {job.cluster}",
        "Parameters": parameters,
        "Resources": resources,
        "Outputs": {
            "ServiceArn": {"Value": {"Ref": "Service"}},
            "ServiceName": {"Value": {"Fn::GetAtt": ["Service", "Name"]}},
            "TaskDefinitionArn": {"Value": {"Ref": "TaskDefinition"}},
        },
    }


def template_parameters(
    job: FargateServiceJob,
    *,
    subnets: list[str],
    security_groups: list[str],
    target_group_arns: list[str],
) -> dict[str, str]:
    """Parameter values for a stack operation: images, and the resolved network and targets."""
    values = {image_parameter(c.name): c.image for c in job.containers}
    values["Subnets"] = ",".join(subnets)
    values["SecurityGroups"] = ",".join(security_groups)
    for i, arn in enumerate(target_group_arns):
        values[target_group_parameter(i)] = arn
    return values


def stack_tags(job: FargateServiceJob) -> dict[str, str]:
    """Tags of the stack itself (CloudFormation propagates them to taggable resources)."""
    return {**job.tags, MANAGED_BY_TAG: "conveyor", STACK_TAG: stack_name(job.cluster, job.service)}
