"""The shared rate limiter with workers on the local AWS: fleets, accounts, throttles."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from config.settings import Settings
from localaws.devstack import Worker
from localaws.testing import create_services
from producers.client import ConveyorClient
from producers.contract.jobs import ImageUpdate, UpdateServiceJob
from tests.integration.conftest import Stack
from worker.aws.ratelimit import Bucket, RateLimiter
from worker.domain.errors import AwsUnavailableError

OPERATION = "RegisterTaskDefinition"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A clean Redis database."""
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    yield r
    r.close()


def test_a_fleet_under_aws_real_limits_is_not_throttled(
    stack: Stack, start_worker: Callable[[str], Worker], figures: dict[str, object]
) -> None:
    """30 services at once, AWS's ECS buckets emulated at their real rates (RegisterTaskDefinition:
    20, then 1/s): the shared limiter spaces the calls, so every deployment succeeds and ECS
    throttles (next to) nothing. Without it, 10 or more registers are throttled at once."""
    from localaws.testing import control

    names = [f"rl-{uuid.uuid4().hex[:6]}-{i}" for i in range(30)]
    container = {"name": "app", "image": "registry.local:5000/team/app:1.0.0", "memory": 128}
    create_services(stack.endpoint, names, containers=[container], desired=1)
    start_worker("w1")
    start_worker("w2")
    assert control(stack.endpoint, "POST", "limits", {"enabled": True, "scale": 1})[0] == 200
    control(stack.endpoint, "DELETE", "stats")
    try:
        client = ConveyorClient(Settings(redis_url=stack.redis_url))  # type: ignore[arg-type]
        started = time.time()
        ids = [
            client.enqueue(
                UpdateServiceJob(
                    cluster="demo",
                    service=name,
                    images=(ImageUpdate(container="app", image=":2.0.0"),),
                )
            ).id
            for name in names
        ]
        records = [client.wait(i, timeout=300, interval=0.5) for i in ids]
        _, stats = control(stack.endpoint, "GET", "stats")
    finally:
        control(stack.endpoint, "DELETE", "limits")
    assert [r.state.value for r in records] == ["succeeded"] * len(names)
    throttled = sum(stats["throttled"].values())
    figures["fleet_30_real_limits"] = {
        "seconds": round(max(r.finished_at or 0 for r in records) - started, 1),
        "throttled": throttled,
        "ecs_calls": sum(stats["calls"].values()),
        "calls": stats["calls"],
    }
    assert throttled <= 2, stats["throttled"]
    assert stats["calls"].get("RegisterTaskDefinition", 0) <= len(names) + 2


def test_a_busy_account_does_not_delay_another(
    stack: Stack, start_worker: Callable[[str], Worker], figures: dict[str, object]
) -> None:
    """36 services of one account, then 3 of another (through an assumed role), under AWS's
    real buckets. The first account's registers past its burst of 20 are booked as tickets,
    a second apart, without holding worker slots; so the second account's deployments run at
    once instead of queueing behind them, and neither account is throttled."""
    from localaws.testing import control

    other = "222222222222"
    busy = [f"busy-{uuid.uuid4().hex[:6]}-{i}" for i in range(36)]
    quiet = [f"quiet-{uuid.uuid4().hex[:6]}-{i}" for i in range(3)]
    container = {"name": "app", "image": "registry.local:5000/team/app:1.0.0", "memory": 128}
    create_services(stack.endpoint, busy, containers=[container], desired=1)
    create_services(stack.endpoint, quiet, containers=[container], desired=1, account=other)
    # A step time limit long enough for the limiter's in-slot wait to be its default.
    stack.env.update({"CONVEYOR_STEP_TIME_LIMIT": "30", "CONVEYOR_RECOVERY_GRACE": "45"})
    start_worker("w1")
    start_worker("w2")
    assert control(stack.endpoint, "POST", "limits", {"enabled": True, "scale": 1})[0] == 200
    control(stack.endpoint, "DELETE", "stats")
    try:
        client = ConveyorClient(Settings(redis_url=stack.redis_url))  # type: ignore[arg-type]

        def job(name: str, role: str | None) -> UpdateServiceJob:
            return UpdateServiceJob(
                cluster="demo",
                service=name,
                images=(ImageUpdate(container="app", image=":2.0.0"),),
                role_arn=role,
            )

        started = time.time()
        busy_ids = [client.enqueue(job(n, None)).id for n in busy]
        role = f"arn:aws:iam::{other}:role/deployer"
        quiet_ids = [client.enqueue(job(n, role)).id for n in quiet]
        busy_records = [client.wait(i, timeout=300, interval=0.5) for i in busy_ids]
        quiet_records = [client.wait(i, timeout=300, interval=0.5) for i in quiet_ids]
        _, stats = control(stack.endpoint, "GET", "stats")
    finally:
        control(stack.endpoint, "DELETE", "limits")

    def updated(record: Any) -> float:
        return float(
            next(s.at for s in record.steps if s.step == "update" and s.status == "completed")
        )

    assert [r.state.value for r in busy_records + quiet_records] == ["succeeded"] * 39, [
        (r.service, r.state, r.reason) for r in busy_records + quiet_records
    ]
    last_quiet = max(updated(r) for r in quiet_records)
    busy_after = sorted(updated(r) for r in busy_records if updated(r) > last_quiet)
    figures["busy_and_quiet_accounts"] = {
        "busy_services": len(busy),
        "quiet_services": len(quiet),
        "quiet_updated_by_s": round(last_quiet - started, 1),
        "busy_updated_by_s": round(max(updated(r) for r in busy_records) - started, 1),
        "busy_updates_after_the_quiet_ones": len(busy_after),
        "throttled": sum(stats["throttled"].values()),
    }
    # The busy account's registers past its burst come a second apart, for about 16 s: the
    # quiet account's deployments are all updated before most of them, not after the queue.
    assert len(busy_after) >= 8, figures["busy_and_quiet_accounts"]
    assert sum(stats["throttled"].values()) <= 2, stats["throttled"]


