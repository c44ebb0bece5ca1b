"""One local AWS keeps a whole fleet rolling at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.config import Config

from tests.localaws.conftest import Aws, client, wait_for

FLEET_SIZE = 500


@pytest.mark.slow
def test_a_fleet_of_500_services_rolls_to_completion(aws: Aws) -> None:
    """500 services updated at once all end with their new revision PRIMARY and COMPLETED."""
    ecs = client(aws.url, "ecs", Config(max_pool_connections=8))
    first = aws.task_definition("fleet", "repo/fleet:1")
    second = aws.task_definition("fleet", "repo/fleet:2")
    names = [f"svc-{i:03d}" for i in range(FLEET_SIZE)]

    def each(call: Any) -> None:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(call, names))

    each(
        lambda n: ecs.create_service(
            cluster="test", serviceName=n, taskDefinition=first, desiredCount=2
        )
    )
    each(lambda n: ecs.update_service(cluster="test", service=n, taskDefinition=second))

    def states() -> dict[tuple[int, str, str], int]:
        counts: dict[tuple[int, str, str], int] = {}
        for start in range(0, FLEET_SIZE, 10):
            batch = ecs.describe_services(cluster="test", services=names[start : start + 10])
            for service in batch["services"]:
                deployments = service["deployments"]
                key = (
                    len(deployments),
                    deployments[0]["rolloutState"],
                    deployments[0]["taskDefinition"],
                )
                counts[key] = counts.get(key, 0) + 1
        return counts

    final = wait_for(
        lambda: (s := states()).get((1, "COMPLETED", second)) == FLEET_SIZE and s,
        timeout=120,
        interval=1,
    )
    assert final == {(1, "COMPLETED", second): FLEET_SIZE}
    assert len(aws.ecs.list_tasks(cluster="test", serviceName="svc-499")["taskArns"]) == 2
