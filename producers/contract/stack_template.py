"""Render a Fargate service job as one CloudFormation template. Pure: no I/O.

Images, subnets, security groups and target group ARNs are template parameters: a new image is
a parameter change, and the template renders without AWS access (``conveyor fargate render``);
names in the spec are resolved to ids and ARNs only when the stack is applied.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from producers.contract.fargate_spec import (
    Container,
    FargateServiceJob,
    LoadBalancerLink,
    logical_id,
)
from producers.contract.strategy import DEFAULT_THRESHOLD_TYPE, ECS_STRATEGY, ECS_THRESHOLD_TYPE

MANAGED_BY_TAG = "conveyor:managed-by"
STACK_TAG = "conveyor:stack"
CLUSTER_TAG = "conveyor:cluster"
SERVICE_TAG = "conveyor:service"
MAX_STACK_NAME = 128
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9-]+")


def _identity_hash(cluster: str, service: str) -> str:
    # '/' is in neither name, so the pair maps to this text one to one.
    return hashlib.sha256(f"{cluster}/{service}".encode()).hexdigest()[:12]


def _readable(prefix: str, cluster: str, service: str, suffix: str, limit: int) -> str:
    body = _NOT_ALLOWED.sub("-", f"{prefix}-{cluster}-{service}").strip("-")
    return f"{body[: limit - len(suffix) - 1].rstrip('-')}-{suffix}"


def stack_name(cluster: str, service: str) -> str:
    """The stack of a (cluster, service): ``conveyor-CLUSTER-SERVICE-HASH``, at most 128.

    Unique per pair by construction: the readable part alone is not (``prod-eu`` + ``api``
    and ``prod`` + ``eu-api`` read the same), so a hash of the pair ends every name.
    """
    return _readable("conveyor", cluster, service, _identity_hash(cluster, service), 128)


def legacy_stack_name(cluster: str, service: str) -> str:
    """The name stacks were given before names carried a hash; used only to adopt them.

    Such a stack is adopted only when it names this cluster and service itself
    (:func:`stack_names_service`), since two pairs can share this name.
    """
    raw = f"conveyor-{cluster}-{service}"
    name = _NOT_ALLOWED.sub("-", raw).strip("-")
    if len(name) <= MAX_STACK_NAME and name == raw:
        return name
    digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
    return f"{name[: MAX_STACK_NAME - 11].rstrip('-')}-{digest}"


def task_family(cluster: str, service: str) -> str:
    """The task definition family of a stack's service: unique per (cluster, service).

    A family of the service name alone would be shared by same-named services of two
    clusters, and each would take the other's revisions as its base.
    """
    return _readable("conveyor", cluster, service, _identity_hash(cluster, service), 255)


def stack_names_service(stack: dict[str, Any], cluster: str, service: str) -> bool:
    """Whether a described stack is the one of this cluster and service, by its own word.

    Its ``conveyor:cluster``/``conveyor:service`` tags decide; a stack from before those tags
    existed is recognised by its ServiceArn output (``...:service/CLUSTER/SERVICE``).
    """
    tags = {t.get("Key"): t.get("Value") for t in stack.get("Tags", [])}
    if CLUSTER_TAG in tags or SERVICE_TAG in tags:
        return tags.get(CLUSTER_TAG) == cluster and tags.get(SERVICE_TAG) == service
    outputs = {o.get("OutputKey"): o.get("OutputValue") for o in stack.get("Outputs", [])}
    arn = str(outputs.get("ServiceArn") or "")
    return arn.endswith(f":service/{cluster}/{service}")


def stack_owner(stack: dict[str, Any]) -> str:
    """Whom a stack says it belongs to, for messages."""
    tags = {t.get("Key"): t.get("Value") for t in stack.get("Tags", [])}
    if CLUSTER_TAG in tags:
        return f"cluster {tags.get(CLUSTER_TAG)!r}, service {tags.get(SERVICE_TAG)!r}"
    outputs = {o.get("OutputKey"): o.get("OutputValue") for o in stack.get("Outputs", [])}
    return f"service {outputs.get('ServiceArn') or 'unknown (no identity tags or outputs)'}"


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


def _deployment_configuration(job: FargateServiceJob) -> dict[str, Any]:
    """The service's DeploymentConfiguration; what the spec leaves out is left to ECS."""
    deployment = job.deployment
    breaker = deployment.circuit_breaker
    circuit: dict[str, Any] = {"Enable": breaker.enable, "Rollback": breaker.rollback}
    if breaker.threshold is not None:
        circuit["ThresholdConfiguration"] = {
            "Type": ECS_THRESHOLD_TYPE[breaker.threshold_type or DEFAULT_THRESHOLD_TYPE],
            "Value": breaker.threshold,
        }
    out: dict[str, Any] = {
        "MinimumHealthyPercent": deployment.minimum_healthy_percent,
        "MaximumPercent": deployment.maximum_percent,
        "DeploymentCircuitBreaker": circuit,
    }
    if deployment.strategy is not None:
        out["Strategy"] = ECS_STRATEGY[deployment.strategy]
    if deployment.bake_minutes is not None:
        out["BakeTimeInMinutes"] = deployment.bake_minutes
    for key, members in (
        (
            "CanaryConfiguration",
            {
                "CanaryPercent": deployment.canary_percent,
                "CanaryBakeTimeInMinutes": deployment.canary_bake_minutes,
            },
        ),
        (
            "LinearConfiguration",
            {
                "StepPercent": deployment.linear_step_percent,
                "StepBakeTimeInMinutes": deployment.linear_step_bake_minutes,
            },
        ),
    ):
        given = {name: value for name, value in members.items() if value is not None}
        if given:
            out[key] = given
    if deployment.alarms:
        out["Alarms"] = {"AlarmNames": list(deployment.alarms), "Enable": True, "Rollback": True}
    return out


