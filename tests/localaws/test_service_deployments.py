"""ECS's deployment history: ListServiceDeployments, DescribeServiceDeployments,
DescribeServiceRevisions and StopServiceDeployment, as seen through the ECS API."""

from __future__ import annotations

import datetime
import re
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from localaws.rollout_history import DeploymentHistory, ServiceDeploymentRecord
from tests.localaws.conftest import Aws, client, wait_for

BREAKER_WITH_ROLLBACK = {"deploymentCircuitBreaker": {"enable": True, "rollback": True}}
BREAKER_WITHOUT_ROLLBACK = {"deploymentCircuitBreaker": {"enable": True, "rollback": False}}
NO_RETRIES = Config(retries={"mode": "legacy", "max_attempts": 0})
DEPLOYMENT_ARN = re.compile(
    r"^arn:aws:ecs:us-east-1:123456789012:service-deployment/test/app/[A-Za-z0-9_-]+$"
)
REVISION_ARN = re.compile(r"^arn:aws:ecs:us-east-1:123456789012:service-revision/test/app/\d+$")


def history(aws: Aws, name: str = "app", **filters: Any) -> list[dict[str, Any]]:
    """ListServiceDeployments of one service of cluster ``test`` (one page)."""
    briefs: list[dict[str, Any]] = aws.ecs.list_service_deployments(
        cluster="test", service=name, **filters
    )["serviceDeployments"]
    return briefs


def describe(aws: Aws, arn: str) -> dict[str, Any]:
    """DescribeServiceDeployments of one ARN that must exist."""
    answer = aws.ecs.describe_service_deployments(serviceDeploymentArns=[arn])
    assert answer["failures"] == []
    (deployment,) = answer["serviceDeployments"]
    result: dict[str, Any] = deployment
    return result


def revision(aws: Aws, arn: str) -> dict[str, Any]:
    """DescribeServiceRevisions of one ARN that must exist."""
    answer = aws.ecs.describe_service_revisions(serviceRevisionArns=[arn])
    assert answer["failures"] == []
    (found,) = answer["serviceRevisions"]
    result: dict[str, Any] = found
    return result


def wait_status(aws: Aws, arn: str, status: str) -> dict[str, Any]:
    """Wait until a service deployment reaches ``status``; return its description."""

    def reached() -> dict[str, Any] | None:
        found = describe(aws, arn)
        return found if found["status"] == status else None

    result: dict[str, Any] = wait_for(reached)
    return result


def error_of(call: Any, **kwargs: Any) -> dict[str, Any]:
    """The parsed error response of a call that must fail."""
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return dict(caught.value.response)


def test_create_and_update_are_successful_deployments_of_their_revisions(aws: Aws) -> None:
    """CreateService and an UpdateService to a new revision are each a service deployment, newest
    first; each ends SUCCESSFUL, targets a new service revision whose taskDefinition is the one
    deployed, and the update's source is the revision the service ran before."""
    first = aws.task_definition("app", "repo/app:1")
    aws.service("app", first)
    aws.wait_completed("app", first)
    second = aws.task_definition("app", "repo/app:2")
    aws.ecs.update_service(cluster="test", service="app", taskDefinition=second)
    aws.wait_completed("app", second)

    update, create = history(aws)

    for brief in (update, create):
        assert DEPLOYMENT_ARN.match(brief["serviceDeploymentArn"])
        assert REVISION_ARN.match(brief["targetServiceRevisionArn"])
        assert brief["status"] == "SUCCESSFUL"
        assert brief["serviceArn"] == "arn:aws:ecs:us-east-1:123456789012:service/test/app"
        assert brief["clusterArn"] == "arn:aws:ecs:us-east-1:123456789012:cluster/test"
        assert brief["createdAt"] <= brief["startedAt"] <= brief["finishedAt"]
    assert create["createdAt"] <= update["createdAt"]
    assert revision(aws, create["targetServiceRevisionArn"])["taskDefinition"] == first
    assert revision(aws, update["targetServiceRevisionArn"])["taskDefinition"] == second

    detail = describe(aws, update["serviceDeploymentArn"])
    assert detail["targetServiceRevision"] == {
        "arn": update["targetServiceRevisionArn"],
        "requestedTaskCount": 2,
        "runningTaskCount": 2,
        "pendingTaskCount": 0,
    }
    assert [source["arn"] for source in detail["sourceServiceRevisions"]] == [
        create["targetServiceRevisionArn"]
    ]
    assert detail["sourceServiceRevisions"][0]["runningTaskCount"] == 0
    assert detail["deploymentCircuitBreaker"]["status"] == "DISABLED"
    assert detail["deploymentConfiguration"]["minimumHealthyPercent"] == 100
    assert "rollback" not in detail
    assert describe(aws, create["serviceDeploymentArn"])["sourceServiceRevisions"] == []