def test_deployments_under_way_go_before_new_ones(stack: Stack) -> None:
    """20 deployments enqueued at once on one worker slot: each one's later steps are served
    before the next new deployment starts, so the first registers while the last is still
    queued (in one FIFO queue every service would be resolved before any registered)."""
    names = [f"pri-{uuid.uuid4().hex[:6]}-{i}" for i in range(20)]
    container = {"name": "app", "image": "registry.local:5000/team/app:1.0.0", "memory": 128}
    create_services(stack.endpoint, names, containers=[container], desired=1)
    worker = Worker("solo", stack.env, stack.logs / "solo.log", concurrency=1)
    try:
        worker.wait_ready(stack.redis_url)
        client = ConveyorClient(Settings(redis_url=stack.redis_url))  # type: ignore[arg-type]
        ids = [
            client.enqueue(
                UpdateServiceJob(
                    cluster="demo",
                    service=name,
                    images=(ImageUpdate(container="app", image=":2.0.0"),),
                )
            ).id
            for name in names
        ]
        records = [client.wait(i, timeout=300, interval=0.5) for i in ids]
    finally:
        worker.stop()
    assert [r.state.value for r in records] == ["succeeded"] * len(names)

    def done(record: Any, step: str) -> float:
        return float(next(s.at for s in record.steps if s.step == step and s.status == "completed"))

    first_registered = done(records[0], "register")
    resolved_later = [r for r in records if done(r, "resolve") > first_registered]
    assert len(resolved_later) >= 10, [
        round(done(r, "resolve") - first_registered, 2) for r in records
    ]


def test_a_budget_spent_by_another_client_is_learnt_from_aws(
    stack: Stack, start_worker: Callable[[str], Worker], figures: dict[str, object]
) -> None:
    """Another client of the account (Terraform, a CI job) has just spent the register budget,
    which Conveyor's bucket cannot know. The first throttled register drains the shared bucket,
    so every worker then waits for AWS's refill instead of fighting for it: only the registers
    already in flight (two workers of two slots) are throttled. Before, each throttled register
    was retried by botocore with no token, against the refill the others were waiting for, and
    8 deployments saw 19 and 22 throttled registers in two runs
    (1 to 2 now)."""
    import boto3
    from botocore.config import Config

    from localaws.testing import control

    names = [f"outside-{uuid.uuid4().hex[:6]}-{i}" for i in range(8)]
    container = {"name": "app", "image": "registry.local:5000/team/app:1.0.0", "memory": 128}
    create_services(stack.endpoint, names, containers=[container], desired=1)
    start_worker("w1")
    start_worker("w2")
    assert control(stack.endpoint, "POST", "limits", {"enabled": True, "scale": 1})[0] == 200
    try:
        outside = boto3.client(
            "ecs",
            endpoint_url=stack.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"total_max_attempts": 1}),
        )
        for i in range(20):  # the account's whole burst, at once
            outside.register_task_definition(
                family="terraform-managed",
                containerDefinitions=[{"name": "app", "image": f"repo/app:{i}", "memory": 64}],
            )
        control(stack.endpoint, "DELETE", "stats")
        client = ConveyorClient(Settings(redis_url=stack.redis_url))  # type: ignore[arg-type]
        ids = [
            client.enqueue(
                UpdateServiceJob(
                    cluster="demo",
                    service=name,
                    images=(ImageUpdate(container="app", image=":2.0.0"),),
                )
            ).id
            for name in names
        ]
        records = [client.wait(i, timeout=300, interval=0.5) for i in ids]
        _, stats = control(stack.endpoint, "GET", "stats")
    finally:
        control(stack.endpoint, "DELETE", "limits")
    assert [r.state.value for r in records] == ["succeeded"] * len(names)
    throttled = stats["throttled"].get("RegisterTaskDefinition", 0)
    figures["outside_client_spent_the_burst"] = {
        "throttled": stats["throttled"],
        "calls": stats["calls"],
    }
    assert throttled <= 4, stats["throttled"]
    assert stats["calls"]["RegisterTaskDefinition"] == len(names) + throttled


