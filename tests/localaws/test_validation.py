"""Checks AWS makes and moto skips, answered with AWS's error codes and messages."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.localaws.conftest import Aws, Network


def error_of(call: Any, **params: Any) -> tuple[str, str]:
    """Call a boto3 operation that must fail; return (code, message)."""
    with pytest.raises(ClientError) as caught:
        call(**params)
    error = caught.value.response["Error"]
    return error["Code"], error["Message"]


@pytest.fixture
def network(aws: Aws) -> Network:
    """A VPC, subnets, a security group and an ALB-attached ip target group."""
    return aws.network()


def create_web(aws: Aws, network: Network, load_balancer: dict[str, Any]) -> tuple[str, str]:
    definition = aws.fargate_task_definition("web", "repo/web:1")
    return error_of(
        aws.ecs.create_service,
        cluster="test",
        serviceName="web",
        taskDefinition=definition,
        desiredCount=1,
        launchType="FARGATE",
        networkConfiguration=network.awsvpc(),
        loadBalancers=[load_balancer],
    )


def test_target_group_that_does_not_exist(aws: Aws, network: Network) -> None:
    """A target group ARN that ELBv2 does not know is refused as AWS refuses it."""
    missing = network.target_group_arn.rsplit("/", 1)[0] + "/0123456789abcdef"
    code, message = create_web(
        aws, network, {"targetGroupArn": missing, "containerName": "app", "containerPort": 8080}
    )
    assert code == "InvalidParameterException"
    assert message.startswith("Unable to assume role and validate the specified targetGroupArn.")


def test_target_group_without_load_balancer(aws: Aws, network: Network) -> None:
    """A target group no listener forwards to cannot be linked to a service."""
    lonely = aws.target_group("lonely", network.vpc, "ip")
    code, message = create_web(
        aws, network, {"targetGroupArn": lonely, "containerName": "app", "containerPort": 8080}
    )
    assert code == "InvalidParameterException"
    assert message == (
        f"The target group with targetGroupArn {lonely} does not have an associated load balancer."
    )


def test_instance_target_group_with_awsvpc(aws: Aws, network: Network) -> None:
    """awsvpc tasks need a target group of type ip."""
    balancer = aws.elbv2.describe_load_balancers()["LoadBalancers"][0]["LoadBalancerArn"]
    instance = aws.target_group("instances", network.vpc, "instance")
    aws.elbv2.create_listener(
        LoadBalancerArn=balancer,
        Protocol="HTTP",
        Port=81,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": instance}],
    )
    code, message = create_web(
        aws, network, {"targetGroupArn": instance, "containerName": "app", "containerPort": 8080}
    )
    assert code == "InvalidParameterException"
    assert message == (
        f"The provided target group {instance} has target type instance, which is incompatible "
        "with the awsvpc network mode specified in the task definition."
    )


def test_container_not_in_task_definition(aws: Aws, network: Network) -> None:
    """The linked container must exist in the task definition."""
    code, message = create_web(
        aws,
        network,
        {"targetGroupArn": network.target_group_arn, "containerName": "web", "containerPort": 8080},
    )
    assert code == "InvalidParameterException"
    assert message == "The container web does not exist in the task definition."


def test_container_port_not_mapped(aws: Aws, network: Network) -> None:
    """The linked port must be one of the container's portMappings."""
    code, message = create_web(
        aws,
        network,
        {"targetGroupArn": network.target_group_arn, "containerName": "app", "containerPort": 9999},
    )
    assert code == "InvalidParameterException"
    assert message == "The container app did not have a container port 9999 defined."


