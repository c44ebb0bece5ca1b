"""One token bucket per (account, region, ECS API bucket), shared by every worker via Redis.

Celery's ``rate_limit`` is per worker process; AWS's limits are per account and region. So
every AWS call of every worker first takes a token from a bucket kept in Redis, by one Lua
script on Redis's own clock: a call that finds a token costs one round trip and no wait. A call
that finds none reserves the next token and sleeps until it is due (so waiting callers are
served in order, and N workers on M machines together never exceed the refill rate); when that
would take longer than ``max_wait``, the step gives up its slot and is retried after the wait,
so that a worker never sits in a step for long; a step that reserves its scarce token ahead
(``reserve``) keeps its place in line as a ticket while it is away. A margin (``margin``
seconds of refill, at most one token, drawn afresh for each grant) keeps this bucket behind
AWS's own, which starts counting each call only when it arrives, and leaves room for other
clients of the account at any point of Conveyor's cadence (``MARGIN``, ``MARGIN_SPREAD``).

A bucket's key lives until the bucket would be full again, so past its last ticket: a key that
expired sooner would give the next caller a full burst on top of the tickets still due.

Throttling that still happens (another tool in the same account, a mis-sized bucket) teaches
the bucket: the throttled call drains it (:meth:`RateLimiter.drain`), so every worker sharing it
waits for AWS's refill, and cuts its rate, which climbs back slowly while AWS stops throttling
(additive increase, multiplicative decrease): Conveyor settles at the share of the account's
budget that the other clients leave, instead of fighting them for it. A ticket is a place in
the bucket's line, not a time, so the tickets booked before a cut come round at the new rate.
The throttled call is sent again only with a new token (not by botocore's own backoff, which
takes none). Throttles are counted per operation (:func:`count_throttle`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

import redis

from config.ecs_limits import BUCKET_FOR_OPERATION, BucketSpec
from producers.contract.names import KEY_PREFIX
from worker.domain.errors import AwsUnavailableError, TransientError
from worker.domain.tickets import Ticket
from worker.observe import metrics

BUCKET_KEY = KEY_PREFIX + "ratelimit:{account}:{region}:{bucket}"
THROTTLES_KEY = KEY_PREFIX + "aws:throttled"  # hash: operation -> throttles seen
# How far ahead ``reserve`` books a token for a step that then waits outside its worker slot:
# well inside the broker's visibility timeout (an hour), so the delayed step is not redelivered.
TICKET_HORIZON = 600.0

# How the bucket learns the rate AWS really grants when another client of the account spends
# part of it: a throttle cuts the bucket's rate to DECREASE of what it was (not below FLOOR of
# AWS's documented rate, and once per COOLDOWN: the calls in flight when AWS ran dry come back
# throttled together), and the rate climbs back by RECOVERY of the documented rate a second.
# Measured in a model of a client spending a fifth of the register budget: these keep the
# throttles under 1% of the calls at the rate the other client leaves.
DECREASE = 0.8
FLOOR = 0.1
# Seconds of refill (at most one token) this bucket keeps behind AWS's. AWS counts a call when it
# arrives, a little after the grant, so some margin is needed; a wide one also leaves most of
# each refill interval open to another client of the account: the calls of one that arrive
# while AWS has a token succeed, and Conveyor's next call, a token short, is throttled and
# teaches the bucket to share. With 0.25 s, an evenly spaced client whose calls fell just after
# Conveyor's never got a token and Conveyor never learnt (30 of 32 of its calls throttled); it
# costs nothing in rate, only this much delay once.
MARGIN = 0.75
# Each grant's margin is drawn afresh, uniformly within MARGIN_SPREAD of it (as a fraction): with
# a fixed margin Conveyor's calls keep an exact cadence, and an evenly spaced client of the
# account whose calls fall just after Conveyor's finds AWS's bucket a token short every time
# (28 of its 31 calls throttled in the model of scripts/limiter_model.py) while Conveyor's all
# succeed, so Conveyor never learns to share. Drawn afresh, the other's calls land at random
# points of Conveyor's cadence: they succeed when AWS has a token, and the Conveyor call that
# then finds none teaches the bucket (at most 4 of 38 throttled, whatever the phase).
MARGIN_SPREAD = 2 / 3
COOLDOWN_MS = 5000
RECOVERY = 0.002

# The bucket's state now (a missing key is a full bucket), refilled since it was last written
# at the rate it had then, rising linearly since the last cut: the start of every script below,
# which must set ``burst``, ``nominal`` and ``idle`` first. ``issued`` counts the tokens ever
# taken; ``issued + tokens`` is how far along its line of bookings the bucket has served.
_REFILL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at', 'issued', 'born', 'cut', 'cut_at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
local issued = tonumber(state[3]) or 0
local born = tonumber(state[4])
local cut = tonumber(state[5])
local cut_at = tonumber(state[6])
local fresh = 0
if tokens == nil or at == nil then
  fresh = 1
  tokens = burst
  at = now
  issued = 0
  born = now
  cut = nil
  cut_at = nil
end
born = born or at
local function rate_at(ms)
  if cut == nil or cut_at == nil then
    return nominal
  end
  return math.min(nominal, cut + math.max(0, ms - cut_at) * nominal * RECOVERY / 1000)
end
local rate = rate_at(now)
tokens = math.min(burst, tokens + (now - at) * (rate_at(at) + rate) / 2000)
local function save()
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now, 'rate', tostring(rate),
    'issued', issued, 'born', born)
  if cut ~= nil then
    redis.call('HSET', KEYS[1], 'cut', tostring(cut), 'cut_at', cut_at)
  end
  -- The key lives until the bucket is full again, so past every ticket booked: a key that went
  -- sooner would hand the next caller a full burst on top of the outstanding tickets.
  redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + idle)
end
""".replace("RECOVERY", repr(RECOVERY))

