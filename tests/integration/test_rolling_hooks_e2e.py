"""PAUSE lifecycle hooks on ROLLING deployments, end to end: the real CLI, Redis, a celery worker
and the local AWS, which pauses a rolling deployment at POST_SCALE_UP (its new tasks running,
the old ones drained) until it is answered. One deployment is approved with `conveyor approve`,
another rejected with `conveyor reject`; no assert is a timing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from localaws.devstack import Worker
from tests.integration.conftest import Stack
from tests.integration.test_strategies_e2e import (
    _end,
    _ids_of,
    _start,
    _steady,
    _until,
    create_service,
)

pytestmark = pytest.mark.integration

ROLLING = {
    "strategy": "ROLLING",
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
    "deploymentCircuitBreaker": {"enable": True, "rollback": True},
}
PAUSE_HOOK = {
    "targetType": "PAUSE",
    "lifecycleStages": ["POST_SCALE_UP"],
    "timeoutConfiguration": {"timeoutInMinutes": 6000, "action": "ROLLBACK"},
}


def _rolling_service(stack: Stack) -> str:
    """A steady two-task ROLLING service that pauses its next deployments at POST_SCALE_UP."""
    name = create_service(stack, "rollhook", ROLLING)
    _steady(stack, name)
    # The hook comes after the first deployment, so that only ours pauses.
    stack.ecs().update_service(
        cluster="demo",
        service=name,
        deploymentConfiguration={**ROLLING, "lifecycleHooks": [PAUSE_HOOK]},
    )
    return name


def _awaiting(record: dict[str, Any]) -> bool:
    return bool(record["progress"].get("awaiting_hook_id"))


def test_a_rolling_deployment_paused_at_a_hook_is_approved_or_rejected(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """Both deployments show "awaiting approval at POST_SCALE_UP"; the approved one succeeds
    with the answer noted as sent; the rejected one is rolled back by ECS (rolled_back, exit 1,
    never failed) and its service runs the previous revision again."""
    names = {case: _rolling_service(stack) for case in ("approve", "reject")}
    start_worker("w1")
    runs = {case: _start(stack, name, ":1.1.0") for case, name in names.items()}
    ids = _ids_of(stack, names)

    for case, deployment_id in ids.items():
        _until(stack, deployment_id, f"{case} paused", _awaiting)
        status = stack.cli("status", deployment_id)
        assert "awaiting approval at POST_SCALE_UP" in status.stdout, status.stdout
        answered = stack.cli(case, deployment_id, "--by", "e2e", "--no-wait")
        assert answered.returncode == 0, answered.stderr

    code, approved = _end(runs["approve"])
    assert (code, approved["state"]) == (0, "succeeded"), approved["reason"]
    (answer,) = approved["approvals"]
    assert (answer["action"], answer["by"], answer["stage"]) == ("CONTINUE", "e2e", "POST_SCALE_UP")
    assert answer["outcome"].startswith("sent to ECS")

    code, rejected = _end(runs["reject"])
    assert (code, rejected["state"]) == (1, "rolled_back"), rejected["reason"]
    assert rejected["rolled_back_by_ecs"]
    (answer,) = rejected["approvals"]
    assert (answer["action"], answer["outcome"]) == (
        "ROLLBACK",
        "sent to ECS (ContinueServiceDeployment ROLLBACK)",
    )
    (service,) = stack.ecs().describe_services(cluster="demo", services=[names["reject"]])[
        "services"
    ]
    assert service["taskDefinition"] == rejected["previous_task_definition_arn"]
