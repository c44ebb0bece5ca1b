"""Many jobs for one service: serialized, never overlapping, the newest image wins."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from config.settings import Settings
from deploy.devstack import Worker
from producers.client import ConveyorClient
from producers.jobs import ImageUpdate, UpdateServiceJob
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


def test_twenty_jobs_for_one_service(
    stack: Stack, start_worker: Callable[[str], Worker], figures: dict[str, object]
) -> None:
    """20 jobs at once: no two rollouts overlap, and the service ends on the last image."""
    start_worker("w1")
    start_worker("w2")
    client = ConveyorClient(Settings(redis_url=stack.redis_url))  # type: ignore[arg-type]
    family_before = stack.ecs().list_task_definitions(familyPrefix="api")["taskDefinitionArns"]
    ids = [
        client.enqueue(
            UpdateServiceJob(
                cluster="demo",
                service="api",
                images=(ImageUpdate(container="api", image=f":2.0.{i}"),),
            )
        ).id
        for i in range(20)
    ]
    records = [client.wait(i, timeout=300, interval=0.5) for i in ids]
    states = [r.state.value for r in records]
    assert states[-1] == "succeeded", records[-1]
    assert set(states) <= {"succeeded", "superseded"}, states

    ran = sorted(
        (r for r in records if r.state.value == "succeeded"), key=lambda r: r.started_at or 0
    )
    for earlier, later in itertools.pairwise(ran):
        assert earlier.finished_at is not None
        assert later.started_at is not None
        assert earlier.finished_at <= later.started_at, "two rollouts of one service overlapped"

    service = stack.ecs().describe_services(cluster="demo", services=["api"])["services"][0]
    definition = stack.ecs().describe_task_definition(taskDefinition=service["taskDefinition"])
    assert definition["taskDefinition"]["containerDefinitions"][0]["image"].endswith(":2.0.19")
    family_after = stack.ecs().list_task_definitions(familyPrefix="api")["taskDefinitionArns"]
    assert len(family_after) - len(family_before) == len(ran), "one revision per deployment run"
    figures["one_service_twenty_jobs"] = {
        "ran": len(ran),
        "superseded": states.count("superseded"),
        "seconds_first_enqueue_to_last_verdict": round(
            max(r.finished_at or 0 for r in records) - min(r.created_at for r in records), 1
        ),
    }
