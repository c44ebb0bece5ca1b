"""create-Fargate end to end: the real CLI and workers, the local AWS's CloudFormation."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from localaws.devstack import Worker
from tests.integration.conftest import Stack, redis_contents

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).parents[2] / "deploy" / "examples" / "fargate-demo.yaml"


def write_spec(tmp_path: Path, **overrides: Any) -> tuple[Path, dict[str, Any]]:
    """The sample spec with a fresh service name and any overrides, written to a file."""
    spec: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    spec["service"] = f"shop-{uuid.uuid4().hex[:6]}"
    spec.update(overrides)
    path = tmp_path / f"{spec['service']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path, spec


def elbv2(stack: Stack) -> Any:
    return boto3.client(
        "elbv2",
        endpoint_url=stack.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def cfn(stack: Stack) -> Any:
    return boto3.client(
        "cloudformation",
        endpoint_url=stack.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def apply(stack: Stack, path: Path) -> tuple[int, dict[str, Any], str]:
    result = stack.cli("fargate", "apply", "-f", str(path), "--json")
    record = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    return result.returncode, record, result.stderr + result.stdout


def test_apply_creates_updates_and_reapplies(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """Create a linked Fargate service, roll a new image through the stack, reapply unchanged."""
    start_worker("w1")
    path, spec = write_spec(tmp_path)
    code, record, output = apply(stack, path)
    assert code == 0, output
    assert record["state"] == "succeeded"
    assert record["stack"]["operation"] == "create"
    service = stack.ecs().describe_services(
        cluster="demo", services=[spec["service"]], include=["TAGS"]
    )["services"][0]
    assert service["launchType"] == "FARGATE"
    vpc = service["networkConfiguration"]["awsvpcConfiguration"]
    assert len(vpc["subnets"]) == 2
    assert vpc["subnets"][0].startswith("subnet-")
    assert service["loadBalancers"][0]["containerPort"] == 8080
    assert service["loadBalancers"][0]["targetGroupArn"].split("/")[-2] == "demo-web"
    breaker = service["deploymentConfiguration"]["deploymentCircuitBreaker"]
    assert breaker == {"enable": True, "rollback": True}
    assert service["healthCheckGracePeriodSeconds"] == 60
    assert service["deployments"][0]["rolloutState"] == "COMPLETED"
    assert len(service["deployments"]) == 1
    assert {"key": "conveyor:managed-by", "value": "conveyor"} in service["tags"]
    first_td = service["taskDefinition"]

    spec["containers"][0]["image"] = spec["containers"][0]["image"].replace(":1.0.0", ":1.1.0")
    path.write_text(yaml.safe_dump(spec))
    code, record, output = apply(stack, path)
    assert code == 0, output
    assert record["stack"]["operation"] == "update"
    assert record["stack"]["id"] is not None
    service = stack.ecs().describe_services(cluster="demo", services=[spec["service"]])["services"][
        0
    ]
    assert service["taskDefinition"] != first_td
    new = stack.ecs().describe_task_definition(taskDefinition=service["taskDefinition"])
    container = new["taskDefinition"]["containerDefinitions"][0]
    assert container["image"].endswith("demo/web:1.1.0")
    assert container["secrets"][0]["name"] == "DB_PASSWORD"
    assert new["taskDefinition"]["cpu"] == "512"

    code, record, output = apply(stack, path)
    assert code == 0, output
    assert record["stack"]["operation"] == "none"
    assert "nothing to update" in record["reason"]

    update = stack.cli(
        "update", "--cluster", "demo", "--service", spec["service"], "--image", "web=:1.2.0"
    )
    assert update.returncode == 2, update.stderr + update.stdout
    assert "conveyor fargate apply" in update.stdout


def test_fail_image_is_never_a_success(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """A broken image through the stack ends rolled back, with the breaker's reason."""
    start_worker("w1")
    path, spec = write_spec(tmp_path)
    assert apply(stack, path)[0] == 0
    spec["containers"][0]["image"] = spec["containers"][0]["image"].replace(":1.0.0", ":fail-2")
    path.write_text(yaml.safe_dump(spec))
    code, record, output = apply(stack, path)
    assert code == 1, output
    assert record["state"] == "rolled_back", record["reason"]
    assert "Circuit Breaker" in record["reason"]
    stack_state = cfn(stack).describe_stacks(StackName=record["stack"]["name"])["Stacks"][0]
    assert stack_state["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"


@pytest.mark.parametrize("problem", ["no load balancer", "instance"])
def test_bad_target_groups_are_refused_before_any_stack_call(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path, problem: str
) -> None:
    """An unattached or instance-type target group: refused, exit 2, and no stack exists."""
    start_worker("w1")
    ec2 = boto3.client(
        "ec2",
        endpoint_url=stack.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    vpc = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": ["demo"]}])["Vpcs"][0]
    name = f"tg-{uuid.uuid4().hex[:8]}"
    elbv2(stack).create_target_group(
        Name=name,
        Protocol="HTTP",
        Port=8080,
        VpcId=vpc["VpcId"],
        TargetType="ip" if problem == "no load balancer" else "instance",
    )
    if problem == "instance":  # attach it, so that only its type is wrong
        arn = elbv2(stack).describe_target_groups(Names=[name])["TargetGroups"][0]
        listener = elbv2(stack).describe_listeners(
            LoadBalancerArn=elbv2(stack).describe_load_balancers(Names=["demo"])["LoadBalancers"][
                0
            ]["LoadBalancerArn"]
        )["Listeners"][0]
        elbv2(stack).create_rule(
            ListenerArn=listener["ListenerArn"],
            Priority=10,
            Conditions=[{"Field": "path-pattern", "Values": ["/x/*"]}],
            Actions=[{"Type": "forward", "TargetGroupArn": arn["TargetGroupArn"]}],
        )
    path, spec = write_spec(
        tmp_path,
        load_balancers=[{"target_group": name, "container_name": "web", "container_port": 8080}],
    )
    code, record, output = apply(stack, path)
    assert code == 2, output
    expected = "no load balancer attached" if problem == "no load balancer" else "target type"
    assert expected in record["reason"]
    stacks = cfn(stack).list_stacks()["StackSummaries"]
    assert record["stack"] is None
    assert not [s for s in stacks if spec["service"] in s["StackName"]]


def test_spec_secrets_never_reach_logs_records_or_results(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """Environment values and secret references of a spec reach AWS, and nothing Conveyor
    keeps: not the worker log, not Redis (records, results, queues), not the CLI's output."""
    import redis

    worker = start_worker("w1")
    env_value = f"envvalue-{uuid.uuid4().hex[:10]}"
    secret_ref = f"arn:aws:ssm:us-east-1:123456789012:parameter/secretref-{uuid.uuid4().hex[:8]}"
    spec: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    spec["containers"][0]["environment"] = {"API_TOKEN": env_value}
    spec["containers"][0]["secrets"] = {"DB_PASSWORD": secret_ref}
    path, spec = write_spec(tmp_path, containers=spec["containers"])
    code, record, output = apply(stack, path)
    assert code == 0, output
    service = stack.ecs().describe_services(cluster="demo", services=[spec["service"]])["services"][
        0
    ]
    definition = stack.ecs().describe_task_definition(taskDefinition=service["taskDefinition"])
    container = definition["taskDefinition"]["containerDefinitions"][0]
    assert container["secrets"][0]["valueFrom"] == secret_ref  # they did reach AWS
    assert {"name": "API_TOKEN", "value": env_value} in container["environment"]

    client = redis.Redis.from_url(stack.redis_url)
    stored = redis_contents(client)
    assert b"conveyor:deployment:" in stored, "no record read: the check would prove nothing"
    for where, text in (
        ("worker log", worker.log().encode()),
        ("redis", stored),
        ("cli", output.encode()),
    ):
        for secret in (env_value, secret_ref):
            assert secret.encode() not in text, f"{secret[:14]}... leaked into the {where}"
    assert record["job"]["containers"][0]["secrets"] == {"DB_PASSWORD": "***"}


def test_look_alike_clusters_and_services_get_their_own_stacks(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """Cluster ``X-eu`` + service ``api`` and cluster ``X`` + service ``eu-api`` used to share
    one stack: the second apply updated the first team's stack, CloudFormation replaced its
    service (deleting it), and the job reported success. Each pair now has its own stack and
    its own task definition family, and both services stay."""
    start_worker("w1")
    prefix = f"p{uuid.uuid4().hex[:6]}"
    pairs = [(f"{prefix}-eu", "api"), (prefix, "eu-api")]
    for cluster, _ in pairs:
        stack.ecs().create_cluster(clusterName=cluster)
    records = []
    for cluster, service in pairs:
        path, _ = write_spec(tmp_path, cluster=cluster, service=service, load_balancers=[])
        code, record, output = apply(stack, path)
        assert code == 0, output
        assert record["stack"]["operation"] == "create"
        records.append(record)
    assert records[0]["stack"]["name"] != records[1]["stack"]["name"]
    families = set()
    for cluster, service in pairs:
        found = stack.ecs().describe_services(cluster=cluster, services=[service])["services"]
        assert found, (cluster, service)
        assert found[0]["status"] == "ACTIVE"
        families.add(found[0]["taskDefinition"].rsplit("/", 1)[-1].rsplit(":", 1)[0])
    assert len(families) == 2


def test_a_stack_that_names_another_service_is_refused(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """A stack under this service's name whose own tags name another service is never updated
    or deleted: exit 2, and the stack is as it was."""
    from producers.contract.stack_template import stack_name

    start_worker("w1")
    path, spec = write_spec(tmp_path)
    name = stack_name(spec["cluster"], spec["service"])
    template = {"Resources": {"Nothing": {"Type": "AWS::Logs::LogGroup"}}}
    cfn(stack).create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Tags=[
            {"Key": "conveyor:cluster", "Value": "elsewhere"},
            {"Key": "conveyor:service", "Value": "someone-else"},
        ],
    )
    cfn(stack).get_waiter("stack_create_complete").wait(
        StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    before = cfn(stack).describe_stacks(StackName=name)["Stacks"][0]
    code, _, output = apply(stack, path)
    assert code == 2, output
    assert "belongs to cluster 'elsewhere', service 'someone-else'" in output
    after = cfn(stack).describe_stacks(StackName=name)["Stacks"][0]
    assert after["StackStatus"] == before["StackStatus"]
    assert after.get("LastUpdatedTime") == before.get("LastUpdatedTime")


def test_dry_run_shows_the_change_set_and_leaves_nothing_behind(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """`conveyor fargate apply --dry-run`: before the stack exists, a CREATE change set lists
    the resources to add, and afterwards neither the change set nor the stack it needed exists;
    after a real apply, a new image shows as a change to the task definition and the service;
    no environment value or secret reference appears."""
    start_worker("w1")
    path, spec = write_spec(tmp_path)
    planned = stack.cli("fargate", "apply", "-f", str(path), "--dry-run", "--json")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    (plan,) = json.loads(planned.stdout)
    assert plan["operation"] == "create"
    added = {c["type"] for c in plan["changes"] if c["action"] == "Add"}
    assert {"AWS::ECS::TaskDefinition", "AWS::ECS::Service"} <= added
    stacks = cfn(stack).list_stacks()["StackSummaries"]
    live = [
        s
        for s in stacks
        if s["StackName"] == plan["stack"] and s["StackStatus"] != "DELETE_COMPLETE"
    ]
    assert live == []
    assert json.loads(stack.cli("list", "--json").stdout)["deployments"] == []

    code, _, output = apply(stack, path)
    assert code == 0, output
    spec["containers"][0]["image"] = spec["containers"][0]["image"].replace(":1.0.0", ":1.1.0")
    path.write_text(yaml.safe_dump(spec))
    text = stack.cli("fargate", "apply", "-f", str(path), "--dry-run")
    assert text.returncode == 0, text.stdout + text.stderr
    assert f"update stack {plan['stack']}" in text.stdout
    assert "Modify" in text.stdout
    assert "AWS::ECS::TaskDefinition" in text.stdout
    for secret in ("info", "arn:aws:ssm:us-east-1:123456789012:parameter/demo/db-password"):
        assert secret not in planned.stdout + text.stdout
    (summary,) = cfn(stack).describe_stacks(StackName=plan["stack"])["Stacks"]
    # The dry run of the update executed nothing: the stack is as the create left it.
    assert summary["StackStatus"] == "CREATE_COMPLETE"


def test_a_spec_image_can_be_a_version_rule(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """A container image REPOSITORY:{RULE} in a spec is resolved when the job is enqueued: the
    dry run shows the version as TAG@DIGEST, the stack runs it, the record keeps the rule and
    the digest."""
    start_worker("w1")
    repo = "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo/web"
    spec: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    spec["containers"][0]["image"] = f"{repo}:{{>=1.1 <1.2}}"
    path, spec = write_spec(tmp_path, containers=spec["containers"])
    planned = stack.cli("fargate", "apply", "-f", str(path), "--dry-run", "--json")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    (plan,) = json.loads(planned.stdout)
    (version,) = plan["versions"]
    assert version["image"] == f"{repo}:1.1.0@{version['digest']}"
    code, record, output = apply(stack, path)
    assert code == 0, output
    container = record["job"]["containers"][0]
    assert container["digest"] == version["digest"]
    pinned = f"{repo}:1.1.0@{version['digest']}"
    assert (container["image"], container["rule"]) == (pinned, ">=1.1 <1.2")
    service = stack.ecs().describe_services(cluster="demo", services=[spec["service"]])["services"][
        0
    ]
    definition = stack.ecs().describe_task_definition(taskDefinition=service["taskDefinition"])
    assert definition["taskDefinition"]["containerDefinitions"][0]["image"] == pinned
