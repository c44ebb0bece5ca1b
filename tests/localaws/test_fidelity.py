"""The local AWS answers and accepts what botocore's model of each API says, for every operation
Conveyor and the peer tools call.

Answers are read as sent on the wire (botocore's parsers drop members they do not know, so a
parsed answer would hide them) and checked against the operation's output shape. Requests that
depart from the input shape, or that carry a member the local AWS does not model, are refused by
name. See docs/localaws-fidelity.md.
"""

from __future__ import annotations

import datetime
import json
from collections import defaultdict
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from localaws.fidelity import MODELLED, answer_errors, service_model, xml_answer_errors
from localaws.seed import seed_demo
from tests.localaws.conftest import Aws, client, wait_for
from tests.localaws.test_cloudformation import STACK_TAGS, template

ROLE = "arn:aws:iam::123456789012:role/ecs-hooks"
LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:hook"
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
# The operations Conveyor and the peer tools call, per service (botocore's service names).
CALLED: dict[str, set[str]] = {
    "ecs": set(MODELLED["ecs"]),
    "events": set(MODELLED["events"]),
    "ecr": set(MODELLED["ecr"]),
    "elbv2": set(MODELLED["elbv2"]),
    "cloudformation": {
        "CreateStack",
        "UpdateStack",
        "DeleteStack",
        "DescribeStacks",
        "DescribeStackEvents",
        "ListStacks",
        "CreateChangeSet",
        "DescribeChangeSet",
        "DeleteChangeSet",
        "ExecuteChangeSet",
    },
    "ec2": {"DescribeSubnets", "DescribeSecurityGroups"},
    "sts": {"GetCallerIdentity"},
}


class Recorder:
    """Clients on the local AWS that keep every successful answer of a called operation."""

    def __init__(self, url: str) -> None:
        self.answers: dict[tuple[str, str], list[bytes]] = defaultdict(list)
        self.clients = {service: client(url, service) for service in CALLED}
        for service, made in self.clients.items():
            made.meta.events.register("before-parse", self._keeper(service))

    def _keeper(self, service: str) -> Any:
        def keep(operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
            if response_dict["status_code"] == 200 and operation_model.name in CALLED[service]:
                self.answers[(service, operation_model.name)].append(response_dict["body"])

        return keep

    def __getattr__(self, service: str) -> Any:
        return self.clients[service]

    def errors(self) -> list[str]:
        """Every departure of a kept answer from its output shape."""
        found: list[str] = []
        for (service, operation), bodies in sorted(self.answers.items()):
            model = service_model(service).operation_model(operation)
            for body in bodies:
                if model.metadata["protocol"] in ("json", "rest-json"):
                    problems = answer_errors(json.loads(body or b"{}"), model.output_shape)
                else:
                    problems = xml_answer_errors(body, model)
                found += [f"{operation}{problem}" for problem in problems]
        return sorted(set(found))


def deployments(rec: Recorder, service: str) -> list[dict[str, Any]]:
    """The service's deployments, newest first, described."""
    arns = [
        d["serviceDeploymentArn"]
        for d in rec.ecs.list_service_deployments(cluster="demo", service=service)[
            "serviceDeployments"
        ]
    ]
    found: list[dict[str, Any]] = rec.ecs.describe_service_deployments(
        serviceDeploymentArns=arns[:20]
    )["serviceDeployments"]
    return found


def wait_successful(rec: Recorder, service: str) -> None:
    """Wait until the service's newest deployment is SUCCESSFUL."""
    wait_for(lambda: deployments(rec, service)[0]["status"] == "SUCCESSFUL", timeout=60)


def observe(rec: Recorder, service: str) -> None:
    """What a watcher reads during a deployment: the service, its tasks and deployments."""
    rec.ecs.describe_services(cluster="demo", services=[service], include=["TAGS"])
    tasks = rec.ecs.list_tasks(cluster="demo", serviceName=service)["taskArns"]
    if tasks:
        rec.ecs.describe_tasks(cluster="demo", tasks=tasks, include=["TAGS"])
    rec.ecs.list_tasks(cluster="demo", serviceName=service, desiredStatus="STOPPED", maxResults=100)
    found = deployments(rec, service)
    revisions = [d["targetServiceRevision"]["arn"] for d in found if "targetServiceRevision" in d]
    if revisions:
        rec.ecs.describe_service_revisions(serviceRevisionArns=revisions[:20])


def staged_service(
    rec: Recorder, made: dict[str, str], name: str, strategy: str, **extra: Any
) -> str:
    """Create a service with ``strategy`` behind the demo target group; return its revision."""
    definition = rec.ecs.describe_task_definition(taskDefinition=made["web_task_definition"])[
        "taskDefinition"
    ]
    arn: str = definition["taskDefinitionArn"]
    rec.ecs.create_service(
        cluster="demo",
        serviceName=name,
        taskDefinition=arn,
        desiredCount=2,
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": made["subnets"].split(","),
                "securityGroups": [made["security_group"]],
                "assignPublicIp": "DISABLED",
            }
        },
        loadBalancers=[
            {
                "targetGroupArn": made["target_group_arn"],
                "containerName": "web",
                "containerPort": 8080,
            }
        ],
        deploymentConfiguration={
            "strategy": strategy,
            "bakeTimeInMinutes": 0,
            "maximumPercent": 200,
            "minimumHealthyPercent": 100,
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
            **extra,
        },
        propagateTags="SERVICE",
        enableECSManagedTags=True,
        tags=[{"key": "team", "value": "web"}],
    )
    return arn


