"""Prometheus metrics of the workers, in prometheus-client's multiprocess mode.

Celery's prefork pool runs steps in child processes, each with its own counters. With
``CONVEYOR_METRICS_PORT`` set, the worker's main process gives every child one directory for
its samples (``PROMETHEUS_MULTIPROC_DIR``, set before any child starts) and serves their sum at
``http://ADDRESS:PORT/metrics``, together with what it reads from Redis at scrape time: the
depth of each queue.

The metrics (all prefixed ``conveyor_``):

* ``deployments_total{kind,state}``: deployments that ended, by final state;
* ``step_duration_seconds{kind,step}``: how long each step run took;
* ``time_to_verdict_seconds{kind,state}``: from enqueue to the final state;
* ``aws_calls_total{service,operation,outcome}``: every AWS request attempt, with outcome ``ok``,
  ``throttled`` or ``error``;
* ``ratelimit_wait_seconds_total{operation}``: time steps spent waiting for the shared limiter;
* ``ratelimit_deferred_total{operation}``: steps that gave up their slot until a token is due;
* ``ratelimit_booked_total{operation,due}``: tokens taken from the shared buckets, ``due`` being
  ``now``, ``soon`` (waited for in the slot) or ``ticket`` (booked ahead, the slot given back);
* ``ratelimit_booked_ahead{account,region,bucket}``: tokens each shared bucket has booked beyond
  now (tickets outstanding and in-slot waits; read from Redis);
* ``ratelimit_drained_total{operation}``: throttled calls that emptied their shared bucket (AWS
  had fewer tokens than the bucket said: another client of the account spent them) and cut its
  rate;
* ``ratelimit_rate{account,region,bucket}``: the rate each shared bucket granted at its last use,
  below AWS's documented one while it has learnt that another client spends part of it;
* ``ratelimit_fresh_buckets_total{operation}``: tokens taken from a bucket new in Redis (a full
  burst): beyond a first call or a quiet spell, a key that expired while tokens were booked;
* ``sweeper_redispatched_total``: overdue steps the recovery sweeper sent again;
* ``queue_depth{queue}``: messages waiting in each Celery queue (read from Redis).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import structlog

# worker/app.py sets the directory up before anything imports this module: prometheus-client
# picks its value store, in memory or in the directory's files, when it is first imported.
from prometheus_client import Counter, Histogram

from producers.contract.names import PRIORITY_STEPS, Keys, priority_list

_log = structlog.get_logger("conveyor.metrics")

STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
VERDICT_BUCKETS = (5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)

DEPLOYMENTS = Counter(
    "conveyor_deployments", "Deployments that ended, by final state.", ["kind", "state"]
)
STEP_DURATION = Histogram(
    "conveyor_step_duration_seconds",
    "How long one run of a step took.",
    ["kind", "step"],
    buckets=STEP_BUCKETS,
)
TIME_TO_VERDICT = Histogram(
    "conveyor_time_to_verdict_seconds",
    "From enqueue to the final state.",
    ["kind", "state"],
    buckets=VERDICT_BUCKETS,
)
AWS_CALLS = Counter(
    "conveyor_aws_calls",
    "AWS request attempts (botocore retries included), by outcome.",
    ["service", "operation", "outcome"],
)
RATELIMIT_WAIT = Counter(
    "conveyor_ratelimit_wait_seconds",
    "Seconds steps waited for a token of the shared rate limiter.",
    ["operation"],
)
RATELIMIT_DEFERRED = Counter(
    "conveyor_ratelimit_deferred",
    "Steps that gave up their worker slot until their rate-limit token is due.",
    ["operation"],
)
RATELIMIT_BOOKED = Counter(
    "conveyor_ratelimit_booked",
    "Tokens taken from the shared rate limiter, by when they are due (now, soon, ticket).",
    ["operation", "due"],
)
RATELIMIT_FRESH = Counter(
    "conveyor_ratelimit_fresh_buckets",
    "Tokens taken from a shared bucket that was new in Redis, so full: a fresh burst.",
    ["operation"],
)
RATELIMIT_DRAINED = Counter(
    "conveyor_ratelimit_drained",
    "Throttled AWS calls that emptied the shared bucket of their account, region and API.",
    ["operation"],
)
GATE_VERDICTS = Counter(
    "conveyor_release_gate_verdicts",
    "Verdicts of release waves' metric gates: passed, failed or inconclusive.",
    ["verdict"],
)
GATE_MEASUREMENTS = Counter(
    "conveyor_release_gate_measurements",
    "Measurements of release waves' metric gates, by source and result (value, no_data, error).",
    ["source", "result"],
)
REDISPATCHED = Counter(
    "conveyor_sweeper_redispatched", "Overdue steps the recovery sweeper dispatched again."
)


def aws_outcome(code: str | None, throttle_codes: frozenset[str]) -> str:
    """``ok``, ``throttled`` or ``error`` for an AWS answer's error code (None: no error)."""
    if code is None:
        return "ok"
    return "throttled" if code in throttle_codes else "error"


class QueueDepthCollector:
    """Reads each queue's length from Redis at scrape time."""

    def __init__(self, client: Any, queues: list[str]) -> None:
        self._client = client
        self._queues = queues

    def collect(self) -> Iterator[Any]:
        """One gauge sample per queue; none when Redis does not answer (the scrape still works)."""
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "conveyor_queue_depth", "Messages waiting in each Celery queue.", labels=["queue"]
        )
        for queue in self._queues:
            try:
                depth = sum(int(self._client.llen(priority_list(queue, p))) for p in PRIORITY_STEPS)
            except Exception:  # noqa: BLE001, S112 - a scrape must not fail on Redis being away
                continue
            family.add_metric([queue], depth)
        yield family


