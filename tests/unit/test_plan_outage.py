"""`ConveyorClient.plan` rides out a Redis outage as every other client call does.

Found by the chaos campaign: a plan asked during a Redis restart or failover raised at the
first refused connection, where an enqueue or a status waited within
CONVEYOR_REDIS_RETRY_SECONDS.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from config.settings import Settings
from producers.client import ConveyorClient, ConveyorUnavailableError
from producers.contract.jobs import ImageUpdate, UpdateServiceJob

JOB = UpdateServiceJob(
    cluster="demo", service="web", images=(ImageUpdate(container="app", image="repo/web:2.0.0"),)
)


class FlakyRedis:
    """A real Redis client whose ``set`` and ``get`` fail with a refused connection the first
    ``outage`` times each is called, and which answers each plan it is sent as a worker would."""

    def __init__(self, real: redis.Redis, client: ConveyorClient, outage: int) -> None:
        self._real = real
        self._client = client
        self.failures = {"set": outage, "get": outage}
        self.retries: list[float] = []

    def _fail(self, name: str) -> None:
        if self.failures[name] > 0:
            self.failures[name] -= 1
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1. Connection refused.")

    def set(self, key: str, value: Any, **kwargs: Any) -> Any:
        self._fail("set")
        done = self._real.set(key, value, **kwargs)
        keys = self._client._store.keys
        plan_id = key.rsplit(":", 1)[1]
        if key == keys.plan.format(id=plan_id):
            self._real.set(keys.plan_result.format(id=plan_id), json.dumps({"id": plan_id}))
        return done

    def get(self, key: str) -> Any:
        self._fail("get")
        return self._real.get(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _client(redis_url: str, retry_seconds: float) -> tuple[ConveyorClient, FlakyRedis]:
    redis.Redis.from_url(redis_url).flushdb()
    client = ConveyorClient(Settings(redis_url=redis_url, redis_retry_seconds=retry_seconds))  # type: ignore[arg-type]
    flaky = FlakyRedis(client._redis, client, outage=2)
    client._redis = flaky
    client.on_retry = flaky.retries.append
    return client, flaky


def test_a_plan_waits_for_redis_to_come_back(redis_url: str) -> None:
    """Redis refuses the plan's write and then its read twice each; the plan is answered."""
    client, flaky = _client(redis_url, retry_seconds=30)
    plans = client.plan(JOB, pin_digest=False, timeout=30)
    assert len(plans) == 1
    assert flaky.failures == {"set": 0, "get": 0}
    assert len(flaky.retries) == 4


def test_a_plan_gives_up_after_the_setting_naming_it(redis_url: str) -> None:
    """With no retry time, the first refused connection is the answer, naming the setting."""
    client, flaky = _client(redis_url, retry_seconds=0)
    with pytest.raises(ConveyorUnavailableError, match="CONVEYOR_REDIS_RETRY_SECONDS=0"):
        client.plan(JOB, pin_digest=False, timeout=30)
    assert flaky.retries == []
