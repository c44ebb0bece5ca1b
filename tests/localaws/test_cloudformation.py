"""CloudFormation stacks of Fargate services behave as on AWS, seen through boto3 only.

One seeded local AWS for the module (cluster ``demo``, its VPC, the ``demo-web`` target group
behind an ALB, ECR images); each test uses its own stack and service names.
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

TEMPLATE: dict[str, Any] = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Description": "A Fargate service behind the demo ALB",
    "Parameters": {
        "Image": {"Type": "String"},
        "Subnets": {"Type": "List<AWS::EC2::Subnet::Id>"},
        "SecurityGroup": {"Type": "AWS::EC2::SecurityGroup::Id"},
        "TargetGroup": {"Type": "String"},
        "DesiredCount": {"Type": "Number", "Default": 2},
        "Breaker": {"Type": "String", "Default": "true", "AllowedValues": ["true", "false"]},
    },
    "Resources": {
        "LogGroup": {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": {"Fn::Sub": "/ecs/${AWS::StackName}"},
                "RetentionInDays": 7,
            },
        },
        "TaskDefinition": {
            "Type": "AWS::ECS::TaskDefinition",
            "Properties": {
                "Family": {"Ref": "AWS::StackName"},
                "Cpu": "512",
                "Memory": "1024",
                "NetworkMode": "awsvpc",
                "RequiresCompatibilities": ["FARGATE"],
                "ExecutionRoleArn": {
                    "Fn::Sub": "arn:aws:iam::${AWS::AccountId}:role/demo-task-execution"
                },
                "RuntimePlatform": {"CpuArchitecture": "X86_64", "OperatingSystemFamily": "LINUX"},
                "EphemeralStorage": {"SizeInGiB": 30},
                "ContainerDefinitions": [
                    {
                        "Name": "web",
                        "Image": {"Ref": "Image"},
                        "Essential": True,
                        "MemoryReservation": 512,
                        "PortMappings": [{"ContainerPort": 8080, "Protocol": "tcp"}],
                        "Environment": [{"Name": "APP_ENV", "Value": "demo"}],
                        "Secrets": [
                            {
                                "Name": "DB_PASSWORD",
                                "ValueFrom": {
                                    "Fn::Sub": "arn:aws:ssm:${AWS::Region}:${AWS::AccountId}:"
                                    "parameter/demo/db-password"
                                },
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
                "ServiceName": {"Fn::Sub": "${AWS::StackName}-web"},
                "LaunchType": "FARGATE",
                "TaskDefinition": {"Ref": "TaskDefinition"},
                "DesiredCount": {"Ref": "DesiredCount"},
                "NetworkConfiguration": {
                    "AwsvpcConfiguration": {
                        "Subnets": {"Ref": "Subnets"},
                        "SecurityGroups": [{"Ref": "SecurityGroup"}],
                        "AssignPublicIp": "DISABLED",
                    }
                },
                "LoadBalancers": [
                    {
                        "TargetGroupArn": {"Ref": "TargetGroup"},
                        "ContainerName": "web",
                        "ContainerPort": 8080,
                    }
                ],
                "HealthCheckGracePeriodSeconds": 30,
                "DeploymentConfiguration": {
                    "DeploymentCircuitBreaker": {
                        "Enable": {"Ref": "Breaker"},
                        "Rollback": {"Ref": "Breaker"},
                    },
                    "MaximumPercent": 200,
                    "MinimumHealthyPercent": 100,
                },
                "PropagateTags": "SERVICE",
                "EnableECSManagedTags": True,
                "Tags": [{"Key": "component", "Value": "service"}],
            },
        },
    },
    "Outputs": {
        "ServiceName": {"Value": {"Fn::GetAtt": ["Service", "Name"]}},
        "TaskDefinitionArn": {"Value": {"Ref": "TaskDefinition"}},
        "LogGroupArn": {"Value": {"Fn::GetAtt": "LogGroup.Arn"}},
    },
}
STACK_TAGS = [{"Key": "team", "Value": "payments"}]


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
    registry: str

    def parameters(self, image: str, **overrides: str) -> list[dict[str, str]]:
        """Stack parameters for ``image`` (a tag of demo/web) in the demo network."""
        values = {
            "Image": f"{self.registry}/demo/web:{image}",
            "Subnets": ",".join(self.subnets),
            "SecurityGroup": self.security_group,
            "TargetGroup": self.target_group,
            **overrides,
        }
        return [{"ParameterKey": key, "ParameterValue": value} for key, value in values.items()]

    def create(self, name: str, image: str = "1.0.0", **overrides: str) -> str:
        """CreateStack of TEMPLATE; returns the stack id (the stack is still in progress)."""
        stack_id: str = self.cf.create_stack(
            StackName=name,
            TemplateBody=json.dumps(TEMPLATE),
            Parameters=self.parameters(image, **overrides),
            Tags=STACK_TAGS,
        )["StackId"]
        return stack_id

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
            registry="123456789012.dkr.ecr.us-east-1.amazonaws.com",
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
        resources = demo.cf.describe_stack_resources(StackName="orders")["StackResources"]
        service_resource = [r for r in resources if r["LogicalResourceId"] == "Service"]
        if service_resource and service_resource[0]["PhysicalResourceId"]:
            deployment = demo.service("orders-web")["deployments"][0]
            if deployment["rolloutState"] == "IN_PROGRESS":
                assert service_resource[0]["ResourceStatus"] == "CREATE_IN_PROGRESS"
                seen_rolling = True
        time.sleep(0.1)

    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert seen_rolling
    service = demo.service("orders-web")
    (deployment,) = service["deployments"]
    assert (deployment["status"], deployment["rolloutState"]) == ("PRIMARY", "COMPLETED")
    assert (service["runningCount"], service["desiredCount"]) == (2, 2)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs["ServiceName"] == "orders-web"
    assert outputs["TaskDefinitionArn"] == service["taskDefinition"]
    assert outputs["LogGroupArn"] == ("arn:aws:logs:us-east-1:123456789012:log-group:/ecs/orders:*")
    assert stack["Tags"] == STACK_TAGS
    assert {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}[
        "DesiredCount"
    ] == "2"


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
    assert definition["ephemeralStorage"] == {"sizeInGiB": 30}
    (container,) = definition["containerDefinitions"]
    assert container["image"] == f"{demo.registry}/demo/web:1.0.0"
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
            "awslogs-group": "/ecs/ledger",
            "awslogs-region": "us-east-1",
            "awslogs-stream-prefix": "web",
        },
    }
    assert {(t["key"], t["value"]) for t in definition["tags"]} == {
        ("component", "task"),
        ("team", "payments"),
    }
    (group,) = demo.logs.describe_log_groups(logGroupNamePrefix="/ecs/ledger")["logGroups"]
    assert group["retentionInDays"] == 7


def test_stack_events_and_resources_are_resource_level(demo: Demo) -> None:
    """Each resource has CREATE_IN_PROGRESS (without, then with its physical id) and
    CREATE_COMPLETE events in dependency order, between the stack's own events; the resource
    APIs and GetTemplate answer for the stack."""
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
    service_event = initiated[-1]
    assert service_event["ResourceType"] == "AWS::ECS::Service"
    assert service_event["PhysicalResourceId"].endswith(":service/demo/billing-web")
    assert json.loads(service_event["ResourceProperties"])["DesiredCount"] == "2"

    resources = demo.cf.describe_stack_resources(StackName="billing")["StackResources"]
    assert {r["LogicalResourceId"]: r["ResourceStatus"] for r in resources} == {
        "LogGroup": "CREATE_COMPLETE",
        "TaskDefinition": "CREATE_COMPLETE",
        "Service": "CREATE_COMPLETE",
    }
    summaries = demo.cf.list_stack_resources(StackName="billing")["StackResourceSummaries"]
    assert {s["LogicalResourceId"]: s["PhysicalResourceId"] for s in summaries}["LogGroup"] == (
        "/ecs/billing"
    )
    detail = demo.cf.describe_stack_resource(StackName="billing", LogicalResourceId="Service")
    assert detail["StackResourceDetail"]["ResourceType"] == "AWS::ECS::Service"
    template = demo.cf.get_template(StackName="billing")["TemplateBody"]
    assert template == TEMPLATE
    listed = demo.cf.list_stacks(StackStatusFilter=["CREATE_COMPLETE"])["StackSummaries"]
    assert stack_id in {s["StackId"] for s in listed}


def test_update_with_new_image_rolls_out_a_complete_new_revision(demo: Demo) -> None:
    """UpdateStack with a new image registers a new revision with every other property unchanged;
    the service rolls out to it (old and new deployments side by side), the old revision is
    deregistered in UPDATE_COMPLETE_CLEANUP_IN_PROGRESS, and the stack is UPDATE_COMPLETE. The
    same update again is refused with "No updates are to be performed.", and so is any update
    while one is in progress."""
    demo.create("catalog")
    demo.settle("catalog")
    first = demo.service("catalog-web")["taskDefinition"]

    demo.cf.update_stack(
        StackName="catalog",
        TemplateBody=json.dumps(TEMPLATE),
        Parameters=demo.parameters("1.1.0"),
    )
    code, message = _error(
        lambda: demo.cf.update_stack(
            StackName="catalog", UsePreviousTemplate=True, Parameters=demo.parameters("1.2.0")
        )
    )
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
    old, new = demo.task_definition(first), demo.task_definition(second)
    assert new["containerDefinitions"][0]["image"] == f"{demo.registry}/demo/web:1.1.0"
    unchanged = ("cpu", "memory", "networkMode", "requiresCompatibilities", "executionRoleArn")
    assert {k: new[k] for k in unchanged} == {k: old[k] for k in unchanged}
    strip = ("image",)
    assert [
        {k: v for k, v in c.items() if k not in strip} for c in new["containerDefinitions"]
    ] == [{k: v for k, v in c.items() if k not in strip} for c in old["containerDefinitions"]]
    assert old["status"] == "INACTIVE"
    statuses = [
        e["ResourceStatus"] for e in demo.events("catalog") if e["LogicalResourceId"] == "catalog"
    ]
    assert statuses[-3:] == [
        "UPDATE_IN_PROGRESS",
        "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
        "UPDATE_COMPLETE",
    ]

    code, message = _error(
        lambda: demo.cf.update_stack(
            StackName="catalog",
            TemplateBody=json.dumps(TEMPLATE),
            Parameters=demo.parameters("1.1.0"),
        )
    )
    assert (code, message) == ("ValidationError", "No updates are to be performed.")


def test_broken_image_with_breaker_fails_the_service_and_rolls_the_stack_back(demo: Demo) -> None:
    """With the circuit breaker on, an update to a `fail-` image makes the Service resource
    UPDATE_FAILED with CloudFormation's breaker reason; the stack goes UPDATE_ROLLBACK_IN_PROGRESS,
    puts the service back on the previous revision, deletes the new one and ends
    UPDATE_ROLLBACK_COMPLETE with the previous parameters."""
    demo.create("shipping")
    demo.settle("shipping")
    previous = demo.service("shipping-web")["taskDefinition"]

    demo.cf.update_stack(
        StackName="shipping",
        UsePreviousTemplate=True,
        Parameters=demo.parameters("fail-1.1.0"),
    )
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
    assert images["Image"].endswith("demo/web:1.0.0")
    resources = demo.cf.describe_stack_resources(StackName="shipping")["StackResources"]
    assert {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources}[
        "TaskDefinition"
    ] == previous


def test_broken_image_without_breaker_holds_the_update_until_cancelled(demo: Demo) -> None:
    """Without the breaker, an update to a `fail-` image keeps the stack UPDATE_IN_PROGRESS while
    tasks keep failing (as on AWS, for hours); CancelUpdateStack fails the Service with "Resource
    update cancelled" and rolls back to the previous revision."""
    demo.create("search", Breaker="false")
    demo.settle("search")
    previous = demo.service("search-web")["taskDefinition"]
    demo.cf.update_stack(
        StackName="search",
        UsePreviousTemplate=True,
        Parameters=demo.parameters("fail-2", Breaker="false"),
    )

    wait_for(lambda: demo.service("search-web")["deployments"][0].get("failedTasks", 0) >= 4)
    assert demo.stack("search")["StackStatus"] == "UPDATE_IN_PROGRESS"
    demo.cf.cancel_update_stack(StackName="search")
    stack = demo.settle("search")

    assert stack["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    events = demo.events("search")
    failed = [e for e in events if e["ResourceStatus"] == "UPDATE_FAILED"]
    assert [(e["LogicalResourceId"], e["ResourceStatusReason"]) for e in failed] == [
        ("Service", "Resource update cancelled")
    ]
    service = demo.service("search-web")
    (deployment,) = service["deployments"]
    assert (deployment["taskDefinition"], deployment["rolloutState"]) == (previous, "COMPLETED")


def test_target_group_without_load_balancer_fails_the_create_and_rolls_back(demo: Demo) -> None:
    """A link to a target group that no load balancer uses is not an API error: the Service
    resource is CREATE_FAILED with ECS's message, the stack rolls back (the task definition is
    deregistered) to ROLLBACK_COMPLETE, can then not be updated nor created again, and can be
    deleted."""
    orphan = demo.elbv2.create_target_group(
        Name="orphan", Protocol="HTTP", Port=8080, VpcId=demo.vpc, TargetType="ip"
    )["TargetGroups"][0]["TargetGroupArn"]
    stack_id = demo.create("reports", TargetGroup=orphan)

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

    code, message = _error(
        lambda: demo.cf.update_stack(
            StackName="reports", UsePreviousTemplate=True, Parameters=demo.parameters("1.1.0")
        )
    )
    assert (code, message) == (
        "ValidationError",
        f"Stack:{stack_id} is in ROLLBACK_COMPLETE state and can not be updated.",
    )
    code, message = _error(lambda: demo.create("reports"))
    assert (code, message) == ("AlreadyExistsException", "Stack [reports] already exists")

    demo.cf.delete_stack(StackName="reports")
    assert demo.settle(stack_id)["StackStatus"] == "DELETE_COMPLETE"


def test_invalid_fargate_size_fails_the_task_definition_resource(demo: Demo) -> None:
    """A Fargate cpu/memory pair Fargate does not offer makes the TaskDefinition resource
    CREATE_FAILED with ECS's ClientException message; the stack ends ROLLBACK_COMPLETE."""
    template = json.loads(json.dumps(TEMPLATE))
    template["Resources"]["TaskDefinition"]["Properties"]["Memory"] = "512"
    demo.cf.create_stack(
        StackName="sizes", TemplateBody=json.dumps(template), Parameters=demo.parameters("1.0.0")
    )

    assert demo.settle("sizes")["StackStatus"] == "ROLLBACK_COMPLETE"
    (failed,) = [e for e in demo.events("sizes") if e["ResourceStatus"] == "CREATE_FAILED"]
    assert failed["LogicalResourceId"] == "TaskDefinition"
    assert (
        "No Fargate configuration exists for given values: 512 CPU, 512 memory."
        in (failed["ResourceStatusReason"])
    )


def test_delete_stack_removes_the_service_task_definition_and_log_group(demo: Demo) -> None:
    """DeleteStack goes DELETE_IN_PROGRESS → DELETE_COMPLETE: the service is scaled in and
    deleted, the revision deregistered, the log group deleted; the stack is then found by id
    only, and by name is "Stack with id NAME does not exist"."""
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
    assert demo.logs.describe_log_groups(logGroupNamePrefix="/ecs/audit")["logGroups"] == []
    assert _error(lambda: demo.stack("audit")) == (
        "ValidationError",
        "Stack with id audit does not exist",
    )
    deleted = demo.cf.list_stacks(StackStatusFilter=["DELETE_COMPLETE"])["StackSummaries"]
    assert stack_id in {s["StackId"] for s in deleted}
    demo.cf.delete_stack(StackName="audit")  # deleting again is no error, as on AWS


def test_stack_requests_are_checked_as_aws_checks_them(demo: Demo) -> None:
    """Bad names, unknown stacks, missing or unknown parameters, unknown resource types and
    unresolved references are refused by the API itself with AWS's ValidationError messages;
    ValidateTemplate describes the parameters."""
    body = json.dumps(TEMPLATE)
    parameters = demo.parameters("1.0.0")

    def create(name: str, template: str = body, params: Any = parameters) -> tuple[str, str]:
        return _error(
            lambda: demo.cf.create_stack(StackName=name, TemplateBody=template, Parameters=params)
        )

    assert create("bad_name")[1].endswith(
        "Member must satisfy regular expression pattern: [a-zA-Z][-a-zA-Z0-9]*"
    )
    assert create("a" * 129)[1].endswith("Member must have length less than or equal to 128")
    assert create("missing", params=parameters[1:]) == (
        "ValidationError",
        "Parameters: [Image] must have values",
    )
    assert (
        create("unknown", params=[*parameters, {"ParameterKey": "X", "ParameterValue": "1"}])[1]
        == "Parameters: [X] do not exist in the template"
    )
    assert create("breaker", params=demo.parameters("1.0.0", Breaker="maybe")) == (
        "ValidationError",
        "Parameter 'Breaker' must be one of AllowedValues",
    )
    unknown_type = {"Resources": {"Queue": {"Type": "AWS::Nope::Queue"}}}
    assert create("types", json.dumps(unknown_type))[1] == (
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
    assert create("dangling", json.dumps(dangling))[1] == (
        "Template format error: Unresolved resource dependencies [Nowhere] in the Resources "
        "block of the template"
    )
    assert _error(lambda: demo.stack("nope")) == (
        "ValidationError",
        "Stack with id nope does not exist",
    )
    validated = demo.cf.validate_template(TemplateBody=body)
    assert validated["Description"] == TEMPLATE["Description"]
    assert {p["ParameterKey"]: p.get("DefaultValue") for p in validated["Parameters"]} == {
        "Image": None,
        "Subnets": None,
        "SecurityGroup": None,
        "TargetGroup": None,
        "DesiredCount": "2",
        "Breaker": "true",
    }


YAML_TEMPLATE = """
AWSTemplateFormatVersion: 2010-09-09
Parameters:
  Env:
    Type: String
    AllowedValues: [prod, dev]
Conditions:
  IsProd: !Equals [!Ref Env, prod]
Resources:
  Cluster:
    Type: AWS::ECS::Cluster
    Properties:
      ClusterName: !Sub "${AWS::StackName}-${Env}"
      ClusterSettings:
        - Name: containerInsights
          Value: !If [IsProd, enabled, disabled]
  Logs:
    Type: AWS::Logs::LogGroup
    Condition: IsProd
    Properties:
      LogGroupName: !Join ["/", ["", ecs, !Ref "AWS::StackName"]]
      RetentionInDays: !If [IsProd, 30, !Ref "AWS::NoValue"]
Outputs:
  ClusterArn:
    Value: !GetAtt Cluster.Arn
  Zone:
    Value: !Select [1, !Split [",", "a,b,c"]]
"""


def test_yaml_template_with_short_forms_and_conditions(demo: Demo) -> None:
    """YAML templates with short-form intrinsics (!Ref, !Sub, !Join, !If, !Equals, !GetAtt,
    !Select, !Split), Conditions and AWS::NoValue work: a condition that is false leaves its
    resource out, and UpdateStack that makes it true creates it."""
    demo.cf.create_stack(
        StackName="platform",
        TemplateBody=YAML_TEMPLATE,
        Parameters=[{"ParameterKey": "Env", "ParameterValue": "dev"}],
    )
    stack = demo.settle("platform")

    assert stack["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs == {
        "ClusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/platform-dev",
        "Zone": "b",
    }
    resources = demo.cf.describe_stack_resources(StackName="platform")["StackResources"]
    assert [r["LogicalResourceId"] for r in resources] == ["Cluster"]
    (cluster,) = demo.ecs.describe_clusters(clusters=["platform-dev"])["clusters"]
    assert cluster["status"] == "ACTIVE"

    demo.cf.update_stack(
        StackName="platform",
        UsePreviousTemplate=True,
        Parameters=[{"ParameterKey": "Env", "ParameterValue": "prod"}],
    )
    assert demo.settle("platform")["StackStatus"] == "UPDATE_COMPLETE"
    (group,) = demo.logs.describe_log_groups(logGroupNamePrefix="/ecs/platform")["logGroups"]
    assert group["retentionInDays"] == 30
    # A new ClusterName replaces the cluster: the new one exists, the old one is deleted.
    (cluster,) = demo.ecs.describe_clusters(clusters=["platform-prod"])["clusters"]
    assert cluster["status"] == "ACTIVE"
    old = demo.ecs.describe_clusters(clusters=["platform-dev"])
    assert [c["status"] for c in old["clusters"]] in ([], ["INACTIVE"])


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


def test_change_sets_show_the_diff_and_execute_it(demo: Demo) -> None:
    """A change set for a new image lists the TaskDefinition as replaced (caused by the Image
    parameter) and the Service as modified in place through a reference known only after apply;
    executing it updates the stack. A change set without changes FAILS with AWS's reason, and a
    CREATE change set makes a REVIEW_IN_PROGRESS stack whose resources are all added."""
    demo.create("pricing")
    demo.settle("pricing")

    demo.cf.create_change_set(
        StackName="pricing",
        ChangeSetName="new-image",
        UsePreviousTemplate=True,
        Parameters=demo.parameters("1.1.0"),
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
            "CausingEntity": "Image",
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
        UsePreviousTemplate=True,
        Parameters=demo.parameters("1.1.0"),
    )
    same = demo.cf.describe_change_set(StackName="pricing", ChangeSetName="same")
    assert (same["Status"], same["ExecutionStatus"]) == ("FAILED", "UNAVAILABLE")
    assert same["StatusReason"] == (
        "The submitted information didn't contain changes. Submit different information to "
        "create a change set."
    )

    created = demo.cf.create_change_set(
        StackName="fresh",
        ChangeSetName="first",
        ChangeSetType="CREATE",
        TemplateBody=YAML_TEMPLATE,
        Parameters=[{"ParameterKey": "Env", "ParameterValue": "dev"}],
    )
    assert demo.stack("fresh")["StackStatus"] == "REVIEW_IN_PROGRESS"
    first = demo.cf.describe_change_set(ChangeSetName=created["Id"])
    assert [
        (c["ResourceChange"]["Action"], c["ResourceChange"]["LogicalResourceId"])
        for c in first["Changes"]
    ] == [("Add", "Cluster")]
    demo.cf.execute_change_set(ChangeSetName=created["Id"])
    assert demo.settle("fresh")["StackStatus"] == "CREATE_COMPLETE"