def new_revision(rec: Recorder, made: dict[str, str], tag: str) -> str:
    """Register a copy of the web task definition on ``tag``, as Conveyor does."""
    definition = rec.ecs.describe_task_definition(
        taskDefinition=made["web_task_definition"], include=["TAGS"]
    )["taskDefinition"]
    shape = service_model("ecs").operation_model("RegisterTaskDefinition").input_shape
    assert shape is not None
    keep = shape.members
    payload = {k: v for k, v in definition.items() if k in keep}
    for container in payload["containerDefinitions"]:
        container["image"] = f"{REGISTRY}/demo/web:{tag}"
    arn: str = rec.ecs.register_task_definition(**payload, tags=[{"key": "by", "value": "test"}])[
        "taskDefinition"
    ]["taskDefinitionArn"]
    return arn


def test_every_answer_matches_botocore_output_shapes(aws: Aws) -> None:
    """Each operation Conveyor and the peer tools call, driven with realistic inputs (rolling,
    BLUE_GREEN with a PAUSE hook and alarms, LINEAR and CANARY; during and after a deployment;
    stacks and change sets), answers with only members, types and enum values of botocore's
    output shape, and with every required member."""
    made = seed_demo(aws.url)
    status, _ = aws.control("POST", "config", {"minute_seconds": 0.05})
    assert status == 200
    rec = Recorder(aws.url)

    # Look-ups: identity, network, images, rules, clusters and revisions.
    rec.sts.get_caller_identity()
    rec.ec2.describe_subnets(SubnetIds=made["subnets"].split(","))
    rec.ec2.describe_security_groups(GroupIds=[made["security_group"]])
    rec.elbv2.describe_target_groups(TargetGroupArns=[made["target_group_arn"]])
    rec.elbv2.describe_target_groups(Names=["demo-web"])
    for page in rec.ecr.get_paginator("describe_images").paginate(
        registryId="123456789012", repositoryName="demo/web", filter={"tagStatus": "TAGGED"}
    ):
        assert page["imageDetails"]
    rec.events.put_rule(Name="nightly", ScheduleExpression="rate(1 day)")
    rec.events.put_targets(
        Rule="nightly",
        Targets=[
            {
                "Id": "job",
                "Arn": made["cluster_arn"],
                "RoleArn": ROLE,
                "EcsParameters": {"TaskDefinitionArn": made["api_task_definition"]},
            }
        ],
    )
    rec.events.list_rules(Limit=100)
    rec.events.list_targets_by_rule(Rule="nightly", Limit=100)
    rec.ecs.create_cluster(clusterName="other", tags=[{"key": "team", "value": "web"}])
    rec.ecs.list_clusters()
    rec.ecs.describe_clusters(clusters=["demo", "other", "missing"], include=["TAGS"])
    rec.ecs.list_services(cluster="demo")
    rec.ecs.list_services(cluster="demo", launchType="FARGATE", maxResults=1)
    rec.ecs.describe_services(cluster="demo", services=["web", "api", "missing"])
    rec.ecs.list_task_definitions(familyPrefix="web", sort="DESC", maxResults=10)
    rec.ecs.list_task_definitions(status="INACTIVE")
    web_next = new_revision(rec, made, "1.1.0")
    rec.ecs.tag_resource(resourceArn=web_next, tags=[{"key": "release", "value": "r1"}])

    # A rolling update, watched as Conveyor and ecs-deploy watch it, then a standalone task.
    rec.ecs.update_service(
        cluster="demo", service="web", taskDefinition=web_next, forceNewDeployment=False
    )
    observe(rec, "web")
    wait_for(
        lambda: (
            rec.ecs.describe_services(cluster="demo", services=["web"])["services"][0][
                "deployments"
            ][0]["rolloutState"]
            == "COMPLETED"
        )
    )
    observe(rec, "web")
    task = rec.ecs.run_task(
        cluster="demo",
        taskDefinition=made["api_task_definition"],
        count=1,
        launchType="FARGATE",
        startedBy="conveyor",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": made["subnets"].split(","),
                "securityGroups": [made["security_group"]],
            }
        },
    )["tasks"][0]["taskArn"]
    rec.ecs.describe_tasks(cluster="demo", tasks=[task])
    rec.ecs.stop_task(cluster="demo", task=task, reason="done")

    # BLUE_GREEN with alarms and a PAUSE hook: during the pause, after continuing, and stopped.
    hooks = [
        {"targetType": "PAUSE", "lifecycleStages": ["POST_SCALE_UP"]},
        {
            "hookTargetArn": LAMBDA,
            "roleArn": ROLE,
            "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
            "hookDetails": {"team": "web"},
        },
    ]
    alarms = {"alarmNames": ["web-5xx"], "enable": True, "rollback": True}
    staged_service(rec, made, "blue", "BLUE_GREEN", alarms=alarms)
    wait_for(lambda: deployments(rec, "blue")[0]["status"] == "SUCCESSFUL", timeout=60)
    configured = rec.ecs.describe_services(cluster="demo", services=["blue"])["services"][0][
        "deploymentConfiguration"
    ]
    # Hooks come with the update, as a job that adds them sends them, so that the first
    # deployment does not pause.
    hooked = {**configured, "lifecycleHooks": hooks}

    def awaiting() -> dict[str, Any] | None:
        found = deployments(rec, "blue")[0]
        waiting = [
            h for h in found.get("lifecycleHookDetails", []) if h["status"] == "AWAITING_ACTION"
        ]
        return found if waiting and found["targetServiceRevision"]["arn"] else None

    rec.ecs.update_service(
        cluster="demo", service="blue", taskDefinition=web_next, deploymentConfiguration=hooked
    )
    paused = wait_for(awaiting, timeout=60)
    observe(rec, "blue")
    hook = next(h for h in paused["lifecycleHookDetails"] if h["status"] == "AWAITING_ACTION")
    rec.ecs.continue_service_deployment(
        serviceDeploymentArn=paused["serviceDeploymentArn"], hookId=hook["hookId"]
    )
    wait_for(lambda: deployments(rec, "blue")[0]["status"] == "SUCCESSFUL", timeout=60)
    observe(rec, "blue")
    third = new_revision(rec, made, "1.2.0")
    rec.ecs.update_service(cluster="demo", service="blue", taskDefinition=third)
    paused = wait_for(awaiting, timeout=60)
    rec.ecs.stop_service_deployment(
        serviceDeploymentArn=paused["serviceDeploymentArn"], stopType="ROLLBACK"
    )
    wait_for(lambda: deployments(rec, "blue")[0]["status"] != "IN_PROGRESS", timeout=60)
    observe(rec, "blue")

    # LINEAR and CANARY, read while they shift traffic and after.
    for name, strategy, steps in (
        (
            "linear",
            "LINEAR",
            {"linearConfiguration": {"stepPercent": 50.0, "stepBakeTimeInMinutes": 1}},
        ),
        (
            "canary",
            "CANARY",
            {"canaryConfiguration": {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 1}},
        ),
    ):
        staged_service(rec, made, name, strategy, **steps)
        wait_successful(rec, name)
        rec.ecs.update_service(cluster="demo", service=name, taskDefinition=third)
        observe(rec, name)
        wait_successful(rec, name)
        observe(rec, name)

    # A Fargate stack as Conveyor renders it: create, change set, update, events, delete.
    parameters = [
        {"ParameterKey": "ImageWeb", "ParameterValue": f"{REGISTRY}/demo/web:1.0.0"},
        {"ParameterKey": "Subnets", "ParameterValue": made["subnets"]},
        {"ParameterKey": "SecurityGroups", "ParameterValue": made["security_group"]},
        {"ParameterKey": "TargetGroup0Arn", "ParameterValue": made["target_group_arn"]},
    ]
    body = json.dumps(template("stk"), sort_keys=True)
    stack_id = rec.cloudformation.create_stack(
        StackName="stk",
        TemplateBody=body,
        Parameters=parameters,
        Tags=STACK_TAGS,
        ClientRequestToken="create-stk",
    )["StackId"]

    def settled() -> bool:
        stack = rec.cloudformation.describe_stacks(StackName=stack_id)["Stacks"][0]
        return not str(stack["StackStatus"]).endswith("IN_PROGRESS")

    wait_for(settled, timeout=60)
    updated = [
        {**p, "ParameterValue": f"{REGISTRY}/demo/web:1.1.0"}
        if p["ParameterKey"] == "ImageWeb"
        else p
        for p in parameters
    ]
    rec.cloudformation.create_change_set(
        StackName="stk",
        ChangeSetName="preview",
        TemplateBody=body,
        Parameters=updated,
        Tags=STACK_TAGS,
        ChangeSetType="UPDATE",
    )
    wait_for(
        lambda: (
            rec.cloudformation.describe_change_set(StackName="stk", ChangeSetName="preview")[
                "Status"
            ]
            in ("CREATE_COMPLETE", "FAILED")
        ),
        timeout=30,
    )
    rec.cloudformation.delete_change_set(StackName="stk", ChangeSetName="preview")
    rec.cloudformation.create_change_set(
        StackName="stk",
        ChangeSetName="apply",
        TemplateBody=body,
        Parameters=updated,
        Tags=STACK_TAGS,
        ChangeSetType="UPDATE",
    )
    wait_for(
        lambda: (
            rec.cloudformation.describe_change_set(StackName="stk", ChangeSetName="apply")["Status"]
            == "CREATE_COMPLETE"
        ),
        timeout=30,
    )
    rec.cloudformation.execute_change_set(StackName="stk", ChangeSetName="apply")
    wait_for(settled, timeout=60)
    third_stack = [
        {**p, "ParameterValue": f"{REGISTRY}/demo/web:1.2.0"}
        if p["ParameterKey"] == "ImageWeb"
        else p
        for p in parameters
    ]
    rec.cloudformation.update_stack(
        StackName="stk",
        TemplateBody=body,
        Parameters=third_stack,
        Tags=STACK_TAGS,
        ClientRequestToken="update-stk",
    )
    rec.cloudformation.describe_stack_events(StackName="stk")
    wait_for(settled, timeout=60)
    rec.cloudformation.describe_stack_events(StackName="stk")
    rec.cloudformation.list_stacks()
    rec.cloudformation.delete_stack(StackName="stk", ClientRequestToken="delete-stk")
    wait_for(settled, timeout=60)

    # Cleanup: services and revisions go.
    rec.ecs.delete_service(cluster="demo", service="linear", force=True)
    rec.ecs.deregister_task_definition(taskDefinition=third)
    rec.ecs.describe_task_definition(taskDefinition=third)
    rec.ecs.list_task_definitions(familyPrefix="web", status="INACTIVE")

    missing = {
        f"{service}:{operation}"
        for service, operations in CALLED.items()
        for operation in operations
        if not rec.answers[(service, operation)]
    }
    assert missing == set()
    errors = rec.errors()
    assert errors == [], "\n".join(errors)


