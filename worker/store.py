"""The record store as workers use it: attempt marks and notes, the service queue, recovery.

Producers create, read and cancel deployments through :class:`RecordStore` of the contract;
what only a worker does to a record (mark that a step is about to act, take its place in its
service's queue, reclaim it when it is overdue) is here, beside the steps that call it. The
keys are the contract's (:class:`producers.contract.names.Keys`), so both sides still agree on
where everything lives.
"""

from __future__ import annotations

from typing import Any, cast

import redis
from redis.exceptions import WatchError

from producers.contract.history import DEFAULT_RETENTION_DAYS
from producers.contract.names import QUEUE
from producers.contract.records import DeploymentRecord
from producers.contract.store import NewerRecordError, RecordStore, UnreadableRecordError

# Move a queued deployment to another service queue with its arrival number.
_REKEY = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then score = redis.call('ZSCORE', KEYS[2], ARGV[1]) end
if not score then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], score, ARGV[1])
return 1
"""

# How often a transaction that lost a race (WATCH) is tried again before giving up for now.
_RETRIES = 5


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _guessed(record: DeploymentRecord) -> DeploymentRecord:
    """The record as a producer keys it before any worker published its account."""
    job = {k: v for k, v in record.job.items() if k != "role_arn"}
    return record.model_copy(update={"account": None, "job": job})


class WorkerStore(RecordStore):
    """Reads and fenced writes of deployment records, with what only workers do to them."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        ttl_seconds: int = 30 * 86400,
        queue: str = QUEUE,
        history_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        super().__init__(client, ttl_seconds=ttl_seconds, queue=queue, history_days=history_days)
        self._rekey = client.register_script(_REKEY)

    # -- attempts -----------------------------------------------------------------------

    def mark_attempt(self, deployment_id: str, step: str) -> bool:
        """Note that ``step`` is about to act; True when an earlier attempt already did.

        A first attempt cannot have left anything behind in AWS, so it may skip the look for
        what an earlier attempt did (a revision, a deployment); any later attempt, whether a
        retry, a redelivery or a re-dispatch, finds the mark and looks.
        """
        key = self._k.attempts.format(id=deployment_id)
        with self._r.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, step, "1")
            pipe.expire(key, self._ttl)
            first, _ = pipe.execute()
        return not first

    def note(self, deployment_id: str, name: str, value: str) -> None:
        """Keep a note of an attempt (read by re-runs; gone when the deployment ends)."""
        key = self._k.attempts.format(id=deployment_id)
        with self._r.pipeline(transaction=True) as pipe:
            pipe.hset(key, f"note:{name}", value)
            pipe.expire(key, self._ttl)
            pipe.execute()

    def read_note(self, deployment_id: str, name: str) -> str | None:
        """A note kept by :meth:`note`, or None."""
        raw = self._r.hget(self._k.attempts.format(id=deployment_id), f"note:{name}")
        return None if raw is None else _text(raw)

    def unmark_attempt(self, deployment_id: str, step: str) -> None:
        """Take back :meth:`mark_attempt`: the attempt stopped before it could act."""
        self._r.hdel(self._k.attempts.format(id=deployment_id), step)

    # -- the service queue --------------------------------------------------------------

    def move_to_account(self, record: DeploymentRecord, account: str) -> DeploymentRecord:
        """Key a queued deployment under its real account, keeping its arrival order.

        Returns the record with ``account`` set; the caller commits it with its transition.
        """
        moved = record.model_copy(update={"account": account})
        self._rekey(
            keys=[self.queue_key(record.service_key), self.queue_key(moved.service_key)],
            args=[record.id],
        )
        return moved

    def queue_position(
        self, record: DeploymentRecord
    ) -> tuple[int, str | None, list[DeploymentRecord]]:
        """Where a deployment stands in its service's queue.

        Returns (number of unfinished deployments ahead of it, the head's id, the readable
        unfinished deployments queued behind it, oldest first). Finished, vanished and
        quarantined members found on the way are removed: the queue heals itself after crashes
        and never stops at a damaged record. A member written by a newer Conveyor still counts.

        Members still queued under the guessed ``self`` account of the same cluster and service
        count too, by arrival number: they have not been moved to their real account's queue
        yet, and one that arrived earlier must not be overtaken while it is being moved. (One
        that turns out to be of another account holds the service only until its first step.)
        """
        keys = [self.queue_key(record.service_key)]
        guess = self.queue_key(_guessed(record).service_key)
        if guess not in keys:
            keys.append(guess)
        scored: dict[str, tuple[float, str]] = {}
        for key in keys:
            pairs = cast(list[tuple[Any, float]], self._r.zrange(key, 0, -1, withscores=True))
            for member, score in pairs:
                name = _text(member)
                if name not in scored or score < scored[name][0]:
                    scored[name] = (float(score), key)
        live: list[tuple[str, DeploymentRecord | None]] = []
        for member, (_, key) in sorted(scored.items(), key=lambda item: item[1][0]):
            try:
                other = record if member == record.id else self.get(member)
            except NewerRecordError:
                live.append((member, None))
                continue
            if other is None or other.terminal:
                self._r.zrem(key, member)
            else:
                live.append((member, other))
        ids = [member for member, _ in live]
        if record.id not in ids:
            return 0, record.id, []
        index = ids.index(record.id)
        behind = [other for _, other in live[index + 1 :] if other is not None]
        return index, ids[0], behind

    # -- recovery -----------------------------------------------------------------------

    def overdue(self, now: float, limit: int = 100) -> list[str]:
        """Ids of unfinished deployments whose next step should have run by ``now``."""
        return [
            _text(i) for i in self._r.zrangebyscore(self._k.due, "-inf", now, start=0, num=limit)
        ]

    def reclaim(self, deployment_id: str, *, now: float, due: float) -> DeploymentRecord | None:
        """Take over an overdue deployment: bump its seq so older step messages go stale.

        Returns the record to re-dispatch, or None when it is finished, gone, quarantined, no
        longer due, or written by a newer Conveyor. A transaction that loses a race with a
        step's commit is tried again: a busy deployment must not stay unreclaimed by chance.
        """
        for _ in range(_RETRIES):
            try:
                return self._reclaim_once(deployment_id, now=now, due=due)
            except WatchError:
                continue
        return None

    def _reclaim_once(
        self, deployment_id: str, *, now: float, due: float
    ) -> DeploymentRecord | None:
        key = self.key(deployment_id)
        with self._r.pipeline(transaction=True) as pipe:
            pipe.watch(key, self._k.due)  # type: ignore[no-untyped-call]
            raw = pipe.get(key)
            score = pipe.zscore(self._k.due, deployment_id)
            if raw is None or score is None:
                pipe.multi()
                pipe.zrem(self._k.due, deployment_id)
                pipe.execute()
                return None
            try:
                record = self._parse(deployment_id, raw)
            except NewerRecordError:
                return None
            except UnreadableRecordError as exc:
                pipe.unwatch()
                self.quarantine(deployment_id, raw, str(exc))
                return None
            if record.terminal:
                # Finished, but its worker died before tidying up: finish the tidying.
                pipe.multi()
                pipe.zrem(self._k.due, deployment_id)
                pipe.zrem(self.queue_key(record.service_key), deployment_id)
                pipe.delete(self._k.job.format(id=deployment_id))
                pipe.execute()
                return None
            if float(score) > now:
                return None
            bumped = record.model_copy(update={"seq": record.seq + 1, "updated_at": now})
            pipe.multi()
            pipe.set(key, bumped.model_dump_json(), ex=self._ttl)
            pipe.zadd(self._k.due, {deployment_id: due})
            pipe.execute()
            return bumped