def test_breaker_rollback_stays_in_the_history_after_the_service_forgot_it(aws: Aws) -> None:
    """A circuit-breaker rollback is not a new service deployment: the broken update itself ends
    ROLLBACK_SUCCESSFUL, still targeting the broken revision, with the rollback (to the previous
    revision, no new revision made) and the TRIGGERED breaker recorded. This holds after the
    rollback completed and DescribeServices no longer shows the failed deployment."""
    good = aws.task_definition("app", "repo/app:1")
    aws.service("app", good, deploymentConfiguration=BREAKER_WITH_ROLLBACK)
    aws.wait_completed("app", good)
    bad = aws.task_definition("app", "repo/app:fail-2")
    failed_id = aws.ecs.update_service(cluster="test", service="app", taskDefinition=bad)[
        "service"
    ]["deployments"][0]["id"]

    service = aws.wait_completed("app", good)

    assert failed_id not in {d["id"] for d in service["deployments"]}
    update, create = history(aws)
    assert update["status"] == "ROLLBACK_SUCCESSFUL"
    assert update["statusReason"] == "ECS deployment circuit breaker: tasks failed to start."
    assert revision(aws, update["targetServiceRevisionArn"])["taskDefinition"] == bad
    detail = describe(aws, update["serviceDeploymentArn"])
    assert detail["rollback"]["serviceRevisionArn"] == create["targetServiceRevisionArn"]
    assert detail["rollback"]["reason"] == "ECS deployment circuit breaker: tasks failed to start."
    assert detail["createdAt"] <= detail["rollback"]["startedAt"] <= detail["finishedAt"]
    breaker = detail["deploymentCircuitBreaker"]
    assert breaker["status"] == "TRIGGERED"
    assert breaker["threshold"] == 3
    assert breaker["failureCount"] >= breaker["threshold"]
    assert detail["targetServiceRevision"]["runningTaskCount"] == 0
    assert detail["sourceServiceRevisions"][0]["runningTaskCount"] == 2
    assert create["status"] == "SUCCESSFUL"


def test_breaker_without_rollback_stops_the_deployment(aws: Aws) -> None:
    """With the breaker on and rollback off, the broken deployment ends STOPPED (with stoppedAt)
    and the breaker TRIGGERED, while the old deployment keeps serving."""
    good = aws.task_definition("app", "repo/app:1")
    aws.service("app", good, deploymentConfiguration=BREAKER_WITHOUT_ROLLBACK)
    aws.wait_completed("app", good)
    bad = aws.task_definition("app", "repo/app:fail-2")
    aws.ecs.update_service(cluster="test", service="app", taskDefinition=bad)
    arn = history(aws)[0]["serviceDeploymentArn"]

    detail = wait_status(aws, arn, "STOPPED")

    assert detail["statusReason"] == "ECS deployment circuit breaker: tasks failed to start."
    assert detail["deploymentCircuitBreaker"]["status"] == "TRIGGERED"
    assert "stoppedAt" in detail
    assert "rollback" not in detail
    assert aws.describe("app")["deployments"][1]["taskDefinition"] == good


