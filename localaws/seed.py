"""The ``demo`` world: a small, steady ECS estate to deploy to, built through the AWS APIs.

Everything is created with boto3 against a running local AWS, exactly as a user would create it
on AWS, so the seed also exercises the endpoint it seeds:

* ECS cluster ``demo``;
* a VPC 10.0.0.0/16 (DNS hostnames on) with subnets 10.0.1.0/24 and 10.0.2.0/24 in two zones and
  a security group ``demo`` open on 80 and 8080;
* an internet-facing ALB ``demo`` with an HTTP:80 listener forwarding to the ``ip`` target group
  ``demo-web`` (HTTP, port 8080);
* ECR repositories ``demo/web``, ``demo/api`` and ``demo/proxy``, each with images 1.0.0, 1.1.0
  and 1.2.0;
* task definitions ``web`` (containers ``web`` :8080 and ``proxy`` :80) and ``api`` (``api``
  :9000), Fargate, awsvpc;
* services ``web`` (behind ``demo-web``) and ``api``, 2 tasks each, circuit breaker with rollback,
  waited for until steady.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING, Any

import boto3

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_ecs.type_defs import DeploymentConfigurationTypeDef, NetworkConfigurationTypeDef

ACCOUNT_ID = "123456789012"  # moto's default account
CLUSTER = "demo"
TARGET_GROUP = "demo-web"
LOAD_BALANCER = "demo"
REPOSITORIES = ("demo/web", "demo/api", "demo/proxy")
IMAGE_TAGS = ("1.0.0", "1.1.0", "1.2.0")
SERVICES = ("web", "api")
DESIRED_COUNT = 2


def seed_region() -> str:
    """The demo world's region: AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def _client(service: str, url: str, region: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]  # the service name is chosen at run time
        region_name=region,
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto accepts any credentials
    )


def seed_demo(url: str) -> dict[str, str]:
    """Create the demo world on the local AWS at ``url`` and wait until both services are steady.

    Returns the names, ids and ARNs made: ``region``, ``account``, ``cluster``, ``cluster_arn``,
    ``vpc``, ``subnet_a``, ``subnet_b``, ``subnets`` (comma-separated), ``security_group``,
    ``alb_arn``, ``alb_dns``, ``listener_arn``, ``target_group_arn``, ``web_task_definition``,
    ``api_task_definition``, ``web_service_arn``, ``api_service_arn``, ``registry``.
    """
    region = seed_region()
    ec2 = _client("ec2", url, region)
    elbv2 = _client("elbv2", url, region)
    ecr = _client("ecr", url, region)
    ecs: ECSClient = _client("ecs", url, region)
    made: dict[str, str] = {"region": region, "account": ACCOUNT_ID}

    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    ec2.create_tags(Resources=[vpc], Tags=[{"Key": "Name", "Value": "demo"}])
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=f"{region}{zone}")["Subnet"][
            "SubnetId"
        ]
        for cidr, zone in (("10.0.1.0/24", "a"), ("10.0.2.0/24", "b"))
    ]
    # Names, so that specs (deploy/examples) can refer to the demo's subnets without ids.
    for subnet, zone in zip(subnets, ("a", "b"), strict=True):
        ec2.create_tags(Resources=[subnet], Tags=[{"Key": "Name", "Value": f"demo-{zone}"}])
    group = ec2.create_security_group(GroupName="demo", Description="demo services", VpcId=vpc)[
        "GroupId"
    ]
    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": port,
                "ToPort": port,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
            for port in (80, 8080)
        ],
    )
    made.update(
        vpc=vpc,
        subnet_a=subnets[0],
        subnet_b=subnets[1],
        subnets=",".join(subnets),
        security_group=group,
    )

    balancer = elbv2.create_load_balancer(
        Name=LOAD_BALANCER,
        Subnets=subnets,
        SecurityGroups=[group],
        Scheme="internet-facing",
        Type="application",
    )["LoadBalancers"][0]
    target_group = elbv2.create_target_group(
        Name=TARGET_GROUP,
        Protocol="HTTP",
        Port=8080,
        VpcId=vpc,
        TargetType="ip",
        HealthCheckPath="/health",
    )["TargetGroups"][0]["TargetGroupArn"]
    listener = elbv2.create_listener(
        LoadBalancerArn=balancer["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": target_group}],
    )["Listeners"][0]["ListenerArn"]
    made.update(
        alb_arn=balancer["LoadBalancerArn"],
        alb_dns=balancer["DNSName"],
        listener_arn=listener,
        target_group_arn=target_group,
    )

    registry = f"{ACCOUNT_ID}.dkr.ecr.{region}.amazonaws.com"
    made["registry"] = registry
    for repository in REPOSITORIES:
        ecr.create_repository(repositoryName=repository)
        for tag in IMAGE_TAGS:
            ecr.put_image(
                repositoryName=repository,
                imageManifest=_fake_manifest(repository, tag),
                imageManifestMediaType="application/vnd.docker.distribution.manifest.v2+json",
                imageTag=tag,
            )

    made["cluster_arn"] = ecs.create_cluster(clusterName=CLUSTER)["cluster"]["clusterArn"]
    made["cluster"] = CLUSTER
    web_definition = ecs.register_task_definition(**_web_task_definition(registry, region))
    api_definition = ecs.register_task_definition(**_api_task_definition(registry, region))
    made["web_task_definition"] = web_definition["taskDefinition"]["taskDefinitionArn"]
    made["api_task_definition"] = api_definition["taskDefinition"]["taskDefinitionArn"]

    network: NetworkConfigurationTypeDef = {
        "awsvpcConfiguration": {
            "subnets": subnets,
            "securityGroups": [group],
            "assignPublicIp": "DISABLED",
        }
    }
    deployment_configuration: DeploymentConfigurationTypeDef = {
        "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        "maximumPercent": 200,
        "minimumHealthyPercent": 100,
    }
    web = ecs.create_service(
        cluster=CLUSTER,
        serviceName="web",
        taskDefinition=made["web_task_definition"],
        desiredCount=DESIRED_COUNT,
        launchType="FARGATE",
        networkConfiguration=network,
        loadBalancers=[
            {"targetGroupArn": target_group, "containerName": "web", "containerPort": 8080}
        ],
        healthCheckGracePeriodSeconds=30,
        deploymentConfiguration=deployment_configuration,
        tags=[{"key": "team", "value": "demo"}],
    )
    api = ecs.create_service(
        cluster=CLUSTER,
        serviceName="api",
        taskDefinition=made["api_task_definition"],
        desiredCount=DESIRED_COUNT,
        launchType="FARGATE",
        networkConfiguration=network,
        deploymentConfiguration=deployment_configuration,
        tags=[{"key": "team", "value": "demo"}],
    )
    made["web_service_arn"] = web["service"]["serviceArn"]
    made["api_service_arn"] = api["service"]["serviceArn"]

    ecs.get_waiter("services_stable").wait(
        cluster=CLUSTER,
        services=list(SERVICES),
        WaiterConfig={"Delay": 1, "MaxAttempts": 600},
    )
    return made


