"""update-existing end to end: real CLI, real Redis, real celery workers, the local AWS."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from localaws.devstack import Worker
from localaws.testing import control, create_services
from tests.integration.conftest import Stack
from worker.domain.planning import DEPLOYMENT_TAG, revision_diff

pytestmark = pytest.mark.integration


def revisions(stack: Stack, family: str) -> list[str]:
    """ACTIVE revision ARNs of a family."""
    arns: list[str] = stack.ecs().list_task_definitions(familyPrefix=family)["taskDefinitionArns"]
    return [a for a in arns if a.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family]


def describe(stack: Stack, arn: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
    answer = stack.ecs().describe_task_definition(taskDefinition=arn, include=["TAGS"])
    return answer["taskDefinition"], answer.get("tags", [])


def make_service(stack: Stack, *, breaker: bool) -> str:
    """A fresh one-container EC2 service on cluster demo, steady before the test goes on."""
    name = f"svc-{uuid.uuid4().hex[:8]}"
    container = {
        "name": "app",
        "image": "registry.local:5000/team/app:1.0.0",
        "memory": 128,
        "essential": True,
        "portMappings": [{"containerPort": 8080}],
    }
    create_services(
        stack.endpoint,
        [name],
        containers=[container],
        breaker=breaker,
        tags=[{"key": "team", "value": "e2e"}],
    )
    return name


def test_two_container_update_succeeds_and_changes_only_the_image(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """The demo's two-container service is updated through the CLI and ends succeeded.

    The new revision differs from the previous one only in the requested image, compared field
    by field (secrets, healthCheck, runtimePlatform, ephemeralStorage and volumes included), and
    the owner's tags are copied.
    """
    start_worker("w1")
    before = stack.ecs().describe_services(cluster="demo", services=["web"])["services"][0]
    # The local AWS is shared by the session: a tag no other test uses guarantees a change.
    tag = f"1.4.{uuid.uuid4().int % 10**6}"
    result = stack.cli(
        "update", "--cluster", "demo", "--service", "web", "--image", f"web=:{tag}", "--json"
    )
    assert result.returncode == 0, result.stderr + result.stdout
    record = json.loads(result.stdout)
    assert record["state"] == "succeeded"
    assert record["previous_task_definition_arn"] == before["taskDefinition"]

    old, old_tags = describe(stack, record["previous_task_definition_arn"])
    new, new_tags = describe(stack, record["task_definition_arn"])
    assert revision_diff(old, new) == ["containerDefinitions[0].image"]
    assert new["containerDefinitions"][0]["image"].endswith(f"/demo/web:{tag}")
    for key in ("runtimePlatform", "ephemeralStorage", "volumes"):
        assert new[key] == old[key]
    web = new["containerDefinitions"][0]
    assert web["secrets"] == old["containerDefinitions"][0]["secrets"]
    assert web["healthCheck"] == old["containerDefinitions"][0]["healthCheck"]
    assert {t["key"]: t["value"] for t in new_tags} == {
        **{t["key"]: t["value"] for t in old_tags if t["key"] != DEPLOYMENT_TAG},
        DEPLOYMENT_TAG: record["id"],
    }
    service = stack.ecs().describe_services(cluster="demo", services=["web"])["services"][0]
    assert service["taskDefinition"] == record["task_definition_arn"]
    assert any("steady state" in e["message"] for e in record["events"])

    status = stack.cli("status", record["id"], "--json")
    assert status.returncode == 0
    assert json.loads(status.stdout)["id"] == record["id"]
    assert json.loads(status.stdout)["state"] == "succeeded"


def test_fail_image_with_breaker_ends_rolled_back_never_succeeded(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """A broken image under the circuit breaker ends rolled_back with the breaker's reason."""
    start_worker("w1")
    before = stack.ecs().describe_services(cluster="demo", services=["api"])["services"][0]
    result = stack.cli(
        "update", "--cluster", "demo", "--service", "api", "--image", "api=:fail-2.0.0", "--json"
    )
    assert result.returncode == 1, result.stderr + result.stdout
    record = json.loads(result.stdout)
    assert record["state"] == "rolled_back"
    assert record["rolled_back_by_ecs"] is True
    assert "circuit breaker" in record["reason"]
    assert not any(s["status"] == "succeeded" for s in record["steps"])
    assert record["stopped_tasks"]
    assert record["stopped_tasks"][0]["stopped_reason"]
    service = stack.ecs().describe_services(cluster="demo", services=["api"])["services"][0]
    assert service["taskDefinition"] == before["taskDefinition"]


