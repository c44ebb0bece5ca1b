"""Many jobs for one service: serialized, never overlapping, the newest image wins."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import pytest

from config.settings import Settings
from localaws.devstack import Worker
from producers.client import ConveyorClient
from producers.contract.jobs import ImageUpdate, UpdateServiceJob
from producers.contract.records import DeploymentRecord
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


def _job(tag: str) -> UpdateServiceJob:
    return UpdateServiceJob(
        cluster="demo", service="api", images=(ImageUpdate(container="api", image=f":{tag}"),)
    )


def _assert_serialized(records: list[DeploymentRecord]) -> list[DeploymentRecord]:
    ran = sorted(
        (r for r in records if r.state.value == "succeeded"), key=lambda r: r.started_at or 0
    )
    for earlier, later in itertools.pairwise(ran):
        assert earlier.finished_at is not None
        assert later.started_at is not None
        assert earlier.finished_at <= later.started_at, "two rollouts of one service overlapped"
    return ran


def _image_now(stack: Stack) -> str:
    service = stack.ecs().describe_services(cluster="demo", services=["api"])["services"][0]
    definition = stack.ecs().describe_task_definition(taskDefinition=service["taskDefinition"])
    image: str = definition["taskDefinition"]["containerDefinitions"][0]["image"]
    return image


def test_twenty_jobs_for_one_service(
    stack: Stack, start_worker: Callable[[str], Worker], figures: dict[str, object]
) -> None:
    """One job runs; 19 more arrive meanwhile. Rollouts never overlap, the queued ones but the
    newest are superseded, and the service ends on the last image enqueued."""
    start_worker("w1")
    start_worker("w2")
    client = ConveyorClient(Settings(redis_url=stack.redis_url))  # type: ignore[arg-type]
    family_before = stack.ecs().list_task_definitions(familyPrefix="api")["taskDefinitionArns"]
    first = client.enqueue(_job("2.0.0")).id
    deadline = time.monotonic() + 60
    while client.status(first).state.value == "queued":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ids = [first] + [client.enqueue(_job(f"2.0.{i}")).id for i in range(1, 20)]
    records = [client.wait(i, timeout=300, interval=0.5) for i in ids]
    states = [r.state.value for r in records]
    assert states[0] == "succeeded"
    assert states[-1] == "succeeded", records[-1]
    assert set(states[1:-1]) == {"superseded"}, states
    ran = _assert_serialized(records)
    assert len(ran) == 2
    assert _image_now(stack).endswith(":2.0.19")
    family_after = stack.ecs().list_task_definitions(familyPrefix="api")["taskDefinitionArns"]
    assert len(family_after) - len(family_before) == len(ran), "one revision per deployment run"
    figures["one_service_twenty_jobs"] = {
        "ran": len(ran),
        "superseded": states.count("superseded"),
        "seconds_first_enqueue_to_last_verdict": round(
            max(r.finished_at or 0 for r in records) - min(r.created_at for r in records), 1
        ),
    }


def test_without_supersede_every_job_runs_in_order(
    stack: Stack, start_worker: Callable[[str], Worker], figures: dict[str, object]
) -> None:
    """With CONVEYOR_SUPERSEDE=false, five jobs at once all run, one after another, in order."""
    stack.env["CONVEYOR_SUPERSEDE"] = "false"
    start_worker("w1")
    start_worker("w2")
    client = ConveyorClient(Settings(redis_url=stack.redis_url))  # type: ignore[arg-type]
    ids = [client.enqueue(_job(f"3.0.{i}")).id for i in range(5)]
    records = [client.wait(i, timeout=300, interval=0.5) for i in ids]
    assert [r.state.value for r in records] == ["succeeded"] * 5
    ran = _assert_serialized(records)
    assert [r.id for r in ran] == ids, "jobs ran out of arrival order"
    assert _image_now(stack).endswith(":3.0.4")
    figures["one_service_five_jobs_fifo"] = {
        "ran": len(ran),
        "seconds_first_enqueue_to_last_verdict": round(
            max(r.finished_at or 0 for r in records) - min(r.created_at for r in records), 1
        ),
    }
