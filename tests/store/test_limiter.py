"""The shared rate limiter against a real Redis: exact totals across processes, bounded waits."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Any

import pytest
import redis

from worker.aws.ratelimit import Bucket, RateLimiter
from worker.domain.errors import AwsUnavailableError, TransientError
from worker.domain.tickets import Ticket

OPERATION = "RegisterTaskDefinition"


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

    asked: list[float] = []

    async def three() -> list[float]:
        waits = []
        for _ in range(3):
            asked.append(time.monotonic())
            waits.append(await limiter.acquire(OPERATION))
        return waits

    waits = asyncio.run(three())
    assert waits[0] == 0.0
    # Tokens come 0.2 s apart from the first; a call made late (a loaded machine) waits less.
    late = [at - asked[0] for at in asked]
    assert 0.2 - late[1] - 0.02 <= waits[1] <= 0.25
    assert 0.4 - late[2] - 0.02 <= waits[2] <= 0.25


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
    spans = []
    for _ in range(2):
        asked = time.time()
        with pytest.raises(AwsUnavailableError) as info:
            asyncio.run(limiter.reserve(OPERATION))
        answered = time.time()
        assert info.value.code == "RateLimited"
        assert info.value.ticket is not None
        tickets.append(info.value.ticket)
        spans.append(answered - asked)
        # The retry comes when the ticket is due (bounded by when the call was made and
        # answered, however long a loaded machine took between the two).
        retry = info.value.retry_after
        assert asked + retry - 0.01 <= info.value.ticket.due <= answered + retry + 0.01
    assert tickets[1].position == tickets[0].position + 1  # booked in order
    assert 0.4 <= tickets[1].due - tickets[0].due <= 0.6  # one refill apart

    # Too early: the same ticket comes back, and nothing else is booked.
    with pytest.raises(AwsUnavailableError) as early:
        asyncio.run(limiter.reserve(OPERATION, tickets[1]))
    assert early.value.ticket is not None
    assert early.value.ticket.position == tickets[1].position
    before = client.hgetall(limiter.key(OPERATION) or "")

    async def honour() -> float:
        await asyncio.sleep(max(0.0, tickets[0].due - time.time() - 0.1))
        waited = await limiter.reserve(OPERATION, tickets[0])
        await limiter.acquire(OPERATION)  # the booked call: no token taken, no wait
        return waited

    assert asyncio.run(honour()) <= 0.2
    # Not before the token was due. A ticket's due time is read on this side once Redis has
    # answered, so it is late by up to that round trip (and Redis counts whole milliseconds).
    assert time.time() >= tickets[0].due - spans[0] - 0.001
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
        spread=0.0,
    )

    asked: list[float] = []

    async def four() -> list[float]:
        waits = []
        for _ in range(4):
            asked.append(time.monotonic())
            waits.append(await limiter.acquire(OPERATION))
        return waits

    waits = asyncio.run(four())
    assert waits[:2] == [0.0, 0.0]
    # Less the time a loaded machine took between the calls.
    late = [at - asked[0] for at in asked]
    assert 0.25 - late[2] - 0.05 <= waits[2] <= 0.3  # the last burst token waits for the margin
    assert 1.0 - (late[3] - late[2] - waits[2]) - 0.05 <= waits[3] <= 1.05  # then one a second


def test_each_grant_draws_its_margin_afresh(client: redis.Redis) -> None:
    """Grants of a busy bucket do not keep an exact cadence (an evenly spaced client of the
    account whose calls fell just after them would be throttled every time): each token is
    due its place in line plus a margin drawn within the spread, and the line keeps AWS's rate."""
    limiter = RateLimiter(
        client,
        account="1",
        region="r",
        buckets={OPERATION: Bucket(burst=1, refill_per_second=1.0)},
        max_wait=0.0,
        margin=0.75,
    )

    async def book() -> list[float]:
        waits = []
        for _ in range(40):
            with pytest.raises(AwsUnavailableError) as caught:
                await limiter.reserve(OPERATION)
            waits.append(caught.value.retry_after)
        return waits

    waits = asyncio.run(book())
    # The bucket's one token is taken first: the k-th booking (from 0) is due k s plus its margin
    # later (less the few milliseconds of refill while booking).
    margins = [wait - place for place, wait in enumerate(waits)]
    assert all(0.25 - 0.05 <= margin <= 1.25 + 0.01 for margin in margins), margins
    assert max(margins) - min(margins) > 0.5  # drawn, not fixed
    assert abs(sum(margins) / len(margins) - 0.75) < 0.15


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


