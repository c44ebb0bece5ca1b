"""Cleaning up old revisions against the fake ECS: what is kept, what goes, and twice."""

from __future__ import annotations

import asyncio

from worker.aws.fake import FakeEcs
from worker.domain.errors import AwsUnavailableError
from worker.services.cleanup import clean_up_revisions


def family_of_eight(ecs: FakeEcs) -> list[str]:
    """web:1 … web:8; demo/web runs web:3 (as after a rollback), other/web-b still web:1."""
    ecs.add_cluster("demo")
    ecs.add_cluster("other")
    arns = [
        ecs.add_task_definition(
            {"family": "web", "containerDefinitions": [{"name": "web", "image": f"r/web:{n}"}]}
        )
        for n in range(1, 9)
    ]
    ecs.add_service("demo", "web", arns[2])
    ecs.add_service("other", "web-b", arns[0])
    return arns


def test_the_newest_and_the_used_revisions_stay() -> None:
    """keep=2: web:8 and web:7 stay, web:3 (run by a service) and web:1 (run by another
    service of the family, in another cluster) stay; the rest go, oldest first; a second
    run finds nothing to do."""
    ecs = FakeEcs()
    arns = family_of_eight(ecs)
    done, more = asyncio.run(clean_up_revisions(ecs, "web", 2))
    assert (done, more) == ([arns[1], arns[3], arns[4], arns[5]], False)
    active = asyncio.run(ecs.active_task_definition_arns("web"))
    assert active == [arns[7], arns[6], arns[2], arns[0]]
    calls = len(ecs.calls)
    assert asyncio.run(clean_up_revisions(ecs, "web", 2)) == ([], False)
    assert "DeregisterTaskDefinition" not in ecs.calls[calls:]


def test_a_deployment_under_way_keeps_its_revisions() -> None:
    """The revision a rollout is moving to, and the one it leaves, are both in use."""
    ecs = FakeEcs()
    arns = family_of_eight(ecs)
    asyncio.run(ecs.update_service("demo", "web", arns[4], force_new_deployment=False))
    done, _ = asyncio.run(clean_up_revisions(ecs, "web", 1))
    assert arns[4] not in done
    assert arns[2] not in done  # the ACTIVE deployment being replaced


def test_a_bucket_without_tokens_to_spare_pauses_the_cleanup() -> None:
    """A low-priority deregister refused for lack of spare tokens stops the run, reporting
    more to do; what was deregistered before stays done."""
    ecs = FakeEcs()
    arns = family_of_eight(ecs)
    ecs.inject("DeregisterTaskDefinition", AwsUnavailableError("no spare", "RateLimited"))
    done, more = asyncio.run(clean_up_revisions(ecs, "web", 2))
    assert (done, more) == ([], True)
    done, more = asyncio.run(clean_up_revisions(ecs, "web", 2))
    assert (done, more) == ([arns[1], arns[3], arns[4], arns[5]], False)