def test_deployment_superseded_before_completing_is_stopped(aws: Aws) -> None:
    """An UpdateService that starts a new deployment while the previous one is still in progress
    STOPS the previous one (its reason names the newer deployment); the newer one completes."""
    good = aws.task_definition("app", "repo/app:1")
    aws.service("app", good)
    aws.wait_completed("app", good)
    stuck = aws.task_definition("app", "repo/app:fail-2")  # no breaker: in progress for ever
    aws.ecs.update_service(cluster="test", service="app", taskDefinition=stuck)
    stuck_arn = history(aws)[0]["serviceDeploymentArn"]
    fixed = aws.task_definition("app", "repo/app:3")
    aws.ecs.update_service(cluster="test", service="app", taskDefinition=fixed)

    aws.wait_completed("app", fixed)

    newest, superseded, create = history(aws)
    assert superseded["serviceDeploymentArn"] == stuck_arn
    assert superseded["status"] == "STOPPED"
    assert newest["serviceDeploymentArn"] in superseded["statusReason"]
    assert "stoppedAt" in describe(aws, stuck_arn)
    assert newest["status"] == "SUCCESSFUL"
    assert create["status"] == "SUCCESSFUL"
    sources = describe(aws, newest["serviceDeploymentArn"])["sourceServiceRevisions"]
    assert [source["arn"] for source in sources] == [
        superseded["targetServiceRevisionArn"],
        create["targetServiceRevisionArn"],
    ]


def test_stop_service_deployment_rolls_back_to_the_previous_revision(aws: Aws) -> None:
    """StopServiceDeployment(ROLLBACK) on an ongoing deployment: ROLLBACK_REQUESTED, then the
    service rolls back as after a breaker rollback (the stopped deployment FAILED beside a new
    PRIMARY on the old revision, which completes alone), and the deployment ends
    ROLLBACK_SUCCESSFUL with the rollback recorded; no new service deployment appears."""
    good = aws.task_definition("app", "repo/app:1")
    aws.service("app", good)
    aws.wait_completed("app", good)
    stuck = aws.task_definition("app", "repo/app:fail-2")  # no breaker: in progress for ever
    stuck_id = aws.ecs.update_service(cluster="test", service="app", taskDefinition=stuck)[
        "service"
    ]["deployments"][0]["id"]
    arn = history(aws)[0]["serviceDeploymentArn"]

    answer = aws.ecs.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")

    assert answer["serviceDeploymentArn"] == arn
    # Right after the request, how far the rollback has got is the local AWS's rollout
    # clock, not something the request decides; the end is asserted below.
    assert describe(aws, arn)["status"] in (
        "ROLLBACK_REQUESTED",
        "ROLLBACK_IN_PROGRESS",
        "ROLLBACK_SUCCESSFUL",
    )

    def stopped_deployment_failed() -> bool:
        deployments = {d["id"]: d for d in aws.describe("app")["deployments"]}
        stopped = deployments.get(stuck_id)
        return stopped is not None and stopped["rolloutState"] == "FAILED"

    wait_for(stopped_deployment_failed)
    service = aws.wait_completed("app", good)
    assert service["taskDefinition"] == good
    assert stuck_id not in {d["id"] for d in service["deployments"]}
    assert any(
        f"(deployment {stuck_id}) rolling back to deployment" in event["message"]
        for event in service["events"]
    )
    detail = wait_status(aws, arn, "ROLLBACK_SUCCESSFUL")
    update, create = history(aws)
    assert update["serviceDeploymentArn"] == arn
    assert detail["rollback"]["serviceRevisionArn"] == create["targetServiceRevisionArn"]
    assert "StopServiceDeployment" in detail["rollback"]["reason"]
    assert detail["targetServiceRevision"]["arn"] == update["targetServiceRevisionArn"]
    assert revision(aws, update["targetServiceRevisionArn"])["taskDefinition"] == stuck


def test_stop_service_deployment_errors(aws: Aws) -> None:
    """Stopping a completed deployment is a ConflictException naming it; an unknown ARN is a
    ServiceDeploymentNotFoundException; a first deployment has nothing to roll back to
    (ConflictException); stopType ABORT is refused (InvalidParameterException)."""
    good = aws.task_definition("app", "repo/app:1")
    aws.service("app", good)
    aws.wait_completed("app", good)
    (done,) = history(aws)
    stop = aws.ecs.stop_service_deployment

    conflict = error_of(stop, serviceDeploymentArn=done["serviceDeploymentArn"])
    assert conflict["Error"]["Code"] == "ConflictException"
    assert "SUCCESSFUL" in conflict["Error"]["Message"]
    assert conflict["resourceIds"] == [done["serviceDeploymentArn"]]
    assert conflict["ResponseMetadata"]["HTTPStatusCode"] == 400

    unknown = done["serviceDeploymentArn"].rsplit("/", 1)[0] + "/nope"
    missing = error_of(stop, serviceDeploymentArn=unknown)
    assert missing["Error"]["Code"] == "ServiceDeploymentNotFoundException"

    abort = error_of(stop, serviceDeploymentArn=done["serviceDeploymentArn"], stopType="ABORT")
    assert abort["Error"]["Code"] == "InvalidParameterException"

    broken = aws.task_definition("other", "repo/other:fail-1")
    aws.service("other", broken)
    (first,) = history(aws, "other")
    no_previous = error_of(stop, serviceDeploymentArn=first["serviceDeploymentArn"])
    assert no_previous["Error"]["Code"] == "ConflictException"
    # PENDING or IN_PROGRESS by the local AWS's rollout clock; what matters is that the
    # refused stop left it ongoing.
    assert describe(aws, first["serviceDeploymentArn"])["status"] in ("PENDING", "IN_PROGRESS")
    assert describe(aws, done["serviceDeploymentArn"])["status"] == "SUCCESSFUL"


