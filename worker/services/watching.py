"""Rollouts watched in one cluster are polled together: up to 10 services per DescribeServices.

Every watched service is in a Redis set per (account, region, cluster), scored by when its next
poll is due. A watch step that needs a fresh look first reads the cache: another deployment's
poll may have described this service a moment ago. If not, it describes its own service plus up
to nine others of the cluster that are due soonest, in one call, and caches every answer. The
step then schedules its next poll from the time its data was fetched, not from now, so a
service served from the cache polls as often as one that fetched for itself, and services
whose polls were served together stay due together.

Nothing here decides anything: the verdict is still :func:`worker.domain.verdict.judge` of one
DescribeServices entry. A cache entry lives a few seconds, and only answers a service whose
next poll is due; the watch queue's workers share it across processes and machines.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

from producers.contract.names import KEY_PREFIX
from worker.aws.gateway import EcsGateway

WATCHING_KEY = KEY_PREFIX + "watching:{scope}:{cluster}"  # zset: service -> next poll due
SERVICE_CACHE_KEY = KEY_PREFIX + "described:{scope}:{cluster}:{service}"  # {"at", "service"}
BATCH = 10  # DescribeServices takes at most 10 services


class BatchedDescriber:
    """DescribeServices for watch steps, shared across every deployment of a cluster."""

    def __init__(
        self,
        gateway: EcsGateway,
        client: redis.Redis,
        *,
        scope: str,
        freshness: float,
        clock: Callable[[], float],
    ) -> None:
        self._ecs = gateway
        self._r = client
        self._scope = scope
        self._fresh = freshness
        self._clock = clock

    def _watching(self, cluster: str) -> str:
        return WATCHING_KEY.format(scope=self._scope, cluster=cluster)

    def _cache(self, cluster: str, service: str) -> str:
        return SERVICE_CACHE_KEY.format(scope=self._scope, cluster=cluster, service=service)

    async def describe(self, cluster: str, service: str) -> tuple[dict[str, Any] | None, float]:
        """The service's DescribeServices entry and when it was fetched (None: it is gone).

        A cached answer no older than ``freshness`` seconds is used as it is.
        """
        name = service.rsplit("/", 1)[-1]
        now = self._clock()
        raw = self._r.get(self._cache(cluster, name))
        if raw is not None:
            cached = json.loads(raw)
            if now - float(cached["at"]) <= self._fresh:
                return cached["service"], float(cached["at"])
        # Fetch ours and the services of the cluster due soonest, in one call.
        due = self._r.zrangebyscore(
            self._watching(cluster), "-inf", now + self._fresh, start=0, num=BATCH
        )
        others = [m.decode() if isinstance(m, bytes) else str(m) for m in due]
        names = [name, *[o for o in others if o != name]][:BATCH]
        found = await self._ecs.describe_services(cluster, names)
        fetched = self._clock()
        ttl_ms = max(1000, int(self._fresh * 3000))
        with self._r.pipeline(transaction=False) as pipe:
            for other in names:
                entry = {"at": fetched, "service": found.get(other)}
                pipe.set(self._cache(cluster, other), json.dumps(entry, default=str), px=ttl_ms)
            pipe.execute()
        return found.get(name), fetched

    def next_poll(self, cluster: str, service: str, due: float) -> None:
        """Say when this service's next poll is due (it is watched until :meth:`done`)."""
        key = self._watching(cluster)
        with self._r.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {service.rsplit("/", 1)[-1]: due})
            # A service nobody polled for an hour is no longer watched (its deployment ended
            # without saying so, e.g. a crash): the set stays bounded.
            pipe.zremrangebyscore(key, "-inf", self._clock() - 3600)
            pipe.expire(key, 7200)
            pipe.execute()

    def done(self, cluster: str, service: str) -> None:
        """Stop counting this service among the watched ones."""
        self._r.zrem(self._watching(cluster), service.rsplit("/", 1)[-1])
