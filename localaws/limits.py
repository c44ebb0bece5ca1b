"""ECS API rate limits as token buckets, per account and region.

The table is AWS's (see shared/ECS_FACTS.md): one bucket per row, shared by the operations of the
row; operations not in the table are not limited. ``scale`` multiplies every refill rate so that
benchmarks can run the same shape of traffic in less time; burst sizes stay as AWS has them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from config.ecs_limits import BUCKET_FOR_OPERATION, ECS_RATE_LIMITS, BucketSpec

__all__ = ["BUCKET_FOR_OPERATION", "ECS_RATE_LIMITS", "BucketSpec", "TokenBuckets"]


class TokenBuckets:
    """Thread-safe token buckets keyed by (account, region, table row).

    Buckets are created full on first use, as an account that has been quiet has its whole burst.
    """

    def __init__(self, scale: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        self.scale = scale
        self._clock = clock
        self._lock = threading.Lock()
        # (account, region, bucket name) -> (tokens, time of last refill)
        self._buckets: dict[tuple[str, str, str], tuple[float, float]] = {}

    def try_acquire(self, account: str, region: str, operation: str) -> bool:
        """Take one token for ``operation``; False means the call must be throttled."""
        spec = BUCKET_FOR_OPERATION.get(operation)
        if spec is None:
            return True
        key = (account, region, spec.name)
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(key, (float(spec.burst), now))
            tokens = min(
                float(spec.burst), tokens + (now - last) * spec.refill_per_second * self.scale
            )
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return False
            self._buckets[key] = (tokens - 1.0, now)
            return True
