"""Cleaning up old revisions against the fake ECS and a real Redis: what is kept, what goes.

Nothing in use or about to be is taken: what services, running tasks and EventBridge rule
targets use, and what Conveyor's own unfinished deployments hold (including a revision one of
them has just registered and not yet recorded). The account's view of what AWS uses is shared
through Redis, so many cleanups in a row scan the account once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from producers.contract.jobs import UpdateServiceJob
from producers.contract.records import DeploymentRecord, DeploymentState, Step
from tests.fakes.ecs import FakeEcs
from worker.domain.errors import AwsUnavailableError
from worker.services.cleanup import InUseView, clean_up_revisions
from worker.services.transitions import Transition
from worker.services.update_flow import UpdateFlow
from worker.steps import StoreNotes
from worker.store import WorkerStore


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A real Redis, emptied for the test."""
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    yield r
    r.close()


@pytest.fixture
def store(client: redis.Redis) -> WorkerStore:
    """Deployment records in that Redis."""
    return WorkerStore(client)


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


def clean(
    ecs: FakeEcs, store: WorkerStore, client: redis.Redis, keep: int, family: str = "web"
) -> tuple[list[str], bool]:
    """One cleanup run, as the worker's task runs it."""
    return asyncio.run(clean_up_revisions(ecs, family, keep, store=store, view=InUseView(client)))


def test_the_newest_and_the_used_revisions_stay(store: WorkerStore, client: redis.Redis) -> None:
    """keep=2: web:8 and web:7 stay, web:3 (run by a service) and web:1 (run by another
    service of the family, in another cluster) stay; the rest go, oldest first; a second
    run finds nothing to do."""
    ecs = FakeEcs()
    arns = family_of_eight(ecs)
    done, more = clean(ecs, store, client, 2)
    assert (done, more) == ([arns[1], arns[3], arns[4], arns[5]], False)
    active = asyncio.run(ecs.active_task_definition_arns("web"))
    assert active == [arns[7], arns[6], arns[2], arns[0]]
    calls = len(ecs.calls)
    assert clean(ecs, store, client, 2) == ([], False)
    assert "DeregisterTaskDefinition" not in ecs.calls[calls:]


def test_a_deployment_under_way_keeps_its_revisions(
    store: WorkerStore, client: redis.Redis
) -> None:
    """The revision a rollout is moving to, and the one it leaves, are both in use."""
    ecs = FakeEcs()
    arns = family_of_eight(ecs)
    asyncio.run(ecs.update_service("demo", "web", arns[4], force_new_deployment=False))
    done, _ = clean(ecs, store, client, 1)
    assert arns[4] not in done
    assert arns[2] not in done  # the ACTIVE deployment being replaced


def test_a_bucket_without_tokens_to_spare_pauses_the_cleanup(
    store: WorkerStore, client: redis.Redis
) -> None:
    """A low-priority deregister refused for lack of spare tokens stops the run, reporting
    more to do; what was deregistered before stays done."""
    ecs = FakeEcs()
    arns = family_of_eight(ecs)
    ecs.inject("DeregisterTaskDefinition", AwsUnavailableError("no spare", "RateLimited"))
    done, more = clean(ecs, store, client, 2)
    assert (done, more) == ([], True)
    done, more = clean(ecs, store, client, 2)
    assert (done, more) == ([arns[1], arns[3], arns[4], arns[5]], False)


def test_a_standalone_task_keeps_its_revision(store: WorkerStore, client: redis.Redis) -> None:
    """A task started by RunTask on an old revision keeps it; once it stopped, the revision
    may go (after the shared view expired)."""
    ecs = FakeEcs()
    arns = family_of_eight(ecs)
    task = ecs.start_task("demo", arns[4])
    done, _ = clean(ecs, store, client, 1)
    assert arns[4] not in done
    assert asyncio.run(ecs.describe_task_definition(arns[4]))[0]["status"] == "ACTIVE"
    ecs.stop_standalone_task(task)
    client.delete("conveyor:in-use:" + ecs.scope)  # the view's minute is over
    done, _ = clean(ecs, store, client, 1)
    assert done == [arns[4]]


def test_an_eventbridge_target_keeps_its_revision(store: WorkerStore, client: redis.Redis) -> None:
    """A schedule whose target names an old revision keeps it; a target naming the family
    alone (its latest ACTIVE revision) keeps nothing old."""
    ecs = FakeEcs()
    arns = family_of_eight(ecs)
    ecs.add_schedule("nightly-report", arns[3])
    ecs.add_schedule("hourly", arns[0].rsplit(":", 1)[0])  # ...:task-definition/web
    done, _ = clean(ecs, store, client, 1)
    assert arns[3] not in done
    assert done == [arns[1], arns[4], arns[5], arns[6]]


def _job(**extra: Any) -> dict[str, Any]:
    return UpdateServiceJob.model_validate(
        {
            "cluster": "demo",
            "service": "web",
            "images": [{"container": "web", "image": ":2.0.0"}],
            "keep_revisions": 1,
            **extra,
        },
        strict=False,
    ).model_dump(mode="json")