def test_pagination_and_filters(aws: Aws) -> None:
    """ListServiceDeployments pages newest first (default 20, maxResults), without repeats even
    when a deployment starts between pages, and filters by status and by createdAt (after and
    before inclusive; the SDK sends them in whole seconds)."""
    good = aws.task_definition("app", "repo/app:1")
    aws.service("app", good)
    for _ in range(2):
        aws.ecs.update_service(cluster="test", service="app", forceNewDeployment=True)
    earlier = history(aws)
    time.sleep(1.1)  # so that the next deployments are created in a later whole second
    for _ in range(4):
        aws.ecs.update_service(cluster="test", service="app", forceNewDeployment=True)
    everything = history(aws)
    assert len(everything) == 7
    assert [b["serviceDeploymentArn"] for b in everything[4:]] == [
        b["serviceDeploymentArn"] for b in earlier
    ]
    assert all(
        older["createdAt"] <= newer["createdAt"]
        for older, newer in zip(everything[1:], everything, strict=False)
    )

    first_page = aws.ecs.list_service_deployments(cluster="test", service="app", maxResults=3)
    aws.ecs.update_service(cluster="test", service="app", forceNewDeployment=True)  # a newer one
    pages = [first_page["serviceDeployments"]]
    token = first_page.get("nextToken")
    while token:
        page = aws.ecs.list_service_deployments(
            cluster="test", service="app", maxResults=3, nextToken=token
        )
        pages.append(page["serviceDeployments"])
        token = page.get("nextToken")
    assert [len(page) for page in pages] == [3, 3, 1]
    paged = [b["serviceDeploymentArn"] for page in pages for b in page]
    assert paged == [b["serviceDeploymentArn"] for b in everything]
    assert "nextToken" not in aws.ecs.list_service_deployments(cluster="test", service="app")

    latest = history(aws)[0]
    stopped = history(aws, status=["STOPPED"])
    assert [b["serviceDeploymentArn"] for b in stopped] == [
        b["serviceDeploymentArn"] for b in everything
    ]
    assert all(b["status"] == "STOPPED" for b in stopped)
    assert history(aws, status=["SUCCESSFUL", "ROLLBACK_SUCCESSFUL"]) == []
    final = wait_status(aws, latest["serviceDeploymentArn"], "SUCCESSFUL")
    assert [b["serviceDeploymentArn"] for b in history(aws, status=["SUCCESSFUL"])] == [
        final["serviceDeploymentArn"]
    ]

    arns = [b["serviceDeploymentArn"] for b in history(aws)]
    later_batch, earlier_batch = arns[:5], arns[5:]
    pivot = everything[3]["createdAt"].replace(microsecond=0)  # the later batch's second
    after = [b["serviceDeploymentArn"] for b in history(aws, createdAt={"after": pivot})]
    before = [b["serviceDeploymentArn"] for b in history(aws, createdAt={"before": pivot})]
    assert after == later_batch
    assert before[-3:] == earlier_batch
    assert set(before) <= set(earlier_batch) | {later_batch[-1]}  # one created at .000 exactly
    window = history(aws, createdAt={"after": pivot, "before": pivot + datetime.timedelta(hours=1)})
    assert [b["serviceDeploymentArn"] for b in window] == later_batch

    too_many = error_of(
        aws.ecs.list_service_deployments, cluster="test", service="app", maxResults=101
    )
    assert too_many["Error"]["Code"] == "InvalidParameterException"
    bad_status = error_of(
        aws.ecs.list_service_deployments, cluster="test", service="app", status=["DONE"]
    )
    assert bad_status["Error"]["Code"] == "InvalidParameterException"
    unknown = error_of(aws.ecs.list_service_deployments, cluster="test", service="nope")
    assert unknown["Error"]["Code"] == "ServiceNotFoundException"


