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


def test_a_token_due_later_is_booked_as_a_ticket(client: redis.Redis) -> None:
    """reserve() books a token due past max_wait and hands back its due time as a ticket; the
    next caller books the token after it. Coming back with the ticket takes nothing more from
    the bucket, and the call it was booked for uses it."""
    buckets = {OPERATION: Bucket(burst=1, refill_per_second=2.0)}
    limiter = RateLimiter(
        client, account="1", region="r", buckets=buckets, max_wait=0.2, margin=0.0
    )
    first_wait = asyncio.run(limiter.reserve(OPERATION))  # the burst's token
    assert first_wait == 0.0
    asyncio.run(limiter.acquire(OPERATION))  # spends it
    tickets = []
    for _ in range(2):
        with pytest.raises(AwsUnavailableError) as info:
            asyncio.run(limiter.reserve(OPERATION))
        assert info.value.code == "RateLimited"
        assert info.value.ticket is not None
        tickets.append(info.value.ticket)
        assert abs(info.value.retry_after - (info.value.ticket - time.time())) < 0.1
    assert 0.4 <= tickets[1] - tickets[0] <= 0.6  # booked in order, one refill apart

    # Too early: the same ticket comes back, and nothing else is booked.
    with pytest.raises(AwsUnavailableError) as early:
        asyncio.run(limiter.reserve(OPERATION, tickets[1]))
    assert early.value.ticket == tickets[1]
    before = client.hgetall(limiter.key(OPERATION) or "")

    async def honour() -> float:
        await asyncio.sleep(max(0.0, tickets[0] - time.time() - 0.1))
        waited = await limiter.reserve(OPERATION, tickets[0])
        await limiter.acquire(OPERATION)  # the booked call: no token taken, no wait
        return waited

    assert asyncio.run(honour()) <= 0.2
    assert time.time() >= tickets[0]
    assert client.hgetall(limiter.key(OPERATION) or "") == before


def test_a_ticket_is_booked_no_further_ahead_than_the_horizon(client: redis.Redis) -> None:
    """Past TICKET_HORIZON nothing is booked: the step is simply retried later."""
    from worker.aws.ratelimit import TICKET_HORIZON

    buckets = {OPERATION: Bucket(burst=1, refill_per_second=1 / (TICKET_HORIZON + 60))}
    limiter = RateLimiter(
        client, account="1", region="r", buckets=buckets, max_wait=0.2, margin=0.0
    )
    asyncio.run(limiter.acquire(OPERATION))
    before = client.hgetall(limiter.key(OPERATION) or "")
    with pytest.raises(AwsUnavailableError) as info:
        asyncio.run(limiter.reserve(OPERATION))
    assert info.value.ticket is None
    assert info.value.retry_after > TICKET_HORIZON
    assert client.hgetall(limiter.key(OPERATION) or "") == before


def test_low_priority_calls_leave_tokens_to_spare(client: redis.Redis) -> None:
    """acquire_spare takes a token only while ``spare`` more stay in the bucket; below that it
    raises RateLimited at once, without a ticket and without taking anything."""
    buckets = {OPERATION: Bucket(burst=5, refill_per_second=0.01)}
    limiter = RateLimiter(client, account="1", region="r", buckets=buckets, margin=0.0)

    async def drain() -> int:
        taken = 0
        while True:
            try:
                await limiter.acquire_spare(OPERATION, 3)
            except AwsUnavailableError as exc:
                assert exc.code == "RateLimited"
                assert exc.ticket is None
                return taken
            taken += 1

    assert asyncio.run(drain()) == 2  # 5 tokens, 3 kept back
    before = client.hgetall(limiter.key(OPERATION) or "")
    assert asyncio.run(drain()) == 0
    assert float(client.hget(limiter.key(OPERATION) or "", "tokens") or 0) == pytest.approx(
        float(before[b"tokens"]), abs=0.01
    )
    # A deployment's own call still finds the tokens the cleanup left.
    assert asyncio.run(limiter.acquire(OPERATION)) == 0.0


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
    """The limiter's Redis not answering fails the step as retryable, never as a defect; so does
    draining the bucket after a throttle."""
    dead = redis.Redis(port=1, socket_connect_timeout=0.2)
    limiter = RateLimiter(dead, account="1", region="r")
    with pytest.raises(TransientError, match="rate limiter"):
        asyncio.run(limiter.acquire(OPERATION))
    with pytest.raises(TransientError, match="rate limiter"):
        limiter.drain(OPERATION)


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
        return next(s.at for s in record.steps if s.step == "update" and s.status == "completed")

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
        return next(s.at for s in record.steps if s.step == step and s.status == "completed")

    first_registered = done(records[0], "register")
    resolved_later = [r for r in records if done(r, "resolve") > first_registered]
    assert len(resolved_later) >= 10, [
        round(done(r, "resolve") - first_registered, 2) for r in records
    ]


