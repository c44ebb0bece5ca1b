"""Images tagged ``fail-…`` never become healthy; the circuit breaker behaves as on ECS."""

from __future__ import annotations

import time

from tests.localaws.conftest import ROLLOUT_SECONDS, Aws, wait_for

BREAKER_WITH_ROLLBACK = {"deploymentCircuitBreaker": {"enable": True, "rollback": True}}


def test_breaker_rolls_back_to_the_previous_revision(aws: Aws) -> None:
    """With breaker and rollback, a broken revision ends FAILED with ECS's reason, and a new
    PRIMARY on the last completed revision rolls out and COMPLETES; the failed one is gone."""
    good = aws.task_definition("app", "repo/app:1.0.0")
    aws.service("app", good, deploymentConfiguration=BREAKER_WITH_ROLLBACK)
    completed_id = aws.wait_completed("app", good)["deployments"][0]["id"]
    bad = aws.task_definition("app", "repo/app:fail-1.1.0")

    failed_id = aws.ecs.update_service(cluster="test", service="app", taskDefinition=bad)[
        "service"
    ]["deployments"][0]["id"]

    def rolled_back() -> dict[str, dict[str, object]] | None:
        deployments = {d["id"]: d for d in aws.describe("app")["deployments"]}
        failed = deployments.get(failed_id)
        return deployments if failed and failed["rolloutState"] == "FAILED" else None

    during = wait_for(rolled_back)
    failed = during[failed_id]
    assert failed["status"] == "ACTIVE"
    assert failed["rolloutStateReason"] == "ECS deployment circuit breaker: tasks failed to start."
    assert int(str(failed["failedTasks"])) >= 3
    (rollback,) = [d for d in during.values() if d["status"] == "PRIMARY"]
    assert rollback["taskDefinition"] == good
    assert rollback["rolloutStateReason"] == (
        f"ECS deployment circuit breaker: rolling back to deploymentId {completed_id}."
    )

    service = aws.wait_completed("app", good)
    assert service["deployments"][0]["id"] == rollback["id"]
    assert service["taskDefinition"] == good
    messages = [event["message"] for event in service["events"]]
    assert (
        f"(service app) (deployment {failed_id}) deployment failed: tasks failed to start."
        in messages
    )
    assert any("rolling back to deployment" in m and completed_id in m for m in messages)


def test_without_breaker_a_broken_rollout_stays_in_progress(aws: Aws) -> None:
    """Without the circuit breaker, ECS keeps replacing failing tasks: the new deployment stays
    IN_PROGRESS, failedTasks keeps growing and the old deployment keeps serving."""
    good = aws.task_definition("app", "repo/app:1")
    aws.service("app", good)
    aws.wait_completed("app", good)
    bad = aws.task_definition("app", "registry.local:5000/app:fail-2")
    aws.ecs.update_service(cluster="test", service="app", taskDefinition=bad)

    time.sleep(3 * ROLLOUT_SECONDS)

    new, old = aws.describe("app")["deployments"]
    assert (new["status"], new["rolloutState"], new["runningCount"]) == (
        "PRIMARY",
        "IN_PROGRESS",
        0,
    )
    assert new["failedTasks"] >= 3
    assert (old["status"], old["taskDefinition"], old["runningCount"]) == ("ACTIVE", good, 2)
    later = wait_for(
        lambda: aws.describe("app")["deployments"][0]["failedTasks"] > new["failedTasks"]
    )
    assert later


def test_failed_tasks_are_visible_through_describe_tasks(aws: Aws) -> None:
    """Each failed launch is a STOPPED task with ECS's stop code and reason, exit code 1 on the
    broken container (any container counts, not only the first), and failedTasks counts them."""
    definition = aws.ecs.register_task_definition(
        family="two",
        containerDefinitions=[
            {"name": "ok", "image": "repo/ok:1", "memoryReservation": 64},
            {"name": "bad", "image": "repo/bad:fail-x@sha256:" + "0" * 64, "memoryReservation": 64},
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    aws.service("two", definition, desiredCount=1)

    stopped = wait_for(
        lambda: aws.ecs.list_tasks(cluster="test", serviceName="two", desiredStatus="STOPPED")[
            "taskArns"
        ]
    )
    tasks = aws.ecs.describe_tasks(cluster="test", tasks=stopped)["tasks"]

    for task in tasks:
        assert task["lastStatus"] == "STOPPED"
        assert task["stopCode"] == "EssentialContainerExited"
        assert task["stoppedReason"] == "Essential container in task exited"
        containers = {c["name"]: c for c in task["containers"]}
        assert containers["bad"]["exitCode"] == 1
    assert aws.describe("two")["deployments"][0]["failedTasks"] >= len(tasks)
    assert aws.describe("two")["deployments"][0]["rolloutState"] == "IN_PROGRESS"


def test_registry_port_is_not_a_tag(aws: Aws) -> None:
    """An image whose registry port looks like ``fail-`` but whose tag does not is healthy."""
    definition = aws.task_definition("app", "fail-registry:5000/app")
    aws.service("app", definition, desiredCount=1)
    aws.wait_completed("app", definition)
