"""The Celery application: ``celery -A worker.app worker``.

Settings are read here, at the entry point, and passed down. Each worker process makes its own
event loop, AWS clients and Redis connection after the fork; the main process runs the recovery
sweeper, which re-dispatches steps lost with a dead worker within about a minute instead of
waiting for the broker's one-hour visibility timeout.
"""

from __future__ import annotations

import threading
from typing import Any

import redis
import structlog
from celery import Celery, bootsteps
from celery.signals import worker_process_init, worker_process_shutdown

from config.celery import celery_config
from config.logging import configure_logging
from config.settings import Settings
from producers.contract.store import RecordStore, wall_clock
from worker.runtime import close_runtime

settings = Settings()
configure_logging(settings)
log = structlog.get_logger("conveyor.worker")

app = Celery("conveyor")
app.config_from_object(celery_config(settings))

_redis: redis.Redis | None = None


def redis_client() -> redis.Redis:
    """This process's Redis client (made lazily, so never shared across a fork)."""
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(
            settings.redis_dsn,
            health_check_interval=30,
            socket_connect_timeout=5,
            socket_timeout=settings.redis_socket_timeout,
            **settings.redis_options(),
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

    return StepContext(
        store=RecordStore(redis_client(), ttl_seconds=settings.record_ttl_days * 86400),
        redis=redis_client(),
        sender=app,
        clock=wall_clock,
        poll_interval=settings.poll_interval,
        recovery_grace=settings.recovery_grace,
        step_time_limit=settings.step_time_limit,
        max_step_attempts=settings.max_step_attempts,
        known_fields=get_runtime(settings).known_fields if runtime else None,
        supersede=settings.supersede,
        queue_wait=min(settings.poll_interval, 5.0),
        queue=settings.queue,
    )


@worker_process_init.connect
def _process_init(**_: Any) -> None:
    global _redis
    _redis = None  # never reuse a connection inherited from the parent
    configure_logging(settings)


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
        """Start the sweeper thread."""
        self._thread = threading.Thread(target=self._loop, name="conveyor-sweeper", daemon=True)
        self._thread.start()

    def stop(self, parent: Any) -> None:
        """Stop the sweeper thread."""
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(settings.recovery_interval):
            try:
                sweep_once()
            except Exception as exc:  # noqa: BLE001 - the sweeper must outlive any one failure
                # Redis or the broker may be down for a while; the next sweep tries again.
                log.warning(
                    "recovery sweep failed; will retry", error=f"{type(exc).__name__}: {exc}"
                )


def sweep_once() -> int:
    """One recovery sweep from this process; returns how many steps were re-dispatched."""
    from worker.steps import sweep

    return sweep(step_context(runtime=False))


class RedisPolicyCheck(bootsteps.StartStopStep):
    """Refuses to start the worker on a Redis that may evict Conveyor's keys."""

    def start(self, parent: Any) -> None:
        """Read maxmemory-policy and stop the worker with the fix when it evicts."""
        problem = eviction_problem(redis_client(), allow=settings.allow_evicting_redis)
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


app.steps["worker"].add(RedisPolicyCheck)
app.steps["worker"].add(RecoverySweeper)

# Import the tasks so that `celery -A worker.app` registers them.
import worker.tasks  # noqa: E402, F401
