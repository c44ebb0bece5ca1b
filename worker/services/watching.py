"""Rollouts watched in one cluster are polled together: up to 10 services per DescribeServices,
and the service deployments of blue/green, linear and canary rollouts (and of rolling ones with
lifecycle hooks) up to 20 per DescribeServiceDeployments.

Every watched service is in a Redis set per (account, region, cluster), scored by when its next
poll is due. A watch step that needs a fresh look first reads the cache: another deployment's
poll may have described this service a moment ago. If not, it describes its own service plus up
to nine others of the cluster that are due soonest, in one call, and caches every answer. The
step then schedules its next poll from the time its data was fetched, not from now, so a
service served from the cache polls as often as one that fetched for itself, and services
whose polls were served together stay due together.

Service deployments are watched the same way, per account and region (one call may name
deployments of any cluster): a fleet of canaries baking for an hour polls ECS's history in
batches of 20 instead of one call per deployment and poll, which ECS's 20 calls a second
would otherwise cap at about a hundred deployments watched at once.

Nothing here decides anything: the verdict is still :func:`worker.domain.verdict.judge` of one
DescribeServices entry (or the service deployment's own status). A cache entry lives a few
seconds, and only answers a service whose next poll is due; the watch queue's workers share it
across processes and machines.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

import redis

from producers.contract.names import KEY_PREFIX
from worker.aws.gateway import MAX_SERVICE_DEPLOYMENTS, EcsGateway

WATCHING_KEY = KEY_PREFIX + "watching:{scope}:{cluster}"  # zset: service -> next poll due
SERVICE_CACHE_KEY = KEY_PREFIX + "described:{scope}:{cluster}:{service}"  # {"at", "service"}
BATCH = 10  # DescribeServices takes at most 10 services
# zset: service deployment ARN -> next poll due, and the cache of each one's last description.
WATCHING_DEPLOYMENTS_KEY = KEY_PREFIX + "watching-deployments:{scope}"
DEPLOYMENT_CACHE_KEY = KEY_PREFIX + "service-deployment:{scope}:{arn}"
# An unwatched entry leaves the set after this long without a poll (a crash, say).
_FORGET_SECONDS = 3600


def _plain(value: Any) -> Any:
    """JSON for a cached AWS answer: timestamps as epoch seconds, as the verdicts read them."""
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    return str(value)


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

    # -- service deployments (blue/green, linear, canary) --------------------------------------

    def _deployments(self) -> str:
        return WATCHING_DEPLOYMENTS_KEY.format(scope=self._scope)

    def _deployment_cache(self, arn: str) -> str:
        return DEPLOYMENT_CACHE_KEY.format(scope=self._scope, arn=arn)

    async def describe_deployment(self, arn: str) -> tuple[dict[str, Any] | None, float]:
        """The service deployment's DescribeServiceDeployments entry and when it was fetched
        (None: ECS does not know it). A cached answer no older than ``freshness`` is used as
        it is; otherwise ours and the watched deployments due soonest are fetched in one call.
        """
        now = self._clock()
        raw = self._r.get(self._deployment_cache(arn))
        if raw is not None:
            cached = json.loads(raw)
            if now - float(cached["at"]) <= self._fresh:
                return cached["entry"], float(cached["at"])
        due = self._r.zrangebyscore(
            self._deployments(), "-inf", now + self._fresh, start=0, num=MAX_SERVICE_DEPLOYMENTS
        )
        others = [m.decode() if isinstance(m, bytes) else str(m) for m in due]
        arns = [arn, *[o for o in others if o != arn]][:MAX_SERVICE_DEPLOYMENTS]
        found = await self._ecs.describe_service_deployments(arns)
        fetched = self._clock()
        ttl_ms = max(1000, int(self._fresh * 3000))
        with self._r.pipeline(transaction=False) as pipe:
            for other in arns:
                entry = {"at": fetched, "entry": found.get(other)}
                pipe.set(
                    self._deployment_cache(other), json.dumps(entry, default=_plain), px=ttl_ms
                )
            pipe.execute()
        mine = found.get(arn)
        return (json.loads(json.dumps(mine, default=_plain)) if mine else None), fetched

    def next_deployment_poll(self, arn: str, due: float) -> None:
        """Say when this service deployment's next poll is due (watched until
        :meth:`deployment_done`)."""
        key = self._deployments()
        with self._r.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {arn: due})
            pipe.zremrangebyscore(key, "-inf", self._clock() - _FORGET_SECONDS)
            pipe.expire(key, 2 * _FORGET_SECONDS)
            pipe.execute()

    def deployment_done(self, arn: str) -> None:
        """Stop counting this service deployment among the watched ones."""
        self._r.zrem(self._deployments(), arn)
