"""CloudFormation stacks of Fargate services behave as on AWS, seen through boto3 only.

The templates are shaped as Conveyor renders them (``producers/contract/stack_template.py``):
a log group kept on delete, a task definition and a service; images, subnets, security groups
and the target group as parameters; ``Ref`` and ``Fn::GetAtt``; outputs. One seeded local AWS for
the module (cluster ``demo``, its VPC, the ``demo-web`` target group behind an ALB, ECR images);
each test uses its own stack and service names.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localaws.testing import run_local_aws
from tests.localaws.conftest import Aws, client, wait_for

ROLLOUT_SECONDS = 1.5
BREAKER_REASON = "Error occurred during operation 'ECS Deployment Circuit Breaker was triggered'."
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
TARGET_GROUP_PATTERN = "^arn:aws[a-zA-Z-]*:elasticloadbalancing:.+:targetgroup/.+$"
STACK_TAGS = [{"Key": "team", "Value": "payments"}]


def template(name: str, *, breaker: bool = True, memory: str = "1024") -> dict[str, Any]:
    """The template of service ``{name}-web`` (family ``name``) on cluster demo, linked to the
    target group given as a parameter."""
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "A Fargate service behind the demo ALB",
        "Parameters": {
            "ImageWeb": {"Type": "String", "Description": "Image of web", "MinLength": 1},
            "Subnets": {"Type": "List<AWS::EC2::Subnet::Id>", "Description": "Task subnets"},
            "SecurityGroups": {"Type": "List<AWS::EC2::SecurityGroup::Id>"},
            "TargetGroup0Arn": {"Type": "String", "AllowedPattern": TARGET_GROUP_PATTERN},
        },
        "Resources": {
            "LogGroup": {
                "Type": "AWS::Logs::LogGroup",
                "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Retain",
                "Properties": {"LogGroupName": f"/conveyor/demo/{name}", "RetentionInDays": 30},
            },
            "TaskDefinition": {
                "Type": "AWS::ECS::TaskDefinition",
                "Properties": {
                    "Family": name,
                    "Cpu": "512",
                    "Memory": memory,
                    "NetworkMode": "awsvpc",
                    "RequiresCompatibilities": ["FARGATE"],
                    "ExecutionRoleArn": "arn:aws:iam::123456789012:role/demo-task-execution",
                    "RuntimePlatform": {
                        "CpuArchitecture": "X86_64",
                        "OperatingSystemFamily": "LINUX",
                    },
                    "ContainerDefinitions": [
                        {
                            "Name": "web",
                            "Image": {"Ref": "ImageWeb"},
                            "Essential": True,
                            "Cpu": 256,
                            "MemoryReservation": 512,
                            "PortMappings": [{"ContainerPort": 8080, "Protocol": "tcp"}],
                            "Environment": [{"Name": "APP_ENV", "Value": "demo"}],
                            "Secrets": [
                                {
                                    "Name": "DB_PASSWORD",
                                    "ValueFrom": "arn:aws:ssm:us-east-1:123456789012:"
                                    "parameter/demo/db-password",
                                }
                            ],
                            "HealthCheck": {
                                "Command": ["CMD-SHELL", "curl -fsS http://localhost:8080/health"],
                                "Interval": 10,
                                "Timeout": 5,
                                "Retries": 3,
                                "StartPeriod": "15",
                            },
                            "LogConfiguration": {
                                "LogDriver": "awslogs",
                                "Options": {
                                    "awslogs-group": {"Ref": "LogGroup"},
                                    "awslogs-region": {"Ref": "AWS::Region"},
                                    "awslogs-stream-prefix": "web",
                                },
                            },
                        }
                    ],
                    "Tags": [{"Key": "component", "Value": "task"}],
                },
            },
            "Service": {
                "Type": "AWS::ECS::Service",
                "Properties": {
                    "Cluster": "demo",
                    "ServiceName": f"{name}-web",
                    "LaunchType": "FARGATE",
                    "TaskDefinition": {"Ref": "TaskDefinition"},
                    "DesiredCount": 2,
                    "NetworkConfiguration": {
                        "AwsvpcConfiguration": {
                            "Subnets": {"Ref": "Subnets"},
                            "SecurityGroups": {"Ref": "SecurityGroups"},
                            "AssignPublicIp": "DISABLED",
                        }
                    },
                    "DeploymentConfiguration": {
                        "MinimumHealthyPercent": 100,
                        "MaximumPercent": 200,
                        "DeploymentCircuitBreaker": {"Enable": breaker, "Rollback": breaker},
                    },
                    "PropagateTags": "SERVICE",
                    "EnableECSManagedTags": True,
                    "Tags": [{"Key": "component", "Value": "service"}],
                    "LoadBalancers": [
                        {
                            "TargetGroupArn": {"Ref": "TargetGroup0Arn"},
                            "ContainerName": "web",
                            "ContainerPort": 8080,
                        }
                    ],
                    "HealthCheckGracePeriodSeconds": 30,
                },
            },
        },
        "Outputs": {
            "ServiceArn": {"Value": {"Ref": "Service"}},
            "ServiceName": {"Value": {"Fn::GetAtt": ["Service", "Name"]}},
            "TaskDefinitionArn": {"Value": {"Ref": "TaskDefinition"}},
            "LogGroupArn": {"Value": {"Fn::GetAtt": ["LogGroup", "Arn"]}},
        },
    }


@dataclass
class Demo:
    """Clients on the seeded local AWS and the demo network's ids."""

    url: str
    cf: Any
    ecs: Any
    ec2: Any
    elbv2: Any
    logs: Any
    vpc: str
    subnets: list[str]
    security_group: str
    target_group: str

    def parameters(self, image: str, **overrides: str) -> list[dict[str, str]]:
        """Stack parameters for ``image`` (a tag of demo/web) in the demo network."""
        values = {
            "ImageWeb": f"{REGISTRY}/demo/web:{image}",
            "Subnets": ",".join(self.subnets),
            "SecurityGroups": self.security_group,
            "TargetGroup0Arn": self.target_group,
            **overrides,
        }
        return [{"ParameterKey": key, "ParameterValue": value} for key, value in values.items()]

    def create(
        self, name: str, image: str = "1.0.0", *, breaker: bool = True, **overrides: str
    ) -> str:
        """CreateStack as Conveyor makes it; returns the stack id (the stack is in progress)."""
        stack_id: str = self.cf.create_stack(
            StackName=name,
            TemplateBody=json.dumps(template(name, breaker=breaker), sort_keys=True),
            Parameters=self.parameters(image, **overrides),
            Tags=STACK_TAGS,
            ClientRequestToken=f"create-{name}",
        )["StackId"]
        return stack_id

    def update(self, name: str, image: str, *, breaker: bool = True, token: str = "") -> None:
        """UpdateStack as Conveyor makes it: the whole template, every parameter, the tags."""
        self.cf.update_stack(
            StackName=name,
            TemplateBody=json.dumps(template(name, breaker=breaker), sort_keys=True),
            Parameters=self.parameters(image),
            Tags=STACK_TAGS,
            ClientRequestToken=token or f"update-{name}-{image}",
        )

    def stack(self, name: str) -> dict[str, Any]:
        """DescribeStacks for one stack."""
        stack: dict[str, Any] = self.cf.describe_stacks(StackName=name)["Stacks"][0]
        return stack

    def settle(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        """Poll until the stack is no longer in an *_IN_PROGRESS state; return it."""

        def settled() -> dict[str, Any] | None:
            stack = self.stack(name)
            return None if stack["StackStatus"].endswith("_IN_PROGRESS") else stack

        result: dict[str, Any] = wait_for(settled, timeout=timeout, interval=0.1)
        return result

    def events(self, name: str) -> list[dict[str, Any]]:
        """Every stack event, oldest first."""
        pages = self.cf.get_paginator("describe_stack_events").paginate(StackName=name)
        return list(reversed([event for page in pages for event in page["StackEvents"]]))

    def service(self, name: str) -> dict[str, Any]:
        """DescribeServices (with tags) for one service of cluster demo."""
        service: dict[str, Any] = self.ecs.describe_services(
            cluster="demo", services=[name], include=["TAGS"]
        )["services"][0]
        return service

    def task_definition(self, arn: str) -> dict[str, Any]:
        """DescribeTaskDefinition with tags."""
        answer = self.ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
        return {**answer["taskDefinition"], "tags": answer.get("tags", [])}


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    """A local AWS with the demo world, for this module."""
    with run_local_aws(rollout_seconds=ROLLOUT_SECONDS, seed="demo") as url:
        ec2, elbv2 = client(url, "ec2"), client(url, "elbv2")
        vpc = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": ["demo"]}])["Vpcs"][0]
        subnets = ec2.describe_subnets(
            Filters=[{"Name": "cidr-block", "Values": ["10.0.1.0/24", "10.0.2.0/24"]}]
        )["Subnets"]
        group = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["demo"]}])[
            "SecurityGroups"
        ][0]
        target_group = elbv2.describe_target_groups(Names=["demo-web"])["TargetGroups"][0]
        yield Demo(
            url=url,
            cf=client(url, "cloudformation"),
            ecs=client(url, "ecs"),
            ec2=ec2,
            elbv2=elbv2,
            logs=client(url, "logs"),
            vpc=vpc["VpcId"],
            subnets=sorted(s["SubnetId"] for s in subnets),
            security_group=group["GroupId"],
            target_group=target_group["TargetGroupArn"],
        )


