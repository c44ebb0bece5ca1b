"""The Celery application: ``celery -A worker.app worker``.

Settings are read here, at the entry point, and passed down. Each worker process makes its own
event loop, AWS clients and Redis connection after the fork; the main process runs the recovery
sweeper, which re-dispatches steps lost with a dead worker within about a minute instead of
waiting for the broker's one-hour visibility timeout.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import redis
import structlog
from celery import Celery, bootsteps
from celery.signals import setup_logging, worker_process_init, worker_process_shutdown
from kombu import Queue

from config.celery import celery_config
from config.flower import require_auth_for_flower
from config.logging import configure_logging
from config.settings import Settings
from producers.contract.names import watch_queue
from producers.contract.store import wall_clock
from producers.contract.workers import WorkerInfo
from producers.contract.workers import publish as publish_heartbeat
from producers.contract.workers import retire as retire_worker

settings = Settings()
configure_logging(settings)


def _prepare_metrics_dir(configured: str | None) -> None:
    """Give the pool's children one empty directory for their metric samples.

    prometheus-client chooses where samples live when it is first imported (and again here),
    and metrics keep the choice made when they were defined: so this runs before the worker
    modules that define them are loaded, and the children inherit it.
    Only in `celery … worker`: Flower and the CLI load this module too, and must not empty a
    worker's directory.
    """
    if configured:
        path = Path(configured)
        if path.exists():
            shutil.rmtree(path)  # an earlier run's samples would be summed into this one's
        path.mkdir(parents=True)
    else:
        path = Path(tempfile.mkdtemp(prefix="conveyor-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    from prometheus_client import values

    # The celery command loads its plugins first, and Flower's imports prometheus-client:
    # choose the value store again, now that the directory is known.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


if settings.metrics_port is not None and "worker" in sys.argv[1:]:
    _prepare_metrics_dir(settings.metrics_dir)

from worker.runtime import close_runtime  # noqa: E402 - after the metrics directory is set

log = structlog.get_logger("conveyor.worker")

app = Celery("conveyor")
app.config_from_object(celery_config(settings))
# A worker consumes both queues unless told otherwise (`celery worker -Q ...`): steps that
# change things, and the watching steps, which go to a queue of their own.
app.conf.task_queues = tuple(
    Queue(name, routing_key=name) for name in (settings.queue, watch_queue(settings.queue))
)
# `celery -A worker.app flower` imports this module first: Flower then runs only with auth.
require_auth_for_flower()

_redis: redis.Redis | None = None


def redis_client() -> redis.Redis:
    """This process's Redis client (made lazily, so never shared across a fork)."""
    global _redis
    if _redis is None:
        _redis = settings.redis_client(
            health_check_interval=30,
            socket_connect_timeout=5,
            socket_timeout=settings.redis_socket_timeout,
        )
    return _redis


def step_context(*, runtime: bool = True) -> Any:
    """The StepContext of this process.

    ``runtime=False`` is for the sweeper in the main process: it only reads and writes Redis
    and sends messages, so it must not build an event loop and AWS clients there (they would
    also be inherited by every child forked later).
    """
    from worker.runtime import get_runtime
    from worker.steps import StepContext
    from worker.store import WorkerStore

    return StepContext(
        store=WorkerStore(
            redis_client(),
            ttl_seconds=settings.record_ttl_days * 86400,
            queue=settings.queue,
            history_days=settings.history_retention_days,
        ),
        redis=redis_client(),
        sender=app,
        clock=wall_clock,
        poll_interval=settings.poll_interval,
        recovery_grace=settings.recovery_grace,
        step_time_limit=settings.step_time_limit,
        max_step_attempts=settings.max_step_attempts,
        known_fields=get_runtime(settings).known_fields if runtime else None,
        supersede=settings.supersede,
        freeze_file=settings.freeze_file,
        queue_wait=min(settings.poll_interval, 5.0),
        queue=settings.queue,
        prometheus_url=(
            settings.prometheus_url.get_secret_value() if settings.prometheus_url else None
        ),
    )


@setup_logging.connect
def _setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """Keep Conveyor's handler when Celery sets up logging.

    With a receiver here, Celery adds none of its own handlers (its plain-text ones would
    bypass the JSON renderer and the redaction); ``--loglevel`` still sets the level of
    Celery's own loggers.
    """
    configure_logging(settings)
    if loglevel:
        logging.getLogger("celery").setLevel(loglevel)


@worker_process_init.connect
def _process_init(**_: Any) -> None:
    global _redis
    _redis = None  # never reuse a connection inherited from the parent
    configure_logging(settings)
    if "worker.observe.metrics" in sys.modules:
        from worker.observe.metrics import close_in_child

        close_in_child()


@worker_process_shutdown.connect
def _process_shutdown(**_: Any) -> None:
    close_runtime()