def test_service_given_by_arn_and_revision_configuration(aws: Aws) -> None:
    """ListServiceDeployments takes the service's ARN (its cluster found from it); the service
    revision records the task definition and the service configuration it deployed (launch type,
    network, load balancers, container images)."""
    network = aws.network()
    definition = aws.fargate_task_definition("web", "repo/web:1@sha256:" + "a" * 64)
    service_arn = aws.service(
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
    )["serviceArn"]

    (brief,) = aws.ecs.list_service_deployments(service=service_arn)["serviceDeployments"]
    found = revision(aws, brief["targetServiceRevisionArn"])

    assert found["taskDefinition"] == definition
    assert found["serviceArn"] == service_arn
    assert found["launchType"] == "FARGATE"
    assert found["platformFamily"] == "Linux"
    assert found["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == network.subnets
    assert found["loadBalancers"][0]["targetGroupArn"] == network.target_group_arn
    assert found["containerImages"] == [
        {
            "containerName": "app",
            "image": "repo/web:1@sha256:" + "a" * 64,
            "imageDigest": "sha256:" + "a" * 64,
        }
    ]
    assert "createdAt" in found


def test_unknown_arns_are_failures(aws: Aws) -> None:
    """DescribeServiceDeployments and DescribeServiceRevisions answer unknown ARNs as failures
    (MISSING) beside the known ones, and refuse more than 20 ARNs or none."""
    good = aws.task_definition("app", "repo/app:1")
    aws.service("app", good)
    (brief,) = history(aws)
    unknown = "arn:aws:ecs:us-east-1:123456789012:service-deployment/test/app/unknown"
    unknown_revision = "arn:aws:ecs:us-east-1:123456789012:service-revision/test/app/1"

    deployments = aws.ecs.describe_service_deployments(
        serviceDeploymentArns=[brief["serviceDeploymentArn"], unknown]
    )
    revisions = aws.ecs.describe_service_revisions(
        serviceRevisionArns=[unknown_revision, brief["targetServiceRevisionArn"]]
    )

    assert [d["serviceDeploymentArn"] for d in deployments["serviceDeployments"]] == [
        brief["serviceDeploymentArn"]
    ]
    assert deployments["failures"] == [{"arn": unknown, "reason": "MISSING"}]
    assert [r["serviceRevisionArn"] for r in revisions["serviceRevisions"]] == [
        brief["targetServiceRevisionArn"]
    ]
    assert revisions["failures"] == [{"arn": unknown_revision, "reason": "MISSING"}]
    too_many = error_of(aws.ecs.describe_service_deployments, serviceDeploymentArns=[unknown] * 21)
    assert too_many["Error"]["Code"] == "InvalidParameterException"
    none = error_of(aws.ecs.describe_service_revisions, serviceRevisionArns=[])
    assert none["Error"]["Code"] == "InvalidParameterException"


def test_history_is_kept_per_account_and_deleted_with_the_service(aws: Aws) -> None:
    """Another account (x-moto-account-id) has its own history and cannot see this one's; a
    deleted service's deployments and revisions are deleted with it, as on ECS."""
    good = aws.task_definition("app", "repo/app:1")
    aws.service("app", good)
    (mine,) = history(aws)
    other = client(aws.url, "ecs")

    def other_account(request: Any, **_: Any) -> None:
        request.headers["x-moto-account-id"] = "111111111111"

    other.meta.events.register("before-sign.ecs.*", other_account)
    other.create_cluster(clusterName="test")
    other_definition = other.register_task_definition(
        family="app",
        containerDefinitions=[{"name": "app", "image": "repo/app:9", "memoryReservation": 64}],
    )["taskDefinition"]["taskDefinitionArn"]
    other.create_service(
        cluster="test", serviceName="app", taskDefinition=other_definition, desiredCount=1
    )

    (theirs,) = other.list_service_deployments(cluster="test", service="app")["serviceDeployments"]
    assert ":111111111111:service-deployment/test/app/" in theirs["serviceDeploymentArn"]
    seen_by_them = other.describe_service_deployments(
        serviceDeploymentArns=[mine["serviceDeploymentArn"]]
    )
    assert seen_by_them["failures"] == [{"arn": mine["serviceDeploymentArn"], "reason": "MISSING"}]
    assert [b["serviceDeploymentArn"] for b in history(aws)] == [mine["serviceDeploymentArn"]]

    aws.ecs.delete_service(cluster="test", service="app", force=True)

    assert history(aws) == []
    gone = aws.ecs.describe_service_deployments(
        serviceDeploymentArns=[mine["serviceDeploymentArn"]]
    )
    assert gone["failures"] == [{"arn": mine["serviceDeploymentArn"], "reason": "MISSING"}]
    assert other.list_service_deployments(cluster="test", service="app")["serviceDeployments"]


def test_faults_stats_and_rate_limits_apply(aws: Aws) -> None:
    """The new operations are ECS operations for the control API: faults target them by name,
    stats count them, and ListServiceDeployments and DescribeServiceDeployments share one token
    bucket (burst 50)."""
    good = aws.task_definition("app", "repo/app:1")
    aws.service("app", good)
    (brief,) = history(aws)
    arn = brief["serviceDeploymentArn"]
    ecs = client(aws.url, "ecs", NO_RETRIES)

    aws.control("POST", "faults", {"throttle": 1, "operations": ["ListServiceDeployments"]})
    throttled = error_of(ecs.list_service_deployments, cluster="test", service="app")
    assert throttled["Error"]["Code"] == "ThrottlingException"
    ecs.describe_service_deployments(serviceDeploymentArns=[arn])  # not in "operations"
    aws.control("DELETE", "faults")
    stats = aws.control("GET", "stats")[1]
    assert stats["throttled"]["ListServiceDeployments"] == 1
    assert stats["calls"]["DescribeServiceDeployments"] >= 1

    _, limits = aws.control("POST", "limits", {"enabled": True, "scale": 0.0001})
    (bucket,) = [b for b in limits["buckets"] if "ListServiceDeployments" in b["operations"]]
    assert bucket["operations"] == ["DescribeServiceDeployments", "ListServiceDeployments"]
    assert bucket["burst"] == 50
    for index in range(50):
        if index % 2:
            ecs.list_service_deployments(cluster="test", service="app")
        else:
            ecs.describe_service_deployments(serviceDeploymentArns=[arn])
    limited = error_of(ecs.describe_service_deployments, serviceDeploymentArns=[arn])
    assert limited["Error"]["Code"] == "ThrottlingException"
    # DescribeServiceRevisions is in no bucket of the table: never limited.
    ecs.describe_service_revisions(serviceRevisionArns=[brief["targetServiceRevisionArn"]])


def test_history_keeps_the_newest_deployments_of_each_service() -> None:
    """The history is bounded per service: beyond the limit the oldest service deployment (and
    its target revision) is forgotten, other services' histories untouched."""
    history_ = DeploymentHistory(limit=3)

    def record(service: str, number: int) -> ServiceDeploymentRecord:
        arn = f"arn:aws:ecs:us-east-1:123456789012:service-deployment/c/{service}/{number}"
        target = SimpleNamespace(arn=f"{arn}-revision", account="123456789012", region="us-east-1")
        fake = SimpleNamespace(
            key=("123456789012", "us-east-1", "c", service),
            arn=arn,
            target=target,
            account="123456789012",
            region="us-east-1",
        )
        return cast(ServiceDeploymentRecord, fake)

    records = [record("a", n) for n in range(5)]
    other = record("b", 0)
    history_.add(other)
    for item in records:
        history_.add(item)

    assert history_.for_service(records[0].key) == records[:1:-1]
    assert history_.deployment("123456789012", "us-east-1", records[1].arn) is None
    assert history_.revision("123456789012", "us-east-1", records[1].target.arn) is None
    assert history_.deployment("123456789012", "us-east-1", records[4].arn) is records[4]
    assert history_.deployment("111111111111", "us-east-1", records[4].arn) is None
    assert history_.for_service(other.key) == [other]
