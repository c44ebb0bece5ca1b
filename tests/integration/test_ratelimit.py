"""The shared rate limiter against a real Redis: exact totals across processes, bounded waits."""

from __future__ import annotations

import asyncio
import multiprocessing
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
from worker.domain.errors import AwsUnavailableError, TransientError

OPERATION = "RegisterTaskDefinition"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A clean Redis database."""
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    yield r
    r.close()


def _grab(url: str, begin: float, until: float, out: Any) -> None:
    """Take tokens from one bucket between ``begin`` and ``until``; report the grant times."""
    limiter = RateLimiter(
        redis.Redis.from_url(url),
        account="111111111111",
        region="eu-west-1",
        buckets={OPERATION: Bucket(burst=5, refill_per_second=10.0)},
        max_wait=0.5,
    )
    granted: list[float] = []

    async def run() -> None:
        await asyncio.sleep(max(0.0, begin - time.time()))
        while time.time() < until:
            try:
                await limiter.acquire(OPERATION)
            except AwsUnavailableError as exc:
                await asyncio.sleep(min(exc.retry_after, 0.05))
                continue
            granted.append(time.time())

    asyncio.run(run())
    out.put(granted)


def test_four_processes_together_stay_under_the_limit(redis_url: str, client: redis.Redis) -> None:
    """Four processes hammer one bucket (burst 5, 10/s) for 2 s: together they are granted at
    most burst + rate x time, and in no one-second window more than burst + rate."""
    # spawn, not fork: a forked copy of a test process that runs threads can deadlock.
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    begin = time.time() + 8.0  # every process is up and waiting by then
    until = begin + 2.0
    workers = [
        context.Process(target=_grab, args=(redis_url, begin, until, queue)) for _ in range(4)
    ]
    for p in workers:
        p.start()
    grants = sorted(t for _ in workers for t in queue.get(timeout=60))
    for p in workers:
        p.join(10)
    assert [p.exitcode for p in workers] == [0, 0, 0, 0]
    elapsed = max(grants) - begin
    assert len(grants) <= 5 + 10 * elapsed + 1
    assert len(grants) >= 10  # the bucket did serve them: the test could fail
    for i, t in enumerate(grants):
        in_window = sum(1 for u in grants[i:] if u < t + 1.0)
        assert in_window <= 5 + 10 + 1, f"{in_window} grants within one second"


def test_a_wait_longer_than_the_limit_is_handed_back(client: redis.Redis) -> None:
    """When the next token is further away than max_wait, nothing is reserved and the caller
    learns when to come back (a step is retried then, freeing its worker)."""
    limiter = RateLimiter(
        client,
        account="1",
        region="r",
        buckets={OPERATION: Bucket(burst=1, refill_per_second=0.1)},
        max_wait=1.0,
        margin=0.0,
    )
    assert asyncio.run(limiter.acquire(OPERATION)) == 0.0
    with pytest.raises(AwsUnavailableError) as info:
        asyncio.run(limiter.acquire(OPERATION))
    assert 8.0 <= info.value.retry_after <= 10.0
    assert info.value.code == "RateLimited"


def test_a_short_wait_is_waited_for_in_order(client: redis.Redis) -> None:
    """A token due within max_wait is reserved and waited for; the next caller waits longer."""
    limiter = RateLimiter(
        client,
        account="1",
        region="r",
        buckets={OPERATION: Bucket(burst=1, refill_per_second=5.0)},
        max_wait=2.0,
        margin=0.0,
    )

    async def three() -> list[float]:
        return [await limiter.acquire(OPERATION) for _ in range(3)]

    waits = asyncio.run(three())
    assert waits[0] == 0.0
    assert 0.1 <= waits[1] <= 0.25
    assert 0.1 <= waits[2] <= 0.25


def test_a_margin_keeps_the_bucket_behind_aws_own(client: redis.Redis) -> None:
    """AWS counts a call when it arrives, a little after the grant: after the burst, the next
    token is due the margin later than the arithmetic says (a full bucket still grants at
    once). Without it the first waiting call reached AWS a few milliseconds early."""
    limiter = RateLimiter(
        client,
        account="1",
        region="r",
        buckets={OPERATION: Bucket(burst=3, refill_per_second=1.0)},
        max_wait=5.0,
        margin=0.25,
    )

    async def four() -> list[float]:
        return [await limiter.acquire(OPERATION) for _ in range(4)]

    waits = asyncio.run(four())
    assert waits[:2] == [0.0, 0.0]
    assert 0.2 <= waits[2] <= 0.3  # the last burst token waits for the margin
    assert 0.95 <= waits[3] <= 1.05  # then one a second


def test_accounts_and_regions_have_their_own_buckets(client: redis.Redis) -> None:
    """One busy account never delays another: the buckets are per account and region."""
    buckets = {OPERATION: Bucket(burst=1, refill_per_second=0.01)}
    kw = {"buckets": buckets, "max_wait": 0.1, "margin": 0.0}
    busy = RateLimiter(client, account="1", region="r", **kw)  # type: ignore[arg-type]
    other = RateLimiter(client, account="2", region="r", **kw)  # type: ignore[arg-type]
    elsewhere = RateLimiter(client, account="1", region="s", **kw)  # type: ignore[arg-type]
    asyncio.run(busy.acquire(OPERATION))
    with pytest.raises(AwsUnavailableError):
        asyncio.run(busy.acquire(OPERATION))
    assert asyncio.run(other.acquire(OPERATION)) == 0.0
    assert asyncio.run(elsewhere.acquire(OPERATION)) == 0.0


def test_operations_outside_the_table_are_not_limited(client: redis.Redis) -> None:
    """CloudFormation, EC2 and ELBv2 calls take no token (AWS's ECS table does not cover them)."""
    limiter = RateLimiter(client, account="1", region="r")
    assert asyncio.run(limiter.acquire("DescribeStacks")) == 0.0
    assert client.keys("conveyor:ratelimit:*") == []


def test_a_redis_that_is_away_is_a_retryable_error() -> None:
    """The limiter's Redis not answering fails the step as retryable, never as a defect."""
    dead = redis.Redis(port=1, socket_connect_timeout=0.2)
    limiter = RateLimiter(dead, account="1", region="r")
    with pytest.raises(TransientError, match="rate limiter"):
        asyncio.run(limiter.acquire(OPERATION))


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