async def _take_register_token(limiter: RateLimiter) -> None:
    """What a worker's register step does: reserve the token, holding a ticket while it is
    due later (coming back as often as the bucket says), then take it for the call."""
    ticket = None
    while True:
        try:
            await limiter.reserve(OPERATION, ticket)
            break
        except AwsUnavailableError as exc:
            if exc.ticket is None:  # beyond the horizon: queue again after the wait
                await asyncio.sleep(exc.retry_after)
                continue
            ticket = exc.ticket
            await asyncio.sleep(max(0.0, exc.retry_after))
    await limiter.acquire(OPERATION)


def _pool(client: redis.Redis, bucket: Bucket, max_wait: float) -> Any:
    """A worker's client pool on the local AWS, sharing ``client``'s buckets."""
    from worker.aws.boto_pool import ClientPool, Limits

    return ClientPool(
        region="us-east-1",
        max_attempts=3,
        limits=Limits(redis=client, buckets={OPERATION: bucket}, max_wait=max_wait),
    )


_PAYLOAD = {
    "family": "throttled",
    "containerDefinitions": [{"name": "app", "image": "repo/app:1", "memory": 64}],
}


@pytest.mark.parametrize(
    ("bucket", "max_wait", "code", "sent"),
    [
        # The bucket is empty after the throttle and refills in 100 s: the step gives its slot
        # back (RateLimited, which uses none of its attempts) instead of retrying.
        (Bucket(burst=10, refill_per_second=0.01), 1.0, "RateLimited", 1),
        # Tokens come quickly: the call is sent again, each time with a new token, four times
        # in all (THROTTLED_RETRIES); then the step is retried as after any transient error.
        (Bucket(burst=10, refill_per_second=20.0), 1.0, "ThrottlingException", 4),
    ],
)
def test_a_throttled_call_is_retried_with_a_token_from_the_drained_bucket(
    stack: Stack,
    client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    bucket: Bucket,
    max_wait: float,
    code: str,
    sent: int,
) -> None:
    """AWS throttles every RegisterTaskDefinition. botocore does not retry it on its own (its
    retries took no token, spending the refill promised to other callers); the bucket is drained,
    and the call is sent again only with a new token. Before, botocore sent it max_attempts times
    and the bucket kept 9 of its 10 tokens for the next callers."""
    from localaws.testing import control

    for name, value in stack.env.items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    pool = _pool(client, bucket, max_wait)
    assert (
        control(stack.endpoint, "POST", "faults", {"throttle": 1.0, "operations": [OPERATION]})[0]
        == 200
    )
    control(stack.endpoint, "DELETE", "stats")

    async def register() -> AwsUnavailableError:
        try:
            gateway = await pool.gateway(now=time.time())
            with pytest.raises(AwsUnavailableError) as info:
                await gateway.register_task_definition(dict(_PAYLOAD))
            return info.value
        finally:
            await pool.close()

    try:
        error = asyncio.run(register())
        _, stats = control(stack.endpoint, "GET", "stats")
    finally:
        control(stack.endpoint, "DELETE", "faults")
    assert error.code == code
    assert stats["throttled"].get(OPERATION, 0) == sent
    key = next(iter(client.scan_iter("conveyor:ratelimit:*")))
    assert float(client.hget(key, "tokens") or 0) < 1.0  # drained: nothing left to spend