def test_fail_image_without_breaker_times_out_and_conveyor_rolls_back(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """Without the breaker nothing ever says FAILED: the timeout fires and Conveyor rolls back."""
    start_worker("w1")
    name = make_service(stack, breaker=False)
    before = stack.ecs().describe_services(cluster="demo", services=[name])["services"][0]
    result = stack.cli(
        "update",
        "--cluster",
        "demo",
        "--service",
        name,
        "--image",
        "app=:fail-1.0.1",
        "--timeout",
        "30",
        "--json",
    )
    assert result.returncode == 1, result.stderr + result.stdout
    record = json.loads(result.stdout)
    assert record["state"] == "rolled_back"
    assert record["rolled_back_by_ecs"] is False
    assert "timed out" in record["reason"]
    service = stack.ecs().describe_services(cluster="demo", services=[name])["services"][0]
    assert service["taskDefinition"] == before["taskDefinition"]


def test_unknown_container_exits_2_and_registers_nothing(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """An unknown container: exit 2, the known containers listed, no revision registered."""
    start_worker("w1")
    count = len(revisions(stack, "web"))
    result = stack.cli("update", "--cluster", "demo", "--service", "web", "--image", "wbe=:2.0.0")
    assert result.returncode == 2, result.stderr + result.stdout
    assert "'wbe'" in result.stdout
    assert "it has: web, proxy" in result.stdout
    assert len(revisions(stack, "web")) == count


def test_sigkilled_worker_does_not_lose_the_deployment(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """A worker SIGKILLed mid-deployment: another finishes it within two minutes, one revision."""
    first = start_worker("doomed")
    count = len(revisions(stack, "web"))
    result = stack.cli(
        "update", "--cluster", "demo", "--service", "web", "--image", "web=:1.2.0", "--no-wait"
    )
    assert result.returncode == 0, result.stderr
    deployment_id = result.stdout.strip()
    deadline = time.monotonic() + 60
    while stack.record(deployment_id)["step"] not in ("watch",):
        assert time.monotonic() < deadline, stack.record(deployment_id)
        time.sleep(0.1)
    first.kill()
    killed_at = time.monotonic()
    start_worker("rescuer")
    waited = stack.cli("wait", deployment_id, "--json", timeout=180)
    assert waited.returncode == 0, waited.stderr + waited.stdout
    assert json.loads(waited.stdout)["state"] == "succeeded"
    assert time.monotonic() - killed_at < 120
    assert len(revisions(stack, "web")) == count + 1


def test_cancel_a_running_rollout_rolls_it_back(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """`conveyor cancel` during a rollout that would never finish: rolled back, exit 5."""
    start_worker("w1")
    name = make_service(stack, breaker=False)
    before = stack.ecs().describe_services(cluster="demo", services=[name])["services"][0]
    started = stack.cli(
        "update", "--cluster", "demo", "--service", name, "--image", "app=:fail-9", "--no-wait"
    )
    deployment_id = started.stdout.strip()
    deadline = time.monotonic() + 60
    while stack.record(deployment_id)["step"] != "watch":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    result = stack.cli("cancel", deployment_id, "--json")
    assert result.returncode == 5, result.stderr + result.stdout
    record = json.loads(result.stdout)
    assert record["state"] == "cancelled"
    assert "rolled the service back" in record["reason"]
    service = stack.ecs().describe_services(cluster="demo", services=[name])["services"][0]
    assert service["taskDefinition"] == before["taskDefinition"]
    again = stack.cli("cancel", deployment_id)
    assert again.returncode == 5
    assert "already ended" in again.stderr


def test_role_arn_is_assumed_for_the_deployment(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """A job with --role-arn deploys with the role's credentials (cross-account deployments)."""
    start_worker("w1")
    result = stack.cli(
        "update",
        "--cluster",
        "demo",
        "--service",
        "web",
        "--image",
        f"web=:role-{uuid.uuid4().hex[:6]}",
        "--role-arn",
        "arn:aws:iam::123456789012:role/conveyor-deployer",
        "--json",
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert json.loads(result.stdout)["state"] == "succeeded"


def test_service_options_go_with_the_new_images(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """`conveyor update --desired-count --min-healthy-percent --max-percent --circuit-breaker`
    on a service with the breaker off: one UpdateService sets them with the new revision, the
    rollout runs to the new count, and the rest of the configuration is as it was."""
    (name,) = create_services(stack.endpoint, [f"opt-{uuid.uuid4().hex[:6]}"], breaker=False)
    start_worker("w1")
    result = stack.cli(
        "update", "--cluster", "demo", "--service", name, "--image", "app=:2.0.0",
        "--desired-count", "3", "--min-healthy-percent", "50", "--max-percent", "150",
        "--circuit-breaker", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads(result.stdout)
    assert record["state"] == "succeeded"
    assert any("desired count 3" in (s.get("detail") or "") for s in record["steps"])
    service = stack.ecs().describe_services(cluster="demo", services=[name])["services"][0]
    assert service["desiredCount"] == 3
    assert service["runningCount"] == 3
    configuration = service["deploymentConfiguration"]
    assert configuration["minimumHealthyPercent"] == 50
    assert configuration["maximumPercent"] == 150
    assert configuration["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert service["taskDefinition"].endswith(f"{name}:2")
    refused = stack.cli(
        "update", "--cluster", "demo", "--service", name, "--image", "app=:2.0.1",
        "--min-healthy-percent", "100", "--max-percent", "100",
    )  # fmt: skip
    assert refused.returncode == 2
    assert "maximum_percent (100) must be above minimum_healthy_percent (100)" in refused.stderr


def test_restart_starts_new_tasks_on_the_same_revision(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """`conveyor restart`: no revision is registered, ECS gets one new deployment on the revision
    the service runs, and the verdict is that deployment's."""
    (name,) = create_services(stack.endpoint, [f"rs-{uuid.uuid4().hex[:6]}"])
    start_worker("w1")
    ecs = stack.ecs()
    before = ecs.describe_services(cluster="demo", services=[name])["services"][0]
    result = stack.cli("restart", "--cluster", "demo", "--service", name, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads(result.stdout)
    assert record["state"] == "succeeded"
    assert record["task_definition_arn"] == before["taskDefinition"]
    after = ecs.describe_services(cluster="demo", services=[name])["services"][0]
    assert after["taskDefinition"] == before["taskDefinition"]
    assert after["deployments"][0]["id"] != before["deployments"][0]["id"]
    assert after["deployments"][0]["id"] == record["ecs_deployment_id"]
    assert len(ecs.list_task_definitions(familyPrefix=name)["taskDefinitionArns"]) == 1
    history = ecs.list_service_deployments(cluster="demo", service=name)["serviceDeployments"]
    assert len(history) == 2


def test_keep_revisions_cleans_up_old_revisions_but_never_used_ones(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """`conveyor update --keep-revisions 2` on a family with 6 revisions, where another service
    still runs revision 1: after the deployment (revision 7), revisions 7 and 6 stay, 1 stays
    for the other service, and 2-5 are deregistered, in the background."""
    (name,) = create_services(stack.endpoint, [f"kr-{uuid.uuid4().hex[:6]}"], desired=1)
    ecs = stack.ecs()
    first = ecs.describe_services(cluster="demo", services=[name])["services"][0]["taskDefinition"]
    ecs.create_service(
        cluster="demo", serviceName=f"{name}-old", taskDefinition=first, desiredCount=1
    )
    definition = ecs.describe_task_definition(taskDefinition=first)["taskDefinition"]
    for n in range(2, 7):
        ecs.register_task_definition(
            family=name,
            containerDefinitions=[{**definition["containerDefinitions"][0], "image": f"r/app:{n}"}],
        )
    ecs.update_service(cluster="demo", service=name, taskDefinition=f"{name}:6")
    start_worker("w1")
    result = stack.cli(
        "update", "--cluster", "demo", "--service", name, "--image", "app=:7.0.0",
        "--keep-revisions", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr

    def active() -> list[int]:
        arns = ecs.list_task_definitions(familyPrefix=name, status="ACTIVE")["taskDefinitionArns"]
        return sorted(
            int(a.rsplit(":", 1)[1]) for a in arns if a.rsplit("/", 1)[1].startswith(f"{name}:")
        )

    deadline = time.monotonic() + 60
    while active() != [1, 6, 7]:
        assert time.monotonic() < deadline, active()
        time.sleep(0.5)


def test_keep_revisions_keeps_what_tasks_and_schedules_use(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """`--keep-revisions 1` on a family with 5 revisions, where a standalone task runs
    revision 2 and an EventBridge schedule runs revision 4: after the deployment (revision 6),
    6 stays, 2 and 4 stay for the task and the schedule, and 1, 3 and 5 are deregistered."""
    import boto3

    (name,) = create_services(stack.endpoint, [f"kt-{uuid.uuid4().hex[:6]}"], desired=1)
    ecs = stack.ecs()
    first = ecs.describe_services(cluster="demo", services=[name])["services"][0]["taskDefinition"]
    definition = ecs.describe_task_definition(taskDefinition=first)["taskDefinition"]
    for n in range(2, 6):
        ecs.register_task_definition(
            family=name,
            containerDefinitions=[{**definition["containerDefinitions"][0], "image": f"r/app:{n}"}],
        )
    clients: dict[str, Any] = {
        "endpoint_url": stack.endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    ec2 = boto3.client("ec2", **clients)
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
    # The local AWS stops RunTask's tasks after task_seconds: this one runs for the whole test,
    # as a long-running task does.
    before = control(stack.endpoint, "GET", "config")[1]["task_seconds"]
    control(stack.endpoint, "POST", "config", {"task_seconds": 3600})
    try:
        ecs.run_task(
            cluster="demo",
            taskDefinition=f"{name}:2",
            launchType="FARGATE",
            networkConfiguration={
                "awsvpcConfiguration": {"subnets": [subnet], "securityGroups": []}
            },
        )
    finally:
        control(stack.endpoint, "POST", "config", {"task_seconds": before})
    events = boto3.client("events", **clients)
    events.put_rule(Name=f"{name}-nightly", ScheduleExpression="rate(1 day)")
    arn4 = ecs.describe_task_definition(taskDefinition=f"{name}:4")["taskDefinition"]
    events.put_targets(
        Rule=f"{name}-nightly",
        Targets=[
            {
                "Id": "report",
                "Arn": "arn:aws:ecs:us-east-1:123456789012:cluster/demo",
                "RoleArn": "arn:aws:iam::123456789012:role/events-run-task",
                "EcsParameters": {"TaskDefinitionArn": arn4["taskDefinitionArn"]},
            }
        ],
    )
    ecs.update_service(cluster="demo", service=name, taskDefinition=f"{name}:5")
    start_worker("w1")
    result = stack.cli(
        "update", "--cluster", "demo", "--service", name, "--image", "app=:6.0.0",
        "--keep-revisions", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr

    def active() -> list[int]:
        arns = ecs.list_task_definitions(familyPrefix=name, status="ACTIVE")["taskDefinitionArns"]
        return sorted(
            int(a.rsplit(":", 1)[1]) for a in arns if a.rsplit("/", 1)[1].startswith(f"{name}:")
        )

    deadline = time.monotonic() + 60
    while active() != [2, 4, 6]:
        assert time.monotonic() < deadline, active()
        time.sleep(0.5)


def test_environment_and_secrets_reach_the_revision_and_nothing_else(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """--env, --env-file and --secret on `conveyor update`, then a release file with settings and
    an environment_file: the new revisions carry the values; the records, the CLI's output,
    the worker's log and Redis (once the deployments ended) carry names only."""
    from tests.integration.conftest import redis_contents

    names = create_services(stack.endpoint, [f"env-{uuid.uuid4().hex[:6]}" for _ in range(2)])
    worker = start_worker("w1")
    values = [
        "v4lue-from-flag",
        "v4lue-from-file",
        "arn:aws:secretsmanager:us-east-1:1:secret:db-Xy",
    ]
    env_file = tmp_path / "app.env"
    env_file.write_text(f"# shared\nFROM_FILE={values[1]}\n")
    result = stack.cli(
        "update", "--cluster", "demo", "--service", names[0], "--image", "app=:2.0.0",
        "--env", f"app:FROM_FLAG={values[0]}", "--env-file", f"app={env_file}",
        "--secret", f"app:DB_PASSWORD={values[2]}", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads(result.stdout)
    assert record["state"] == "succeeded"
    release_file = tmp_path / "release.yaml"
    release_file.write_text(
        f"cluster: demo\nservices:\n  - service: {names[1]}\n    images: {{app: ':2.0.0'}}\n"
        "    settings:\n      - container: app\n        mode: replace\n"
        "        environment_file: app.env\n"
        f"        environment: {{FROM_FLAG: {values[0]}}}\n"
    )
    released = stack.cli("release", "-f", str(release_file), "--json")
    assert released.returncode == 0, released.stdout + released.stderr

    ecs = stack.ecs()
    first = ecs.describe_task_definition(taskDefinition=record["task_definition_arn"])
    (container,) = first["taskDefinition"]["containerDefinitions"]
    assert {e["name"]: e["value"] for e in container["environment"]} == {
        "FROM_FLAG": values[0],
        "FROM_FILE": values[1],
    }
    assert container["secrets"] == [{"name": "DB_PASSWORD", "valueFrom": values[2]}]
    second = ecs.describe_services(cluster="demo", services=[names[1]])["services"][0]
    (container,) = ecs.describe_task_definition(taskDefinition=second["taskDefinition"])[
        "taskDefinition"
    ]["containerDefinitions"]
    assert {e["name"]: e["value"] for e in container["environment"]} == {
        "FROM_FILE": values[1],
        "FROM_FLAG": values[0],
    }
    assert any(
        "app environment FROM_FLAG added" in (s.get("detail") or "") for s in record["steps"]
    )

    status = stack.cli("status", record["id"], "--json").stdout
    release_status = stack.cli("status", json.loads(released.stdout)["id"], "--json").stdout
    contents = redis_contents(redis.Redis.from_url(stack.redis_url))
    seen = {
        "update output": result.stdout + result.stderr,
        "release output": released.stdout + released.stderr,
        "status": status,
        "release status": release_status,
        "worker log": worker.log(),
        "redis": contents.decode(errors="replace"),
    }
    for value in values:
        for where, text in seen.items():
            assert value not in text, f"{value!r} leaked into the {where}"
    bad = stack.cli(
        "update", "--cluster", "demo", "--service", names[0], "--env", f"app:BAD NAME={values[0]}"
    )
    assert bad.returncode == 2
    assert values[0] not in bad.stderr


def test_replace_env_with_only_environment_keeps_the_secrets(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """A container gets its secrets from --secret-file and its environment from an env file
    with a comment and a quoted multi-line value; then `--replace-env --env` registers a
    revision with exactly that environment and the secrets untouched, and its dry run says so.
    No value or reference reaches the CLI's output, the records, the worker's log or Redis."""
    from tests.integration.conftest import redis_contents

    (name,) = create_services(stack.endpoint, [f"rep-{uuid.uuid4().hex[:6]}"])
    worker = start_worker("w1")
    reference = "arn:aws:secretsmanager:us-east-1:1:secret:db-R3f"
    certificate = "MIIBs3cr3t\nQUJDREVGR0g=\n"
    (tmp_path / "app.secrets").write_text(f"# references only\nDB_PASSWORD={reference}\n")
    (tmp_path / "app.env").write_text(f'KEEP=one # inline note\nCERT="{certificate}"\n')
    first = stack.cli(
        "update", "--cluster", "demo", "--service", name, "--image", "app=:2.0.0",
        "--env-file", f"app={tmp_path / 'app.env'}",
        "--secret-file", f"app={tmp_path / 'app.secrets'}", "--json",
    )  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr
    ecs = stack.ecs()
    (container,) = ecs.describe_task_definition(
        taskDefinition=json.loads(first.stdout)["task_definition_arn"]
    )["taskDefinition"]["containerDefinitions"]
    assert {e["name"]: e["value"] for e in container["environment"]} == {
        "KEEP": "one",
        "CERT": certificate,
    }
    assert container["secrets"] == [{"name": "DB_PASSWORD", "valueFrom": reference}]

    arguments = ("update", "--cluster", "demo", "--service", name,
                 "--replace-env", "--env", "app:ONLY=two")  # fmt: skip
    dry = stack.cli(*arguments, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    (plan,) = json.loads(dry.stdout)
    assert sorted(plan["task_definition"]["settings"]) == [
        "app environment CERT removed",
        "app environment KEEP removed",
        "app environment ONLY added",
    ]
    second = stack.cli(*arguments, "--json")
    assert second.returncode == 0, second.stdout + second.stderr
    record = json.loads(second.stdout)
    assert record["state"] == "succeeded"
    (container,) = ecs.describe_task_definition(taskDefinition=record["task_definition_arn"])[
        "taskDefinition"
    ]["containerDefinitions"]
    assert container["environment"] == [{"name": "ONLY", "value": "two"}]
    assert container["secrets"] == [{"name": "DB_PASSWORD", "valueFrom": reference}]

    empty = tmp_path / "empty.secrets"
    empty.write_text("# none yet\n")
    refused = stack.cli(*arguments, "--secret-file", f"app={empty}")
    assert refused.returncode == 2
    assert "--replace-env replaces only a kind that is given" in refused.stderr

    seen = {
        "output": first.stdout + first.stderr + dry.stdout + dry.stderr + second.stdout,
        "status": stack.cli("status", record["id"], "--json").stdout,
        "worker log": worker.log(),
        "redis": redis_contents(redis.Redis.from_url(stack.redis_url)).decode(errors="replace"),
    }
    for secret in (reference, "MIIBs3cr3t", "QUJDREVGR0g"):
        for where, text in seen.items():
            assert secret not in text, f"{secret!r} leaked into the {where}"


def test_version_rules_resolve_against_ecr_at_enqueue(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """The seeded demo/web repository has 1.0.0, 1.1.0 and 1.2.0: '{>=1.1 <1.2}' deploys 1.1.0,
    as REPOSITORY:TAG@DIGEST, and the record keeps the rule and the digest; --tag-only deploys
    the tag alone; a rule no tag matches exits 2 listing the tags, and enqueues nothing."""
    repo = "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo/web"
    start_worker("w1")
    result = stack.cli(
        "update", "--cluster", "demo", "--service", "web",
        "--image", f"web={repo}:{{>=1.1 <1.2}}", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads(result.stdout)
    (image,) = record["job"]["images"]
    assert image["rule"] == ">=1.1 <1.2"
    assert image["digest"].startswith("sha256:")
    assert image["image"] == f"{repo}:1.1.0@{image['digest']}"
    assert record["images"]["web"]["after"] == image["image"]

    pinned = stack.cli(
        "update", "--cluster", "demo", "--service", "web",
        "--image", f"web={repo}:{{latest}}", "--tag-only", "--json",
    )  # fmt: skip
    assert pinned.returncode == 0, pinned.stdout + pinned.stderr
    after = json.loads(pinned.stdout)["images"]["web"]["after"]
    assert after == f"{repo}:1.2.0"
    definition = stack.ecs().describe_task_definition(
        taskDefinition=json.loads(pinned.stdout)["task_definition_arn"]
    )["taskDefinition"]
    assert {c["name"]: c["image"] for c in definition["containerDefinitions"]}["web"] == after

    before = json.loads(stack.cli("list", "--json").stdout)["deployments"]
    refused = stack.cli(
        "update", "--cluster", "demo", "--service", "web", "--image", f"web={repo}:{{>=5}}"
    )
    assert refused.returncode == 2
    assert "no tag matches '>=5'" in refused.stderr
    assert "1.2.0, 1.1.0, 1.0.0" in refused.stderr
    assert json.loads(stack.cli("list", "--json").stdout)["deployments"] == before


def test_dry_run_shows_the_change_and_changes_nothing(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """`conveyor update --dry-run`: the revision diff field by field, settings by name, the
    service changes and the resolved version, with nothing registered or updated and no value
    shown; `conveyor plan -f` on a release with an unknown container exits 1 naming it."""
    (name,) = create_services(stack.endpoint, [f"dry-{uuid.uuid4().hex[:6]}"])
    start_worker("w1")
    ecs = stack.ecs()
    before = ecs.describe_services(cluster="demo", services=[name])["services"][0]
    result = stack.cli(
        "update", "--cluster", "demo", "--service", name, "--image", "app=:9.9.9",
        "--env", "app:API_KEY=s3cr3t-value", "--desired-count", "3", "--dry-run", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (plan,) = json.loads(result.stdout)
    fields = {f["field"]: f for f in plan["task_definition"]["fields"]}
    assert fields["containerDefinitions[0].image"]["after"].endswith(":9.9.9")
    assert plan["task_definition"]["settings"] == ["app environment API_KEY added"]
    assert {"field": "desiredCount", "before": 2, "after": 3} in plan["service_changes"]
    assert "s3cr3t-value" not in result.stdout + result.stderr
    text = stack.cli(
        "update", "--cluster", "demo", "--service", name, "--image", "app=:9.9.9", "--dry-run"
    )
    assert text.returncode == 0, text.stderr
    assert "containerDefinitions[0].image:" in text.stdout
    assert "-> registry.local:5000/t/app:9.9.9" in text.stdout or ":9.9.9" in text.stdout
    after = ecs.describe_services(cluster="demo", services=[name])["services"][0]
    assert after["taskDefinition"] == before["taskDefinition"]
    assert after["deployments"] == before["deployments"]
    assert len(ecs.list_task_definitions(familyPrefix=name)["taskDefinitionArns"]) == 1
    assert json.loads(stack.cli("list", "--json").stdout)["deployments"] == []

    release_file = tmp_path / "release.yaml"
    release_file.write_text(
        f"cluster: demo\nservices:\n  - service: {name}\n    images: {{nope: ':2'}}\n"
    )
    planned = stack.cli("plan", "-f", str(release_file))
    assert planned.returncode == 1
    assert "'nope' is not in" in planned.stdout


def test_a_release_file_carries_rules_options_and_cleanup(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """One release file: demo's api service gets a version rule, a desired count and
    keep_revisions; a second service is restarted. Each lands as it would from the CLI."""
    (restarted,) = create_services(stack.endpoint, [f"rr-{uuid.uuid4().hex[:6]}"], desired=1)
    start_worker("w1")
    ecs = stack.ecs()
    before = ecs.describe_services(cluster="demo", services=[restarted])["services"][0]
    repo = "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo/api"
    release_file = tmp_path / "release.yaml"
    release_file.write_text(
        "cluster: demo\nkeep_revisions: 1\nservices:\n"
        f"  - service: api\n    images: {{api: '{repo}:{{==1.1.*}}'}}\n    desired_count: 3\n"
        f"  - service: {restarted}\n    force_new_deployment: true\n"
    )
    result = stack.cli("release", "-f", str(release_file), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    api = ecs.describe_services(cluster="demo", services=["api"])["services"][0]
    assert api["desiredCount"] == 3
    (container,) = ecs.describe_task_definition(taskDefinition=api["taskDefinition"])[
        "taskDefinition"
    ]["containerDefinitions"]
    assert container["image"].startswith(f"{repo}:1.1.0@sha256:")  # pinned as resolved
    after = ecs.describe_services(cluster="demo", services=[restarted])["services"][0]
    assert after["taskDefinition"] == before["taskDefinition"]
    assert after["deployments"][0]["id"] != before["deployments"][0]["id"]

    def active_api() -> list[str]:
        arns = ecs.list_task_definitions(familyPrefix="api", status="ACTIVE")["taskDefinitionArns"]
        return [a for a in arns if a.rsplit("/", 1)[1].startswith("api:")]

    deadline = time.monotonic() + 60
    while active_api() != [api["taskDefinition"]]:
        assert time.monotonic() < deadline, active_api()
        time.sleep(0.5)