def test_update_service_checks_the_new_revision_against_the_link(
    aws: Aws, network: Network
) -> None:
    """UpdateService to a revision without the linked container is refused, and the service
    keeps its current deployment."""
    definition = aws.fargate_task_definition("web", "repo/web:1")
    aws.service(
        "web",
        definition,
        launchType="FARGATE",
        networkConfiguration=network.awsvpc(),
        loadBalancers=[
            {
                "targetGroupArn": network.target_group_arn,
                "containerName": "app",
                "containerPort": 8080,
            }
        ],
    )
    renamed = aws.ecs.register_task_definition(
        family="web",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
        containerDefinitions=[{"name": "other", "image": "repo/web:2", "memoryReservation": 64}],
    )["taskDefinition"]["taskDefinitionArn"]

    code, message = error_of(
        aws.ecs.update_service, cluster="test", service="web", taskDefinition=renamed
    )

    assert (code, message) == (
        "InvalidParameterException",
        "The container app does not exist in the task definition.",
    )
    assert [d["taskDefinition"] for d in aws.describe("web")["deployments"]] == [definition]


def test_describe_services_takes_at_most_ten(aws: Aws) -> None:
    """DescribeServices with more than 10 services is refused with AWS's message."""
    code, message = error_of(
        aws.ecs.describe_services, cluster="test", services=[f"s{i}" for i in range(11)]
    )
    assert (code, message) == (
        "InvalidParameterException",
        "service names can have at most 10 items.",
    )


def test_awsvpc_without_security_groups_gets_the_vpc_default(aws: Aws, network: Network) -> None:
    """Without securityGroups (HTTP 500 in moto), the service gets the VPC's default group."""
    definition = aws.fargate_task_definition("api", "repo/api:1")
    service = aws.service(
        "api",
        definition,
        launchType="FARGATE",
        networkConfiguration={"awsvpcConfiguration": {"subnets": network.subnets}},
    )
    groups = service["networkConfiguration"]["awsvpcConfiguration"]["securityGroups"]
    default = aws.ec2.describe_security_groups(
        Filters=[
            {"Name": "vpc-id", "Values": [network.vpc]},
            {"Name": "group-name", "Values": ["default"]},
        ]
    )["SecurityGroups"][0]["GroupId"]
    assert groups == [default]


def test_awsvpc_needs_a_network_configuration(aws: Aws) -> None:
    """An awsvpc service without networkConfiguration is refused."""
    definition = aws.fargate_task_definition("api", "repo/api:1")
    code, message = error_of(
        aws.ecs.create_service,
        cluster="test",
        serviceName="api",
        taskDefinition=definition,
        desiredCount=1,
        launchType="FARGATE",
    )
    assert (code, message) == (
        "InvalidParameterException",
        "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
    )


def test_creating_an_existing_service_is_not_idempotent(aws: Aws) -> None:
    """CreateService with the name of an ACTIVE service is refused (moto would overwrite it)."""
    definition = aws.task_definition("app", "repo/app:1")
    aws.service("app", definition, desiredCount=0)
    code, message = error_of(
        aws.ecs.create_service,
        cluster="test",
        serviceName="app",
        taskDefinition=definition,
        desiredCount=1,
    )
    assert (code, message) == (
        "InvalidParameterException",
        "Creation of service was not idempotent.",
    )


def test_fargate_cpu_memory_combination(aws: Aws) -> None:
    """Fargate task definitions must use a cpu/memory pair Fargate offers."""
    code, message = error_of(
        aws.ecs.register_task_definition,
        family="odd",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="4096",
        containerDefinitions=[{"name": "app", "image": "repo/app:1"}],
    )
    assert code == "ClientException"
    assert message.startswith("No Fargate configuration exists for given values: 256 CPU, 4096")


def test_empty_tags_are_refused(aws: Aws) -> None:
    """RegisterTaskDefinition with ``tags: []`` fails as on AWS ("Tags can not be empty")."""
    code, message = error_of(
        aws.ecs.register_task_definition,
        family="app",
        containerDefinitions=[{"name": "app", "image": "repo/app:1", "memory": 64}],
        tags=[],
    )
    assert (code, message) == ("ClientException", "Tags can not be empty.")