class RecoverySweeper(bootsteps.StartStopStep):
    """Runs :func:`worker.steps.sweep` every ``recovery_interval`` seconds in the main process."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, parent: Any) -> None:
        """Publish the first heartbeat and start the sweeper thread."""
        queues = sorted(parent.app.amqp.queues.consume_from or parent.app.amqp.queues)
        self._info = WorkerInfo(
            name=str(parent.hostname),
            pid=os.getpid(),
            queues=queues,
            concurrency=int(parent.concurrency or 0),
            started_at=wall_clock(),
            seen_at=wall_clock(),
            version=_version(),
        )
        self._heartbeat()
        self._thread = threading.Thread(target=self._loop, name="conveyor-sweeper", daemon=True)
        self._thread.start()

    def stop(self, parent: Any) -> None:
        """Stop the sweeper thread and withdraw the heartbeat."""
        self._stop.set()
        try:
            retire_worker(redis_client(), self._info.name)
        except Exception as exc:  # noqa: BLE001 - shutting down; the heartbeat expires anyway
            log.warning("could not withdraw the heartbeat", error=type(exc).__name__)

    def _heartbeat(self) -> None:
        """Say this worker is alive, for producers (`conveyor workers`, the no-worker check)."""
        try:
            self._info = self._info.model_copy(update={"seen_at": wall_clock()})
            publish_heartbeat(redis_client(), self._info, ttl=heartbeat_ttl())
        except Exception as exc:  # noqa: BLE001 - Redis may be away; the next beat tries again
            log.warning("heartbeat failed; will retry", error=f"{type(exc).__name__}: {exc}")

    def _loop(self) -> None:
        while not self._stop.wait(min(settings.recovery_interval, heartbeat_ttl() / 3)):
            self._heartbeat()
            try:
                sweep_once()
            except Exception as exc:  # noqa: BLE001 - the sweeper must outlive any one failure
                # Redis or the broker may be down for a while; the next sweep tries again.
                log.warning(
                    "recovery sweep failed; will retry", error=f"{type(exc).__name__}: {exc}"
                )


def heartbeat_ttl() -> float:
    """How long a heartbeat lives: three beats, and never under 15 s."""
    return max(15.0, 3 * min(settings.recovery_interval, 10.0))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("conveyor")
    except PackageNotFoundError:
        return ""


def sweep_once() -> int:
    """One recovery sweep from this process; returns how many steps were re-dispatched."""
    from worker.steps import sweep

    return sweep(step_context(runtime=False))


class RedisPolicyCheck(bootsteps.StartStopStep):
    """Refuses to start the worker on a Redis that may evict Conveyor's keys."""

    def start(self, parent: Any) -> None:
        """Read maxmemory-policy and stop the worker with the fix when it evicts."""
        try:
            problem = eviction_problem(redis_client(), allow=settings.allow_evicting_redis)
        except redis.RedisError as exc:
            # Redis is not up yet: the worker waits for its broker as Celery does; the policy
            # cannot be read now, so say so rather than refuse to start.
            log.warning("could not read Redis's maxmemory-policy", error=type(exc).__name__)
            return
        if problem is not None:
            log.error("refusing to start", reason=problem)
            raise RuntimeError(problem)


def eviction_problem(client: redis.Redis, *, allow: bool) -> str | None:
    """Why this Redis is unsafe for Conveyor (None when it is safe, or allowed anyway)."""
    policy = str(client.info("memory").get("maxmemory_policy", "noeviction"))
    if policy == "noeviction":
        return None
    if allow:
        log.warning("Redis may evict keys; allowed by CONVEYOR_ALLOW_EVICTING_REDIS", policy=policy)
        return None
    return (
        f"Redis maxmemory-policy is {policy!r}: under memory pressure Redis would evict live "
        "deployment records and queue entries, and the next job would start on top of a "
        "running rollout. Set `maxmemory-policy noeviction` on the server (CONFIG SET or "
        "redis.conf), or CONVEYOR_ALLOW_EVICTING_REDIS=true if it never reaches maxmemory"
    )


class MetricsServer(bootsteps.StartStopStep):
    """Serves the Prometheus endpoint from the main process (CONVEYOR_METRICS_PORT)."""

    def start(self, parent: Any) -> None:
        """Start the HTTP server thread, when metrics are on."""
        if settings.metrics_port is None or not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return
        from producers.contract.names import Keys
        from worker.aws.ratelimit import booked_ahead
        from worker.observe.metrics import serve

        queues = sorted(parent.app.amqp.queues.consume_from or parent.app.amqp.queues)
        client = redis_client()
        # Never raises for a taken port: the worker runs on, and binds it once it is free.
        serve(
            settings.metrics_address,
            settings.metrics_port,
            client,
            queues,
            booked=lambda: booked_ahead(client),
            keys=Keys.of(settings.queue),
        )


app.steps["worker"].add(RedisPolicyCheck)
app.steps["worker"].add(MetricsServer)
app.steps["worker"].add(RecoverySweeper)

# Import the tasks so that `celery -A worker.app` registers them.
import worker.tasks  # noqa: E402, F401
