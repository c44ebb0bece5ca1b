"""Per-process resources of a worker: one event loop and long-lived AWS clients.

aiohttp-based clients are bound to the loop that made them, and a client made per call costs
tens of milliseconds, so each worker process keeps one loop and one client pool for its whole
life. They are created lazily in the process that uses them (after Celery's fork), never in the
parent, and closed when the process shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from config.settings import Settings
from worker.aws.boto_ecs import known_register_fields
from worker.aws.boto_pool import ClientPool, Limits
from worker.aws.ratelimit import default_buckets

T = TypeVar("T")


class Runtime:
    """The event loop and AWS client pool of one worker process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self._pool: ClientPool | None = None
        self.known_fields = known_register_fields()

    @property
    def pool(self) -> ClientPool:
        """The client pool, created on first use inside the loop's process."""
        if self._pool is None:
            limits = None
            if self.settings.rate_limit:
                limits = Limits(
                    redis=self.settings.redis_client(
                        socket_connect_timeout=5,
                        socket_timeout=self.settings.redis_socket_timeout,
                    ),
                    buckets=default_buckets(self.settings.rate_limit_scale),
                    # A wait must leave the step time for its calls: at most a third of it.
                    max_wait=min(
                        self.settings.rate_limit_max_wait, self.settings.step_time_limit / 3
                    ),
                )
            self._pool = ClientPool(
                region=self.settings.aws_region,
                max_attempts=self.settings.aws_max_attempts,
                call_timeout=self.settings.aws_call_timeout,
                limits=limits,
            )
        return self._pool

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine to completion on this process's loop.

        If the run is interrupted (Celery's soft time limit raises wherever the process is,
        possibly outside the coroutine), the coroutine is cancelled before the error goes on:
        left pending on the persistent loop it would resume during the next task.
        """
        task = self.loop.create_task(coro)
        try:
            return self.loop.run_until_complete(task)
        except BaseException:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    self.loop.run_until_complete(task)
            raise

    def close(self) -> None:
        """Close the clients and the loop."""
        if self._pool is not None:
            self.loop.run_until_complete(self._pool.close())
            self._pool = None
        self.loop.close()


_runtime: Runtime | None = None


def get_runtime(settings: Settings) -> Runtime:
    """Return this process's runtime, making a new one after a fork."""
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        _runtime = Runtime(settings)
    return _runtime


def close_runtime() -> None:
    """Close this process's runtime, if it has one."""
    global _runtime
    if _runtime is not None and _runtime.pid == os.getpid():
        _runtime.close()
    _runtime = None