def _apply(store: WorkerStore, record: DeploymentRecord, t: Transition) -> DeploymentRecord:
    """Commit a step's transition as the step runner does."""
    new = t.record.model_copy(update={"seq": record.seq + 1, "step": t.next_step or t.record.step})
    assert store.commit(new, expected_seq=record.seq, due=None if t.next_step is None else 9e9)
    return new


def test_a_revision_registered_but_not_yet_recorded_is_kept(
    store: WorkerStore, client: redis.Redis
) -> None:
    """Deployment A registers its revision; before its record names it (between register
    and update), another deployment of the family registers a newer one and cleans up with
    keep=1. A's revision stays (its tag names A, which has not ended), and so does the
    revision A builds on and the one it would roll back to; A then updates the service to
    it. Once A ended, its revision may go."""
    ecs = FakeEcs()
    arns = family_of_eight(ecs)  # demo/web runs web:3, the base is web:8
    record = DeploymentRecord(
        id="dep-a", job=_job(), cluster="demo", service="web", created_at=1.0, updated_at=1.0
    )
    store.create(record, due=9e9)
    flow = UpdateFlow(ecs, poll_interval=5, clock=lambda: 2.0, notes=StoreNotes(store))
    record = _apply(store, record, asyncio.run(flow.run(record)))  # resolve: family known
    registered = asyncio.run(flow.run(record))  # register: web:9, not committed yet
    ours = registered.record.task_definition_arn
    assert ours is not None
    assert ours.endswith("web:9")
    # Another deployment of the family registers web:10 and cleans up, keep=1.
    ecs.add_task_definition(
        {"family": "web", "containerDefinitions": [{"name": "web", "image": "r/web:10"}]}
    )
    done, _ = clean(ecs, store, client, 1)
    assert ours not in done
    assert arns[7] not in done  # A's base
    assert arns[2] not in done  # A's rollback target (the service runs it too)
    record = _apply(store, record, registered)
    record = _apply(store, record, asyncio.run(flow.run(record)))  # update
    assert ecs.services[("demo", "web")]["taskDefinition"] == ours
    # A ends; its revision stays while the service runs it, and the base may go.
    ecs.complete("demo", "web")
    ended = record.model_copy(
        update={"state": DeploymentState.SUCCEEDED, "step": Step.WATCH, "seq": record.seq + 1}
    )
    assert store.commit(ended, expected_seq=record.seq, due=None)
    client.delete("conveyor:in-use:" + ecs.scope)
    done, _ = clean(ecs, store, client, 1)
    assert ours not in done
    assert arns[7] in done


def test_the_rollback_target_of_an_unfinished_deployment_is_kept(
    store: WorkerStore, client: redis.Redis
) -> None:
    """A deployment under way whose rollback target no service runs any more (the service
    was moved by hand meanwhile) keeps that target until it ends."""
    ecs = FakeEcs()
    arns = family_of_eight(ecs)
    record = DeploymentRecord(
        id="dep-r",
        job=_job(),
        cluster="demo",
        service="web",
        created_at=1.0,
        updated_at=1.0,
        state=DeploymentState.RUNNING,
        step=Step.WATCH,
        family="web",
        task_definition_arn=arns[7],
        previous_task_definition_arn=arns[4],
        base_task_definition_arn=arns[6],
    )
    store.create(record, due=9e9)
    assert store.commit(record.model_copy(update={"seq": 1}), expected_seq=0, due=9e9)
    done, _ = clean(ecs, store, client, 1)
    assert arns[4] not in done
    assert arns[6] not in done
    assert done == [arns[1], arns[3], arns[5]]


def test_many_cleanups_share_one_scan_of_the_account(
    store: WorkerStore, client: redis.Redis
) -> None:
    """Cleanups of 20 families in a row (as after a release) scan the account's services,
    tasks and EventBridge rules once, not once each; each family's revisions still go."""
    ecs = FakeEcs()
    ecs.add_cluster("demo")
    for n in range(20):
        arns = [
            ecs.add_task_definition(
                {"family": f"app{n}", "containerDefinitions": [{"name": "a", "image": "r/a:1"}]}
            )
            for _ in range(3)
        ]
        ecs.add_service("demo", f"app{n}", arns[-1])
    for n in range(20):
        done, more = clean(ecs, store, client, 1, family=f"app{n}")
        assert (len(done), more) == (2, False)
    assert ecs.calls.count("ListServices") == 1
    assert ecs.calls.count("ListTasks") == 1
    assert ecs.calls.count("ListRules") == 1


def test_a_cleanup_while_another_worker_scans_comes_back_later(
    store: WorkerStore, client: redis.Redis
) -> None:
    """While one worker computes the account's view, another cleanup scans nothing and
    deregisters nothing: it reports more to do, and is sent again."""
    ecs = FakeEcs()
    family_of_eight(ecs)
    client.set("conveyor:lock:in-use:" + ecs.scope, "1", ex=60)
    assert clean(ecs, store, client, 1) == ([], True)
    assert "ListServices" not in ecs.calls
    assert "DeregisterTaskDefinition" not in ecs.calls
