"""Rolling deployments move the way ECS moves them, as seen through the ECS API."""

from __future__ import annotations

from tests.localaws.conftest import Aws, wait_for


def test_services_stable_waiter_succeeds_and_new_revision_completes(aws: Aws) -> None:
    """The SDK waiter succeeds on a healthy rollout; the new revision is then PRIMARY, COMPLETED
    and alone, the service runs it, and the events tell the story in ECS's words."""
    first = aws.task_definition("app", "repo/app:1.0.0")
    aws.service("app", first)
    aws.wait_stable("app")
    second = aws.task_definition("app", "repo/app:1.1.0")
    aws.ecs.update_service(cluster="test", service="app", taskDefinition=second)

    aws.wait_stable("app")

    service = aws.describe("app")
    (primary,) = service["deployments"]
    assert primary["status"] == "PRIMARY"
    assert primary["taskDefinition"] == second
    assert primary["rolloutState"] == "COMPLETED"
    assert primary["rolloutStateReason"] == f"ECS deployment {primary['id']} completed."
    assert (primary["runningCount"], primary["pendingCount"]) == (2, 0)
    assert service["taskDefinition"] == second
    assert (service["runningCount"], service["pendingCount"]) == (2, 0)
    messages = [event["message"] for event in service["events"]]
    assert messages[0] == "(service app) has reached a steady state."
    assert f"(service app) (deployment {primary['id']}) deployment completed." in messages
    assert any(m.startswith("(service app) has started 2 tasks: (task ") for m in messages)
    assert any(m.startswith("(service app) has stopped 2 running tasks: (task ") for m in messages)
    assert all({"id", "createdAt", "message"} <= set(event) for event in service["events"])


def test_update_service_answers_with_the_new_primary_beside_the_old_one(aws: Aws) -> None:
    """UpdateService's response already holds the new PRIMARY (IN_PROGRESS) and the previous
    deployment as ACTIVE; DescribeServices shows both while the rollout runs."""
    first = aws.task_definition("app", "repo/app:1")
    aws.service("app", first)
    aws.wait_stable("app")
    old_id = aws.describe("app")["deployments"][0]["id"]
    second = aws.task_definition("app", "repo/app:2")

    response = aws.ecs.update_service(cluster="test", service="app", taskDefinition=second)

    new, old = response["service"]["deployments"]
    assert (new["status"], new["rolloutState"], new["taskDefinition"]) == (
        "PRIMARY",
        "IN_PROGRESS",
        second,
    )
    assert new["id"].startswith("ecs-svc/")
    assert new["id"] != old_id
    assert new["rolloutStateReason"] == f"ECS deployment {new['id']} in progress."
    assert (old["id"], old["status"], old["taskDefinition"]) == (old_id, "ACTIVE", first)
    during = aws.describe("app")["deployments"]
    assert [(d["id"], d["status"]) for d in during] == [(new["id"], "PRIMARY"), (old_id, "ACTIVE")]
    aws.wait_completed("app", second)


def test_service_tasks_are_real_tasks_with_ecs_fields(aws: Aws) -> None:
    """A deployment's tasks are visible to ListTasks/DescribeTasks: group service:NAME, startedBy
    the deployment id, RUNNING on the deployment's task definition, with containers."""
    definition = aws.task_definition("app", "repo/app:1")
    aws.service("app", definition)
    service = aws.wait_completed("app", definition)
    deployment_id = service["deployments"][0]["id"]

    arns = aws.ecs.list_tasks(cluster="test", serviceName="app")["taskArns"]
    tasks = aws.ecs.describe_tasks(cluster="test", tasks=arns)["tasks"]

    assert len(tasks) == 2
    for task in tasks:
        assert task["group"] == "service:app"
        assert task["startedBy"] == deployment_id
        assert task["taskDefinitionArn"] == definition
        assert (task["lastStatus"], task["desiredStatus"]) == ("RUNNING", "RUNNING")
        assert task["containers"][0]["name"] == "app"
        assert task["containers"][0]["lastStatus"] == "RUNNING"
        assert "startedAt" in task
        assert "createdAt" in task