def _fake_manifest(repository: str, tag: str) -> str:
    """A small Docker v2 manifest, distinct per image so that each tag has its own digest."""

    def digest(text: str) -> str:
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 1470,
                "digest": digest(f"{repository}:{tag}:config"),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": 3_370_706,
                    "digest": digest(f"{repository}:{tag}:layer"),
                }
            ],
        }
    )


def _log_configuration(region: str, prefix: str) -> dict[str, Any]:
    return {
        "logDriver": "awslogs",
        "options": {
            "awslogs-group": f"/ecs/demo/{prefix}",
            "awslogs-region": region,
            "awslogs-stream-prefix": prefix,
        },
    }


def _web_task_definition(registry: str, region: str) -> dict[str, Any]:
    return {
        "family": "web",
        "requiresCompatibilities": ["FARGATE"],
        "networkMode": "awsvpc",
        "cpu": "512",
        "memory": "1024",
        "executionRoleArn": f"arn:aws:iam::{ACCOUNT_ID}:role/demo-task-execution",
        "taskRoleArn": f"arn:aws:iam::{ACCOUNT_ID}:role/demo-web",
        "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
        "ephemeralStorage": {"sizeInGiB": 30},
        "volumes": [{"name": "cache"}],
        "tags": [{"key": "team", "value": "demo"}],
        "containerDefinitions": [
            {
                "name": "web",
                "image": f"{registry}/demo/web:1.0.0",
                "essential": True,
                "memoryReservation": 512,
                "portMappings": [{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"}],
                "environment": [
                    {"name": "APP_ENV", "value": "demo"},
                    {"name": "PORT", "value": "8080"},
                ],
                "secrets": [
                    {
                        "name": "DB_PASSWORD",
                        "valueFrom": (
                            f"arn:aws:ssm:{region}:{ACCOUNT_ID}:parameter/demo/db-password"
                        ),
                    }
                ],
                "healthCheck": {
                    "command": ["CMD-SHELL", "curl -fsS http://localhost:8080/health || exit 1"],
                    "interval": 10,
                    "timeout": 5,
                    "retries": 3,
                    "startPeriod": 15,
                },
                "mountPoints": [{"sourceVolume": "cache", "containerPath": "/var/cache/web"}],
                "logConfiguration": _log_configuration(region, "web"),
            },
            {
                "name": "proxy",
                "image": f"{registry}/demo/proxy:1.0.0",
                "essential": True,
                "memoryReservation": 128,
                "portMappings": [{"containerPort": 80, "hostPort": 80, "protocol": "tcp"}],
                "dependsOn": [{"containerName": "web", "condition": "HEALTHY"}],
                "logConfiguration": _log_configuration(region, "proxy"),
            },
        ],
    }


def _api_task_definition(registry: str, region: str) -> dict[str, Any]:
    return {
        "family": "api",
        "requiresCompatibilities": ["FARGATE"],
        "networkMode": "awsvpc",
        "cpu": "256",
        "memory": "512",
        "executionRoleArn": f"arn:aws:iam::{ACCOUNT_ID}:role/demo-task-execution",
        "tags": [{"key": "team", "value": "demo"}],
        "containerDefinitions": [
            {
                "name": "api",
                "image": f"{registry}/demo/api:1.0.0",
                "essential": True,
                "memoryReservation": 256,
                "portMappings": [{"containerPort": 9000, "hostPort": 9000, "protocol": "tcp"}],
                "environment": [{"name": "APP_ENV", "value": "demo"}],
                "logConfiguration": _log_configuration(region, "api"),
            }
        ],
    }