def test_late_arrivals_queue_behind_the_tickets_booked_ahead(
    stack: Stack, client: redis.Redis, figures: dict[str, object]
) -> None:
    """Late arrivals, at a tenth of the time: the local AWS enforces the register
    bucket (20, refilled ten times faster than AWS's 1/s) and 60 deployments take their tokens
    from one shared bucket, 20 at once and 40 as tickets, each registering when its token is
    due. 20 more arrive once a full bucket's refill and the key's grace have passed, while
    tickets are still due. Before, the key had expired by then: they found a full bucket and
    spent a burst AWS no longer had, and about 20 registers were throttled. Now they book after
    the last ticket, and none is."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    from localaws.testing import control

    ecs = boto3.client(
        "ecs",
        endpoint_url=stack.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=30),
    )
    buckets = {OPERATION: Bucket(burst=20, refill_per_second=10.0)}
    limiter = RateLimiter(
        client,
        account="123456789012",
        region="us-east-1",
        buckets=buckets,
        max_wait=0.05,
        idle=0.5,
    )
    outcomes: list[str] = []

    def register(i: int) -> None:
        try:
            ecs.register_task_definition(
                family="late-arrivals",
                containerDefinitions=[{"name": "app", "image": f"repo/app:{i}", "memory": 64}],
            )
            outcomes.append("ok")
        except ClientError as error:
            outcomes.append(str(error.response["Error"]["Code"]))

    async def deployment(i: int) -> None:
        await _take_register_token(limiter)
        await asyncio.to_thread(register, i)

    async def fleet() -> None:
        first = [asyncio.create_task(deployment(i)) for i in range(60)]
        # Past what the key lived before: a full bucket's refill (2 s) and the grace (0.5 s).
        await asyncio.sleep(3.0)
        late = [asyncio.create_task(deployment(100 + i)) for i in range(20)]
        await asyncio.gather(*first, *late)

    assert control(stack.endpoint, "POST", "limits", {"enabled": True, "scale": 10})[0] == 200
    control(stack.endpoint, "DELETE", "stats")
    try:
        asyncio.run(fleet())
        _, stats = control(stack.endpoint, "GET", "stats")
    finally:
        control(stack.endpoint, "DELETE", "limits")
    throttled = stats["throttled"].get(OPERATION, 0)
    figures["late_arrivals_behind_tickets"] = {"registers": len(outcomes), "throttled": throttled}
    assert len(outcomes) == 80
    assert throttled == outcomes.count("ThrottlingException")
    assert throttled <= 1, stats["throttled"]


def test_a_client_spending_a_fifth_of_the_budget_throughout_is_made_room_for(
    stack: Stack, client: redis.Redis, figures: dict[str, object]
) -> None:
    """A client outside Conveyor, at a tenth of the time: the local AWS enforces the register
    bucket (20, refilled at 10/s) while another client registers 2 a second throughout, and 150
    deployments take their tokens from Conveyor's shared bucket, which knows nothing of it. A
    throttled register drains the bucket and cuts its rate, as a worker's does, and is sent
    again with a new token. The bucket settles near the 8 a second the other client leaves:
    a few registers are throttled, not one in five. Before (a drain alone, tickets fixed in
    time) the tickets kept coming at 10 a second: 33 of 183 registers were throttled, in each
    of two runs (2 of 152 now)."""
    import threading

    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    from localaws.testing import control

    def ecs() -> Any:
        return boto3.client(
            "ecs",
            endpoint_url=stack.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"total_max_attempts": 1}, max_pool_connections=30),
        )

    conveyor, outside = ecs(), ecs()
    limiter = RateLimiter(
        client,
        account="123456789012",
        region="us-east-1",
        buckets={OPERATION: Bucket(burst=20, refill_per_second=10.0)},
        max_wait=0.05,
    )
    throttled: list[int] = []
    other: dict[str, int] = {"calls": 0, "throttled": 0}
    done = threading.Event()

    def other_client() -> None:
        while not done.wait(0.5):
            other["calls"] += 1
            try:
                outside.register_task_definition(
                    family="terraform-managed",
                    containerDefinitions=[{"name": "app", "image": "repo/app:1", "memory": 64}],
                )
            except ClientError:
                other["throttled"] += 1

    def register(i: int) -> bool:
        try:
            conveyor.register_task_definition(
                family="fifth-spent",
                containerDefinitions=[{"name": "app", "image": f"repo/app:{i}", "memory": 64}],
            )
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ThrottlingException"
            throttled.append(i)
            limiter.drain(OPERATION)
            return False
        return True

    async def deployment(i: int) -> None:
        while True:
            await _take_register_token(limiter)
            if await asyncio.to_thread(register, i):
                return

    async def fleet() -> None:
        await asyncio.gather(*(deployment(i) for i in range(150)))

    assert control(stack.endpoint, "POST", "limits", {"enabled": True, "scale": 10})[0] == 200
    thread = threading.Thread(target=other_client)
    thread.start()
    try:
        time.sleep(2.0)  # the other client is under way before Conveyor starts
        asyncio.run(fleet())
    finally:
        done.set()
        thread.join()
        control(stack.endpoint, "DELETE", "limits")
    figures["outside_client_spends_a_fifth"] = {
        "conveyor_registers": 150 + len(throttled),
        "conveyor_throttled": len(throttled),
        "other_client": other,
    }
    assert len(throttled) <= 8, figures["outside_client_spends_a_fifth"]
