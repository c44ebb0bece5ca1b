"""Rollouts watched in one cluster are polled together (real Redis, the fake gateway)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import redis

from producers.contract.jobs import UpdateServiceJob
from producers.contract.records import DeploymentRecord, DeploymentState, Step
from tests.fakes.ecs import FakeEcs
from worker.services.update_flow import UpdateFlow
from worker.services.watching import BatchedDescriber

FIXTURE = Path(__file__).parent.parent / "fixtures" / "describe_task_definition_web.json"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _watching(ecs: FakeEcs, flow: UpdateFlow, name: str) -> DeploymentRecord:
    job = UpdateServiceJob.model_validate(
        {"cluster": "demo", "service": name, "images": [{"container": "web", "image": ":2"}]},
        strict=False,
    ).model_dump(mode="json")
    record = DeploymentRecord(
        id=f"d-{name}", job=job, cluster="demo", service=name, created_at=1.0, updated_at=1.0
    )
    while record.step is not Step.WATCH:
        t = asyncio.run(flow.run(record))
        assert t.next_step is not None, t.record.reason
        record = t.record.model_copy(update={"step": t.next_step})
    return record


def test_services_due_together_cost_one_describe_per_ten(client: redis.Redis) -> None:
    """Twelve rollouts in one cluster, all due: the first poll describes itself and nine others
    in one call; those nine then answer from the cache; the last two share one more call."""
    ecs = FakeEcs()
    described = json.loads(FIXTURE.read_text())
    clock = Clock()
    names = [f"svc{i:02d}" for i in range(12)]
    for name in names:
        definition = {**described["taskDefinition"], "family": name}
        ecs.add_service("demo", name, ecs.add_task_definition(definition, described["tags"]))
    describer = BatchedDescriber(ecs, client, scope="acct:r", freshness=5.0, clock=clock)
    flow = UpdateFlow(ecs, poll_interval=10, clock=clock, describer=describer)
    records = [_watching(ecs, flow, name) for name in names]
    for name in names:
        describer.next_poll("demo", name, clock.now)  # all due now
    ecs.calls.clear()
    for record in records:
        t = asyncio.run(flow.run(record))
        assert t.next_step is Step.WATCH
        assert 0.5 <= t.countdown <= 10
    assert ecs.calls.count("DescribeServices") == 2


def test_a_cached_answer_is_used_only_while_fresh(client: redis.Redis) -> None:
    """An answer older than the freshness window is fetched again; a verdict is never taken
    from stale data, and the finished rollout stops being watched."""
    ecs = FakeEcs()
    described = json.loads(FIXTURE.read_text())
    clock = Clock()
    for name in ("a", "b"):
        definition = {**described["taskDefinition"], "family": name}
        ecs.add_service("demo", name, ecs.add_task_definition(definition, described["tags"]))
    describer = BatchedDescriber(ecs, client, scope="acct:r", freshness=2.0, clock=clock)
    flow = UpdateFlow(ecs, poll_interval=10, clock=clock, describer=describer)
    a, b = _watching(ecs, flow, "a"), _watching(ecs, flow, "b")
    describer.next_poll("demo", "b", clock.now + 1)
    asyncio.run(flow.run(a))  # fetches a and b
    ecs.complete("demo", "b")
    clock.now += 3  # b's cached answer (in progress) is now stale
    calls = ecs.calls.count("DescribeServices")
    t = asyncio.run(flow.run(b))
    assert ecs.calls.count("DescribeServices") == calls + 1
    assert t.record.state is DeploymentState.SUCCEEDED
    assert client.zscore("conveyor:watching:acct:r:demo", "b") is None


def test_a_first_attempt_skips_the_look_and_a_retry_makes_it(client: redis.Redis) -> None:
    """Register and update look for what an earlier attempt left (ListTaskDefinitions,
    DescribeServices) only when an attempt was made: a mark in Redis, set before acting, tells.
    A register whose answer was lost is then still found on the retry: one revision."""
    from worker.domain.errors import AwsUnavailableError
    from worker.domain.planning import DEPLOYMENT_TAG
    from worker.steps import StepContext, execute
    from worker.store import WorkerStore

    ecs = FakeEcs()
    described = json.loads(FIXTURE.read_text())
    ecs.add_service(
        "demo", "web", ecs.add_task_definition(described["taskDefinition"], described["tags"])
    )
    store = WorkerStore(client)
    clock = Clock()
    ctx = StepContext(
        store=store,
        redis=client,
        sender=None,  # type: ignore[arg-type]
        clock=clock,
        poll_interval=5,
        recovery_grace=60,
        step_time_limit=60,
        max_step_attempts=3,
    )

    async def gateway(_: DeploymentRecord) -> FakeEcs:
        return ecs

    record = _watching_until(ecs, "web", Step.REGISTER, clock)
    store.create(record, due=9999)
    real_register = ecs.register_task_definition

    async def lost(payload: dict[str, object]) -> dict[str, object]:
        await real_register(payload)  # reaches ECS; the answer is lost
        raise AwsUnavailableError("connection reset", "ConnectionError")

    ecs.register_task_definition = lost  # type: ignore[method-assign]
    ecs.calls.clear()
    t = asyncio.run(execute(ctx, gateway, record))  # type: ignore[arg-type]
    assert t.next_step is Step.REGISTER
    assert "ListTaskDefinitions" not in ecs.calls  # the first attempt did not look
    ecs.register_task_definition = real_register  # type: ignore[method-assign]
    t = asyncio.run(execute(ctx, gateway, t.record))  # type: ignore[arg-type]
    assert t.next_step is Step.UPDATE
    assert "ListTaskDefinitions" in ecs.calls  # the retry looked, and found it
    tagged = [
        arn for arn, tags in ecs.tags.items() if {"key": DEPLOYMENT_TAG, "value": record.id} in tags
    ]
    assert tagged == [t.record.task_definition_arn]

    updating = t.record.model_copy(update={"step": Step.UPDATE})
    ecs.calls.clear()
    t = asyncio.run(execute(ctx, gateway, updating))  # type: ignore[arg-type]
    assert ecs.calls == ["UpdateService"]  # no DescribeServices first
    again = asyncio.run(execute(ctx, gateway, updating))  # type: ignore[arg-type]
    assert again.record.ecs_deployment_id == t.record.ecs_deployment_id
    assert ecs.calls.count("UpdateService") == 1  # the re-run adopted it


def _watching_until(ecs: FakeEcs, name: str, stop: Step, clock: Clock) -> DeploymentRecord:
    flow = UpdateFlow(ecs, poll_interval=10, clock=clock)
    job = UpdateServiceJob.model_validate(
        {"cluster": "demo", "service": name, "images": [{"container": "web", "image": ":2"}]},
        strict=False,
    ).model_dump(mode="json")
    record = DeploymentRecord(
        id=f"d-{name}", job=job, cluster="demo", service=name, created_at=1.0, updated_at=1.0
    )
    while record.step is not stop:
        t = asyncio.run(flow.run(record))
        assert t.next_step is not None, t.record.reason
        record = t.record.model_copy(update={"step": t.next_step})
    return record


def test_canaries_baking_together_share_one_describe_of_their_service_deployments(
    client: redis.Redis,
) -> None:
    """Twelve canary deployments of one account baking at once: a round of polls costs one
    DescribeServiceDeployments (up to 20 a call) and two DescribeServices, not twelve of each;
    each one's stage still comes from its own service deployment, and once one ends it is no
    longer among the watched."""
    ecs = FakeEcs()
    described = json.loads(FIXTURE.read_text())
    clock = Clock()
    names = [f"can{i:02d}" for i in range(12)]
    canary = {
        "strategy": "CANARY",
        "bakeTimeInMinutes": 10,
        "canaryConfiguration": {"canaryPercent": 5.0, "canaryBakeTimeInMinutes": 15},
    }
    for name in names:
        definition = {**described["taskDefinition"], "family": name}
        ecs.add_service(
            "demo",
            name,
            ecs.add_task_definition(definition, described["tags"]),
            configuration=canary,
            deploymentController={"type": "ECS"},
        )
    describer = BatchedDescriber(ecs, client, scope="acct:r", freshness=5.0, clock=clock)
    flow = UpdateFlow(ecs, poll_interval=10, clock=clock, describer=describer)
    records = []
    for name in names:
        watching = _watching(ecs, flow, name)
        first = asyncio.run(flow.run(watching))  # learns its service deployment's ARN
        assert first.next_step is Step.WATCH, first.record.reason
        records.append(first.record)
    arns = [r.service_deployment_arn for r in records]
    assert all(arns)
    for name in names:
        ecs.enter_stage("demo", name, "BAKE_TIME")
    clock.now += 20  # every poll is due, every cache entry stale
    for record in records:
        describer.next_poll("demo", record.service, clock.now)
        describer.next_deployment_poll(record.service_deployment_arn or "", clock.now)
    ecs.calls.clear()

    polled = [asyncio.run(flow.run(record)) for record in records]

    assert ecs.calls.count("DescribeServiceDeployments") == 1
    assert ecs.calls.count("DescribeServices") == 2
    assert {t.record.progress.lifecycle_stage for t in polled} == {"BAKE_TIME"}
    assert all(t.next_step is Step.WATCH for t in polled)

    ecs.complete("demo", names[0])
    clock.now += 20
    ended = asyncio.run(flow.run(polled[0].record))
    assert ended.record.state is DeploymentState.SUCCEEDED, ended.record.reason
    watched = {
        m.decode() if isinstance(m, bytes) else str(m)
        for m in client.zrange("conveyor:watching-deployments:acct:r", 0, -1)
    }
    assert arns[0] not in watched
    assert arns[1] in watched


def test_rolling_deployments_with_hooks_read_their_service_deployments_in_one_batch(
    client: redis.Redis,
) -> None:
    """Rolling services with lifecycle hooks: each watch also reads its service deployment (for
    a hook awaiting approval) through the batched describer, so three of them paused at once
    cost one DescribeServiceDeployments; each sees its own hook."""
    ecs = FakeEcs()
    described = json.loads(FIXTURE.read_text())
    clock = Clock()
    names = ["roll0", "roll1", "roll2"]
    rolling = {
        "strategy": "ROLLING",
        "lifecycleHooks": [{"targetType": "PAUSE", "lifecycleStages": ["POST_SCALE_UP"]}],
    }
    for name in names:
        definition = {**described["taskDefinition"], "family": name}
        ecs.add_service(
            "demo",
            name,
            ecs.add_task_definition(definition, described["tags"]),
            configuration=rolling,
        )
    describer = BatchedDescriber(ecs, client, scope="acct:r", freshness=5.0, clock=clock)
    flow = UpdateFlow(ecs, poll_interval=10, clock=clock, describer=describer)
    records = []
    for name in names:
        first = asyncio.run(flow.run(_watching(ecs, flow, name)))
        assert first.next_step is Step.WATCH, first.record.reason
        assert first.record.service_deployment_arn
        records.append(first.record)
    for name in names:
        ecs.await_approval("demo", name, "POST_SCALE_UP", hook_id=f"h-{name}")
    clock.now += 20
    ecs.calls.clear()

    polled = [asyncio.run(flow.run(record)) for record in records]

    assert ecs.calls.count("DescribeServiceDeployments") == 1
    assert [t.record.progress.awaiting_hook_id for t in polled] == [f"h-{n}" for n in names]
    assert {t.record.progress.lifecycle_stage for t in polled} == {"POST_SCALE_UP"}