def test_list_tasks_honours_service_name_and_desired_status(aws: Aws) -> None:
    """ListTasks filters by serviceName (moto ignores it) and by desiredStatus, RUNNING when the
    parameter is absent, as on AWS; replaced tasks appear under STOPPED."""
    one = aws.task_definition("one", "repo/one:1")
    two = aws.task_definition("two", "repo/two:1")
    aws.service("one", one, desiredCount=1)
    aws.service("two", two, desiredCount=3)
    aws.wait_stable("one", "two")

    def arns(**filters: str) -> list[str]:
        result: list[str] = aws.ecs.list_tasks(cluster="test", **filters)["taskArns"]
        return result

    assert len(arns(serviceName="one")) == 1
    assert len(arns(serviceName="two")) == 3
    assert len(arns()) == 4
    assert arns(serviceName="one", desiredStatus="STOPPED") == []

    one_again = aws.task_definition("one", "repo/one:2")
    aws.ecs.update_service(cluster="test", service="one", taskDefinition=one_again)
    aws.wait_completed("one", one_again)

    stopped = arns(serviceName="one", desiredStatus="STOPPED")
    assert len(stopped) == 1
    (task,) = aws.ecs.describe_tasks(cluster="test", tasks=stopped)["tasks"]
    assert task["lastStatus"] == "STOPPED"
    assert task["stoppedReason"].startswith("Scaling activity initiated by (deployment ecs-svc/")
    assert len(arns(serviceName="two")) == 3


def test_list_tasks_pages_by_100(aws: Aws) -> None:
    """ListTasks returns at most maxResults (100 by default) ARNs and a nextToken for the rest,
    which the boto3 paginator follows."""
    definition = aws.task_definition("app", "repo/app:1")
    aws.service("app", definition, desiredCount=5)
    aws.wait_stable("app")

    first = aws.ecs.list_tasks(cluster="test", serviceName="app", maxResults=2)
    paginator = aws.ecs.get_paginator("list_tasks")
    pages = list(paginator.paginate(cluster="test", PaginationConfig={"PageSize": 2}))

    assert len(first["taskArns"]) == 2
    assert "nextToken" in first
    assert sum(len(page["taskArns"]) for page in pages) == 5


def test_create_service_keeps_parameters_moto_drops(aws: Aws) -> None:
    """DescribeServices returns deploymentConfiguration (with the breaker), the health-check grace
    period and managed-tag settings as created; UpdateService can change them and desiredCount."""
    network = aws.network()
    definition = aws.fargate_task_definition("web", "repo/web:1")
    config = {
        "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        "maximumPercent": 150,
        "minimumHealthyPercent": 50,
    }
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
        deploymentConfiguration=config,
        healthCheckGracePeriodSeconds=45,
        enableECSManagedTags=True,
        enableExecuteCommand=True,
        propagateTags="SERVICE",
    )

    service = aws.describe("web")
    assert service["deploymentConfiguration"] == config
    assert service["healthCheckGracePeriodSeconds"] == 45
    assert service["enableECSManagedTags"] is True
    assert service["enableExecuteCommand"] is True
    assert service["propagateTags"] == "SERVICE"
    assert service["networkConfiguration"] == network.awsvpc()
    assert service["deployments"][0]["launchType"] == "FARGATE"
    assert service["deployments"][0]["networkConfiguration"] == network.awsvpc()

    aws.ecs.update_service(
        cluster="test",
        service="web",
        desiredCount=3,
        deploymentConfiguration={"deploymentCircuitBreaker": {"enable": False, "rollback": False}},
    )
    updated = aws.describe("web")
    assert updated["desiredCount"] == 3
    assert updated["deploymentConfiguration"]["deploymentCircuitBreaker"] == {
        "enable": False,
        "rollback": False,
    }
    assert updated["deploymentConfiguration"]["maximumPercent"] == 150
    service = aws.wait_completed("web", definition)
    assert service["runningCount"] == 3
    messages = [event["message"] for event in service["events"]]
    assert any(
        m.startswith("(service web) registered") and network.target_group_arn in m for m in messages
    )