def test_the_bucket_lives_as_long_as_its_last_ticket(client: redis.Redis) -> None:
    """Tickets booked far ahead keep the bucket's key: once the time a full bucket takes to refill
    (and the idle grace) has passed, a fresh caller still queues behind the outstanding tickets
    instead of finding a new, full bucket and spending a burst AWS no longer has. Before, the key
    expired after ``burst / rate`` plus the grace, whatever was booked."""
    buckets = {OPERATION: Bucket(burst=2, refill_per_second=2.0)}
    kw: dict[str, Any] = {"buckets": buckets, "max_wait": 0.1, "margin": 0.0, "idle": 0.5}
    limiter = RateLimiter(client, account="1", region="r", **kw)
    key = limiter.key(OPERATION) or ""

    async def book() -> list[Ticket]:
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
    assert client.pttl(key) >= (tickets[-1].due - time.time()) * 1000
    # Past what the key lived before: a full bucket's refill (1 s) and the grace (0.5 s).
    time.sleep(2.0)
    assert client.exists(key)
    fresh = RateLimiter(client, account="1", region="r", **kw)
    with pytest.raises(AwsUnavailableError) as late:
        asyncio.run(fresh.reserve(OPERATION))
    assert late.value.ticket is not None
    assert late.value.ticket.due > tickets[-1].due
    assert late.value.ticket.position > tickets[-1].position


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
    after = float(client.hget(booked.key(OPERATION) or "", "tokens") or 0)
    assert after == pytest.approx(before, abs=0.01)


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
    [(account, region, bucket, ahead, rate)] = booked_ahead(client)
    assert (account, region, bucket) == ("1", "r", "task-definition-writes")
    assert 4.9 <= ahead <= 5.0
    assert rate == pytest.approx(0.1)
    family, rates = BookedAheadCollector(lambda: booked_ahead(client)).collect()
    assert [s.value for s in family.samples] == [pytest.approx(ahead, abs=0.1)]
    limiter.drain(OPERATION)  # a throttle: the rate granted is cut
    [(*_, cut)] = booked_ahead(client)
    assert cut == pytest.approx(0.08)
    assert [s.value for s in rates.samples] == [pytest.approx(0.1)]
    assert list(BookedAheadCollector(lambda: booked_ahead(redis.Redis(port=1))).collect())


def _book(limiter: RateLimiter, count: int) -> list[Ticket]:
    """Book ``count`` tickets (the bucket must be empty enough that each is one)."""
    tickets = []
    for _ in range(count):
        with pytest.raises(AwsUnavailableError) as info:
            asyncio.run(limiter.reserve(OPERATION))
        assert info.value.ticket is not None
        tickets.append(info.value.ticket)
    return tickets


def _wait_for(limiter: RateLimiter, ticket: Ticket) -> float:
    """How long the bucket says ``ticket`` has still to wait (it is not due yet)."""
    with pytest.raises(AwsUnavailableError) as info:
        asyncio.run(limiter.reserve(OPERATION, ticket))
    assert info.value.ticket is not None
    assert info.value.ticket.position == ticket.position
    return info.value.retry_after


def test_a_throttle_cuts_the_rate_and_the_tickets_come_round_later(client: redis.Redis) -> None:
    """Another client spends part of the account's budget: AWS throttles a call. The bucket
    cuts its rate to DECREASE of it, and the tickets already booked keep their places in line
    but come round at the lower rate (before, a ticket was a fixed time: every one booked
    before the throttle went out at the old rate and was throttled in turn)."""
    from worker.aws.ratelimit import DECREASE

    buckets = {OPERATION: Bucket(burst=1, refill_per_second=10.0)}
    limiter = RateLimiter(
        client, account="1", region="r", buckets=buckets, max_wait=0.05, margin=0.0
    )
    start = time.monotonic()
    asyncio.run(limiter.acquire(OPERATION))
    tickets = _book(limiter, 20)
    before = _wait_for(limiter, tickets[-1])
    # 20 tickets at 10 a second, less the time booking them and asking took (a loaded machine
    # spends a good part of a second there); a wrong rate is off by a whole second or more.
    elapsed = time.monotonic() - start
    assert 2.0 - elapsed - 0.05 <= before <= 2.1
    limiter.drain(OPERATION)
    after = _wait_for(limiter, tickets[-1])
    assert after == pytest.approx(before / DECREASE, rel=0.05)
    # The order holds: the ticket before it still comes round first.
    assert _wait_for(limiter, tickets[-2]) < after
    # A new booking goes behind them all, at the learnt rate.
    [late] = _book(limiter, 1)
    assert late.position == tickets[-1].position + 1
    assert late.due - tickets[-1].due > 1 / 10


