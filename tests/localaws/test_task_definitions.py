"""Task definitions come back as registered, including fields moto does not know about."""

from __future__ import annotations

from typing import Any

from tests.localaws.conftest import Aws

CONTAINER: dict[str, Any] = {
    "name": "app",
    "image": "repo/app:1",
    "memoryReservation": 128,
    "portMappings": [{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"}],
    "environment": [{"name": "MODE", "value": "test"}],
    "secrets": [{"name": "TOKEN", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/t"}],
    "healthCheck": {"command": ["CMD", "true"], "interval": 10, "retries": 3, "timeout": 5},
    "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/app"}},
    "dockerLabels": {"team": "conveyor"},
}


def test_every_top_level_field_round_trips(aws: Aws) -> None:
    """Fields moto drops (enableFaultInjection, pidMode, ipcMode, ...) come back from
    DescribeTaskDefinition as sent, with registeredAt/registeredBy and the read-only keys."""
    registered = aws.ecs.register_task_definition(
        family="app",
        containerDefinitions=[CONTAINER],
        networkMode="host",
        requiresCompatibilities=["EC2"],
        pidMode="host",
        ipcMode="task",
        enableFaultInjection=True,
        cpu="512",
        memory="1024",
        taskRoleArn="arn:aws:iam::123456789012:role/app",
        executionRoleArn="arn:aws:iam::123456789012:role/exec",
        runtimePlatform={"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
        placementConstraints=[{"type": "memberOf", "expression": "attribute:ecs.os-type == linux"}],
        volumes=[{"name": "data", "host": {"sourcePath": "/data"}}],
    )["taskDefinition"]

    described = aws.ecs.describe_task_definition(taskDefinition="app")["taskDefinition"]

    assert described == registered
    assert described["enableFaultInjection"] is True
    assert described["pidMode"] == "host"
    assert described["ipcMode"] == "task"
    assert described["networkMode"] == "host"
    assert described["runtimePlatform"]["cpuArchitecture"] == "ARM64"
    assert described["volumes"] == [{"name": "data", "host": {"sourcePath": "/data"}}]
    assert "registeredAt" in described
    assert described["registeredBy"].startswith("arn:aws:iam::123456789012:")
    assert described["requiresAttributes"]


def test_container_definitions_come_back_with_ecs_defaults_only(aws: Aws) -> None:
    """Container definitions are returned as sent, plus the defaults real ECS adds too."""
    aws.ecs.register_task_definition(family="app", containerDefinitions=[CONTAINER])

    (container,) = aws.ecs.describe_task_definition(taskDefinition="app")["taskDefinition"][
        "containerDefinitions"
    ]

    defaults = {"cpu": 0, "essential": True, "mountPoints": [], "volumesFrom": []}
    assert container == {**defaults, **CONTAINER}


def test_fargate_fields_and_tags(aws: Aws) -> None:
    """Fargate fields (ephemeralStorage, runtimePlatform) round-trip; tags come back with
    include=['TAGS']."""
    aws.ecs.register_task_definition(
        family="web",
        containerDefinitions=[CONTAINER],
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="1024",
        memory="2048",
        pidMode="task",
        ephemeralStorage={"sizeInGiB": 40},
        runtimePlatform={"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
        tags=[{"key": "team", "value": "conveyor"}],
    )

    response = aws.ecs.describe_task_definition(taskDefinition="web:1", include=["TAGS"])

    definition = response["taskDefinition"]
    assert definition["ephemeralStorage"] == {"sizeInGiB": 40}
    assert definition["pidMode"] == "task"
    assert definition["requiresCompatibilities"] == ["FARGATE"]
    assert "FARGATE" in definition["compatibilities"]
    assert response["tags"] == [{"key": "team", "value": "conveyor"}]
    assert "tags" not in aws.ecs.describe_task_definition(taskDefinition="web:1")


def test_deregistered_revision_has_deregistered_at(aws: Aws) -> None:
    """DeregisterTaskDefinition marks the revision INACTIVE with deregisteredAt."""
    arn = aws.task_definition("app", "repo/app:1")

    definition = aws.ecs.deregister_task_definition(taskDefinition=arn)["taskDefinition"]

    assert definition["status"] == "INACTIVE"
    assert "deregisteredAt" in definition
