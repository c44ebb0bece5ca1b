"""Worker heartbeats: who is consuming, read by producers without asking the workers.

Each worker's main process publishes a heartbeat (its name, queues, concurrency) every recovery
interval, with a TTL of a few intervals. Producers read them: ``conveyor workers``, and the "no
worker" check before enqueueing, cost one Redis round trip instead of a broadcast ping that
waits out its whole timeout.
"""

from __future__ import annotations

import json

import redis
from pydantic import BaseModel, ValidationError

from producers.contract.names import WORKER_KEY, WORKERS_KEY


class WorkerInfo(BaseModel):
    """One worker, as its last heartbeat described it."""

    name: str
    pid: int
    queues: list[str]
    concurrency: int
    started_at: float
    seen_at: float
    version: str = ""


def publish(client: redis.Redis, info: WorkerInfo, ttl: float) -> None:
    """Publish a heartbeat that lives ``ttl`` seconds, and drop heartbeats older than that."""
    with client.pipeline(transaction=True) as pipe:
        pipe.set(WORKER_KEY.format(name=info.name), info.model_dump_json(), px=int(ttl * 1000))
        pipe.zadd(WORKERS_KEY, {info.name: info.seen_at})
        pipe.zremrangebyscore(WORKERS_KEY, "-inf", f"({info.seen_at - ttl}")
        pipe.execute()


def retire(client: redis.Redis, name: str) -> None:
    """Remove a worker's heartbeat (it is shutting down)."""
    with client.pipeline(transaction=True) as pipe:
        pipe.delete(WORKER_KEY.format(name=name))
        pipe.zrem(WORKERS_KEY, name)
        pipe.execute()


def live(client: redis.Redis) -> list[WorkerInfo]:
    """The workers whose heartbeat has not expired, by name."""
    names = [
        n.decode() if isinstance(n, bytes) else str(n) for n in client.zrange(WORKERS_KEY, 0, -1)
    ]
    if not names:
        return []
    found = []
    for raw in client.mget([WORKER_KEY.format(name=n) for n in names]):
        if raw is None:
            continue
        try:
            found.append(WorkerInfo.model_validate_json(raw))
        except (ValidationError, json.JSONDecodeError):
            continue
    return sorted(found, key=lambda w: w.name)
