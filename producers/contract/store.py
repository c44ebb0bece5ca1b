"""Deployment records in Redis: the authoritative state of every deployment.

Records live under Conveyor's own keys (not Celery's results). Every write that moves a
deployment forward is a compare-and-set on the record's ``seq``: a step message carries the seq
it was sent with, and only the message with the current seq may act. A copy redelivered after a
crash, or superseded by the recovery sweeper, finds a newer seq and does nothing. The ``due``
sorted set holds, per unfinished deployment, the time by which its next step must have run; the
sweeper re-dispatches whatever is overdue.

Every key is bounded: records, payloads and quarantined records expire after the record TTL;
the index is trimmed to that TTL on every create; a deployment leaves the due set, its
service's queue, its family's index and its payload in the same transaction that makes it
terminal.

A record that no longer validates (edited by hand, or damaged) is *quarantined*: moved to a key
of its own, out of the due set, and logged, so that no sweep and no service queue stops at it.
A record written by a newer Conveyor (a higher ``schema_version``, during a rolling upgrade) is
not damaged: readers that do not know its schema leave it alone for the workers that do.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from pydantic import BaseModel, ValidationError
from redis.exceptions import WatchError

from producers.contract.history import (
    DEFAULT_RETENTION_DAYS,
    History,
    deployment_ended,
    deployment_enqueued,
)
from producers.contract.names import (
    QUEUE,
    SELF_ACCOUNT_TTL,
    Keys,
)
from producers.contract.records import RECORD_SCHEMA, DeploymentRecord

log = logging.getLogger("conveyor.store")
M = TypeVar("M", bound=BaseModel)
# Records read per round trip by ``get_many``.
_READ_PAGE = 200

# One atomic step: the record (only if new), the index (trimmed to the TTL), the due time, the
# service queue with an arrival number from a Redis counter, and the full job payload.
_CREATE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], 'NX') then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (tonumber(ARGV[3]) - tonumber(ARGV[2])))
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[5]), ARGV[4])
if ARGV[6] ~= '' then redis.call('SET', KEYS[6], ARGV[6], 'EX', ARGV[2]) end
return 1
"""


class UnreadableRecordError(Exception):
    """Raised when a stored record does not validate and was quarantined."""