# -- requests ------------------------------------------------------------------------------------


def unchecked(aws: Aws, service: str) -> Any:
    """A client that sends what it is given, as an SDK with another model would."""
    return client(aws.url, service, Config(parameter_validation=False))


def refusal(call: Any, **kwargs: Any) -> tuple[str, str]:
    """The (code, message) of a call that must be refused."""
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    error = caught.value.response["Error"]
    return str(error.get("Code")), str(error.get("Message"))


@pytest.mark.parametrize(
    ("operation", "params", "field"),
    [
        (
            "update_service",
            {
                "cluster": "test",
                "service": "app",
                "deploymentConfiguration": {
                    "earlySuccessCriteria": {"enable": True, "healthyPercent": 50}
                },
            },
            "deploymentConfiguration.earlySuccessCriteria",
        ),
        (
            "update_service",
            {
                "cluster": "test",
                "service": "app",
                "volumeConfigurations": [{"name": "data"}],
            },
            "volumeConfigurations",
        ),
        (
            "create_service",
            {"cluster": "test", "serviceName": "app", "monitoring": {}},
            "monitoring",
        ),
        ("list_tasks", {"cluster": "test", "daemonName": "d"}, "daemonName"),
        ("run_task", {"taskDefinition": "app", "referenceId": "r"}, "referenceId"),
        (
            "list_services",
            {"cluster": "test", "resourceManagementType": "CUSTOMER"},
            "resourceManagementType",
        ),
    ],
)
def test_a_member_the_local_aws_does_not_model_is_refused_by_name(
    aws: Aws, operation: str, params: dict[str, Any], field: str
) -> None:
    """A member botocore knows but the local AWS would ignore is an InvalidParameterException
    that names the operation and the member, not a silent success."""
    code, message = refusal(getattr(aws.ecs, operation), **params)
    wire = "".join(part.capitalize() for part in operation.split("_"))
    assert code == "InvalidParameterException"
    assert message.startswith(f"{wire}: {field} is not modelled by the local AWS")


