"""The UpdateService the update flow sends carries the job's deployment-strategy options on top
of the service's own configuration; a configuration ECS would refuse is refused before it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from producers.cli.core import exit_code
from producers.cli.exit_codes import ExitCode
from producers.contract.jobs import UpdateServiceJob
from producers.contract.records import DeploymentRecord, DeploymentState, Step
from tests.fakes.ecs import FakeEcs
from worker.aws.gateway import EcsGateway
from worker.services.plan import plan_update
from worker.services.update_flow import UpdateFlow
from worker.steps import StepContext, execute

FIXTURE = Path(__file__).parent.parent / "fixtures" / "describe_task_definition_web.json"
HOOKS = [
    {
        "hookTargetArn": "arn:aws:lambda:us-east-1:123456789012:function:check",
        "roleArn": "arn:aws:iam::123456789012:role/hooks",
        "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
    }
]


class RecordingEcs(FakeEcs):
    """The fake ECS, keeping the deploymentConfiguration of every UpdateService it is sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[dict[str, Any] | None] = []

    async def update_service(
        self,
        cluster: str,
        service: str,
        task_definition: str,
        *,
        force_new_deployment: bool,
        desired_count: int | None = None,
        deployment_configuration: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """See EcsGateway; records the configuration first."""
        self.sent.append(json.loads(json.dumps(deployment_configuration)))
        return await super().update_service(
            cluster,
            service,
            task_definition,
            force_new_deployment=force_new_deployment,
            desired_count=desired_count,
            deployment_configuration=deployment_configuration,
        )


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ecs() -> RecordingEcs:
    """Service demo/web on web:1, rolling, with a lifecycle hook and an alarm of its own."""
    fake = RecordingEcs()
    described = json.loads(FIXTURE.read_text())
    arn = fake.add_task_definition(described["taskDefinition"], described["tags"])
    service = fake.add_service("demo", "web", arn)
    service["deploymentConfiguration"].update(
        strategy="ROLLING",
        lifecycleHooks=HOOKS,
        alarms={"alarmNames": ["high-5xx"], "enable": True, "rollback": True},
    )
    return fake


def record_for(**job: Any) -> DeploymentRecord:
    payload = UpdateServiceJob.model_validate(
        {
            "cluster": "demo",
            "service": "web",
            "images": [{"container": "web", "image": ":1.4.2"}],
            **job,
        },
        strict=False,
    ).model_dump(mode="json")
    return DeploymentRecord(
        id="dep-1", job=payload, cluster="demo", service="web", created_at=1000.0, updated_at=1000.0
    )


def _ctx() -> StepContext:
    return StepContext(
        store=None,  # type: ignore[arg-type]
        redis=None,  # type: ignore[arg-type]
        sender=None,  # type: ignore[arg-type]
        clock=Clock(),
        poll_interval=5,
        recovery_grace=60,
        step_time_limit=60,
        max_step_attempts=3,
    )


def _gw(ecs: FakeEcs) -> Any:
    async def gateway(_: DeploymentRecord) -> EcsGateway:
        return ecs

    return gateway


def run(ecs: FakeEcs, record: DeploymentRecord, steps: int) -> DeploymentRecord:
    """Run up to ``steps`` steps through the error policy; stop at a final state."""
    for _ in range(steps):
        t = asyncio.run(execute(_ctx(), _gw(ecs), record))
        record = t.record
        if t.next_step is None:
            break
        record = record.model_copy(update={"step": t.next_step})
    return record


def test_update_service_carries_the_strategy_options(ecs: RecordingEcs) -> None:
    """Canary with its settings, an alarm and a breaker threshold go with the new revision, in
    one UpdateService; the service's hooks and its own alarm stay."""
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    record = record_for(
        strategy="canary",
        bake_minutes=30,
        canary_percent=12.5,
        canary_bake_minutes=15,
        alarms=["p99-latency"],
        circuit_breaker=True,
        circuit_breaker_threshold=4,
        circuit_breaker_threshold_type="count",
    )
    while record.step is not Step.WATCH:
        t = asyncio.run(flow.run(record))
        assert t.next_step is not None, t.record.reason
        record = t.record.model_copy(update={"step": t.next_step})
    assert ecs.sent == [
        {
            "strategy": "CANARY",
            "bakeTimeInMinutes": 30,
            "canaryConfiguration": {"canaryPercent": 12.5, "canaryBakeTimeInMinutes": 15},
            "lifecycleHooks": HOOKS,
            "alarms": {"alarmNames": ["high-5xx", "p99-latency"], "enable": True, "rollback": True},
            "deploymentCircuitBreaker": {
                "enable": True,
                "rollback": True,
                "thresholdConfiguration": {"type": "COUNT", "value": 4},
            },
        }
    ]
    assert "strategy canary, bake 30 min, canary 12.5 %" in record.steps[-1].detail


def test_a_job_without_options_sends_no_configuration(ecs: RecordingEcs) -> None:
    """Only a job that names an option replaces the service's deployment configuration."""
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    record = record_for()
    while record.step is not Step.WATCH:
        t = asyncio.run(flow.run(record))
        assert t.next_step is not None, t.record.reason
        record = t.record.model_copy(update={"step": t.next_step})
    assert ecs.sent == [None]


def test_blue_green_without_a_bake_time_is_refused_before_update_service(
    ecs: RecordingEcs,
) -> None:
    """The service has no bake time and the job gives none: no UpdateService is sent, the
    deployment fails naming the field, and the CLI exits 2 (refused before anything changed)."""
    record = run(ecs, record_for(strategy="blue-green"), steps=8)
    assert record.state is DeploymentState.FAILED
    assert "UpdateService" not in ecs.calls
    assert record.error is not None
    assert record.error.code == "InvalidJob"
    assert "bake_minutes: strategy blue-green needs a bake time" in record.error.message
    assert exit_code(record) is ExitCode.USAGE
    assert ecs.services[("demo", "web")]["taskDefinition"].endswith("web:1")


def test_a_plan_shows_the_strategy_changes_and_the_refusal(ecs: RecordingEcs) -> None:
    """`conveyor plan` shows each deploymentConfiguration member the job changes, before and
    after; a blue/green job the worker would refuse is reported as the plan's error."""
    job = UpdateServiceJob.model_validate(
        {
            "cluster": "demo",
            "service": "web",
            "images": [{"container": "web", "image": ":1.4.2"}],
            "strategy": "linear",
            "linear_step_percent": 20,
        },
        strict=False,
    )
    plan = asyncio.run(plan_update(ecs, job))
    changes = {c["field"]: (c["before"], c["after"]) for c in plan["service_changes"]}
    assert changes["deploymentConfiguration.strategy"] == ("ROLLING", "LINEAR")
    assert changes["deploymentConfiguration.linearConfiguration"] == (None, {"stepPercent": 20.0})
    assert "deploymentConfiguration.lifecycleHooks" not in changes
    refused = asyncio.run(
        plan_update(
            ecs, job.model_copy(update={"strategy": "blue-green", "linear_step_percent": None})
        )
    )
    assert refused["code"] == "InvalidJob"
    assert "needs a bake time" in refused["error"]
    assert "UpdateService" not in ecs.calls