# Takes a token: returns {the milliseconds to wait for it (0: it was there), its place in line,
# the bucket's incarnation, 1 when the bucket was new (a full burst)}; the wait is negative,
# and nothing is taken, when it would exceed ARGV[3]. A token counts as there only with ARGV[4]
# tokens to spare (unless the bucket is full): AWS starts counting each call when it arrives, a
# little after this grants it, so AWS's bucket runs that much behind this one. With a ticket
# (ARGV[6] its place, ARGV[7] its incarnation) nothing is taken: its token was taken when it was
# booked, and the answer is the wait until the bucket has served up to it (negative past
# ARGV[3]).
_ACQUIRE = (
    """
local burst = tonumber(ARGV[1])
local nominal = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local need = 1 + tonumber(ARGV[4])
local idle = tonumber(ARGV[5])
local position = tonumber(ARGV[6])
"""
    + _REFILL
    + """if position >= 0 then
  if tonumber(ARGV[7]) ~= born or position > issued then
    return {0, position, born, 0}
  end
  local short = position + need - 1 - (issued + tokens)
  if short <= 0 then
    return {0, position, born, 0}
  end
  local wait = math.ceil(short * 1000 / rate)
  if wait > max_wait then
    return {-wait, position, born, 0}
  end
  return {wait, position, born, 0}
end
local wait = 0
if tokens < need and (tokens < burst or burst < need) then
  wait = math.ceil((need - tokens) * 1000 / rate)
  if wait > max_wait then
    return {-wait, -1, born, 0}
  end
end
tokens = tokens - 1
issued = issued + 1
save()
return {wait, issued, born, fresh}
"""
)

# AWS throttled a call: its bucket is empty, whatever this one says (another client of the account
# spent it). Drop this bucket's tokens to none, so every worker sharing it waits for the refill
# instead of spending tokens AWS does not have, and cut its rate (once per cooldown), so the
# tickets already booked come round at the rate AWS grants: they keep their places in line.
# Returns the tokens dropped, in thousandths.
_DRAIN = (
    """
local burst = tonumber(ARGV[1])
local nominal = tonumber(ARGV[2])
local idle = tonumber(ARGV[3])
"""
    + _REFILL
    + """local dropped = 0
if tokens > 0 then
  dropped = tokens
  tokens = 0
end
if cut_at == nil or now - cut_at > COOLDOWN then
  cut = math.max(nominal * FLOOR, rate * DECREASE)
  cut_at = now
  rate = cut
end
save()
return math.floor(dropped * 1000)
""".replace("COOLDOWN", str(COOLDOWN_MS))
    .replace("FLOOR", repr(FLOOR))
    .replace("DECREASE", repr(DECREASE))
)


@dataclass(frozen=True)
class Bucket:
    """A bucket's size and refill rate (tokens per second)."""

    burst: int
    refill_per_second: float


def default_buckets(scale: float = 1.0) -> dict[str, Bucket]:
    """AWS's documented buckets by operation, refill rates multiplied by ``scale``."""
    return {
        operation: Bucket(spec.burst, spec.refill_per_second * scale)
        for operation, spec in BUCKET_FOR_OPERATION.items()
    }