def adding(made: Any, extra: dict[str, Any]) -> Any:
    """``made`` (a client) with ``extra`` merged into every JSON request body it sends: members
    its own model would refuse to serialize."""

    def add(request: Any, **_: Any) -> None:
        body = json.loads(request.body or b"{}")
        body.update(extra)
        request.body = json.dumps(body).encode()
        request.headers["Content-Length"] = str(len(request.body))

    made.meta.events.register("before-send", add)
    return made


def test_members_unknown_to_botocore_are_refused(aws: Aws) -> None:
    """A member that is not in botocore's input shape at all is refused, at any depth."""
    ecs = adding(client(aws.url, "ecs"), {"bogus": 1})
    code, message = refusal(ecs.describe_services, cluster="test", services=["a"])
    assert code == "InvalidParameterException"
    assert message.startswith('DescribeServices: Unknown parameter in input: "bogus"')
    nested = {"deploymentConfiguration": {"strategy": "ROLLING", "bakeTime": 3}}
    ecs = adding(client(aws.url, "ecs"), nested)
    _, message = refusal(ecs.update_service, service="app")
    assert 'Unknown parameter in deploymentConfiguration: "bakeTime"' in message


def test_wrong_types_missing_members_and_bad_enums_are_refused(aws: Aws) -> None:
    """Types, required members and enum values are checked as botocore's model defines them."""
    ecs = unchecked(aws, "ecs")
    _, message = refusal(ecs.update_service, service="app", desiredCount="two")
    assert "Invalid type for parameter desiredCount" in message
    _, message = refusal(ecs.describe_services, cluster="test")
    assert 'Missing required parameter in input: "services"' in message
    _, message = refusal(ecs.list_service_deployments, service="app", status=["DONE"])
    assert message.startswith("ListServiceDeployments: status[0]: 'DONE' is not one of")