def _error(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response["Error"]
    return error["Code"], error["Message"]


def _statuses(events: list[dict[str, Any]], logical_id: str) -> list[str]:
    return [e["ResourceStatus"] for e in events if e["LogicalResourceId"] == logical_id]


def test_fargate_stack_completes_only_once_its_service_is_steady(demo: Demo) -> None:
    """CreateStack answers at once with the stack CREATE_IN_PROGRESS; the Service resource stays
    CREATE_IN_PROGRESS while ECS rolls the service out, and the stack is CREATE_COMPLETE only
    when the service's deployment is COMPLETED with every task running."""
    stack_id = demo.create("orders")

    assert demo.stack("orders")["StackStatus"] == "CREATE_IN_PROGRESS"
    assert stack_id.startswith("arn:aws:cloudformation:us-east-1:123456789012:stack/orders/")
    seen_rolling = False
    deadline = time.monotonic() + 30
    while (stack := demo.stack("orders"))["StackStatus"] == "CREATE_IN_PROGRESS":
        assert time.monotonic() < deadline, "stack still CREATE_IN_PROGRESS"
        service_events = [e for e in demo.events("orders") if e["LogicalResourceId"] == "Service"]
        if service_events and service_events[-1]["PhysicalResourceId"]:
            deployment = demo.service("orders-web")["deployments"][0]
            if deployment["rolloutState"] == "IN_PROGRESS":
                assert service_events[-1]["ResourceStatus"] == "CREATE_IN_PROGRESS"
                seen_rolling = True
        time.sleep(0.1)

    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert seen_rolling
    service = demo.service("orders-web")
    (deployment,) = service["deployments"]
    assert (deployment["status"], deployment["rolloutState"]) == ("PRIMARY", "COMPLETED")
    assert (service["runningCount"], service["desiredCount"]) == (2, 2)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs == {
        "ServiceArn": service["serviceArn"],
        "ServiceName": "orders-web",
        "TaskDefinitionArn": service["taskDefinition"],
        "LogGroupArn": "arn:aws:logs:us-east-1:123456789012:log-group:/conveyor/demo/orders:*",
    }
    assert stack["Tags"] == STACK_TAGS
    assert {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}[
        "SecurityGroups"
    ] == demo.security_group


def test_stack_resources_have_every_property_the_template_gives(demo: Demo) -> None:
    """DescribeServices and DescribeTaskDefinition show every property of the template (launch
    type, network, load balancer, breaker, grace period, tags; cpu, memory, awsvpc, Fargate,
    execution role, secret, health check, awslogs), with the stack's tags propagated."""
    demo.create("ledger")
    assert demo.settle("ledger")["StackStatus"] == "CREATE_COMPLETE"

    service = demo.service("ledger-web")
    assert service["launchType"] == "FARGATE"
    assert service["networkConfiguration"] == {
        "awsvpcConfiguration": {
            "subnets": demo.subnets,
            "securityGroups": [demo.security_group],
            "assignPublicIp": "DISABLED",
        }
    }
    assert service["loadBalancers"] == [
        {"targetGroupArn": demo.target_group, "containerName": "web", "containerPort": 8080}
    ]
    assert service["deploymentConfiguration"] == {
        "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        "maximumPercent": 200,
        "minimumHealthyPercent": 100,
    }
    assert service["healthCheckGracePeriodSeconds"] == 30
    assert service["desiredCount"] == 2
    assert service["propagateTags"] == "SERVICE"
    assert service["enableECSManagedTags"] is True
    assert {(t["key"], t["value"]) for t in service["tags"]} == {
        ("component", "service"),
        ("team", "payments"),
    }

    definition = demo.task_definition(service["taskDefinition"])
    assert definition["family"] == "ledger"
    assert (definition["cpu"], definition["memory"]) == ("512", "1024")
    assert definition["networkMode"] == "awsvpc"
    assert definition["requiresCompatibilities"] == ["FARGATE"]
    assert definition["executionRoleArn"] == "arn:aws:iam::123456789012:role/demo-task-execution"
    assert definition["runtimePlatform"] == {
        "cpuArchitecture": "X86_64",
        "operatingSystemFamily": "LINUX",
    }
    (container,) = definition["containerDefinitions"]
    assert container["image"] == f"{REGISTRY}/demo/web:1.0.0"
    assert container["cpu"] == 256
    assert container["portMappings"] == [{"containerPort": 8080, "protocol": "tcp"}]
    assert container["environment"] == [{"name": "APP_ENV", "value": "demo"}]
    assert container["secrets"] == [
        {
            "name": "DB_PASSWORD",
            "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/demo/db-password",
        }
    ]
    assert container["healthCheck"] == {
        "command": ["CMD-SHELL", "curl -fsS http://localhost:8080/health"],
        "interval": 10,
        "timeout": 5,
        "retries": 3,
        "startPeriod": 15,
    }
    assert container["logConfiguration"] == {
        "logDriver": "awslogs",
        "options": {
            "awslogs-group": "/conveyor/demo/ledger",
            "awslogs-region": "us-east-1",
            "awslogs-stream-prefix": "web",
        },
    }
    assert {(t["key"], t["value"]) for t in definition["tags"]} == {
        ("component", "task"),
        ("team", "payments"),
    }
    (group,) = demo.logs.describe_log_groups(logGroupNamePrefix="/conveyor/demo/ledger")[
        "logGroups"
    ]
    assert group["retentionInDays"] == 30


def test_stack_events_are_resource_level_and_carry_the_request_token(demo: Demo) -> None:
    """Each resource has CREATE_IN_PROGRESS (without, then with its physical id) and
    CREATE_COMPLETE events in dependency order, between the stack's own events; every event of
    the operation carries its ClientRequestToken; ListStacks filters by status."""
    stack_id = demo.create("billing")
    demo.settle("billing")

    events = demo.events("billing")
    assert (events[0]["LogicalResourceId"], events[0]["ResourceStatus"]) == (
        "billing",
        "CREATE_IN_PROGRESS",
    )
    assert events[0]["ResourceStatusReason"] == "User Initiated"
    assert events[0]["ResourceType"] == "AWS::CloudFormation::Stack"
    assert events[0]["PhysicalResourceId"] == stack_id
    assert (events[-1]["LogicalResourceId"], events[-1]["ResourceStatus"]) == (
        "billing",
        "CREATE_COMPLETE",
    )
    for logical_id in ("LogGroup", "TaskDefinition", "Service"):
        assert _statuses(events, logical_id) == [
            "CREATE_IN_PROGRESS",
            "CREATE_IN_PROGRESS",
            "CREATE_COMPLETE",
        ]
    initiated = [
        e for e in events if e.get("ResourceStatusReason") == "Resource creation Initiated"
    ]
    assert [e["LogicalResourceId"] for e in initiated] == ["LogGroup", "TaskDefinition", "Service"]
    for event in events:
        assert {"EventId", "StackId", "StackName", "Timestamp", "ResourceType"} <= set(event)
        assert event["StackName"] == "billing"
        assert event["ClientRequestToken"] == "create-billing"
    service_event = initiated[-1]
    assert service_event["ResourceType"] == "AWS::ECS::Service"
    assert service_event["PhysicalResourceId"].endswith(":service/demo/billing-web")
    listed = demo.cf.list_stacks(StackStatusFilter=["CREATE_COMPLETE"])["StackSummaries"]
    assert stack_id in {s["StackId"] for s in listed}


def test_update_with_new_image_rolls_out_a_complete_new_revision(demo: Demo) -> None:
    """UpdateStack with a new image registers a new revision with every other property unchanged;
    the service rolls out to it (old and new deployments side by side), the old revision is
    deregistered in UPDATE_COMPLETE_CLEANUP_IN_PROGRESS, and the stack is UPDATE_COMPLETE with
    the update's token on its events. The same update again is refused with "No updates are to
    be performed.", and so is any update while one is in progress."""
    demo.create("catalog")
    demo.settle("catalog")
    first = demo.service("catalog-web")["taskDefinition"]

    demo.update("catalog", "1.1.0", token="update-catalog")
    code, message = _error(lambda: demo.update("catalog", "1.2.0"))
    assert code == "ValidationError"
    assert message.endswith("is in UPDATE_IN_PROGRESS state and can not be updated.")
    most_deployments = 0
    deadline = time.monotonic() + 30
    while (stack := demo.stack("catalog"))["StackStatus"].endswith("_IN_PROGRESS"):
        assert time.monotonic() < deadline, "update still in progress"
        most_deployments = max(most_deployments, len(demo.service("catalog-web")["deployments"]))
        time.sleep(0.1)

    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    assert most_deployments == 2
    service = demo.service("catalog-web")
    second = service["taskDefinition"]
    assert second.endswith("task-definition/catalog:2")
    (deployment,) = service["deployments"]
    assert (deployment["taskDefinition"], deployment["rolloutState"]) == (second, "COMPLETED")
    assert {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}[
        "TaskDefinitionArn"
    ] == second
    old, new = demo.task_definition(first), demo.task_definition(second)
    assert new["containerDefinitions"][0]["image"] == f"{REGISTRY}/demo/web:1.1.0"
    unchanged = ("cpu", "memory", "networkMode", "requiresCompatibilities", "executionRoleArn")
    assert {k: new[k] for k in unchanged} == {k: old[k] for k in unchanged}
    strip = ("image",)
    assert [
        {k: v for k, v in c.items() if k not in strip} for c in new["containerDefinitions"]
    ] == [{k: v for k, v in c.items() if k not in strip} for c in old["containerDefinitions"]]
    assert old["status"] == "INACTIVE"
    events = demo.events("catalog")
    update = events[[e["ResourceStatus"] for e in events].index("UPDATE_IN_PROGRESS") :]
    assert {e["ClientRequestToken"] for e in update} == {"update-catalog"}
    assert _statuses(events, "catalog")[-3:] == [
        "UPDATE_IN_PROGRESS",
        "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
        "UPDATE_COMPLETE",
    ]

    code, message = _error(lambda: demo.update("catalog", "1.1.0"))
    assert (code, message) == ("ValidationError", "No updates are to be performed.")


def test_broken_image_with_breaker_fails_the_service_and_rolls_the_stack_back(demo: Demo) -> None:
    """With the circuit breaker on, an update to a `fail-` image makes the Service resource
    UPDATE_FAILED with CloudFormation's breaker reason; the stack goes UPDATE_ROLLBACK_IN_PROGRESS,
    puts the service back on the previous revision, deletes the new one and ends
    UPDATE_ROLLBACK_COMPLETE with the previous parameters and outputs."""
    demo.create("shipping")
    demo.settle("shipping")
    previous = demo.service("shipping-web")["taskDefinition"]

    demo.update("shipping", "fail-1.1.0")
    stack = demo.settle("shipping")

    assert stack["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    events = demo.events("shipping")
    failed = [e for e in events if e["ResourceStatus"] == "UPDATE_FAILED"]
    assert [e["LogicalResourceId"] for e in failed] == ["Service"]
    assert BREAKER_REASON in failed[0]["ResourceStatusReason"]
    rollback = [e for e in events if e["ResourceStatus"] == "UPDATE_ROLLBACK_IN_PROGRESS"]
    assert rollback[0]["ResourceStatusReason"] == (
        "The following resource(s) failed to update: [Service]. "
    )
    service = demo.service("shipping-web")
    (deployment,) = service["deployments"]
    assert (deployment["taskDefinition"], deployment["rolloutState"]) == (previous, "COMPLETED")
    assert service["taskDefinition"] == previous
    assert demo.task_definition(previous)["status"] == "ACTIVE"
    assert demo.task_definition(previous.replace(":1", ":2"))["status"] == "INACTIVE"
    images = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert images["ImageWeb"].endswith("demo/web:1.0.0")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs["TaskDefinitionArn"] == previous


def test_broken_image_without_breaker_holds_the_update(demo: Demo) -> None:
    """Without the breaker, an update to a `fail-` image keeps the Service resource and the
    stack UPDATE_IN_PROGRESS while tasks keep failing (as on AWS, for hours); the stack can
    meanwhile be neither updated nor deleted."""
    demo.create("search", breaker=False)
    demo.settle("search")

    demo.update("search", "fail-2", breaker=False)

    wait_for(lambda: demo.service("search-web")["deployments"][0].get("failedTasks", 0) >= 4)
    assert demo.stack("search")["StackStatus"] == "UPDATE_IN_PROGRESS"
    assert _statuses(demo.events("search"), "Service")[-1] == "UPDATE_IN_PROGRESS"
    assert _error(lambda: demo.cf.delete_stack(StackName="search")) == (
        "ValidationError",
        "Stack [search] cannot be deleted while in status UPDATE_IN_PROGRESS",
    )


def test_target_group_without_load_balancer_fails_the_create_and_rolls_back(demo: Demo) -> None:
    """A link to a target group that no load balancer uses is not an API error: the Service
    resource is CREATE_FAILED with ECS's message, the stack rolls back (the task definition is
    deregistered) to ROLLBACK_COMPLETE, can then not be updated nor created again, and can be
    deleted."""
    orphan = demo.elbv2.create_target_group(
        Name="orphan", Protocol="HTTP", Port=8080, VpcId=demo.vpc, TargetType="ip"
    )["TargetGroups"][0]["TargetGroupArn"]
    stack_id = demo.create("reports", TargetGroup0Arn=orphan)

    stack = demo.settle("reports")

    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    events = demo.events("reports")
    (failed,) = [e for e in events if e["ResourceStatus"] == "CREATE_FAILED"]
    assert failed["LogicalResourceId"] == "Service"
    assert (
        f"The target group with targetGroupArn {orphan} does not have an associated load balancer."
        in failed["ResourceStatusReason"]
    )
    assert failed["ResourceStatusReason"].startswith(
        'Resource handler returned message: "Invalid request provided: '
    )
    assert _statuses(events, "reports")[1] == "ROLLBACK_IN_PROGRESS"
    assert _statuses(events, "TaskDefinition")[-2:] == ["DELETE_IN_PROGRESS", "DELETE_COMPLETE"]
    assert _statuses(events, "Service")[-1] == "DELETE_COMPLETE"
    definition = demo.task_definition("reports:1")
    assert definition["status"] == "INACTIVE"

    code, message = _error(lambda: demo.update("reports", "1.1.0"))
    assert (code, message) == (
        "ValidationError",
        f"Stack:{stack_id} is in ROLLBACK_COMPLETE state and can not be updated.",
    )
    code, message = _error(lambda: demo.create("reports"))
    assert (code, message) == ("AlreadyExistsException", "Stack [reports] already exists")

    demo.cf.delete_stack(StackName="reports", ClientRequestToken="delete-reports")
    assert demo.settle(stack_id)["StackStatus"] == "DELETE_COMPLETE"
    assert demo.events(stack_id)[-1]["ClientRequestToken"] == "delete-reports"


def test_invalid_fargate_size_fails_the_task_definition_resource(demo: Demo) -> None:
    """A Fargate cpu/memory pair Fargate does not offer makes the TaskDefinition resource
    CREATE_FAILED with ECS's ClientException message; the stack ends ROLLBACK_COMPLETE."""
    demo.cf.create_stack(
        StackName="sizes",
        TemplateBody=json.dumps(template("sizes", memory="512")),
        Parameters=demo.parameters("1.0.0"),
    )

    assert demo.settle("sizes")["StackStatus"] == "ROLLBACK_COMPLETE"
    (failed,) = [e for e in demo.events("sizes") if e["ResourceStatus"] == "CREATE_FAILED"]
    assert failed["LogicalResourceId"] == "TaskDefinition"
    assert (
        "No Fargate configuration exists for given values: 512 CPU, 512 memory."
        in (failed["ResourceStatusReason"])
    )


def test_delete_stack_removes_the_service_and_task_definition_and_keeps_the_log_group(
    demo: Demo,
) -> None:
    """DeleteStack goes DELETE_IN_PROGRESS → DELETE_COMPLETE: the service is scaled in and
    deleted, the revision deregistered, the log group (DeletionPolicy Retain) DELETE_SKIPPED and
    kept; the stack is then found by id only, and by name is "Stack with id NAME does not
    exist"."""
    stack_id = demo.create("audit")
    demo.settle("audit")
    definition = demo.service("audit-web")["taskDefinition"]

    demo.cf.delete_stack(StackName="audit")
    assert demo.stack(stack_id)["StackStatus"] == "DELETE_IN_PROGRESS"
    wait_for(lambda: demo.stack(stack_id)["StackStatus"] == "DELETE_COMPLETE", interval=0.1)

    service = demo.service("audit-web")
    assert service["status"] == "INACTIVE"
    assert service["runningCount"] == 0
    assert demo.task_definition(definition)["status"] == "INACTIVE"
    assert _statuses(demo.events(stack_id), "LogGroup")[-1] == "DELETE_SKIPPED"
    groups = demo.logs.describe_log_groups(logGroupNamePrefix="/conveyor/demo/audit")
    assert [g["logGroupName"] for g in groups["logGroups"]] == ["/conveyor/demo/audit"]
    assert _error(lambda: demo.stack("audit")) == (
        "ValidationError",
        "Stack with id audit does not exist",
    )
    deleted = demo.cf.list_stacks(StackStatusFilter=["DELETE_COMPLETE"])["StackSummaries"]
    assert stack_id in {s["StackId"] for s in deleted}
    demo.cf.delete_stack(StackName="audit")  # deleting again is no error, as on AWS


def test_stack_requests_are_checked_as_aws_checks_them(demo: Demo) -> None:
    """Bad names, unknown stacks, missing or unknown parameters, values outside their
    constraints, unknown resource types and unresolved references are refused by the API itself
    with AWS's ValidationError messages; so is, saying so, whatever the local AWS does not
    simulate (other intrinsic functions, parameter types, request parameters and actions)."""
    body = json.dumps(template("checks"))
    parameters = demo.parameters("1.0.0")

    def create(name: str, body: str = body, params: Any = parameters, **extra: Any) -> str:
        return _error(
            lambda: demo.cf.create_stack(
                StackName=name, TemplateBody=body, Parameters=params, **extra
            )
        )[1]

    assert create("bad_name").endswith(
        "Member must satisfy regular expression pattern: [a-zA-Z][-a-zA-Z0-9]*"
    )
    assert create("a" * 129).endswith("Member must have length less than or equal to 128")
    assert create("missing", params=parameters[1:]) == "Parameters: [ImageWeb] must have values"
    assert (
        create("unknown", params=[*parameters, {"ParameterKey": "X", "ParameterValue": "1"}])
        == "Parameters: [X] do not exist in the template"
    )
    assert create("pattern", params=demo.parameters("1.0.0", TargetGroup0Arn="demo-web")) == (
        f"Parameter 'TargetGroup0Arn' must match pattern {TARGET_GROUP_PATTERN}"
    )
    assert create("short", params=demo.parameters("1.0.0", ImageWeb="")) == (
        "Parameter 'ImageWeb' must contain at least 1 characters"
    )
    unknown_type = {"Resources": {"Queue": {"Type": "AWS::Nope::Queue"}}}
    assert create("types", json.dumps(unknown_type), []) == (
        "Template format error: Unrecognized resource types: [AWS::Nope::Queue]"
    )
    dangling = {
        "Resources": {
            "Logs": {
                "Type": "AWS::Logs::LogGroup",
                "Properties": {"LogGroupName": {"Ref": "Nowhere"}},
            }
        }
    }
    assert create("dangling", json.dumps(dangling), []) == (
        "Template format error: Unresolved resource dependencies [Nowhere] in the Resources "
        "block of the template"
    )
    assert _error(lambda: demo.stack("nope")) == (
        "ValidationError",
        "Stack with id nope does not exist",
    )

    properties = {"LogGroupName": {"Fn::Sub": "/${AWS::StackName}"}}
    sub = {"Resources": {"Logs": {"Type": "AWS::Logs::LogGroup", "Properties": properties}}}
    assert create("sub", json.dumps(sub), []) == (
        "Template format error: intrinsic functions [Fn::Sub] not supported by the local AWS "
        "(supported: Ref, Fn::GetAtt)"
    )
    number = {
        "Parameters": {"Count": {"Type": "Number"}},
        "Resources": {"Logs": {"Type": "AWS::Logs::LogGroup"}},
    }
    assert create("number", json.dumps(number), []).startswith(
        "Template format error: type of parameter Count [Number] not supported by the local AWS"
    )
    assert create("rollback", DisableRollback=True) == (
        "DisableRollback: not supported by the local AWS's CloudFormation"
    )
    assert _error(lambda: demo.cf.validate_template(TemplateBody=body)) == (
        "ValidationError",
        "ValidateTemplate is not supported by the local AWS's CloudFormation",
    )
    assert not [s for s in demo.cf.list_stacks()["StackSummaries"] if s["StackName"] == "checks"]


def test_reset_forgets_every_stack(aws: Aws) -> None:
    """POST /_localaws/reset clears the stacks along with moto's world."""
    cf = client(aws.url, "cloudformation")
    template = {"Resources": {"Logs": {"Type": "AWS::Logs::LogGroup"}}}
    cf.create_stack(StackName="scratch", TemplateBody=json.dumps(template))
    wait_for(
        lambda: (
            cf.describe_stacks(StackName="scratch")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
        )
    )

    assert aws.control("POST", "reset")[0] == 200

    assert cf.describe_stacks()["Stacks"] == []
    assert cf.list_stacks()["StackSummaries"] == []


def test_change_sets_show_the_diff_and_can_be_executed_or_deleted(demo: Demo) -> None:
    """A change set for a new image lists the TaskDefinition as replaced (caused by the image
    parameter) and the Service as modified in place through a reference known only after apply;
    executing it updates the stack. A change set without changes FAILS with AWS's reason and can
    be deleted; a CREATE change set makes a REVIEW_IN_PROGRESS stack whose resources are all
    added, and executing it creates them."""
    demo.create("pricing")
    demo.settle("pricing")
    body = json.dumps(template("pricing"), sort_keys=True)

    demo.cf.create_change_set(
        StackName="pricing",
        ChangeSetName="new-image",
        TemplateBody=body,
        Parameters=demo.parameters("1.1.0"),
        Tags=STACK_TAGS,
    )
    described = demo.cf.describe_change_set(StackName="pricing", ChangeSetName="new-image")
    assert (described["Status"], described["ExecutionStatus"]) == ("CREATE_COMPLETE", "AVAILABLE")
    changes = {
        c["ResourceChange"]["LogicalResourceId"]: c["ResourceChange"] for c in described["Changes"]
    }
    assert set(changes) == {"TaskDefinition", "Service"}
    definition, service = changes["TaskDefinition"], changes["Service"]
    assert (definition["Action"], definition["Replacement"]) == ("Modify", "True")
    assert definition["Details"] == [
        {
            "Target": {
                "Attribute": "Properties",
                "Name": "ContainerDefinitions",
                "RequiresRecreation": "Always",
            },
            "Evaluation": "Static",
            "ChangeSource": "ParameterReference",
            "CausingEntity": "ImageWeb",
        }
    ]
    assert (service["Action"], service["Replacement"]) == ("Modify", "False")
    assert service["Details"] == [
        {
            "Target": {
                "Attribute": "Properties",
                "Name": "TaskDefinition",
                "RequiresRecreation": "Never",
            },
            "Evaluation": "Dynamic",
            "ChangeSource": "ResourceReference",
            "CausingEntity": "TaskDefinition",
        }
    ]
    assert demo.stack("pricing")["StackStatus"] == "CREATE_COMPLETE"

    demo.cf.execute_change_set(StackName="pricing", ChangeSetName="new-image")
    assert demo.settle("pricing")["StackStatus"] == "UPDATE_COMPLETE"
    assert demo.service("pricing-web")["taskDefinition"].endswith("task-definition/pricing:2")
    executed = demo.cf.describe_change_set(StackName="pricing", ChangeSetName="new-image")
    assert executed["ExecutionStatus"] == "EXECUTE_COMPLETE"

    demo.cf.create_change_set(
        StackName="pricing",
        ChangeSetName="same",
        TemplateBody=body,
        Parameters=demo.parameters("1.1.0"),
        Tags=STACK_TAGS,
    )
    same = demo.cf.describe_change_set(StackName="pricing", ChangeSetName="same")
    assert (same["Status"], same["ExecutionStatus"]) == ("FAILED", "UNAVAILABLE")
    assert same["StatusReason"] == (
        "The submitted information didn't contain changes. Submit different information to "
        "create a change set."
    )
    demo.cf.delete_change_set(StackName="pricing", ChangeSetName="same")
    assert _error(
        lambda: demo.cf.describe_change_set(StackName="pricing", ChangeSetName="same")
    ) == ("ChangeSetNotFound", "ChangeSet [same] does not exist")

    created = demo.cf.create_change_set(
        StackName="fresh",
        ChangeSetName="first",
        ChangeSetType="CREATE",
        TemplateBody=json.dumps(template("fresh"), sort_keys=True),
        Parameters=demo.parameters("1.0.0"),
        Tags=STACK_TAGS,
    )
    assert demo.stack("fresh")["StackStatus"] == "REVIEW_IN_PROGRESS"
    first = demo.cf.describe_change_set(ChangeSetName=created["Id"])
    assert [
        (c["ResourceChange"]["Action"], c["ResourceChange"]["LogicalResourceId"])
        for c in first["Changes"]
    ] == [("Add", "LogGroup"), ("Add", "TaskDefinition"), ("Add", "Service")]
    demo.cf.execute_change_set(ChangeSetName=created["Id"])
    assert demo.settle("fresh")["StackStatus"] == "CREATE_COMPLETE"
    assert demo.service("fresh-web")["deployments"][0]["rolloutState"] == "COMPLETED"
