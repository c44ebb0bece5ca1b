"""What the aiobotocore gateway sends with UpdateService: the revision, and only what the job
changes. Everything not sent (the deployment controller, load balancers with their blue/green
advanced configuration, Service Connect...) ECS keeps as the service has it."""

from __future__ import annotations

import asyncio
import copy
from typing import Any, cast

from worker.aws.boto_ecs import BotoEcsGateway

CONFIGURATION: dict[str, Any] = {
    "strategy": "LINEAR",
    "bakeTimeInMinutes": 15,
    "linearConfiguration": {"stepPercent": 20.0, "stepBakeTimeInMinutes": 3},
    "lifecycleHooks": [
        {
            "targetType": "PAUSE",
            "lifecycleStages": ["PRE_PRODUCTION_TRAFFIC_SHIFT"],
            "timeoutConfiguration": {"timeoutInMinutes": 60, "action": "ROLLBACK"},
        }
    ],
    "alarms": {"alarmNames": ["shop-5xx"], "enable": True, "rollback": True},
    "minimumHealthyPercent": 50,
}


class RecordingEcs:
    """An ECS client that records UpdateService's parameters."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def update_service(self, **kwargs: Any) -> dict[str, Any]:
        self.requests.append(copy.deepcopy(kwargs))
        return {"service": {"serviceName": kwargs["service"]}}


def test_the_deployment_configuration_is_sent_as_given_and_nothing_else() -> None:
    """The whole configuration, as the flow built it; no controller, no load balancers."""
    client = RecordingEcs()
    gateway = BotoEcsGateway(cast(Any, client))
    asyncio.run(
        gateway.update_service(
            "demo",
            "web",
            "web:2",
            force_new_deployment=False,
            deployment_configuration=CONFIGURATION,
        )
    )
    assert client.requests == [
        {
            "cluster": "demo",
            "service": "web",
            "taskDefinition": "web:2",
            "forceNewDeployment": False,
            "deploymentConfiguration": CONFIGURATION,
        }
    ]


def test_without_options_only_the_revision_is_sent() -> None:
    """No desired count and no configuration: ECS keeps the service's own."""
    client = RecordingEcs()
    gateway = BotoEcsGateway(cast(Any, client))
    asyncio.run(gateway.update_service("demo", "web", "web:2", force_new_deployment=True))
    assert client.requests == [
        {"cluster": "demo", "service": "web", "taskDefinition": "web:2", "forceNewDeployment": True}
    ]