class BookedAheadCollector:
    """Reads, at scrape time, how many tokens each shared rate-limit bucket has booked ahead,
    and the rate it grants."""

    def __init__(self, read: Callable[[], list[tuple[str, str, str, float, float]]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Any]:
        """One sample per bucket of each gauge; none when Redis does not answer."""
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "conveyor_ratelimit_booked_ahead",
            "Tokens of a shared rate-limit bucket booked beyond now (tickets and waits).",
            labels=["account", "region", "bucket"],
        )
        rates = GaugeMetricFamily(
            "conveyor_ratelimit_rate",
            "Tokens a second a shared bucket granted at its last use (learnt from throttles).",
            labels=["account", "region", "bucket"],
        )
        try:
            buckets = self._read()
        except Exception:  # noqa: BLE001 - a scrape must not fail on Redis being away
            buckets = []
        for account, region, bucket, ahead, rate in buckets:
            family.add_metric([account, region, bucket], ahead)
            rates.add_metric([account, region, bucket], rate)
        yield family
        yield rates


# The most unfinished deployments a scrape reads to count those awaiting approval.
AWAITING_SCAN_LIMIT = 5000
_MGET_CHUNK = 500


def awaiting_approval(client: Any, keys: Keys) -> dict[str, int]:
    """How many unfinished deployments a PAUSE lifecycle hook holds for approval, by stage.

    Reads the unfinished deployments' records (the due set names them), a page per round trip,
    as plain JSON: a scrape never validates, repairs or quarantines a record.
    """
    ids = [
        i.decode() if isinstance(i, bytes) else str(i)
        for i in client.zrange(keys.due, 0, AWAITING_SCAN_LIMIT - 1)
    ]
    counts: dict[str, int] = {}
    for start in range(0, len(ids), _MGET_CHUNK):
        chunk = ids[start : start + _MGET_CHUNK]
        for raw in client.mget([keys.record.format(id=i) for i in chunk]):
            try:
                record = json.loads(raw) if raw else None
            except ValueError:
                continue
            if not isinstance(record, dict) or record.get("state") not in ("queued", "running"):
                continue
            progress = record.get("progress")
            if isinstance(progress, dict) and progress.get("awaiting_hook_id"):
                stage = str(progress.get("lifecycle_stage") or "unknown")
                counts[stage] = counts.get(stage, 0) + 1
    return counts


class AwaitingApprovalCollector:
    """Reads, at scrape time, how many deployments wait for `conveyor approve` or `reject`."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self._client = client
        self._keys = keys

    def collect(self) -> Iterator[Any]:
        """One sample per lifecycle stage; none when Redis does not answer."""
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "conveyor_deployments_awaiting_approval",
            "Unfinished deployments paused at a PAUSE lifecycle hook until `conveyor approve` "
            "or `conveyor reject` (or the hook's timeout), by lifecycle stage.",
            labels=["stage"],
        )
        try:
            counts = awaiting_approval(self._client, self._keys)
        except Exception:  # noqa: BLE001 - a scrape must not fail on Redis being away
            counts = {}
        for stage, count in sorted(counts.items()):
            family.add_metric([stage], count)
        yield family


# The main process's bound endpoint; a pool child closes its inherited copy (close_in_child).
_server: Any = None
# How often a worker whose metrics port is taken tries to bind it again.
REBIND_SECONDS = 5.0


def serve(
    address: str,
    port: int,
    redis_client: Any,
    queues: list[str],
    booked: Callable[[], list[tuple[str, str, str, float, float]]] | None = None,
    keys: Keys | None = None,
) -> threading.Thread:
    """Serve the children's samples and the queue depths on ``address:port`` in a thread;
    ``booked`` reads the rate-limit buckets' bookings at scrape time, and with the fleet's
    ``keys`` the deployments awaiting approval are counted then too.

    A port that is taken does not stop the worker: deployments matter more than their metrics.
    The port is most often held by processes of an earlier worker on this host that outlived
    it (pool children of a killed worker, until they notice their parent is gone). An error
    names the port, and a thread binds it as soon as it is free; the returned thread is that one.
    """
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(QueueDepthCollector(redis_client, queues))
    if booked is not None:
        registry.register(BookedAheadCollector(booked))
    if keys is not None:
        registry.register(AwaitingApprovalCollector(redis_client, keys))
    rebind_seconds = REBIND_SECONDS
    try:
        return _bind(address, port, registry)
    except OSError as exc:
        _log.error(
            "metrics port taken; the worker runs on and serves metrics once the port is free "
            "(is an earlier worker, or its pool children, still running on this host?)",
            address=address,
            port=port,
            error=f"{type(exc).__name__}: {exc}",
            retry_every=rebind_seconds,
        )

    def rebind() -> None:
        while True:
            time.sleep(rebind_seconds)
            try:
                _bind(address, port, registry)
            except OSError:
                continue
            return

    waiting = threading.Thread(target=rebind, name="conveyor-metrics-bind", daemon=True)
    waiting.start()
    return waiting


def _bind(address: str, port: int, registry: Any) -> threading.Thread:
    global _server
    from prometheus_client import start_http_server

    _server, thread = start_http_server(port, addr=address, registry=registry)
    _log.info("metrics endpoint up", address=address, port=port)
    return thread


def close_in_child() -> None:
    """Close, in a pool child just forked, its copy of the main process's listening socket.

    A child forked after the endpoint was bound inherits the socket. Were the worker's main
    process killed, its orphaned children would hold the port, and the worker started in its
    place could not bind it.
    """
    if _server is not None:
        _server.socket.close()
