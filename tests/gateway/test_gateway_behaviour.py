"""The gateway's behaviour, pinned once for both implementations.

Every test runs twice (``world`` is parametrized): on :class:`tests.fakes.ecs.FakeAws` and on
:class:`worker.aws.boto_fargate.BotoAwsGateway` against the local AWS. Both must answer the
same, and fail with the same error type and code, so that the service tests, which run on the
fake, hold for the real gateway too. When they differ, the fake is what gets fixed.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Protocol

import pytest
import redis

from tests.gateway.conftest import IMAGE, World
from worker.aws.gateway import AwsGateway
from worker.domain.errors import AwsRequestError, ConveyorError, NotFoundError
from worker.domain.planning import READ_ONLY_KEYS
from worker.domain.tickets import Ticket
from worker.services.cleanup import IN_USE_KEY, InUseView, clean_up_revisions
from worker.store import WorkerStore

pytestmark = pytest.mark.timeout(120)

ACCOUNT = "123456789012"
MISSING_SUBNET = "subnet-0123456789abcdef0"
MISSING_GROUP = "sg-0123456789abcdef0"


def refused(
    world: World, call: Coroutine[Any, Any, Any], error: type[ConveyorError], code: str
) -> ConveyorError:
    """Run ``call``; it must raise exactly ``error`` with AWS code ``code``. Returns the error."""
    with pytest.raises(ConveyorError) as caught:
        world.run(call)
    assert type(caught.value) is error, f"{type(caught.value).__name__}: {caught.value}"
    assert caught.value.code == code, str(caught.value)
    return caught.value


def short(arn: str) -> str:
    """``family:revision`` of a task definition ARN."""
    return arn.rsplit("/", 1)[-1]


# -- the gateway's scope and rate-limit reservations ---------------------------------------------


def test_scope_names_the_account_and_region_of_the_credentials(world: World) -> None:
    """``account:region``: the key under which rollouts are watched together and the in-use
    view of a cleanup is shared."""
    assert world.gateway.scope == f"{ACCOUNT}:us-east-1"


def test_reserve_without_a_limiter_spends_nothing_and_calls_nothing(world: World) -> None:
    """Without a shared rate limiter (the fake never has one; the worker's gateway here runs
    with CONVEYOR_RATE_LIMIT=false) a reservation, with or without a ticket, returns at once
    and the call it was made for then goes through."""
    world.cluster("c1")
    td = world.task_definition("app")
    world.service("c1", "web", td)

    assert world.run(world.gateway.reserve("DescribeServices")) is None
    ticket = Ticket(position=3, born=1, due=0.0)
    assert world.run(world.gateway.reserve("UpdateService", ticket)) is None
    service = world.run(world.gateway.describe_service("c1", "web"))
    assert service is not None
    assert service["taskDefinition"] == td


# -- DescribeServices ----------------------------------------------------------------------------


def test_describe_service_returns_the_service_on_its_revision(world: World) -> None:
    """An existing service comes back ACTIVE, in its cluster, on its revision's full ARN, with a
    PRIMARY deployment on that revision and the circuit breaker it was created with."""
    world.cluster("c1")
    td = world.task_definition("app")
    world.service("c1", "web", td)

    service = world.run(world.gateway.describe_service("c1", "web"))

    assert service is not None
    assert service["serviceName"] == "web"
    assert service["status"] == "ACTIVE"
    assert service["clusterArn"] == f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/c1"
    assert service["taskDefinition"] == td
    primary = service["deployments"][0]
    assert (primary["status"], primary["taskDefinition"]) == ("PRIMARY", td)
    breaker = service["deploymentConfiguration"]["deploymentCircuitBreaker"]
    assert breaker == {"enable": True, "rollback": True}


def test_describe_service_of_a_missing_service_is_none(world: World) -> None:
    """A service name the cluster does not have gives None, not an error."""
    world.cluster("c1")

    assert world.run(world.gateway.describe_service("c1", "nope")) is None


def test_describe_service_in_another_cluster_is_none(world: World) -> None:
    """Services are looked up in the cluster given: the same name in another cluster is None."""
    world.cluster("c1")
    world.cluster("c2")
    world.service("c1", "web", world.task_definition("app"))

    assert world.run(world.gateway.describe_service("c2", "web")) is None


def test_describe_service_in_a_missing_cluster_is_not_found(world: World) -> None:
    """A cluster that does not exist is a NotFoundError with ClusterNotFoundException."""
    refused(
        world,
        world.gateway.describe_service("nocluster", "web"),
        NotFoundError,
        "ClusterNotFoundException",
    )


# -- DescribeTaskDefinition ----------------------------------------------------------------------


def test_describe_task_definition_by_family_is_the_latest_revision(world: World) -> None:
    """A bare family names its latest revision; with it come its tags."""
    world.task_definition("app", {"app": "repo/app:1"})
    latest = world.task_definition("app", {"app": "repo/app:2"}, tags=[{"key": "v", "value": "2"}])

    definition, tags = world.run(world.gateway.describe_task_definition("app"))

    assert definition["taskDefinitionArn"] == latest
    assert (definition["family"], definition["revision"], definition["status"]) == (
        "app",
        2,
        "ACTIVE",
    )
    assert definition["containerDefinitions"][0]["image"] == "repo/app:2"
    assert tags == [{"key": "v", "value": "2"}]


def test_describe_task_definition_by_family_skips_inactive_revisions(
    world: World, request: pytest.FixtureRequest
) -> None:
    """A bare family names its latest ACTIVE revision, as on AWS: a deregistered newer one is
    passed over (the resolve step must not build on a revision someone withdrew)."""
    if world.kind == "boto":
        request.applymarker(
            pytest.mark.xfail(
                reason="the local AWS (moto's describe_task_definition) resolves a family to its "
                "highest revision even when INACTIVE; AWS and the fake take the latest ACTIVE one",
                strict=True,
                raises=AssertionError,
            )
        )
    active = world.task_definition("app", {"app": "repo/app:1"})
    withdrawn = world.task_definition("app", {"app": "repo/app:2"})
    world.deregister(withdrawn)

    definition, _ = world.run(world.gateway.describe_task_definition("app"))

    assert definition["taskDefinitionArn"] == active


def test_tag_task_definition_adds_tags_that_describe_returns(world: World) -> None:
    """TagResource on a revision: the new tag comes back with DescribeTaskDefinition, beside the
    tags it had; the same key again takes the new value. An unknown revision is refused."""
    arn = world.task_definition(
        "tagged", {"app": "repo/app:1"}, tags=[{"key": "team", "value": "a"}]
    )

    world.run(world.gateway.tag_task_definition(arn, {"conveyor:discarded": "failed by d1"}))
    world.run(world.gateway.tag_task_definition(arn, {"conveyor:discarded": "rolled_back by d1"}))

    _, tags = world.run(world.gateway.describe_task_definition(arn))
    assert sorted((t["key"], t["value"]) for t in tags) == [
        ("conveyor:discarded", "rolled_back by d1"),
        ("team", "a"),
    ]
    with pytest.raises(ConveyorError):
        world.run(
            world.gateway.tag_task_definition(
                f"arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/tagged:99", {"k": "v"}
            )
        )


def test_describe_task_definition_by_arn_or_revision_gives_that_revision(world: World) -> None:
    """An ARN or ``family:revision`` names one revision, the older ones and INACTIVE ones
    included, each with its own tags (none: an empty list)."""
    first = world.task_definition("app", {"app": "repo/app:1"}, tags=[{"key": "v", "value": "1"}])
    second = world.task_definition("app", {"app": "repo/app:2"})
    world.deregister(second)

    by_arn, tags_by_arn = world.run(world.gateway.describe_task_definition(first))
    by_revision, tags_by_revision = world.run(world.gateway.describe_task_definition(short(first)))
    inactive, no_tags = world.run(world.gateway.describe_task_definition(second))

    assert by_arn["taskDefinitionArn"] == by_revision["taskDefinitionArn"] == first
    assert by_arn["containerDefinitions"][0]["image"] == "repo/app:1"
    assert tags_by_arn == tags_by_revision == [{"key": "v", "value": "1"}]
    assert (inactive["taskDefinitionArn"], inactive["status"]) == (second, "INACTIVE")
    assert no_tags == []


def test_describe_task_definition_returns_the_read_only_keys(world: World) -> None:
    """What DescribeTaskDefinition returns carries keys RegisterTaskDefinition refuses (the
    ones planning strips), the tags outside the definition, and registeredAt as a datetime."""
    world.task_definition("app", tags=[{"key": "team", "value": "shop"}])

    definition, _ = world.run(world.gateway.describe_task_definition("app:1"))

    for key in ("taskDefinitionArn", "revision", "status", "compatibilities", "registeredBy"):
        assert key in definition, key
    assert "tags" not in definition
    assert isinstance(definition["registeredAt"], datetime.datetime)


def test_describe_task_definition_missing_is_not_found(world: World) -> None:
    """An unknown family, or a revision the family does not have, is a NotFoundError with AWS's
    ClientException."""
    world.task_definition("app")

    for missing in ("nope", "app:9", f"arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/nope:1"):
        refused(
            world, world.gateway.describe_task_definition(missing), NotFoundError, "ClientException"
        )


# -- ListTaskDefinitions -------------------------------------------------------------------------


def test_newer_task_definition_arns_gives_only_active_newer_revisions_of_that_family(
    world: World,
) -> None:
    """Only the family's ACTIVE revisions newer than the one given, newest first: no
    deregistered ones, and none of a family whose name merely starts with the same letters."""
    first = world.task_definition("app")
    withdrawn = world.task_definition("app")
    third = world.task_definition("app")
    world.deregister(withdrawn)
    world.task_definition("app-extra")
    world.task_definition("ap")

    assert world.run(world.gateway.newer_task_definition_arns("app", 0)) == [third, first]
    assert world.run(world.gateway.newer_task_definition_arns("app", 1)) == [third]
    assert world.run(world.gateway.newer_task_definition_arns("app", 3)) == []
    assert world.run(world.gateway.newer_task_definition_arns("nope", 0)) == []


def test_newer_task_definition_arns_reads_past_one_page(world: World) -> None:
    """Twelve revisions newer than the base are all found, across pages, newest first."""
    base = world.task_definition("app")
    newer = [world.task_definition("app") for _ in range(12)]
    found = world.run(world.gateway.newer_task_definition_arns("app", int(base.rsplit(":", 1)[1])))
    assert found == list(reversed(newer))


# -- RegisterTaskDefinition ----------------------------------------------------------------------


def test_register_task_definition_returns_the_new_revision(world: World) -> None:
    """The answer is the new ACTIVE revision (numbered after every earlier one, deregistered
    included); its tags are stored with it and come back from DescribeTaskDefinition."""
    world.task_definition("app")
    world.deregister(world.task_definition("app"))
    payload = {
        "family": "app",
        "containerDefinitions": [{"name": "app", "image": "repo/app:3", "memory": 128}],
        "tags": [{"key": "conveyor:deployment-id", "value": "dep-1"}],
    }

    registered = world.run(world.gateway.register_task_definition(payload))

    assert short(registered["taskDefinitionArn"]) == "app:3"
    assert (registered["revision"], registered["status"]) == (3, "ACTIVE")
    assert registered["containerDefinitions"][0]["image"] == "repo/app:3"
    assert "tags" not in registered
    described, tags = world.run(
        world.gateway.describe_task_definition(registered["taskDefinitionArn"])
    )
    assert described["taskDefinitionArn"] == registered["taskDefinitionArn"]
    assert tags == [{"key": "conveyor:deployment-id", "value": "dep-1"}]


def test_register_task_definition_refuses_read_only_keys(world: World) -> None:
    """A described revision sent back as it is, read-only keys and all, is refused before it
    reaches AWS (botocore's ParamValidationError, an AwsRequestError); without the keys that
    planning strips it registers."""
    world.task_definition("app")
    definition, _ = world.run(world.gateway.describe_task_definition("app"))

    refused(
        world,
        world.gateway.register_task_definition(dict(definition)),
        AwsRequestError,
        "ParamValidationError",
    )
    stripped = {k: v for k, v in definition.items() if k not in READ_ONLY_KEYS}
    registered = world.run(world.gateway.register_task_definition(stripped))

    assert short(registered["taskDefinitionArn"]) == "app:2"


def test_register_task_definition_without_containers_is_refused(world: World) -> None:
    """A payload missing a required member never reaches AWS: ParamValidationError."""
    refused(
        world,
        world.gateway.register_task_definition({"family": "app"}),
        AwsRequestError,
        "ParamValidationError",
    )


def test_register_task_definition_with_empty_tags_is_refused(world: World) -> None:
    """``tags: []`` is refused by ECS with ClientException ("Tags can not be empty"), and
    nothing is registered."""
    first = world.task_definition("app")
    payload = {"family": "app", "containerDefinitions": [{"name": "app", "image": IMAGE}]}

    error = refused(
        world,
        world.gateway.register_task_definition({**payload, "tags": []}),
        AwsRequestError,
        "ClientException",
    )

    assert "Tags can not be empty" in str(error)
    assert world.run(world.gateway.newer_task_definition_arns("app", 0)) == [first]


# -- UpdateService -------------------------------------------------------------------------------


def test_update_service_starts_a_primary_deployment_on_the_target(world: World) -> None:
    """The updated service is on the target's full ARN (even when given as family:revision),
    with a new PRIMARY deployment on it IN_PROGRESS and the old one still ACTIVE; a describe
    right after sees the same deployment."""
    world.cluster("c1")
    old = world.task_definition("app")
    new = world.task_definition("app", {"app": "repo/app:2"})
    world.service("c1", "web", old)

    service = world.run(
        world.gateway.update_service("c1", "web", short(new), force_new_deployment=False)
    )

    assert service["taskDefinition"] == new
    primary, previous = service["deployments"][0], service["deployments"][1]
    assert (primary["status"], primary["taskDefinition"]) == ("PRIMARY", new)
    assert primary["rolloutState"] == "IN_PROGRESS"
    assert (previous["status"], previous["taskDefinition"]) == ("ACTIVE", old)
    described = world.run(world.gateway.describe_service("c1", "web"))
    assert described is not None
    assert described["deployments"][0]["id"] == primary["id"]


def test_update_service_to_its_own_revision_starts_nothing_unless_forced(world: World) -> None:
    """Pointing a service at the revision it runs starts no deployment; with
    force_new_deployment it starts one on the same revision."""
    world.cluster("c1")
    td = world.task_definition("app")
    world.service("c1", "web", td)
    before = world.run(world.gateway.describe_service("c1", "web"))
    assert before is not None

    same = world.run(world.gateway.update_service("c1", "web", td, force_new_deployment=False))
    forced = world.run(world.gateway.update_service("c1", "web", td, force_new_deployment=True))

    assert same["deployments"][0]["id"] == before["deployments"][0]["id"]
    assert forced["deployments"][0]["id"] != before["deployments"][0]["id"]
    assert forced["deployments"][0]["taskDefinition"] == td


def test_update_service_sets_the_desired_count_and_deployment_configuration(world: World) -> None:
    """With a desired count and a deployment configuration, both are on the updated service
    (and on a describe after it)."""
    world.cluster("c1")
    old = world.task_definition("app")
    new = world.task_definition("app", {"app": "repo/app:2"})
    world.service("c1", "web", old)
    configuration = {
        "minimumHealthyPercent": 50,
        "maximumPercent": 150,
        "deploymentCircuitBreaker": {"enable": True, "rollback": True},
    }

    service = world.run(
        world.gateway.update_service(
            "c1",
            "web",
            new,
            force_new_deployment=False,
            desired_count=3,
            deployment_configuration=configuration,
        )
    )

    described = world.run(world.gateway.describe_service("c1", "web"))
    assert described is not None
    for found in (service, described):
        assert found["desiredCount"] == 3
        for key, value in configuration.items():
            assert found["deploymentConfiguration"][key] == value


def test_a_deployment_configuration_read_and_written_back_keeps_the_newer_ecs_fields(
    world: World,
) -> None:
    """Circuit-breaker thresholds and a PAUSE lifecycle hook survive Conveyor's read, change and
    write of the deployment configuration (a job that sets the minimum healthy percent).

    UpdateService replaces the whole configuration, and an SDK whose model lacks a member drops
    it from DescribeServices' answer and refuses it in UpdateService: the worker's SDK must
    know these fields, or a deployment would quietly reset them.
    """
    world.cluster("c1")
    old = world.task_definition("app")
    new = world.task_definition("app", {"app": "repo/app:2"})
    world.service("c1", "web", old)
    breaker = {
        "enable": True,
        "rollback": True,
        "resetOnHealthyTask": True,
        "thresholdConfiguration": {"type": "COUNT", "value": 5},
    }
    hooks = [
        {
            "targetType": "PAUSE",
            "lifecycleStages": ["PRE_PRODUCTION_TRAFFIC_SHIFT"],
            "timeoutConfiguration": {"timeoutInMinutes": 30, "action": "ROLLBACK"},
        }
    ]
    configured = {"deploymentCircuitBreaker": breaker, "lifecycleHooks": hooks}
    world.run(
        world.gateway.update_service(
            "c1", "web", old, force_new_deployment=False, deployment_configuration=configured
        )
    )

    service = world.run(world.gateway.describe_service("c1", "web"))
    assert service is not None
    configuration = dict(service["deploymentConfiguration"], minimumHealthyPercent=50)
    world.run(
        world.gateway.update_service(
            "c1", "web", new, force_new_deployment=False, deployment_configuration=configuration
        )
    )

    described = world.run(world.gateway.describe_service("c1", "web"))
    assert described is not None
    assert described["deploymentConfiguration"]["minimumHealthyPercent"] == 50
    assert described["deploymentConfiguration"]["deploymentCircuitBreaker"] == breaker
    assert described["deploymentConfiguration"]["lifecycleHooks"] == hooks


def test_update_service_refusals_are_not_found_with_the_aws_code(world: World) -> None:
    """A missing service, a missing cluster or a missing revision: NotFoundError, with
    ServiceNotFoundException, ClusterNotFoundException or ClientException."""
    world.cluster("c1")
    td = world.task_definition("app")
    world.service("c1", "web", td)
    gateway = world.gateway

    refused(
        world,
        gateway.update_service("c1", "nope", td, force_new_deployment=False),
        NotFoundError,
        "ServiceNotFoundException",
    )
    refused(
        world,
        gateway.update_service("nocl", "web", td, force_new_deployment=False),
        NotFoundError,
        "ClusterNotFoundException",
    )
    refused(
        world,
        gateway.update_service("c1", "web", "nope:1", force_new_deployment=False),
        NotFoundError,
        "ClientException",
    )


def test_update_service_to_an_inactive_revision_is_refused(world: World) -> None:
    """A deregistered revision cannot be deployed: ClientException, as ECS answers, and the
    service stays on its revision."""
    world.cluster("c1")
    old = world.task_definition("app")
    current = world.task_definition("app")
    world.service("c1", "web", current)
    world.deregister(old)
    refused(
        world,
        world.gateway.update_service("c1", "web", old, force_new_deployment=False),
        AwsRequestError,
        "ClientException",
    )
    service = world.run(world.gateway.describe_service("c1", "web"))
    assert service is not None
    assert service["taskDefinition"] == current


# -- what is in use, account-wide (cleanup) ------------------------------------------------------


def test_service_task_definitions_cover_every_cluster(world: World) -> None:
    """The revisions services run, in every cluster; a revision nothing runs is absent."""
    world.cluster("c1")
    world.cluster("c2")
    first = world.task_definition("app")
    second = world.task_definition("app")
    unused = world.task_definition("app")
    world.service("c1", "web", first)
    world.service("c2", "api", second)
    used = world.run(world.gateway.service_task_definitions())
    assert {first, second} <= used
    assert unused not in used


def test_running_task_definitions_include_standalone_tasks(world: World) -> None:
    """A task started outside any service counts; a revision no task runs does not."""
    world.cluster("c1")
    batch = world.task_definition("batch")
    unused = world.task_definition("batch")
    world.standalone_task("c1", batch)
    used = world.run(world.gateway.running_task_definitions())
    assert batch in used
    assert unused not in used


def test_scheduled_task_definitions_name_rule_targets(world: World) -> None:
    """Every revision an EventBridge rule target runs, as the target names it."""
    world.cluster("c1")
    nightly = world.task_definition("report")
    world.task_definition("report")
    world.schedule("nightly-report", "c1", nightly)
    world.schedule("hourly-report", "c1", nightly.rsplit(":", 1)[0])
    used = world.run(world.gateway.scheduled_task_definitions())
    assert used == {nightly, nightly.rsplit(":", 1)[0]}


def test_active_task_definition_arns_gives_every_active_revision_of_that_family(
    world: World,
) -> None:
    """Every ACTIVE revision of the family, newest first: no deregistered one, and none of a
    family whose name merely starts with the same letters; an unknown family has none."""
    first = world.task_definition("app")
    withdrawn = world.task_definition("app")
    third = world.task_definition("app")
    world.deregister(withdrawn)
    world.task_definition("app-extra")
    world.task_definition("ap")

    assert world.run(world.gateway.active_task_definition_arns("app")) == [third, first]
    assert world.run(world.gateway.active_task_definition_arns("nope")) == []


def test_active_task_definition_arns_reads_past_one_page(world: World) -> None:
    """A family of more revisions than one page of ListTaskDefinitions holds is read whole."""
    arns = [world.task_definition("app") for _ in range(105)]
    assert world.run(world.gateway.active_task_definition_arns("app")) == list(reversed(arns))


def test_deregister_revision_makes_it_inactive_and_no_longer_the_latest(world: World) -> None:
    """A deregistered revision is INACTIVE, still described by its ARN, and the active list
    leaves it out (that a bare family then names the revision before is pinned above, by
    test_describe_task_definition_by_family_skips_inactive_revisions)."""
    first = world.task_definition("app")
    second = world.task_definition("app")

    world.run(world.gateway.deregister_revision(second))

    gone, _ = world.run(world.gateway.describe_task_definition(second))
    assert gone["status"] == "INACTIVE"
    assert world.run(world.gateway.active_task_definition_arns("app")) == [first]


def test_deregister_revision_of_a_missing_revision_is_refused(world: World) -> None:
    """A revision the family does not have, or a family that does not exist, is a NotFoundError
    with AWS's ClientException."""
    world.task_definition("app")
    for missing in ("app:9", f"arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/nope:1"):
        refused(world, world.gateway.deregister_revision(missing), NotFoundError, "ClientException")


def test_a_cleanup_deregisters_only_old_revisions_nothing_uses(
    world: World, redis_url: str
) -> None:
    """The cleanup path end to end on the gateway (worker/services/cleanup.py): with keep=1,
    the revisions a service, a standalone task and an EventBridge target use stay, the newest
    stays, the others are deregistered oldest first; a second run has nothing to do. The view
    of what is in use is shared through Redis under the gateway's scope."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    try:
        world.cluster("c1")
        arns = [world.task_definition("app") for _ in range(6)]
        world.service("c1", "web", arns[1])
        world.standalone_task("c1", arns[0])
        world.schedule("nightly", "c1", arns[2])
        store, view = WorkerStore(client), InUseView(client)

        first = world.run(clean_up_revisions(world.gateway, "app", 1, store=store, view=view))
        again = world.run(clean_up_revisions(world.gateway, "app", 1, store=store, view=view))
        active = world.run(world.gateway.active_task_definition_arns("app"))

        assert first == ([arns[3], arns[4]], False)
        assert again == ([], False)
        assert active == [arns[5], arns[2], arns[1], arns[0]]
        assert client.exists(IN_USE_KEY.format(scope=world.gateway.scope))
    finally:
        client.close()


# -- ListTasks / DescribeTasks -------------------------------------------------------------------


def test_stopped_tasks_of_a_broken_rollout_say_why_they_stopped(world: World) -> None:
    """After the breaker failed a ``fail-`` image, the service's stopped tasks include the
    failed revision's, each STOPPED with EssentialContainerExited, "Essential container in task
    exited" and exit code 1 on the broken container; another cluster sees none of them."""
    world.cluster("c1")
    world.cluster("c2")
    good = world.task_definition("app")
    bad = world.task_definition("app", {"app": "repo/app:fail-2", "side": "repo/side:1"})
    world.service("c1", "web", good)
    world.run(world.gateway.update_service("c1", "web", bad, force_new_deployment=False))
    world.wait_breaker("c1", "web")

    arns = world.run(world.gateway.list_stopped_task_arns("c1", "web"))
    tasks = world.run(world.gateway.describe_tasks("c1", arns))

    assert {t["taskArn"] for t in tasks} == set(arns)
    failed = [t for t in tasks if t["taskDefinitionArn"] == bad]
    assert len(failed) >= 3
    for task in failed:
        assert (task["lastStatus"], task["stopCode"]) == ("STOPPED", "EssentialContainerExited")
        assert task["stoppedReason"] == "Essential container in task exited"
        exits = {c["name"]: c.get("exitCode") for c in task["containers"]}
        assert exits["app"] == 1
        assert exits["side"] != 1
    assert world.run(world.gateway.describe_tasks("c2", arns)) == []


def test_a_healthy_service_has_no_stopped_tasks(world: World) -> None:
    """A service that only ever rolled out healthy tasks lists no stopped ones; describing no
    tasks (or unknown ones) gives an empty list."""
    world.cluster("c1")
    world.service("c1", "web", world.task_definition("app"))

    assert world.run(world.gateway.list_stopped_task_arns("c1", "web")) == []
    assert world.run(world.gateway.describe_tasks("c1", [])) == []
    unknown = f"arn:aws:ecs:us-east-1:{ACCOUNT}:task/c1/0123456789abcdef0123456789abcdef"
    assert world.run(world.gateway.describe_tasks("c1", [unknown])) == []


def test_task_calls_on_a_missing_service_or_cluster_are_not_found(world: World) -> None:
    """Stopped tasks of a missing service or cluster, and tasks of a missing cluster:
    NotFoundError with ServiceNotFoundException or ClusterNotFoundException."""
    world.cluster("c1")
    task = f"arn:aws:ecs:us-east-1:{ACCOUNT}:task/nocl/0123456789abcdef0123456789abcdef"

    refused(
        world,
        world.gateway.list_stopped_task_arns("c1", "nope"),
        NotFoundError,
        "ServiceNotFoundException",
    )
    refused(
        world,
        world.gateway.list_stopped_task_arns("nocl", "web"),
        NotFoundError,
        "ClusterNotFoundException",
    )
    refused(
        world,
        world.gateway.describe_tasks("nocl", [task]),
        NotFoundError,
        "ClusterNotFoundException",
    )


# -- Clusters, network, target groups ------------------------------------------------------------


def test_cluster_is_active_only_for_an_existing_cluster(world: World) -> None:
    """A created cluster is active; an unknown one is not (False, not an error)."""
    world.cluster("c1")

    assert world.run(world.gateway.cluster_is_active("c1")) is True
    assert world.run(world.gateway.cluster_is_active("nope")) is False


def test_resolve_subnets_takes_ids_and_name_tags_in_order(world: World) -> None:
    """Ids and Name tags resolve to ids, in the order given; nothing asked, nothing found."""
    a = world.subnet("priv-a")
    b = world.subnet("priv-b")

    resolved = world.run(world.gateway.resolve_subnets(["priv-b", a, b, "priv-a"]))

    assert resolved == [b, a, b, a]
    assert world.run(world.gateway.resolve_subnets([])) == []


def test_resolve_subnets_names_the_missing_ones(world: World) -> None:
    """A missing Name tag or a missing id is a NotFoundError (InvalidSubnetID.NotFound) whose
    message names what is missing, not what was found."""
    world.subnet("priv-a")

    by_name = refused(
        world,
        world.gateway.resolve_subnets(["priv-a", "nope"]),
        NotFoundError,
        "InvalidSubnetID.NotFound",
    )
    by_id = refused(
        world,
        world.gateway.resolve_subnets([MISSING_SUBNET]),
        NotFoundError,
        "InvalidSubnetID.NotFound",
    )

    assert "nope" in str(by_name)
    assert "priv-a" not in str(by_name)
    assert MISSING_SUBNET in str(by_id)


def test_resolve_security_groups_takes_ids_and_names_in_order(world: World) -> None:
    """Ids and group names resolve to ids, in the order given."""
    web = world.security_group("web-sg")
    db = world.security_group("db-sg")

    resolved = world.run(world.gateway.resolve_security_groups([db, "web-sg", "db-sg", web]))

    assert resolved == [db, web, db, web]


def test_resolve_security_groups_names_the_missing_ones(world: World) -> None:
    """A missing group name or id is a NotFoundError (InvalidGroup.NotFound) naming it."""
    world.security_group("web-sg")

    by_name = refused(
        world,
        world.gateway.resolve_security_groups(["web-sg", "nope"]),
        NotFoundError,
        "InvalidGroup.NotFound",
    )
    by_id = refused(
        world,
        world.gateway.resolve_security_groups([MISSING_GROUP]),
        NotFoundError,
        "InvalidGroup.NotFound",
    )

    assert "nope" in str(by_name)
    assert "web-sg" not in str(by_name)
    assert MISSING_GROUP in str(by_id)


def test_describe_target_group_by_name_or_arn(world: World) -> None:
    """A target group is found by name and by ARN, with its type and its load balancers (none
    until a listener forwards to it)."""
    loose = world.target_group("loose")
    attached = world.target_group("attached", attached=True)

    by_name = world.run(world.gateway.describe_target_group("loose"))
    by_arn = world.run(world.gateway.describe_target_group(loose))
    linked = world.run(world.gateway.describe_target_group(attached))

    assert by_name is not None
    assert by_arn is not None
    assert by_name["TargetGroupArn"] == by_arn["TargetGroupArn"] == loose
    assert (by_name["TargetGroupName"], by_name["TargetType"]) == ("loose", "ip")
    assert by_name["LoadBalancerArns"] == []
    assert linked is not None
    assert len(linked["LoadBalancerArns"]) == 1


def test_describe_target_group_missing_is_none(world: World) -> None:
    """An unknown name or ARN gives None, not an error."""
    arn = world.target_group("tg")
    other = arn.replace("targetgroup/tg/", "targetgroup/other/")

    assert world.run(world.gateway.describe_target_group("nope")) is None
    assert world.run(world.gateway.describe_target_group(other)) is None


# -- CloudFormation ------------------------------------------------------------------------------

# One task definition, the resource type Conveyor's own stacks are built around.
TEMPLATE = json.dumps(
    {
        "Parameters": {"Image": {"Type": "String"}},
        "Resources": {
            "TaskDefinition": {
                "Type": "AWS::ECS::TaskDefinition",
                "Properties": {
                    "Family": "stacked",
                    "ContainerDefinitions": [
                        {"Name": "app", "Image": {"Ref": "Image"}, "Memory": 128}
                    ],
                },
            }
        },
    }
)


def test_describe_stack_missing_is_none(world: World) -> None:
    """A stack that was never created gives None, not an error."""
    assert world.run(world.gateway.describe_stack("nope")) is None


def test_stack_lifecycle(world: World) -> None:
    """Create gives the stack id, and a second create of the same name AlreadyExistsException;
    the stack carries its parameters and tags; an update with nothing new is None, a real one
    gives the id; events come newest first with the operation's request token; once deleted,
    the stack is None again and its events a ValidationError."""
    gateway = world.gateway
    stack_id = world.run(
        gateway.create_stack("s1", TEMPLATE, {"Image": "repo/app:1"}, {"a": "b"}, "t1")
    )

    created = world.run(gateway.describe_stack("s1"))
    refused(
        world,
        gateway.create_stack("s1", TEMPLATE, {"Image": "repo/app:1"}, {}, "t2"),
        AwsRequestError,
        "AlreadyExistsException",
    )
    world.settle_stack("s1")
    settled = world.run(gateway.describe_stack("s1"))
    events = world.run(gateway.stack_events("s1"))

    assert created is not None
    assert created["StackId"] == stack_id
    assert created["StackName"] == "s1"
    # Read right after the create: whether CloudFormation has finished by then is its own
    # timing (the fake holds the stack until settle_stack; the local AWS may be done already).
    assert created["StackStatus"] in ("CREATE_IN_PROGRESS", "CREATE_COMPLETE")
    assert created["Parameters"] == [{"ParameterKey": "Image", "ParameterValue": "repo/app:1"}]
    assert created["Tags"] == [{"Key": "a", "Value": "b"}]
    assert settled is not None
    assert settled["StackStatus"] == "CREATE_COMPLETE"
    newest = events[0]
    assert (newest["LogicalResourceId"], newest["ResourceStatus"]) == ("s1", "CREATE_COMPLETE")
    assert newest["ClientRequestToken"] == "t1"

    assert (
        world.run(gateway.update_stack("s1", TEMPLATE, {"Image": "repo/app:1"}, {"a": "b"}, "t3"))
        is None
    )
    updated = world.run(
        gateway.update_stack("s1", TEMPLATE, {"Image": "repo/app:2"}, {"a": "b"}, "t4")
    )
    assert updated == stack_id
    world.settle_stack("s1")
    after_update = world.run(gateway.describe_stack("s1"))
    assert after_update is not None
    assert after_update["StackStatus"] == "UPDATE_COMPLETE"

    world.run(gateway.delete_stack("s1", "t5"))
    world.settle_stack("s1")
    assert world.run(gateway.describe_stack("s1")) is None
    refused(world, gateway.stack_events("s1"), AwsRequestError, "ValidationError")


def test_preview_of_a_create_lists_the_resources_and_leaves_no_stack(world: World) -> None:
    """A create preview adds every resource of the template, and the stack CloudFormation made
    to hold the change set is gone afterwards."""
    preview = world.run(
        world.gateway.preview_stack("s1", TEMPLATE, {"Image": "repo/app:1"}, {}, create=True)
    )
    left = world.run(world.gateway.describe_stack("s1"))
    world.settle_stack("s1")

    assert preview == {
        "status": "CREATE_COMPLETE",
        "reason": None,
        "changes": [
            {
                "action": "Add",
                "logical_id": "TaskDefinition",
                "type": "AWS::ECS::TaskDefinition",
                "replacement": None,
            }
        ],
    }
    # DeleteStack returns before the stack is gone, on AWS as on the local AWS: the stack
    # made for the change set is being deleted (or already gone on a quick local AWS).
    if left is not None:
        assert left["StackStatus"] == "DELETE_IN_PROGRESS"
    assert world.run(world.gateway.describe_stack("s1")) is None


def test_preview_of_an_update_lists_what_changes_and_changes_nothing(world: World) -> None:
    """An update preview with a new parameter modifies the resource that uses it; one with
    nothing new is FAILED with CloudFormation's reason; the stack is untouched either way."""
    world.run(world.gateway.create_stack("s1", TEMPLATE, {"Image": "repo/app:1"}, {}, "t1"))
    world.settle_stack("s1")

    changed = world.run(
        world.gateway.preview_stack("s1", TEMPLATE, {"Image": "repo/app:2"}, {}, create=False)
    )
    same = world.run(
        world.gateway.preview_stack("s1", TEMPLATE, {"Image": "repo/app:1"}, {}, create=False)
    )
    after = world.run(world.gateway.describe_stack("s1"))

    assert changed == {
        "status": "CREATE_COMPLETE",
        "reason": None,
        "changes": [
            {
                "action": "Modify",
                "logical_id": "TaskDefinition",
                "type": "AWS::ECS::TaskDefinition",
                # A task definition revision is immutable: a new image is a new revision.
                "replacement": "True",
            }
        ],
    }
    assert same == {
        "status": "FAILED",
        "reason": "The submitted information didn't contain changes. "
        "Submit different information to create a change set.",
        "changes": [],
    }
    assert after is not None
    assert after["StackStatus"] == "CREATE_COMPLETE"
    assert after["Parameters"] == [{"ParameterKey": "Image", "ParameterValue": "repo/app:1"}]


def test_stack_calls_on_a_missing_stack(world: World) -> None:
    """Updating a stack that does not exist, or reading its events, is a ValidationError;
    deleting it does nothing."""
    gateway = world.gateway

    refused(
        world,
        gateway.update_stack("nope", TEMPLATE, {"Image": "repo/app:1"}, {}, "t1"),
        AwsRequestError,
        "ValidationError",
    )
    refused(world, gateway.stack_events("nope"), AwsRequestError, "ValidationError")
    assert world.run(gateway.delete_stack("nope", "t2")) is None


# -- ECS's deployment history ---------------------------------------------------------------


def _history(world: World, cluster: str, name: str, task_definition: str) -> dict[str, Any]:
    found = world.run(
        world.gateway.find_service_deployment(cluster, name, task_definition, created_after=0.0)
    )
    assert found is not None
    return found


def test_the_history_finds_a_deployment_by_its_revision(world: World) -> None:
    """An UpdateService becomes a service deployment whose target revision runs the task
    definition; it ends SUCCESSFUL, and describing it by ARN gives the same entry."""
    world.cluster("c1")
    good = world.task_definition("app")
    world.service("c1", "web", good)
    newer = world.task_definition("app", {"app": "repo/app:2"})
    world.run(world.gateway.update_service("c1", "web", newer, force_new_deployment=False))
    world.settle_service("c1", "web")

    entry = _history(world, "c1", "web", newer)
    assert entry["status"] == "SUCCESSFUL"
    again = world.run(world.gateway.describe_service_deployment(entry["serviceDeploymentArn"]))
    assert again is not None
    assert again["serviceDeploymentArn"] == entry["serviceDeploymentArn"]
    missing = world.run(
        world.gateway.find_service_deployment("c1", "web", "app:99", created_after=0.0)
    )
    assert missing is None


def test_several_service_deployments_are_described_in_one_call(world: World) -> None:
    """DescribeServiceDeployments of two services' deployments and an unknown ARN: both known
    entries by ARN, the unknown one left out."""
    world.cluster("c1")
    good = world.task_definition("app")
    arns = []
    for name in ("web", "api"):
        world.service("c1", name, good)
        newer = world.task_definition("app", {"app": f"repo/app:{name}"})
        world.run(world.gateway.update_service("c1", name, newer, force_new_deployment=False))
        world.settle_service("c1", name)
        arns.append(_history(world, "c1", name, newer)["serviceDeploymentArn"])
    unknown = arns[0].rsplit("/", 1)[0] + "/nope"

    found = world.run(world.gateway.describe_service_deployments([*arns, unknown]))

    assert sorted(found) == sorted(arns)
    assert all(found[arn]["serviceDeploymentArn"] == arn for arn in arns)
    assert world.run(world.gateway.describe_service_deployments([])) == {}


def test_the_history_keeps_a_breaker_rollback_after_describe_services_forgot_it(
    world: World,
) -> None:
    """Once ECS's rollback completed the failed deployment is gone from DescribeServices; the
    history still says ROLLBACK_SUCCESSFUL, with the breaker TRIGGERED."""
    world.cluster("c1")
    good = world.task_definition("app")
    world.service("c1", "web", good)
    bad = world.task_definition("app", {"app": "repo/app:fail-2"})
    world.run(world.gateway.update_service("c1", "web", bad, force_new_deployment=False))
    world.wait_breaker("c1", "web")
    world.settle_service("c1", "web")
    service = world.run(world.gateway.describe_service("c1", "web"))
    assert service is not None
    assert [d["taskDefinition"] for d in service["deployments"]] == [good]

    entry = _history(world, "c1", "web", bad)
    assert entry["status"] == "ROLLBACK_SUCCESSFUL"
    assert entry["deploymentCircuitBreaker"]["status"] == "TRIGGERED"
    assert entry.get("rollback")


def test_stopping_a_deployment_makes_ecs_roll_back(world: World) -> None:
    """StopServiceDeployment of an ongoing deployment: ECS rolls back to the revision before;
    stopping it again, once finished, is a ConflictException."""
    world.cluster("c1")
    good = world.task_definition("app")
    world.service("c1", "web", good, breaker=False)
    stuck = world.task_definition("app", {"app": "repo/app:fail-3"})
    world.run(world.gateway.update_service("c1", "web", stuck, force_new_deployment=False))
    entry = _history(world, "c1", "web", stuck)
    # ECS moves a deployment from PENDING to IN_PROGRESS on its own clock: either is ongoing,
    # which is all a stop needs.
    assert entry["status"] in ("PENDING", "IN_PROGRESS")

    world.run(world.gateway.stop_service_deployment(entry["serviceDeploymentArn"]))
    world.settle_service("c1", "web")

    service = world.run(world.gateway.describe_service("c1", "web"))
    assert service is not None
    assert service["taskDefinition"] == good
    assert _history(world, "c1", "web", stuck)["status"] == "ROLLBACK_SUCCESSFUL"
    refused(
        world,
        world.gateway.stop_service_deployment(entry["serviceDeploymentArn"]),
        AwsRequestError,
        "ConflictException",
    )


def test_continuing_a_service_deployment_ecs_does_not_know_is_not_found(world: World) -> None:
    """ContinueServiceDeployment (answering a PAUSE hook) of an ARN that names no service
    deployment: ServiceDeploymentNotFoundException, as StopServiceDeployment's."""
    world.cluster("c1")
    arn = "arn:aws:ecs:us-east-1:123456789012:service-deployment/c1/web/nope"
    refused(
        world,
        world.gateway.continue_service_deployment(arn, "hook-1"),
        NotFoundError,
        "ServiceDeploymentNotFoundException",
    )


def test_describe_services_answers_for_up_to_ten_services_at_once(world: World) -> None:
    """One call describes several services of a cluster, keyed by name; missing ones are
    absent; a missing cluster is ClusterNotFoundException."""
    world.cluster("c1")
    td = world.task_definition("app")
    world.service("c1", "a", td)
    world.service("c1", "b", td)
    found = world.run(world.gateway.describe_services("c1", ["a", "b", "nope"]))
    assert sorted(found) == ["a", "b"]
    assert found["a"]["taskDefinition"] == td
    refused(
        world,
        world.gateway.describe_services("c9", ["a"]),
        NotFoundError,
        "ClusterNotFoundException",
    )


def test_a_rerun_reads_only_the_newest_pages_of_a_huge_family(
    local_aws_url: str, worker_runtime: Any
) -> None:
    """A family of 5,000 revisions: finding the revisions newer than the base costs one
    ListTaskDefinitions call, or two with a dozen newer ones (it used to page through all)."""
    from localaws.testing import control

    runtime, gateway = worker_runtime
    control(local_aws_url, "POST", "reset")
    status, answer = control(
        local_aws_url, "POST", "task-definitions", {"family": "huge", "count": 5000}
    )
    assert status == 200, answer
    control(local_aws_url, "DELETE", "stats")
    assert runtime.run(gateway.newer_task_definition_arns("huge", 5000)) == []
    assert control(local_aws_url, "GET", "stats")[1]["calls"]["ListTaskDefinitions"] == 1
    control(local_aws_url, "DELETE", "stats")
    newer = runtime.run(gateway.newer_task_definition_arns("huge", 4988))
    assert [int(a.rsplit(":", 1)[1]) for a in newer] == list(range(5000, 4988, -1))
    assert control(local_aws_url, "GET", "stats")[1]["calls"]["ListTaskDefinitions"] == 2


# -- one-off tasks (pre-deploy) ------------------------------------------------------------------


def _run_once(world: World, definition: str) -> dict[str, Any]:
    return world.run(
        world.gateway.run_task(
            "c1",
            definition,
            started_by="dep-1",
            client_token="dep-1",
            placement={"launchType": "EC2"},
            overrides={"containerOverrides": [{"name": "app", "command": ["migrate"]}]},
        )
    )


def test_a_task_run_is_found_by_its_mark_and_stops_with_its_exit_code_and_log(
    world: World,
) -> None:
    """run_task starts one task, found again by its startedBy; once stopped, DescribeTasks gives
    the container's exit code and log_tail the newest lines of its awslogs stream."""
    world.cluster("c1")
    definition = world.logged_task_definition("migrate", IMAGE, "/ecs/migrate")
    world.task_result("migrate", "app", 2, [f"step {n}" for n in range(5)])
    task = _run_once(world, definition)
    arn = str(task["taskArn"])
    assert task["lastStatus"] in ("PROVISIONING", "PENDING", "RUNNING")
    assert world.run(world.gateway.task_arns_started_by("c1", "dep-1")) == [arn]
    assert world.run(world.gateway.task_arns_started_by("c1", "dep-2")) == []
    world.finish_task("c1", arn)
    (stopped,) = world.run(world.gateway.describe_tasks("c1", [arn]))
    assert stopped["lastStatus"] == "STOPPED"
    assert stopped["stopCode"] == "EssentialContainerExited"
    assert [c["exitCode"] for c in stopped["containers"]] == [2]
    assert world.run(world.gateway.task_arns_started_by("c1", "dep-1")) == [arn]
    stream = f"m/app/{arn.rsplit('/', 1)[-1]}"
    tail = world.run(world.gateway.log_tail("/ecs/migrate", stream, 3))
    assert tail == ["step 2", "step 3", "step 4"]


def test_a_fail_image_task_exits_1(world: World) -> None:
    """A one-off task of a ``fail-`` image ends with its container's exit code 1."""
    world.cluster("c1")
    definition = world.logged_task_definition("migrate", "repo/app:fail-1", "/ecs/migrate")
    arn = str(_run_once(world, definition)["taskArn"])
    world.finish_task("c1", arn)
    (stopped,) = world.run(world.gateway.describe_tasks("c1", [arn]))
    assert [c["exitCode"] for c in stopped["containers"]] == [1]


def test_run_task_with_the_same_client_token_starts_no_second_task(world: World) -> None:
    """A RunTask sent again with its client token returns the task the first one started."""
    world.cluster("c1")
    definition = world.logged_task_definition("migrate", IMAGE, "/ecs/migrate")
    first = _run_once(world, definition)
    again = _run_once(world, definition)
    assert again["taskArn"] == first["taskArn"]
    assert world.run(world.gateway.task_arns_started_by("c1", "dep-1")) == [first["taskArn"]]


def test_stop_task_stops_a_one_off_task_at_once(world: World) -> None:
    """stop_task stops a task not yet ended: STOPPED, UserInitiated, with the reason given."""
    world.cluster("c1")
    definition = world.logged_task_definition("migrate", IMAGE, "/ecs/migrate")
    arn = str(_run_once(world, definition)["taskArn"])
    world.run(world.gateway.stop_task("c1", arn, "timed out"))
    (stopped,) = world.run(world.gateway.describe_tasks("c1", [arn]))
    assert stopped["lastStatus"] == "STOPPED"
    assert stopped["stopCode"] == "UserInitiated"
    assert stopped["stoppedReason"] == "timed out"


def test_the_log_tail_of_a_stream_not_written_is_empty(world: World) -> None:
    """log_tail of a stream (or group) that does not exist is empty, not an error."""
    assert world.run(world.gateway.log_tail("/ecs/none", "m/app/0", 20)) == []


def test_run_task_on_a_missing_cluster_is_not_found(world: World) -> None:
    """RunTask on a cluster that does not exist raises NotFoundError."""
    world.cluster("c1")
    definition = world.logged_task_definition("migrate", IMAGE, "/ecs/migrate")
    with pytest.raises(NotFoundError):
        world.run(
            world.gateway.run_task(
                "nope",
                definition,
                started_by="dep-1",
                client_token="dep-1",
                placement={"launchType": "EC2"},
                overrides={},
            )
        )


# -- coverage of the protocol --------------------------------------------------------------------


def test_every_method_of_the_gateway_protocol_is_pinned_here() -> None:
    """Each member of AwsGateway is used through ``world.gateway`` somewhere in this module,
    so no part of the protocol is left for the fake to get wrong unnoticed."""
    source = Path(__file__).read_text()
    members = {
        name for name in dir(AwsGateway) if not name.startswith("_") and name not in dir(Protocol)
    }
    called = {name for name in members if f"gateway.{name}" in source}
    assert members - called == set()
