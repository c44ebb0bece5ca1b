"""Fixtures for the local AWS tests: one server subprocess per session, reset before each test.

Tests talk to the server only as a client would: boto3 over HTTP and the JSON control API.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.config import Config

from localaws.testing import control, run_local_aws

ROLLOUT_SECONDS = 1.5
REGION = "us-east-1"


@pytest.fixture(scope="session")
def local_aws_url() -> Iterator[str]:
    """One local AWS for the whole session, with rollouts of about 1.5 s."""
    with run_local_aws(rollout_seconds=ROLLOUT_SECONDS) as url:
        yield url


def client(url: str, service: str, config: Config | None = None) -> Any:
    """A boto3 client on the local AWS."""
    return boto3.client(
        service,  # type: ignore[call-overload]  # the service name is chosen at run time
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    )


def wait_for(condition: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Poll until ``condition()`` is truthy and return it; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s; last value: {value!r}")
        time.sleep(interval)


@dataclass
class Network:
    """A VPC with two subnets, a security group and an ALB-attached ``ip`` target group."""

    vpc: str
    subnets: list[str]
    security_group: str
    target_group_arn: str

    def awsvpc(self) -> dict[str, Any]:
        """The networkConfiguration of a service in this network."""
        return {
            "awsvpcConfiguration": {
                "subnets": self.subnets,
                "securityGroups": [self.security_group],
                "assignPublicIp": "DISABLED",
            }
        }


class Aws:
    """Clients and helpers on a freshly reset local AWS."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ecs = client(url, "ecs")
        self.ec2 = client(url, "ec2")
        self.elbv2 = client(url, "elbv2")
        self.ecs.create_cluster(clusterName="test")

    def control(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call the control API."""
        return control(self.url, method, path, body)

    def network(self) -> Network:
        """Create a VPC, subnets, a security group and an ALB with an ``ip`` target group."""
        vpc = self.ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
        self.ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnets = [
            self.ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"][
                "SubnetId"
            ]
            for cidr, zone in (("10.1.1.0/24", "us-east-1a"), ("10.1.2.0/24", "us-east-1b"))
        ]
        group = self.ec2.create_security_group(GroupName="svc", Description="svc", VpcId=vpc)[
            "GroupId"
        ]
        balancer = self.elbv2.create_load_balancer(
            Name="lb", Subnets=subnets, SecurityGroups=[group], Type="application"
        )["LoadBalancers"][0]["LoadBalancerArn"]
        target_group = self.target_group("tg-ip", vpc, "ip")
        self.elbv2.create_listener(
            LoadBalancerArn=balancer,
            Protocol="HTTP",
            Port=80,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": target_group}],
        )
        return Network(vpc, subnets, group, target_group)

    def target_group(self, name: str, vpc: str, target_type: str) -> str:
        """Create a target group (not attached to any load balancer)."""
        arn: str = self.elbv2.create_target_group(
            Name=name, Protocol="HTTP", Port=8080, VpcId=vpc, TargetType=target_type
        )["TargetGroups"][0]["TargetGroupArn"]
        return arn

    def task_definition(self, family: str, image: str, **extra: Any) -> str:
        """Register a one-container task definition (container ``app``, port 8080)."""
        arn: str = self.ecs.register_task_definition(
            family=family,
            containerDefinitions=[
                {
                    "name": "app",
                    "image": image,
                    "memoryReservation": 128,
                    "portMappings": [{"containerPort": 8080}],
                }
            ],
            **extra,
        )["taskDefinition"]["taskDefinitionArn"]
        return arn

    def fargate_task_definition(self, family: str, image: str) -> str:
        """Register a Fargate/awsvpc task definition (container ``app``, port 8080)."""
        return self.task_definition(
            family,
            image,
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu="256",
            memory="512",
        )

    def service(self, name: str, task_definition: str, **extra: Any) -> dict[str, Any]:
        """CreateService on cluster ``test`` with 2 tasks; return the response's service."""
        params: dict[str, Any] = {"desiredCount": 2, **extra}
        service: dict[str, Any] = self.ecs.create_service(
            cluster="test", serviceName=name, taskDefinition=task_definition, **params
        )["service"]
        return service

    def describe(self, name: str) -> dict[str, Any]:
        """DescribeServices for one service of cluster ``test``."""
        service: dict[str, Any] = self.ecs.describe_services(cluster="test", services=[name])[
            "services"
        ][0]
        return service

    def wait_stable(self, *names: str) -> None:
        """The SDK's services_stable waiter, polling every second."""
        self.ecs.get_waiter("services_stable").wait(
            cluster="test", services=list(names), WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )

    def wait_completed(self, name: str, task_definition: str) -> dict[str, Any]:
        """Wait until the PRIMARY runs ``task_definition`` and is COMPLETED, alone."""

        def done() -> dict[str, Any] | None:
            service = self.describe(name)
            deployments = service["deployments"]
            if (
                len(deployments) == 1
                and deployments[0]["taskDefinition"] == task_definition
                and deployments[0]["rolloutState"] == "COMPLETED"
            ):
                return service
            return None

        result: dict[str, Any] = wait_for(done)
        return result


@pytest.fixture
def aws(local_aws_url: str) -> Aws:
    """A local AWS reset to an empty world, with an ECS cluster named ``test``."""
    status, _ = control(local_aws_url, "POST", "reset")
    assert status == 200
    return Aws(local_aws_url)