def test_throttles_arriving_together_cut_the_rate_once(client: redis.Redis) -> None:
    """The calls in flight when AWS ran dry come back throttled together: they cut the rate
    once, not once each (four cuts would leave 41% of the rate for a single shortfall)."""
    buckets = {OPERATION: Bucket(burst=1, refill_per_second=10.0)}
    limiter = RateLimiter(
        client, account="1", region="r", buckets=buckets, max_wait=0.05, margin=0.0
    )
    asyncio.run(limiter.acquire(OPERATION))
    [ticket] = _book(limiter, 1)
    limiter.drain(OPERATION)
    once = _wait_for(limiter, ticket)
    for _ in range(3):
        limiter.drain(OPERATION)
    assert _wait_for(limiter, ticket) == pytest.approx(once, abs=0.02)


def test_the_learnt_rate_climbs_back(client: redis.Redis) -> None:
    """When AWS stops throttling, the rate climbs back by RECOVERY of the documented rate a
    second, to the documented rate and no further: Conveyor takes back the budget another client
    no longer spends."""
    from worker.aws.ratelimit import RECOVERY

    buckets = {OPERATION: Bucket(burst=1, refill_per_second=10.0)}
    limiter = RateLimiter(
        client, account="1", region="r", buckets=buckets, max_wait=0.05, margin=0.0
    )
    key = limiter.key(OPERATION) or ""
    asyncio.run(limiter.acquire(OPERATION))
    tickets = _book(limiter, 20)
    nominal = _wait_for(limiter, tickets[-1])
    limiter.drain(OPERATION)
    cut = _wait_for(limiter, tickets[-1])
    # As if the cut had happened long enough ago for the rate to be back to the documented one.
    back = int(client.hget(key, "cut_at") or 0) - int(1000 / RECOVERY)
    client.hset(key, "cut_at", back)
    assert _wait_for(limiter, tickets[-1]) == pytest.approx(nominal, rel=0.05)
    assert _wait_for(limiter, tickets[-1]) < cut


def test_a_ticket_of_a_bucket_that_was_full_again_is_served(client: redis.Redis) -> None:
    """A ticket that comes back after its bucket's key expired (the bucket was full again, so
    every ticket of it was due long ago) goes at once, instead of waiting for a place in a line
    that started counting again."""
    buckets = {OPERATION: Bucket(burst=1, refill_per_second=10.0)}
    limiter = RateLimiter(
        client, account="1", region="r", buckets=buckets, max_wait=0.05, margin=0.0
    )
    asyncio.run(limiter.acquire(OPERATION))
    tickets = _book(limiter, 5)
    client.delete(limiter.key(OPERATION) or "")
    asyncio.run(limiter.acquire(OPERATION))
    _book(limiter, 3)  # the new incarnation's line
    assert asyncio.run(limiter.reserve(OPERATION, tickets[-1])) == 0.0


def test_a_ticket_noted_by_an_older_worker_is_honoured_by_its_time(client: redis.Redis) -> None:
    """A note written before tickets had places (a bare due time) still reads, and is honoured
    at that time, during a rolling upgrade of the workers."""
    buckets = {OPERATION: Bucket(burst=1, refill_per_second=10.0)}
    limiter = RateLimiter(
        client, account="1", region="r", buckets=buckets, max_wait=0.05, margin=0.0
    )
    old = Ticket.decode(repr(time.time() + 30))
    assert old.position == -1
    with pytest.raises(AwsUnavailableError) as info:
        asyncio.run(limiter.reserve(OPERATION, old))
    assert 29 <= info.value.retry_after <= 30
    assert asyncio.run(limiter.reserve(OPERATION, Ticket.decode(repr(time.time() - 1)))) == 0.0
    assert Ticket.decode(Ticket(7, 123, 4.5).encode()) == Ticket(7, 123, 4.5)


def test_a_fresh_burst_is_counted(client: redis.Redis) -> None:
    """Each token taken from a bucket that was new in Redis (so full) is counted: one for the
    first call, none while the key lives, one again once it went; a fresh burst in the middle
    of a fleet is the sign of a key that expired while tokens were booked."""
    from worker.observe import metrics

    def fresh() -> float:
        return float(metrics.RATELIMIT_FRESH.labels(OPERATION)._value.get())

    buckets = {OPERATION: Bucket(burst=5, refill_per_second=1.0)}
    limiter = RateLimiter(client, account="1", region="r", buckets=buckets, margin=0.0)
    before = fresh()
    for _ in range(3):
        asyncio.run(limiter.acquire(OPERATION))
    assert fresh() == before + 1
    client.delete(limiter.key(OPERATION) or "")
    asyncio.run(limiter.acquire(OPERATION))
    assert fresh() == before + 2