def test_scaling_without_new_revision_keeps_the_deployment(aws: Aws) -> None:
    """Changing only desiredCount scales the PRIMARY in place: no new deployment appears, and
    the service reaches a steady state at the new count."""
    definition = aws.task_definition("app", "repo/app:1")
    aws.service("app", definition, desiredCount=1)
    before = aws.wait_completed("app", definition)["deployments"][0]["id"]

    aws.ecs.update_service(cluster="test", service="app", desiredCount=3)
    aws.wait_stable("app")
    after = aws.describe("app")
    assert [d["id"] for d in after["deployments"]] == [before]
    assert after["runningCount"] == 3

    aws.ecs.update_service(cluster="test", service="app", desiredCount=0)
    aws.wait_stable("app")
    assert aws.ecs.list_tasks(cluster="test", serviceName="app")["taskArns"] == []


def test_force_new_deployment_rolls_the_same_revision(aws: Aws) -> None:
    """forceNewDeployment starts a new PRIMARY on the same task definition, which completes."""
    definition = aws.task_definition("app", "repo/app:1")
    aws.service("app", definition)
    first = aws.wait_completed("app", definition)["deployments"][0]["id"]

    response = aws.ecs.update_service(cluster="test", service="app", forceNewDeployment=True)

    new_id = response["service"]["deployments"][0]["id"]
    assert new_id != first
    completed = aws.wait_completed("app", definition)
    assert completed["deployments"][0]["id"] == new_id


def test_stopped_task_is_replaced(aws: Aws) -> None:
    """StopTask on a service's task stops it (UserInitiated) and the service starts another."""
    definition = aws.task_definition("app", "repo/app:1")
    aws.service("app", definition, desiredCount=1)
    aws.wait_completed("app", definition)
    (victim,) = aws.ecs.list_tasks(cluster="test", serviceName="app")["taskArns"]

    stopped = aws.ecs.stop_task(cluster="test", task=victim, reason="testing")["task"]

    assert (stopped["lastStatus"], stopped["stopCode"]) == ("STOPPED", "UserInitiated")
    replacement = wait_for(
        lambda: [
            t
            for t in aws.ecs.list_tasks(cluster="test", serviceName="app")["taskArns"]
            if t != victim
        ]
    )
    assert victim not in replacement
    aws.wait_stable("app")


def test_delete_service_stops_its_tasks(aws: Aws) -> None:
    """DeleteService (force) stops every task of the service and marks it INACTIVE; the name
    can then be used again."""
    definition = aws.task_definition("app", "repo/app:1")
    aws.service("app", definition)
    aws.wait_stable("app")

    aws.ecs.delete_service(cluster="test", service="app", force=True)

    assert aws.describe("app")["status"] == "INACTIVE"
    assert aws.ecs.list_tasks(cluster="test", serviceName="app")["taskArns"] == []
    aws.service("app", definition, desiredCount=1)
    aws.wait_stable("app")


def test_list_services_pages_and_leaves_out_deleted_services(aws: Aws) -> None:
    """ListServices returns 10 ARNs per page by default (moto returns all) and no deleted ones."""
    definition = aws.task_definition("app", "repo/app:1")
    for i in range(12):
        aws.service(f"svc-{i:02d}", definition, desiredCount=0)
    aws.ecs.delete_service(cluster="test", service="svc-00")

    first = aws.ecs.list_services(cluster="test")
    pages = aws.ecs.get_paginator("list_services").paginate(cluster="test")
    everything = [arn for page in pages for arn in page["serviceArns"]]

    assert len(first["serviceArns"]) == 10
    assert "nextToken" in first
    assert len(everything) == 11
    assert not any(arn.endswith("/svc-00") for arn in everything)
