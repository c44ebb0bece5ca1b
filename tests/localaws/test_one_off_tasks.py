"""RunTask's tasks on the local AWS: they stop with exit codes and write their awslogs streams."""

from __future__ import annotations

from typing import Any

from tests.localaws.conftest import Aws, client, wait_for

GROUP = "/ecs/migrate"


def _definition(aws: Aws, image: str, *, group: str = GROUP, create: bool = False) -> str:
    """A Fargate revision of family ``migrate``: container ``app`` logging to ``group``."""
    options = {"awslogs-group": group, "awslogs-region": "us-east-1", "awslogs-stream-prefix": "m"}
    if create:
        options["awslogs-create-group"] = "true"
    arn: str = aws.ecs.register_task_definition(
        family="migrate",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": "app",
                "image": image,
                "memoryReservation": 128,
                "logConfiguration": {"logDriver": "awslogs", "options": options},
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    return arn


def _run(aws: Aws, definition: str, **extra: Any) -> dict[str, Any]:
    network = aws.network()
    task: dict[str, Any] = aws.ecs.run_task(
        cluster="test",
        taskDefinition=definition,
        launchType="FARGATE",
        networkConfiguration=network.awsvpc(),
        startedBy="dep-1",
        **extra,
    )["tasks"][0]
    return task


def _stopped(aws: Aws, task_arn: str) -> dict[str, Any]:
    def stopped() -> dict[str, Any] | None:
        task: dict[str, Any] = aws.ecs.describe_tasks(cluster="test", tasks=[task_arn])["tasks"][0]
        return task if task["lastStatus"] == "STOPPED" else None

    result: dict[str, Any] = wait_for(stopped)
    return result


def _log(aws: Aws, task_arn: str, group: str = GROUP) -> list[str]:
    logs = client(aws.url, "logs")
    stream = f"m/app/{task_arn.rsplit('/', 1)[-1]}"
    answer = logs.get_log_events(
        logGroupName=group, logStreamName=stream, limit=20, startFromHead=False
    )
    return [e["message"] for e in answer["events"]]


def test_a_task_runs_then_stops_with_exit_code_zero_and_a_log(aws: Aws) -> None:
    """A task goes through RUNNING to STOPPED; its container exits 0, with ECS's stop reason,
    and its awslogs stream holds lines GetLogEvents reads."""
    client(aws.url, "logs").create_log_group(logGroupName=GROUP)
    task = _run(aws, _definition(aws, "repo/app:1.0"))
    assert task["lastStatus"] in ("PROVISIONING", "PENDING")
    wait_for(
        lambda: (
            aws.ecs.describe_tasks(cluster="test", tasks=[task["taskArn"]])["tasks"][0][
                "lastStatus"
            ]
            in ("RUNNING", "STOPPED")
        )
    )
    stopped = _stopped(aws, task["taskArn"])
    assert stopped["containers"][0]["exitCode"] == 0
    assert stopped["stopCode"] == "EssentialContainerExited"
    assert stopped["stoppedReason"] == "Essential container in task exited"
    assert _log(aws, task["taskArn"]) == ["app: started on migrate:1", "app: exited 0"]
    listed = aws.ecs.list_tasks(cluster="test", startedBy="dep-1", desiredStatus="STOPPED")
    assert listed["taskArns"] == [task["taskArn"]]


def test_a_fail_image_exits_1(aws: Aws) -> None:
    """A container whose image tag starts with ``fail-`` exits 1, as service tasks fail."""
    task = _run(aws, _definition(aws, "repo/app:fail-1", create=True))
    assert _stopped(aws, task["taskArn"])["containers"][0]["exitCode"] == 1


def test_the_control_api_sets_exit_code_and_log_lines(aws: Aws) -> None:
    """task-results sets a family's container's exit code and log lines for later tasks."""
    status, _ = aws.control(
        "POST",
        "task-results",
        {
            "family": "migrate",
            "container": "app",
            "exitCode": 3,
            "logLines": ["applying 0042", "error: relation exists"],
        },
    )
    assert status == 200
    task = _run(aws, _definition(aws, "repo/app:1.0", create=True))
    assert _stopped(aws, task["taskArn"])["containers"][0]["exitCode"] == 3
    assert _log(aws, task["taskArn"]) == ["applying 0042", "error: relation exists"]
    status, body = aws.control("POST", "task-results", {"family": "migrate", "exitCode": "x"})
    assert status == 400
    assert "container" in body["message"]


def test_a_missing_log_group_fails_the_task_before_it_runs(aws: Aws) -> None:
    """As on ECS, a task whose awslogs group does not exist stops without an exit code."""
    task = _run(aws, _definition(aws, "repo/app:1.0", group="/ecs/none"))
    stopped = _stopped(aws, task["taskArn"])
    assert "exitCode" not in stopped["containers"][0]
    assert stopped["stopCode"] == "TaskFailedToStart"
    assert "/ecs/none does not exist" in stopped["stoppedReason"]


def test_a_client_token_starts_one_task(aws: Aws) -> None:
    """RunTask sent again with the same clientToken returns the first task."""
    definition = _definition(aws, "repo/app:1.0", create=True)
    first = _run(aws, definition, clientToken="dep-1")
    # The first task's subnet: a second VPC of the same range would collide.
    again = aws.ecs.run_task(
        cluster="test",
        taskDefinition=definition,
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": [first["attachments"][0]["details"][0]["value"]],
                "securityGroups": [],
            }
        },
        startedBy="dep-1",
        clientToken="dep-1",
    )["tasks"][0]
    assert again["taskArn"] == first["taskArn"]


def test_task_seconds_is_settable(aws: Aws) -> None:
    """POST config task_seconds changes how long tasks run; a reset restores it."""
    status, body = aws.control("POST", "config", {"task_seconds": 0})
    assert status == 200
    assert body["task_seconds"] == 0
    task = _run(aws, _definition(aws, "repo/app:1.0", create=True))
    stopped = aws.ecs.describe_tasks(cluster="test", tasks=[task["taskArn"]])["tasks"][0]
    assert stopped["lastStatus"] == "STOPPED"
    aws.control("POST", "reset")
    assert aws.control("GET", "config")[1]["task_seconds"] > 0