class RateLimiter:
    """Takes a token before each AWS call, from the bucket of the call's account and region."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        account: str,
        region: str,
        buckets: Mapping[str, Bucket] | None = None,
        max_wait: float = 10.0,
        margin: float = MARGIN,
        idle: float = 60.0,
        spread: float = MARGIN_SPREAD,
    ) -> None:
        self._r = client
        self._margin = margin
        self._spread = spread
        self._random = random.Random()
        # How long a bucket's key outlives the moment it is full again (seconds).
        self._idle_ms = int(idle * 1000)
        self._script = client.register_script(_ACQUIRE)
        self._drain = client.register_script(_DRAIN)
        self._account = account
        self._region = region
        self._buckets = dict(default_buckets() if buckets is None else buckets)
        self._names: dict[str, BucketSpec | None] = {
            op: BUCKET_FOR_OPERATION.get(op) for op in self._buckets
        }
        self._max_wait_ms = int(max_wait * 1000)
        self.waited = 0.0  # seconds this limiter made callers wait, for metrics
        self._prepaid: dict[str, int] = {}

    def key(self, operation: str) -> str | None:
        """The Redis key of the bucket ``operation`` draws from (None: not limited)."""
        spec = self._names.get(operation)
        if spec is None:
            return None
        return BUCKET_KEY.format(account=self._account, region=self._region, bucket=spec.name)

    async def reserve(self, operation: str, ticket: Ticket | None = None) -> float:
        """Take the token of the next ``operation`` call now, before the calls that lead to it.

        A step that can only act when a scarce token is there (RegisterTaskDefinition: one a
        second) reserves it first, so that while it waits its turn it spends no calls on the
        reads before the act. The next ``acquire`` of that operation uses the reserved token.

        When the token is due later than ``max_wait``, it is still reserved, up to
        ``TICKET_HORIZON`` ahead: the step then raises a RateLimited error carrying a
        :class:`Ticket` (its place in the bucket's line), gives up its worker slot, and comes
        back when the ticket should come round, passing it here: it is honoured without
        queueing again, after a further wait when the bucket has since learnt a lower rate. So
        a backlog of hundreds of deployments in one account costs each of them one early run,
        holds no worker slot while it waits, and is served in order, and deployments to other
        accounts pass it by.
        """
        if ticket is not None and ticket.position < 0:
            # An older worker's ticket, a due time only: honoured by its time.
            wait = ticket.due - time.time()
            if wait > self._max_wait_ms / 1000:
                raise _limited(operation, wait, ticket)
        else:
            wait_ms, position, born = await self._take(
                operation,
                self._max_wait_ms if ticket is not None else int(TICKET_HORIZON * 1000),
                ticket=ticket,
            )
            wait = abs(wait_ms) / 1000
            if position < 0:
                raise _limited(operation, wait, None)
            if wait_ms < 0 or wait_ms > self._max_wait_ms:
                raise _limited(operation, wait, Ticket(position, born, time.time() + wait))
        if wait > 0:
            self.waited += wait
            metrics.RATELIMIT_WAIT.labels(operation).inc(wait)
            await asyncio.sleep(wait)
        self._prepaid[operation] = self._prepaid.get(operation, 0) + 1
        return max(0.0, wait)

    async def acquire(self, operation: str) -> float:
        """Take a token for ``operation``, waiting for it when due soon; returns the wait.

        Raises AwsUnavailableError (retryable, with ``retry_after``) when the wait would exceed
        ``max_wait``.
        """
        if self._prepaid.get(operation):
            self._prepaid[operation] -= 1
            return 0.0
        wait_ms, _, _ = await self._take(operation, self._max_wait_ms)
        if wait_ms < 0:
            raise _limited(operation, -wait_ms / 1000, None)
        if wait_ms:
            self.waited += wait_ms / 1000
            metrics.RATELIMIT_WAIT.labels(operation).inc(wait_ms / 1000)
            await asyncio.sleep(wait_ms / 1000)
        return wait_ms / 1000

    async def acquire_spare(self, operation: str, spare: int) -> None:
        """Take a token for a low-priority call only if ``spare`` more stay in the bucket.

        Never waits and never reserves: when the bucket is lower, raises RateLimited (without a
        ticket) so that the low-priority work comes back later, and the calls of deployments
        sharing the bucket still find their tokens.
        """
        if self._prepaid.get(operation):
            self._prepaid[operation] -= 1
            return
        wait_ms, _, _ = await self._take(operation, 0, spare=spare)
        if wait_ms != 0:
            raise _limited(operation, abs(wait_ms) / 1000, None)

    def drain(self, operation: str) -> float:
        """AWS throttled ``operation``: empty its shared bucket and cut its rate; returns the
        tokens dropped.

        Synchronous (one Redis round trip), for botocore's event hooks. Every worker sharing the
        bucket then waits for the refill, tickets come round at the lower rate (which climbs
        back while AWS stops throttling), and the throttled call's retry takes a token like any
        other call.
        """
        bucket = self._buckets.get(operation)
        key = self.key(operation)
        if bucket is None or key is None:
            return 0.0
        try:
            dropped = int(
                self._drain(
                    keys=[key], args=[bucket.burst, bucket.refill_per_second, self._idle_ms]
                )
            )
        except redis.RedisError as exc:
            raise TransientError(
                f"{operation}: the shared rate limiter's Redis did not answer "
                f"({type(exc).__name__}); the step is retried",
                "RedisUnavailable",
            ) from exc
        metrics.RATELIMIT_DRAINED.labels(operation).inc()
        return dropped / 1000

    def _spare(self, bucket: Bucket) -> float:
        """This grant's margin in tokens: ``margin`` seconds of refill (at most one token),
        drawn within ``spread`` of it (MARGIN_SPREAD says why)."""
        margin = min(1.0, self._margin * bucket.refill_per_second)
        return margin * self._random.uniform(1 - self._spread, 1 + self._spread)

    async def _take(
        self,
        operation: str,
        max_wait_ms: int,
        *,
        spare: float | None = None,
        ticket: Ticket | None = None,
    ) -> tuple[int, int, int]:
        """Run the bucket script: (the wait in ms for the token, its place in line, the
        bucket's incarnation). A negative wait: none taken (or, with ``ticket``, the ticket's
        wait, past ``max_wait_ms``); place -1: nothing taken or booked.

        ``spare``: tokens that must stay after this one (default: the margin).
        """
        bucket = self._buckets.get(operation)
        key = self.key(operation)
        if bucket is None or key is None:
            return 0, 0, 0
        try:
            # One round trip; the script takes the token or reserves the next one.
            answer = self._script(
                keys=[key],
                args=[
                    bucket.burst,
                    bucket.refill_per_second,
                    max_wait_ms,
                    self._spare(bucket) if spare is None else spare,
                    self._idle_ms,
                    -1 if ticket is None else ticket.position,
                    0 if ticket is None else ticket.born,
                ],
            )
            wait_ms, position, born, fresh = (int(value) for value in answer)
        except redis.RedisError as exc:
            raise TransientError(
                f"{operation}: the shared rate limiter's Redis did not answer "
                f"({type(exc).__name__}); the step is retried",
                "RedisUnavailable",
            ) from exc
        if ticket is None and wait_ms >= 0:
            due = "now" if wait_ms == 0 else "soon" if wait_ms <= self._max_wait_ms else "ticket"
            metrics.RATELIMIT_BOOKED.labels(operation, due).inc()
        if fresh:
            # A new key: a full burst was there. Outside a first call or a quiet spell, it means
            # the key expired while tokens were still booked (the cause of bursts AWS refused).
            metrics.RATELIMIT_FRESH.labels(operation).inc()
        return wait_ms, position, born


def _limited(operation: str, wait: float, ticket: Ticket | None) -> AwsUnavailableError:
    """The RateLimited error: retry after ``wait`` seconds, holding ``ticket`` when reserved."""
    held = "; its token is reserved" if ticket is not None else ""
    error = AwsUnavailableError(
        f"{operation}: AWS's rate limit for this account and region is used up for "
        f"{wait:.1f} s more{held}; the step is retried then",
        "RateLimited",
    )
    error.retry_after = wait
    error.ticket = ticket
    metrics.RATELIMIT_DEFERRED.labels(operation).inc()
    return error


def booked_ahead(client: redis.Redis) -> list[tuple[str, str, str, float, float]]:
    """Tokens booked beyond now, and the rate granted at the bucket's last use (lower than
    AWS's documented one after throttles), by (account, region, bucket).

    Read from the buckets' own state on Redis's clock; for the metrics endpoint.
    """
    seconds, micros = client.time()
    now = seconds * 1000 + micros // 1000
    prefix = BUCKET_KEY.split("{", 1)[0]
    found = []
    for key in client.scan_iter(match=prefix + "*", count=100):
        name = key.decode() if isinstance(key, bytes) else str(key)
        parts = name[len(prefix) :].split(":", 2)
        try:
            raw = client.hmget(name, "tokens", "at", "rate")
            tokens, at, rate = (float(v) for v in raw if v is not None)
        except (TypeError, ValueError, redis.ResponseError):
            continue  # written by an older release (no rate), or not a bucket: skipped, not fatal
        if len(parts) == 3:
            ahead = -(tokens + (now - at) * rate / 1000)
            found.append((parts[0], parts[1], parts[2], max(0.0, ahead), rate))
    return found


def count_throttle(client: redis.Redis, operation: str) -> None:
    """Count a throttled AWS call."""
    client.hincrby(THROTTLES_KEY, operation, 1)


def throttles(client: redis.Redis) -> dict[str, int]:
    """Throttled calls counted so far, by operation."""
    raw = client.hgetall(THROTTLES_KEY)
    return {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}
