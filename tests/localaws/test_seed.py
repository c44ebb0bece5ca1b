"""``--seed demo`` starts with a ready, steady demo world."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localaws.testing import run_local_aws
from tests.localaws.conftest import client


@pytest.fixture(scope="module")
def demo_url() -> Iterator[str]:
    """A second local AWS, started with the demo seed."""
    with run_local_aws(rollout_seconds=1.0, seed="demo") as url:
        yield url


def test_demo_services_are_steady_on_first_revisions(demo_url: str) -> None:
    """Services web and api run 2 tasks each, COMPLETED, with the breaker and rollback on;
    web is linked to the demo-web target group."""
    ecs = client(demo_url, "ecs")
    services = ecs.describe_services(cluster="demo", services=["web", "api"])["services"]

    for service in services:
        (deployment,) = service["deployments"]
        assert deployment["rolloutState"] == "COMPLETED"
        assert (service["runningCount"], service["desiredCount"]) == (2, 2)
        assert service["launchType"] == "FARGATE"
        assert service["deploymentConfiguration"]["deploymentCircuitBreaker"] == {
            "enable": True,
            "rollback": True,
        }
        assert service["taskDefinition"].endswith(f":task-definition/{service['serviceName']}:1")
    web = next(s for s in services if s["serviceName"] == "web")
    assert web["loadBalancers"][0]["containerName"] == "web"
    assert ":targetgroup/demo-web/" in web["loadBalancers"][0]["targetGroupArn"]


def test_demo_task_definition_web(demo_url: str) -> None:
    """Task definition web has the two containers, ECR images and the Fargate settings."""
    ecs = client(demo_url, "ecs")
    response = ecs.describe_task_definition(taskDefinition="web", include=["TAGS"])
    definition = response["taskDefinition"]

    containers = {c["name"]: c for c in definition["containerDefinitions"]}
    registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    assert containers["web"]["image"] == f"{registry}/demo/web:1.0.0"
    assert containers["proxy"]["image"] == f"{registry}/demo/proxy:1.0.0"
    assert containers["web"]["portMappings"][0]["containerPort"] == 8080
    assert containers["web"]["secrets"][0]["name"] == "DB_PASSWORD"
    assert "healthCheck" in containers["web"]
    assert definition["ephemeralStorage"] == {"sizeInGiB": 30}
    assert definition["runtimePlatform"]["cpuArchitecture"] == "X86_64"
    assert (definition["cpu"], definition["memory"], definition["networkMode"]) == (
        "512",
        "1024",
        "awsvpc",
    )
    assert response["tags"] == [{"key": "team", "value": "demo"}]


def test_demo_images_and_load_balancer(demo_url: str) -> None:
    """ECR holds demo/web, demo/api and demo/proxy at 1.0.0, 1.1.0 and 1.2.0; the ALB forwards
    HTTP:80 to the ip target group demo-web."""
    ecr = client(demo_url, "ecr")
    for repository in ("demo/web", "demo/api", "demo/proxy"):
        images = ecr.describe_images(repositoryName=repository)["imageDetails"]
        tags = sorted(tag for image in images for tag in image.get("imageTags", []))
        assert tags == ["1.0.0", "1.1.0", "1.2.0"]
    elbv2 = client(demo_url, "elbv2")
    (group,) = elbv2.describe_target_groups(Names=["demo-web"])["TargetGroups"]
    assert (group["TargetType"], group["Port"], group["Protocol"]) == ("ip", 8080, "HTTP")
    assert group["LoadBalancerArns"]


def test_demo_rollout_to_a_new_image(demo_url: str) -> None:
    """A rollout of web to 1.1.0 on the demo world completes."""
    ecs = client(demo_url, "ecs")
    definition = ecs.describe_task_definition(taskDefinition="web")["taskDefinition"]
    for container in definition["containerDefinitions"]:
        container["image"] = container["image"].replace(":1.0.0", ":1.1.0")
    keep = {
        "family",
        "containerDefinitions",
        "networkMode",
        "requiresCompatibilities",
        "cpu",
        "memory",
        "executionRoleArn",
        "taskRoleArn",
        "volumes",
        "runtimePlatform",
        "ephemeralStorage",
    }
    new = ecs.register_task_definition(**{k: v for k, v in definition.items() if k in keep})[
        "taskDefinition"
    ]["taskDefinitionArn"]

    ecs.update_service(cluster="demo", service="web", taskDefinition=new)
    ecs.get_waiter("services_stable").wait(
        cluster="demo", services=["web"], WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )

    (deployment,) = ecs.describe_services(cluster="demo", services=["web"])["services"][0][
        "deployments"
    ]
    assert (deployment["taskDefinition"], deployment["rolloutState"]) == (new, "COMPLETED")
