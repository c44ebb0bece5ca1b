"""Deployment records in Redis: the authoritative state of every deployment.

Records live under Conveyor's own keys (not Celery's results, which expire after a day). Every
write that moves a deployment forward is a compare-and-set on the record's ``seq``: a step
message carries the seq it was sent with, and only the message with the current seq may act.
A copy redelivered after a crash, or superseded by the recovery sweeper, finds a newer seq and
does nothing. The ``due`` sorted set holds, per unfinished deployment, the time by which its next
step must have run; the sweeper re-dispatches whatever is overdue.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.exceptions import WatchError

from producers.contract.names import (
    DUE_KEY,
    INDEX_KEY,
    JOB_KEY,
    QUEUE_COUNTER_KEY,
    RECORD_KEY,
    SERVICE_QUEUE_KEY,
)
from producers.contract.records import DeploymentRecord

# One atomic step: the record (only if new), the index, the due time, the service queue with an
# arrival number from a Redis counter, and the full job payload.
_CREATE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], 'NX') then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[5]), ARGV[4])
if ARGV[6] ~= '' then redis.call('SET', KEYS[6], ARGV[6], 'EX', ARGV[2]) end
return 1
"""


class RecordStore:
    """Reads and fenced writes of deployment records."""

    def __init__(self, client: redis.Redis, *, ttl_seconds: int = 30 * 86400) -> None:
        self._r = client
        self._ttl = ttl_seconds
        self._create = client.register_script(_CREATE)

    @staticmethod
    def key(deployment_id: str) -> str:
        """The Redis key of a record."""
        return RECORD_KEY.format(id=deployment_id)

    def create(
        self, record: DeploymentRecord, due: float, job: dict[str, Any] | None = None
    ) -> None:
        """Store a new record; it must be done by ``due`` or the sweeper dispatches it.

        The record joins its service's queue in arrival order as Redis sees it (a counter), not
        by the producer's clock, which may be off. ``job`` is the full payload when the record
        holds a redacted copy; it is kept apart and deleted when the deployment ends.
        """
        created = self._create(
            keys=[
                self.key(record.id),
                INDEX_KEY,
                DUE_KEY,
                self.queue_key(record.service_key),
                QUEUE_COUNTER_KEY,
                JOB_KEY.format(id=record.id),
            ],
            args=[
                record.model_dump_json(),
                self._ttl,
                record.created_at,
                record.id,
                due,
                "" if job is None else json.dumps(job),
            ],
        )
        if not created:
            raise ValueError(f"deployment {record.id} already exists")

    @staticmethod
    def queue_key(service_key: str) -> str:
        """The Redis key of a service's queue of unfinished deployments."""
        return SERVICE_QUEUE_KEY.format(service=service_key)

    def queue_position(
        self, record: DeploymentRecord
    ) -> tuple[int, str | None, list[DeploymentRecord]]:
        """Where a deployment stands in its service's queue.

        Returns (number of unfinished deployments ahead of it, the head's id, the unfinished
        deployments queued behind it, oldest first). Finished or vanished members found on the
        way are removed: the queue heals itself after crashes.
        """
        key = self.queue_key(record.service_key)
        members = [
            m.decode() if isinstance(m, bytes) else str(m) for m in self._r.zrange(key, 0, -1)
        ]
        live: list[DeploymentRecord] = []
        for member in members:
            other = record if member == record.id else self.get(member)
            if other is None or other.terminal:
                self._r.zrem(key, member)
            else:
                live.append(other)
        ids = [r.id for r in live]
        if record.id not in ids:
            return 0, record.id, []
        index = ids.index(record.id)
        return index, ids[0], live[index + 1 :]

    def leave_queue(self, record: DeploymentRecord) -> None:
        """Release the service: remove a finished deployment from its queue."""
        self._r.zrem(self.queue_key(record.service_key), record.id)

    def get_job(self, deployment_id: str) -> dict[str, Any] | None:
        """The full job payload stored apart from the record, if any."""
        raw = self._r.get(JOB_KEY.format(id=deployment_id))
        if raw is None:
            return None
        payload = json.loads(raw)
        return payload if isinstance(payload, dict) else None

    def forget_job(self, deployment_id: str) -> None:
        """Delete the full job payload of a finished deployment."""
        self._r.delete(JOB_KEY.format(id=deployment_id))

    def get(self, deployment_id: str) -> DeploymentRecord | None:
        """Return the record, or None when there is none (never created, or expired)."""
        raw = self._r.get(self.key(deployment_id))
        return None if raw is None else DeploymentRecord.model_validate_json(raw)

    def commit(self, record: DeploymentRecord, *, expected_seq: int, due: float | None) -> bool:
        """Write ``record`` if the stored one still has ``expected_seq``; False otherwise.

        ``due`` is when the next step must have run (None once the deployment is finished).
        """
        key = self.key(record.id)
        with self._r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                raw = pipe.get(key)
                if raw is None:
                    return False
                if DeploymentRecord.model_validate_json(raw).seq != expected_seq:
                    return False
                pipe.multi()
                pipe.set(key, record.model_dump_json(), ex=self._ttl)
                if due is None:
                    pipe.zrem(DUE_KEY, record.id)
                else:
                    pipe.zadd(DUE_KEY, {record.id: due})
                pipe.execute()
            except WatchError:
                return False
        return True

    def modify(
        self, deployment_id: str, change: Callable[[DeploymentRecord], DeploymentRecord | None]
    ) -> DeploymentRecord | None:
        """Apply ``change`` atomically (retrying on contention); None from it means no write."""
        key = self.key(deployment_id)
        while True:
            with self._r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    raw = pipe.get(key)
                    if raw is None:
                        return None
                    changed = change(DeploymentRecord.model_validate_json(raw))
                    if changed is None:
                        return None
                    pipe.multi()
                    pipe.set(key, changed.model_dump_json(), ex=self._ttl)
                    pipe.execute()
                except WatchError:
                    continue
                return changed

    def set_due(self, deployment_id: str, due: float) -> None:
        """Set when the deployment's next step must have run."""
        self._r.zadd(DUE_KEY, {deployment_id: due})

    def overdue(self, now: float, limit: int = 100) -> list[str]:
        """Ids of unfinished deployments whose next step should have run by ``now``."""
        ids = self._r.zrangebyscore(DUE_KEY, "-inf", now, start=0, num=limit)
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    def reclaim(self, deployment_id: str, *, now: float, due: float) -> DeploymentRecord | None:
        """Take over an overdue deployment: bump its seq so older step messages go stale.

        Returns the record to re-dispatch, or None when it is finished, gone, or no longer due.
        """
        key = self.key(deployment_id)
        with self._r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key, DUE_KEY)  # type: ignore[no-untyped-call]
                raw = pipe.get(key)
                score = pipe.zscore(DUE_KEY, deployment_id)
                if raw is None or score is None:
                    pipe.multi()
                    pipe.zrem(DUE_KEY, deployment_id)
                    pipe.execute()
                    return None
                record = DeploymentRecord.model_validate_json(raw)
                if record.terminal:
                    # Finished, but its worker died before tidying up: finish the tidying.
                    pipe.multi()
                    pipe.zrem(DUE_KEY, deployment_id)
                    pipe.zrem(self.queue_key(record.service_key), deployment_id)
                    pipe.delete(JOB_KEY.format(id=deployment_id))
                    pipe.execute()
                    return None
                if float(score) > now:
                    return None
                bumped = record.model_copy(update={"seq": record.seq + 1, "updated_at": now})
                pipe.multi()
                pipe.set(key, bumped.model_dump_json(), ex=self._ttl)
                pipe.zadd(DUE_KEY, {deployment_id: due})
                pipe.execute()
            except WatchError:
                return None
            return bumped

    def recent(self, limit: int = 20) -> list[DeploymentRecord]:
        """The newest records, newest first."""
        ids = self._r.zrevrange(INDEX_KEY, 0, max(0, limit - 1))
        records = []
        for raw_id in ids:
            record = self.get(raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id))
            if record is not None:
                records.append(record)
        return records


def wall_clock() -> float:
    """Seconds since the epoch; records use wall time so that producers can read them."""
    return time.time()