def test_other_services_refuse_unmodelled_members_too(aws: Aws) -> None:
    """EventBridge, ECR (JSON) and ELBv2 (query) requests are checked the same way, each with its
    own error code."""
    code, message = refusal(aws_client(aws, "elbv2").describe_target_groups, PageSize=10)
    assert (code, message.split(" is ")[0]) == ("ValidationError", "DescribeTargetGroups: PageSize")
    code, message = refusal(
        aws_client(aws, "ecr").describe_images, repositoryName="demo/web", maxResults=5
    )
    assert (code, message.split(" is ")[0]) == (
        "InvalidParameterException",
        "DescribeImages: maxResults",
    )
    code, _ = refusal(adding(aws_client(aws, "events"), {"Bogus": 1}).list_rules)
    assert code == "ValidationException"


def aws_client(aws: Aws, service: str) -> Any:
    """A boto3 client on the test's local AWS."""
    return client(aws.url, service)


def test_a_refused_request_is_logged_as_a_client_error(aws: Aws) -> None:
    """The call log shows a refused ECS request as a client error, like any 400."""
    aws.control("DELETE", "stats")
    refusal(aws.ecs.list_tasks, cluster="test", daemonName="d")
    _, body = aws.control("GET", "calls")
    assert [(c["op"], c["outcome"]) for c in body["calls"]] == [("ListTasks", "client_error:400")]