def test_the_bucket_lives_as_long_as_its_last_ticket(client: redis.Redis) -> None:
    """Tickets booked far ahead keep the bucket's key: once the time a full bucket takes to refill
    (and the idle grace) has passed, a fresh caller still queues behind the outstanding tickets
    instead of finding a new, full bucket and spending a burst AWS no longer has. Before, the key
    expired after ``burst / rate`` plus the grace, whatever was booked."""
    buckets = {OPERATION: Bucket(burst=2, refill_per_second=2.0)}
    kw: dict[str, Any] = {"buckets": buckets, "max_wait": 0.1, "margin": 0.0, "idle": 0.5}
    limiter = RateLimiter(client, account="1", region="r", **kw)
    key = limiter.key(OPERATION) or ""

    async def book() -> list[float]:
        await limiter.acquire(OPERATION)
        await limiter.acquire(OPERATION)
        tickets = []
        for _ in range(16):
            with pytest.raises(AwsUnavailableError) as info:
                await limiter.reserve(OPERATION)
            assert info.value.ticket is not None
            tickets.append(info.value.ticket)
        return tickets

    tickets = asyncio.run(book())
    assert client.pttl(key) >= (tickets[-1] - time.time()) * 1000
    # Past what the key lived before: a full bucket's refill (1 s) and the grace (0.5 s).
    time.sleep(2.0)
    assert client.exists(key)
    fresh = RateLimiter(client, account="1", region="r", **kw)
    with pytest.raises(AwsUnavailableError) as late:
        asyncio.run(fresh.reserve(OPERATION))
    assert late.value.ticket is not None
    assert late.value.ticket > tickets[-1]


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


def test_a_throttle_empties_the_bucket_but_keeps_the_tickets(client: redis.Redis) -> None:
    """drain() drops a bucket's tokens to none, so the next caller waits for the refill; a
    bucket already booked ahead keeps its tickets in place (the throttled call's retry then
    books after them)."""
    buckets = {OPERATION: Bucket(burst=5, refill_per_second=0.01)}
    kw: dict[str, Any] = {"buckets": buckets, "max_wait": 0.1, "margin": 0.0}
    limiter = RateLimiter(client, account="1", region="r", **kw)
    assert limiter.drain(OPERATION) == pytest.approx(5.0)
    with pytest.raises(AwsUnavailableError) as info:
        asyncio.run(limiter.acquire(OPERATION))
    assert info.value.code == "RateLimited"

    booked = RateLimiter(client, account="2", region="r", **kw)
    asyncio.run(booked.reserve(OPERATION))
    for _ in range(5):  # four more of the burst, then one ticket
        try:
            asyncio.run(booked.reserve(OPERATION))
        except AwsUnavailableError as exc:
            assert exc.ticket is not None
    before = float(client.hget(booked.key(OPERATION) or "", "tokens") or 0)
    assert booked.drain(OPERATION) == 0.0
    assert float(client.hget(booked.key(OPERATION) or "", "tokens") or 0) == before


def _pool(client: redis.Redis, bucket: Bucket, max_wait: float) -> Any:
    """A worker's client pool on the local AWS, sharing ``client``'s buckets."""
    from worker.aws.boto import ClientPool, Limits

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
    """Issue 21's late arrivals, at a tenth of the time: the local AWS enforces the register
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
        try:
            await limiter.reserve(OPERATION)
        except AwsUnavailableError as exc:
            assert exc.ticket is not None
            await asyncio.sleep(max(0.0, exc.ticket - time.time()))
            await limiter.reserve(OPERATION, exc.ticket)
        await limiter.acquire(OPERATION)
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


def test_the_tokens_booked_ahead_are_read_for_the_metrics(client: redis.Redis) -> None:
    """The metrics endpoint reads each bucket's bookings beyond now (tickets outstanding)."""
    from worker.aws.ratelimit import booked_ahead
    from worker.observe.metrics import BookedAheadCollector

    buckets = {OPERATION: Bucket(burst=2, refill_per_second=0.1)}
    limiter = RateLimiter(client, account="1", region="r", buckets=buckets, max_wait=0.1)
    for _ in range(7):  # the burst, then five tickets
        try:
            asyncio.run(limiter.reserve(OPERATION))
        except AwsUnavailableError as exc:
            assert exc.ticket is not None
    # A bucket written by an older release (no rate) and a stray key are skipped.
    client.hset("conveyor:ratelimit:2:r:task-definition-writes", mapping={"tokens": 1, "at": 0})
    client.set("conveyor:ratelimit:stray", "x")
    [(account, region, bucket, ahead)] = booked_ahead(client)
    assert (account, region, bucket) == ("1", "r", "task-definition-writes")
    assert 4.9 <= ahead <= 5.0
    [family] = BookedAheadCollector(lambda: booked_ahead(client)).collect()
    assert [s.value for s in family.samples] == [pytest.approx(ahead, abs=0.1)]
    assert list(BookedAheadCollector(lambda: booked_ahead(redis.Redis(port=1))).collect())