class NewerRecordError(Exception):
    """Raised when a record was written by a newer Conveyor whose schema this one lacks."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def move_aside(
    client: redis.Redis, key: str, raw: bytes | str, *, to: str, ttl: int, index: tuple[str, str]
) -> bool:
    """Move the unreadable value ``raw`` at ``key`` to ``to`` and its id out of the sorted set
    ``index`` (key, member), unless the value changed meanwhile; True when moved."""
    with client.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(key)  # type: ignore[no-untyped-call]
            current = pipe.get(key)
            if current is None or _text(current) != _text(raw):
                return False
            pipe.multi()
            pipe.set(to, raw, ex=ttl)
            pipe.delete(key)
            pipe.zrem(*index)
            pipe.execute()
        except WatchError:
            return False
    return True


class RecordStore:
    """Reads and fenced writes of deployment records."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        ttl_seconds: int = 30 * 86400,
        queue: str = QUEUE,
        history_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        self._r = client
        self._ttl = ttl_seconds
        # The fleet's own keys: fleets sharing a Redis never touch each other's deployments.
        self._k = Keys.of(queue)
        self._create = client.register_script(_CREATE)
        self.history = History(client, self._k, retention_days=history_days)

    @property
    def keys(self) -> Keys:
        """The Redis keys of this store's fleet."""
        return self._k

    @property
    def ttl(self) -> int:
        """Seconds records are kept."""
        return self._ttl

    def key(self, deployment_id: str) -> str:
        """The Redis key of a record."""
        return self._k.record.format(id=deployment_id)

    def queue_key(self, service_key: str) -> str:
        """The Redis key of a service's queue of unfinished deployments."""
        return self._k.service_queue.format(service=service_key)

    # -- parsing and quarantine ---------------------------------------------------------

    def _parse(self, deployment_id: str, raw: bytes | str) -> DeploymentRecord:
        """Validate a stored record; NewerRecordError or UnreadableRecordError when it fails."""
        try:
            return DeploymentRecord.model_validate_json(raw)
        except (ValidationError, ValueError) as exc:
            try:
                data = json.loads(raw)
            except ValueError:
                data = None
            schema = data.get("schema_version") if isinstance(data, dict) else None
            if isinstance(schema, int) and schema > RECORD_SCHEMA:
                raise NewerRecordError(
                    f"deployment {deployment_id} was recorded by a newer Conveyor (record "
                    f"schema {schema}, this one knows {RECORD_SCHEMA}); upgrade to read it"
                ) from exc
            raise UnreadableRecordError(
                f"the record of deployment {deployment_id} is unreadable: "
                f"{type(exc).__name__}; it was moved to "
                f"{self._k.quarantine.format(id=deployment_id)}"
            ) from exc

    def quarantine(self, deployment_id: str, raw: bytes | str, why: str) -> bool:
        """Move an unreadable record aside (unless it changed meanwhile); True when moved."""
        moved = move_aside(
            self._r,
            self.key(deployment_id),
            raw,
            to=self._k.quarantine.format(id=deployment_id),
            ttl=self._ttl,
            index=(self._k.due, deployment_id),
        )
        if not moved:
            return False
        log.error("quarantined an unreadable deployment record %s: %s", deployment_id, why)
        return True

    def is_quarantined(self, deployment_id: str) -> bool:
        """True when the deployment's record was moved aside as unreadable."""
        return bool(self._r.exists(self._k.quarantine.format(id=deployment_id)))

    def _read(self, deployment_id: str, raw: bytes | str) -> DeploymentRecord | None:
        """Parse ``raw``; an unreadable record is quarantined and reads as None."""
        try:
            return self._parse(deployment_id, raw)
        except UnreadableRecordError as exc:
            self.quarantine(deployment_id, raw, str(exc))
            return None

    # -- reads --------------------------------------------------------------------------

    def get(self, deployment_id: str) -> DeploymentRecord | None:
        """The record, or None when there is none (never created, expired, or quarantined).

        Raises NewerRecordError for a record this version cannot read but a newer one can.
        """
        raw = self._r.get(self.key(deployment_id))
        return None if raw is None else self._read(deployment_id, raw)

    def get_many(self, ids: list[str]) -> dict[str, DeploymentRecord | None]:
        """Records by id (None: none), a page of them per round trip.

        An id whose record a newer Conveyor wrote is left out: the caller treats it as not
        known yet, as :meth:`get`'s callers do with NewerRecordError.
        """
        found: dict[str, DeploymentRecord | None] = {}
        for start in range(0, len(ids), _READ_PAGE):
            page = ids[start : start + _READ_PAGE]
            for deployment_id, raw in zip(
                page, self._r.mget([self.key(i) for i in page]), strict=True
            ):
                try:
                    found[deployment_id] = None if raw is None else self._read(deployment_id, raw)
                except NewerRecordError:
                    continue
        return found

    def exists_in_index(self, deployment_id: str) -> bool:
        """True when the deployment was created within the record TTL (its record may be gone)."""
        return self._r.zscore(self._k.index, deployment_id) is not None

    def get_job(self, deployment_id: str) -> dict[str, Any] | None:
        """The full job payload stored apart from the record, if any."""
        raw = self._r.get(self._k.job.format(id=deployment_id))
        if raw is None:
            return None
        payload = json.loads(raw)
        return payload if isinstance(payload, dict) else None

    def recent_matching(
        self, keep: Callable[[DeploymentRecord], bool], *, limit: int = 20, scan: int = 2000
    ) -> list[DeploymentRecord]:
        """Up to ``limit`` of the newest records that ``keep`` accepts, newest first.

        Looks at the newest ``scan`` deployments at most, a page of records per round trip;
        unreadable or newer-schema records are skipped.
        """
        found: list[DeploymentRecord] = []
        page = 200
        for start in range(0, scan, page):
            ids = [_text(i) for i in self._r.zrevrange(self._k.index, start, start + page - 1)]
            if not ids:
                break
            for raw in self._r.mget([self.key(i) for i in ids]):
                if raw is None:
                    continue
                try:
                    record = DeploymentRecord.model_validate_json(raw)
                except ValueError:
                    continue
                if record.schema_version > RECORD_SCHEMA:
                    continue
                if keep(record):
                    found.append(record)
                    if len(found) >= limit:
                        return found
        return found

    def recent(self, limit: int = 20) -> list[DeploymentRecord]:
        """The newest readable records, newest first."""
        records = []
        for raw_id in self._r.zrevrange(self._k.index, 0, max(0, limit - 1)):
            try:
                record = self.get(_text(raw_id))
            except NewerRecordError:
                continue
            if record is not None:
                records.append(record)
        return records

    def unfinished_in_family(self, family: str) -> list[DeploymentRecord]:
        """The unfinished deployments of a task definition family, oldest commit first.

        Read from the family's index, one round trip for the records; members found finished,
        vanished or quarantined are dropped from it (a crash or an expiry heals itself). Raises
        NewerRecordError for a member this version cannot read: a caller that must not miss
        any (a cleanup) then does nothing rather than guess.
        """
        key = self._k.family.format(family=family)
        ids = [_text(i) for i in self._r.zrange(key, 0, -1)]
        if not ids:
            return []
        found: list[DeploymentRecord] = []
        for deployment_id, raw in zip(ids, self._r.mget([self.key(i) for i in ids]), strict=True):
            record = None if raw is None else self._read(deployment_id, raw)
            if record is None or record.terminal:
                self._r.zrem(key, deployment_id)
            else:
                found.append(record)
        return found

    # -- writes -------------------------------------------------------------------------

    def create(
        self,
        record: DeploymentRecord,
        due: float,
        job: dict[str, Any] | None = None,
        *,
        by: str | None = None,
    ) -> None:
        """Store a new record; it must be done by ``due`` or the sweeper dispatches it.

        The record joins its service's queue in arrival order as Redis sees it (a counter), not
        by the producer's clock, which may be off. ``job`` is the full payload when the record
        holds a redacted copy; it is kept apart and deleted when the deployment ends. With
        ``by``, the audit trail notes who enqueued it (once, also when a retry finds the record
        its lost attempt made).
        """
        keys, args = self._create_args(record, due, job)
        created = self._create(keys=keys, args=args)
        if by is not None:
            self.history.note(
                deployment_enqueued(record, by), once=f"{record.id}:enqueued", now=record.created_at
            )
        if not created:
            raise ValueError(f"deployment {record.id} already exists")

    def create_in(self, pipe: Any, record: DeploymentRecord, due: float) -> None:
        """Queue the creation of ``record`` on a transaction (MULTI already started).

        It takes effect only if the transaction does, so a write it depends on (a release
        moving to the record's wave) and the record itself happen together or not at all. An
        existing record is left as it is.
        """
        keys, args = self._create_args(record, due, None)
        self._create(keys=keys, args=args, client=pipe)

    def _create_args(
        self, record: DeploymentRecord, due: float, job: dict[str, Any] | None
    ) -> tuple[list[str], list[Any]]:
        keys = [
            self.key(record.id),
            self._k.index,
            self._k.due,
            self.queue_key(record.service_key),
            self._k.queue_counter,
            self._k.job.format(id=record.id),
        ]
        args = [
            record.model_dump_json(),
            self._ttl,
            record.created_at,
            record.id,
            due,
            "" if job is None else json.dumps(job),
        ]
        return keys, args

    def commit(self, record: DeploymentRecord, *, expected_seq: int, due: float | None) -> bool:
        """Write ``record`` if the stored one still has ``expected_seq``; False otherwise.

        ``due`` is when the next step must have run. None means the deployment is finished: in
        the same transaction it leaves the due set and its service's queue, and its full job
        payload (which may hold environment values) is deleted, so a crash right after the
        commit cannot leave any of them behind.
        """
        key = self.key(record.id)
        with self._r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                raw = pipe.get(key)
                if raw is None:
                    return False
                try:
                    stored = self._parse(record.id, raw)
                except (UnreadableRecordError, NewerRecordError):
                    return False
                if stored.seq != expected_seq:
                    return False
                pipe.multi()
                pipe.set(key, record.model_dump_json(), ex=self._ttl)
                family = self._k.family.format(family=record.family) if record.family else None
                if due is None:
                    # The verdict joins the audit trail with the commit that makes it.
                    self.history.note(
                        deployment_ended(record),
                        once=f"{record.id}:verdict",
                        now=record.finished_at or record.updated_at,
                        pipe=pipe,
                    )
                    pipe.zrem(self._k.due, record.id)
                    pipe.zrem(self.queue_key(record.service_key), record.id)
                    pipe.delete(
                        self._k.job.format(id=record.id), self._k.attempts.format(id=record.id)
                    )
                    if family is not None:
                        pipe.zrem(family, record.id)
                else:
                    pipe.zadd(self._k.due, {record.id: due})
                    if family is not None:
                        # From the commit that names the family (before anything is registered)
                        # until the one that ends the deployment.
                        pipe.zadd(family, {record.id: record.updated_at})
                        pipe.expire(family, self._ttl)
                pipe.execute()
            except WatchError:
                return False
        return True

    def modify(
        self, deployment_id: str, change: Callable[[DeploymentRecord], DeploymentRecord | None]
    ) -> DeploymentRecord | None:
        """Apply ``change`` atomically (retrying on contention); None from it means no write."""

        def step(raw: Any) -> tuple[DeploymentRecord | None, bool]:
            current = self._read(deployment_id, raw)
            changed = None if current is None else change(current)
            return changed, changed is not None

        return compare_and_set(self._r, self.key(deployment_id), step, self._ttl)

    def set_due(self, deployment_id: str, due: float) -> None:
        """Set when the deployment's next step must have run."""
        self._r.zadd(self._k.due, {deployment_id: due})

    def self_account(self) -> str | None:
        """The account of the workers' own credentials, as a worker published it."""
        raw = self._r.get(self._k.self_account)
        return None if raw is None else _text(raw)

    def publish_self_account(self, account: str) -> None:
        """Publish the account of this worker's own credentials for producers."""
        self._r.set(self._k.self_account, account, ex=SELF_ACCOUNT_TTL)

    def leave_queue(self, record: DeploymentRecord) -> None:
        """Release the service: remove a finished deployment from its queue."""
        self._r.zrem(self.queue_key(record.service_key), record.id)

    def forget_job(self, deployment_id: str) -> None:
        """Delete the full job payload of a finished deployment."""
        self._r.delete(self._k.job.format(id=deployment_id))


def wall_clock() -> float:
    """Seconds since the epoch; records use wall time so that producers can read them."""
    return time.time()


def compare_and_set(
    client: redis.Redis,
    key: str,
    change: Callable[[Any], tuple[M | None, bool]],
    ttl: int,
    then: Callable[[Any, M], None] | None = None,
) -> M | None:
    """Rewrite the JSON model at ``key`` atomically, retrying when another writer got there first.

    ``change`` gets the stored bytes and returns (the model to return, whether to write it);
    ``then`` adds commands to the same transaction. None when the key does not exist.
    """
    while True:
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                raw = pipe.get(key)
                if raw is None:
                    return None
                result, write = change(raw)
                if result is None or not write:
                    return result
                pipe.multi()
                pipe.set(key, result.model_dump_json(), ex=ttl)
                if then is not None:
                    then(pipe, result)
                pipe.execute()
            except WatchError:
                continue
            return result