def test_describe_images_applies_the_tag_status_filter(aws: Aws) -> None:
    """ECR's DescribeImages answers only tagged or only untagged images when its filter says so,
    as Conveyor's tag listing asks."""
    ecr = aws_client(aws, "ecr")
    ecr.create_repository(repositoryName="team/app")
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": MEDIA_TYPE, "config": {"digest": "sha256:" + "a" * 64}}
    )
    ecr.put_image(repositoryName="team/app", imageManifest=manifest, imageTag="1.0.0")
    other = json.dumps(
        {"schemaVersion": 2, "mediaType": MEDIA_TYPE, "config": {"digest": "sha256:" + "b" * 64}}
    )
    ecr.put_image(repositoryName="team/app", imageManifest=other)

    def tags(status: str) -> list[list[str]]:
        images = ecr.describe_images(repositoryName="team/app", filter={"tagStatus": status})
        return sorted(image.get("imageTags", []) for image in images["imageDetails"])

    assert tags("TAGGED") == [["1.0.0"]]
    assert tags("UNTAGGED") == [[]]
    assert tags("ANY") == [[], ["1.0.0"]]


def test_a_count_threshold_trips_the_breaker_at_that_count(aws: Aws) -> None:
    """A deployment circuit breaker with thresholdConfiguration COUNT reports that threshold
    in the service deployment, instead of ECS's default."""
    blue = aws.task_definition("app", "repo/app:1")
    breaker = {
        "enable": True,
        "rollback": True,
        "thresholdConfiguration": {"type": "COUNT", "value": 7},
    }
    aws.service("app", blue, deploymentConfiguration={"deploymentCircuitBreaker": breaker})
    arn = aws.ecs.list_service_deployments(cluster="test", service="app")["serviceDeployments"][0][
        "serviceDeploymentArn"
    ]
    (found,) = aws.ecs.describe_service_deployments(serviceDeploymentArns=[arn])[
        "serviceDeployments"
    ]
    assert found["deploymentCircuitBreaker"]["threshold"] == 7


def test_cloudwatch_get_metric_data_is_checked(aws: Aws) -> None:
    """GetMetricData is checked like ECS's calls, refused with CloudWatch's code: what metric
    gates send passes, a metric-math Expression (which moto answers without datapoints) is
    refused by name."""
    cloudwatch = aws_client(aws, "cloudwatch")
    now = datetime.datetime.now(datetime.UTC)
    window = {"StartTime": now - datetime.timedelta(minutes=5), "EndTime": now}
    stat = {"Metric": {"Namespace": "App", "MetricName": "E"}, "Period": 60, "Stat": "Sum"}
    answer = cloudwatch.get_metric_data(
        MetricDataQueries=[{"Id": "e", "MetricStat": stat, "ReturnData": True}],
        ScanBy="TimestampDescending",
        **window,
    )
    assert [r["Id"] for r in answer["MetricDataResults"]] == ["e"]
    code, message = refusal(
        cloudwatch.get_metric_data,
        MetricDataQueries=[{"Id": "e", "Expression": "SUM(METRICS())"}],
        **window,
    )
    assert (code, message.split(" is ")[0]) == (
        "InvalidParameterValue",
        "GetMetricData: MetricDataQueries.Expression",
    )


def test_logs_get_log_events_is_checked(aws: Aws) -> None:
    """GetLogEvents is checked like ECS's calls, refused with CloudWatch Logs' code: what the
    gateway sends for a task's log tail passes, a member the local AWS ignores (unmask) is
    refused by name."""
    logs = aws_client(aws, "logs")
    logs.create_log_group(logGroupName="/ecs/app")
    logs.create_log_stream(logGroupName="/ecs/app", logStreamName="m/app/1")
    answer = logs.get_log_events(
        logGroupName="/ecs/app", logStreamName="m/app/1", limit=20, startFromHead=False
    )
    assert answer["events"] == []
    code, message = refusal(
        logs.get_log_events, logGroupName="/ecs/app", logStreamName="m/app/1", unmask=True
    )
    assert (code, message.split(" is ")[0]) == (
        "InvalidParameterException",
        "GetLogEvents: unmask",
    )