def _load_balancer(index: int, link: LoadBalancerLink) -> dict[str, Any]:
    out: dict[str, Any] = {
        "TargetGroupArn": {"Ref": target_group_parameter(index)},
        "ContainerName": link.container_name,
        "ContainerPort": link.container_port,
    }
    advanced = {
        "AlternateTargetGroupArn": link.alternate_target_group,
        "ProductionListenerRule": link.production_listener_rule,
        "TestListenerRule": link.test_listener_rule,
        "RoleArn": link.role_arn,
    }
    given = {key: value for key, value in advanced.items() if value is not None}
    if given:
        out["AdvancedConfiguration"] = given
    return out


def render_template(job: FargateServiceJob) -> dict[str, Any]:
    """Return the CloudFormation template (as a dict) for ``job``."""
    region: dict[str, Any] = {"Ref": "AWS::Region"}
    name = stack_name(job.cluster, job.service)
    tags = [
        *({"Key": k, "Value": v} for k, v in sorted(job.tags.items())),
        {"Key": MANAGED_BY_TAG, "Value": "conveyor"},
        {"Key": STACK_TAG, "Value": name},
        {"Key": CLUSTER_TAG, "Value": job.cluster},
        {"Key": SERVICE_TAG, "Value": job.service},
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
        "Family": task_family(job.cluster, job.service),
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
        "DeploymentConfiguration": _deployment_configuration(job),
        "PropagateTags": "SERVICE",
        "EnableECSManagedTags": True,
        "Tags": tags,
    }
    if job.load_balancers:
        service["LoadBalancers"] = [
            _load_balancer(i, link) for i, link in enumerate(job.load_balancers)
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
    return {
        **job.tags,
        MANAGED_BY_TAG: "conveyor",
        STACK_TAG: stack_name(job.cluster, job.service),
        CLUSTER_TAG: job.cluster,
        SERVICE_TAG: job.service,
    }
