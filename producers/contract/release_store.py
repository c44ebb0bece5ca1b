"""Release records in Redis: what producers do to a release, and what both sides read.

A producer creates a release (with its first wave), reads and lists releases, asks for a
cancel and records a person's answer to a release waiting for one. Everything that moves a
release on (ends of deployments, the next wave, metric gates and their rollbacks, the verdict)
is the worker's: :class:`worker.release_store.WorkerReleaseStore`, a subclass of the store
here, which a producer asks to act through a queue message (``AdvanceMessage``).

Order of effects that makes crashes and races harmless: a wave's deployments are created (each
an ordinary deployment, due and queued like any other, with an id derived from the release id,
so creating one twice changes nothing) in the same transaction that records the release (the
first wave) or moves it to that wave, a compare-and-set on the release record; then the first
step of each of the wave's deployments is sent. A crash after the transaction leaves them due:
the recovery sweeper sends them. A cancel request and an answer are writes to the same record,
so they are serialized with a move to the next wave: either the move happened first (its
deployments are the current wave, and the cancel cancels them) or it never happens (its
transaction fails and the retry sees the cancel), so no deployment of a later wave exists after
a cancel. The transaction that records a cancel (or a verdict) also marks the release stopped,
so that a worker ends a queued deployment of it as ``cancelled`` before its first step acts.

A release record that no longer validates is quarantined (moved to a key of its own and out of
the active set), so that no list or status stops at a damaged release. A record written by a
newer Conveyor is left alone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, Literal

import redis
from pydantic import ValidationError

from producers.contract.dispatch import TaskSender, dispatch
from producers.contract.enums import DeploymentState, JobKind
from producers.contract.history import release_ended, release_enqueued
from producers.contract.jobs import UpdateServiceJob
from producers.contract.kinds import FIRST_STEP
from producers.contract.names import KEY_PREFIX, PRIORITY_NEW, QUEUE
from producers.contract.records import DeploymentRecord, FreezeOverride
from producers.contract.releases import (
    GATED_RELEASE_SCHEMA,
    RELEASE_SCHEMA,
    ReleaseJob,
    ReleaseRecord,
    WaveApproval,
)
from producers.contract.store import (
    NewerRecordError,
    RecordStore,
    UnreadableRecordError,
    _text,
    compare_and_set,
    move_aside,
)

log = logging.getLogger("conveyor.store")

RELEASE_KEY = KEY_PREFIX + "release:{id}"  # JSON ReleaseRecord
RELEASES_KEY = KEY_PREFIX + "releases"  # zset: release id -> created time (trimmed to TTL)
ACTIVE_RELEASES_KEY = KEY_PREFIX + "releases:active"  # zset: unfinished release id -> created
RELEASE_QUARANTINE_KEY = KEY_PREFIX + "quarantine:release:{id}"  # unreadable, moved aside
# Set (to the reason) once a release's queued deployments may no longer start: cancelled or ended.
RELEASE_STOPPED_KEY = KEY_PREFIX + "release:{id}:stopped"


def _stopped_reason(release: ReleaseRecord) -> str | None:
    """Why none of the release's queued deployments may start any more (None: they may)."""
    if release.cancel_requested_at:
        return "cancelled with its release before it started"
    if release.terminal:
        return f"not started: its release had already ended {release.state.value}"
    return None


def _check_jobs(release: ReleaseRecord) -> None:
    """ValueError unless every deployment of the release has its job, naming its service:
    without one the release could neither move to that wave nor be shown."""
    for ids in release.waves:
        for deployment_id in ids:
            job = release.jobs.get(deployment_id)
            if not isinstance(job, dict) or not all(
                isinstance(job.get(field), str) for field in ("cluster", "service")
            ):
                raise ValueError(f"deployment {deployment_id} has no job with its service")


def pre_deploy_ids(release: ReleaseRecord, wave: int) -> list[str]:
    """The deployments of ``wave`` whose job runs a pre-deploy task."""
    return [i for i in release.waves[wave] if release.jobs.get(i, {}).get("pre_deploy")]


def held_at_start(release: ReleaseRecord, wave: int) -> list[str]:
    """The deployments of ``wave`` that wait for its pre-deploy tasks: every other one, when
    the wave has any (none otherwise)."""
    tasks = pre_deploy_ids(release, wave)
    return [i for i in release.waves[wave] if i not in tasks] if tasks else []


def new_deployment(
    job: UpdateServiceJob,
    deployment_id: str,
    *,
    now: float,
    account: str | None,
    release_id: str | None = None,
    release_move_on_at: str | None = None,
) -> DeploymentRecord:
    """The queued record of a new update-existing deployment."""
    return DeploymentRecord(
        id=deployment_id,
        kind=JobKind.UPDATE_EXISTING,
        step=FIRST_STEP[JobKind.UPDATE_EXISTING],
        # Records are read by anyone with `conveyor status`: environment values and secret
        # references are masked; the full job is kept apart (JOB_KEY) while it is needed.
        job=job.redacted(),
        cluster=job.cluster,
        service=job.service,
        account=account,
        release_id=release_id,
        release_move_on_at=release_move_on_at,
        created_at=now,
        updated_at=now,
    )


def _gates_of(job: ReleaseJob) -> list[dict[str, Any] | None]:
    """The gate (as JSON) of each wave of ``job``; empty when it has none."""
    gates = [job.gate_of(w) for w in range(len(job.waves))]
    if all(g is None for g in gates):
        return []
    return [None if g is None else g.model_dump(mode="json") for g in gates]


def _release_schema(job: ReleaseJob, gates: list[dict[str, Any] | None]) -> int:
    """The schema a new release record is written with: GATED_RELEASE_SCHEMA when the release
    has a metric gate, or an entry with a pre-deploy task or a bake gate; 1 otherwise.

    A Conveyor that knows only schema 1 would drop the fields a task's wave is followed by
    (held-back entries, passed tasks, the failed task) and count the held entries lost,
    and could not create a wave whose jobs carry a task or a bake gate: it leaves such a
    release alone instead."""
    entries = [entry for wave in job.waves for entry in wave]
    newer = any(e.pre_deploy is not None or e.bake_gate is not None for e in entries)
    return GATED_RELEASE_SCHEMA if gates or newer else 1


def interleave_by_account(records: list[DeploymentRecord]) -> list[DeploymentRecord]:
    """The records one account after another in turn, each account's in their own order."""
    by_account: dict[str | None, list[DeploymentRecord]] = {}
    for record in records:
        by_account.setdefault(record.account, []).append(record)
    lanes = list(by_account.values())
    longest = max((len(lane) for lane in lanes), default=0)
    return [lane[i] for i in range(longest) for lane in lanes if i < len(lane)]


class ReleaseStore:
    """Reads and fenced writes of release records: create one (and dispatch its first wave),
    read and list them, ask for a cancel, record an answer. Moving a release on is the
    worker's (:class:`worker.release_store.WorkerReleaseStore`)."""

    def __init__(
        self,
        client: redis.Redis,
        records: RecordStore,
        *,
        ttl_seconds: int,
        recovery_grace: float,
        queue: str = QUEUE,
    ) -> None:
        self._r = client
        self._records = records
        self._ttl = ttl_seconds
        self._grace = recovery_grace
        self._queue = queue
        self._k = records.keys

    def key(self, release_id: str) -> str:
        """The Redis key of a release record."""
        return self._k.release.format(id=release_id)

    # -- parsing and quarantine ---------------------------------------------------------

    def _parse(self, release_id: str, raw: bytes | str) -> ReleaseRecord:
        """Validate a stored release; NewerRecordError or UnreadableRecordError when it fails."""
        try:
            data = json.loads(raw)
            schema = data.get("schema_version") if isinstance(data, dict) else None
            if isinstance(schema, int) and schema > RELEASE_SCHEMA:
                raise NewerRecordError(
                    f"release {release_id} was recorded by a newer Conveyor (release schema "
                    f"{schema}, this one knows {RELEASE_SCHEMA}); upgrade to read it"
                )
            release = ReleaseRecord.model_validate(data)
            _check_jobs(release)
        except (ValidationError, ValueError) as exc:
            raise UnreadableRecordError(
                f"the record of release {release_id} is unreadable: {type(exc).__name__}; it "
                f"was moved to {self._k.release_quarantine.format(id=release_id)}"
            ) from exc
        return release

    def quarantine(self, release_id: str, raw: bytes | str, why: str) -> bool:
        """Move an unreadable release record aside (unless it changed meanwhile) and out of
        the active set; True when moved."""
        moved = move_aside(
            self._r,
            self.key(release_id),
            raw,
            to=self._k.release_quarantine.format(id=release_id),
            ttl=self._ttl,
            index=(self._k.active_releases, release_id),
        )
        if not moved:
            return False
        log.error("quarantined an unreadable release record %s: %s", release_id, why)
        return True

    def is_quarantined(self, release_id: str) -> bool:
        """True when the release's record was moved aside as unreadable."""
        return bool(self._r.exists(self._k.release_quarantine.format(id=release_id)))

    def _read(self, release_id: str, raw: bytes | str) -> ReleaseRecord | None:
        """Parse ``raw``; an unreadable record is quarantined and reads as None."""
        try:
            return self._parse(release_id, raw)
        except UnreadableRecordError as exc:
            self.quarantine(release_id, raw, str(exc))
            return None

    # -- reads --------------------------------------------------------------------------

    def get(self, release_id: str) -> ReleaseRecord | None:
        """The release's record, or None (never created, expired, or quarantined).

        Raises NewerRecordError for a record this version cannot read but a newer one can.
        """
        raw = self._r.get(self.key(release_id))
        return None if raw is None else self._read(release_id, raw)

    def recent(self, limit: int = 20) -> list[ReleaseRecord]:
        """The newest readable release records, newest first."""
        return self.listing(limit)[0]

    def listing(self, limit: int = 20) -> tuple[list[ReleaseRecord], list[str]]:
        """The newest readable release records, newest first, and the ids among the newest
        ``limit`` that cannot be shown (quarantined as unreadable, or of a newer Conveyor).

        Two round trips for the records; unreadable ones found on the way are quarantined.
        """
        ids = [_text(i) for i in self._r.zrevrange(self._k.releases, 0, max(0, limit - 1))]
        if not ids:
            return [], []
        raws = self._r.mget([self.key(i) for i in ids])
        found: list[ReleaseRecord] = []
        skipped: list[str] = []
        missing: list[str] = []
        for release_id, raw in zip(ids, raws, strict=True):
            if raw is None:
                missing.append(release_id)
                continue
            try:
                found.append(self._parse(release_id, raw))
            except NewerRecordError:
                skipped.append(release_id)
            except UnreadableRecordError as exc:
                self.quarantine(release_id, raw, str(exc))
                skipped.append(release_id)
        if missing:
            moved = self._r.mget([self._k.release_quarantine.format(id=i) for i in missing])
            skipped += [i for i, raw in zip(missing, moved, strict=True) if raw is not None]
        order = {release_id: n for n, release_id in enumerate(ids)}
        return found, sorted(skipped, key=order.__getitem__)

    def _account(self, job: UpdateServiceJob) -> str | None:
        if job.role_arn:
            return job.role_arn.split(":")[4]
        return self._records.self_account()

    def _wave_records(
        self, release: ReleaseRecord, wave: int, now: float, only: list[str] | None = None
    ) -> list[DeploymentRecord]:
        """The queued records of the wave's deployments (``only`` these, if given; not stored).

        Those the wave holds back for its pre-deploy tasks are left out: they are created when
        the tasks passed (:func:`worker.release_store.decide_held_back`)."""
        records = []
        held = set(release.held_back) if only is None else set()
        for deployment_id in only if only is not None else release.waves[wave]:
            if deployment_id in held:
                continue
            job = UpdateServiceJob.model_validate(release.jobs[deployment_id], strict=False)
            records.append(
                new_deployment(
                    job,
                    deployment_id,
                    now=now,
                    account=self._account(job),
                    release_id=release.id,
                    release_move_on_at=release.move_on_at,
                )
            )
        return records

    def _create_in(self, pipe: Any, records: list[DeploymentRecord]) -> None:
        """Queue the creation of a wave's records on a transaction (existing ones stay)."""
        for record in records:
            self._records.create_in(pipe, record, due=record.created_at + self._grace)

    def create(
        self,
        job: ReleaseJob,
        release_id: str,
        now: float,
        *,
        retried: bool = False,
        by: str | None = None,
        freeze_override: FreezeOverride | None = None,
    ) -> ReleaseRecord:
        """Record a new release and create its first wave (not yet dispatched).

        ValueError when ``release_id`` is taken, unless ``retried``: then the release found
        there is the caller's own, recorded by an attempt whose answer was lost; its first wave
        is completed (creating a deployment twice is refused) and it is returned.
        """
        ids = job.deployment_ids(release_id)
        by_id = {
            deployment_id: wave_job
            for wave_ids, wave_jobs in zip(ids, job.waves, strict=True)
            for deployment_id, wave_job in zip(wave_ids, wave_jobs, strict=True)
        }
        # The release record keeps masked jobs; each full job waits under its deployment's job
        # key, where the worker reads it once the deployment's wave starts.
        jobs = {deployment_id: wave_job.redacted() for deployment_id, wave_job in by_id.items()}
        gates = _gates_of(job)
        release = ReleaseRecord(
            id=release_id,
            name=job.release,
            fail_fast=job.fail_fast,
            approve_before=job.approve_before,
            approval_timeout_minutes=job.approval_timeout_minutes,
            max_failures=job.max_failures,
            max_failure_percent=job.max_failure_percent,
            move_on_at=job.move_on_at,
            freeze_override=freeze_override,
            gates=gates,
            schema_version=_release_schema(job, gates),
            waves=ids,
            jobs=jobs,
            created_at=now,
            updated_at=now,
        )
        release = release.model_copy(update={"held_back": held_at_start(release, 0)})
        with self._r.pipeline(transaction=True) as pipe:
            pipe.set(self.key(release_id), release.model_dump_json(), ex=self._ttl, nx=True)
            for deployment_id, wave_job in by_id.items():
                pipe.set(
                    self._k.job.format(id=deployment_id),
                    json.dumps(wave_job.model_dump(mode="json")),
                    ex=self._ttl,
                    nx=True,
                )
            pipe.zadd(self._k.releases, {release_id: now})
            pipe.zremrangebyscore(self._k.releases, "-inf", f"({now - self._ttl}")
            pipe.zadd(self._k.active_releases, {release_id: now})
            # The first wave in the same transaction: a release is never without its wave.
            self._create_in(pipe, self._wave_records(release, 0, now))
            if by is not None:
                self._records.history.note(
                    release_enqueued(release, by), once=f"{release_id}:enqueued", now=now, pipe=pipe
                )
            created, *_ = pipe.execute()
        if not created:
            # A retried create finds its own release, recorded (with its first wave, in the
            # same transaction) by an attempt whose answer was lost.
            existing = self.get(release_id) if retried else None
            if existing is None:
                raise ValueError(f"release {release_id} already exists")
            release = existing
        return release

    def dispatch_wave(self, release: ReleaseRecord, sender: TaskSender) -> None:
        """Send the first step of every queued deployment of the release's current wave.

        The messages go out one account after another in turn (round robin), not in file order:
        each account's API buckets are its own, so every account starts deploying at once
        instead of waiting for the first steps of the accounts listed before it. Sending twice
        is harmless: a step message is fenced by the record's seq.
        """
        found = self._records.get_many(release.waves[release.wave])
        queued = [r for r in found.values() if r is not None and r.state is DeploymentState.QUEUED]
        for record in interleave_by_account(queued):
            dispatch(
                sender, record.id, record.step, record.seq, queue=self._queue, priority=PRIORITY_NEW
            )

    def request_cancel(
        self, release_id: str, now: float | Callable[[], float], *, by: str | None = None
    ) -> ReleaseRecord | None:
        """Mark the release as to be cancelled; returns it (None when there is none).

        ``now`` may be a clock, read in the very transaction that writes the cancel: the time
        recorded is then when the cancel took effect. A time taken before (when the person
        asked) would be earlier than a wave the release started while the request was still
        waiting for Redis (a failover), and the record would claim the release started that
        wave after its cancel.
        """

        def change(release: ReleaseRecord) -> ReleaseRecord | None:
            if release.terminal or release.cancel_requested_at:
                return None
            at = now() if callable(now) else now
            return release.model_copy(update={"cancel_requested_at": at, "updated_at": at})

        def note(pipe: Any, release: ReleaseRecord) -> None:
            if by is not None and release.cancel_requested_at is not None:
                event = {"event": "cancel requested", "id": release_id, "by": by}
                self._records.history.note(
                    event, once=f"{release_id}:cancel", now=release.cancel_requested_at, pipe=pipe
                )

        return self._modify(release_id, change, note)

    def answer_wave(
        self, release_id: str, action: Literal["CONTINUE", "REJECT"], by: str, now: float
    ) -> ReleaseRecord | None:
        """Record a person's answer to a release waiting before a wave; returns the release
        (None when there is none). ValueError when it is not waiting for one: nothing to
        answer. A second answer for the same wave changes nothing (the first stands)."""

        def change(release: ReleaseRecord) -> ReleaseRecord | None:
            wave = release.awaiting_wave
            if wave is None:
                where = (
                    f"it has ended {release.state.value}"
                    if release.terminal
                    else f"it is at wave {release.wave + 1} of {len(release.waves)}"
                )
                raise ValueError(f"release {release_id} is not waiting for an approval ({where})")
            if release.approval_of(wave) is not None:
                return None
            answer = WaveApproval(wave=wave, action=action, by=by, at=now)
            return release.model_copy(
                update={"approvals": [*release.approvals, answer], "updated_at": now}
            )

        def note(pipe: Any, release: ReleaseRecord) -> None:
            answer = release.approval_of(release.wave + 1)
            if answer is not None:
                event = {
                    "event": "approved" if answer.action == "CONTINUE" else "rejected",
                    "id": release_id,
                    "wave": answer.wave + 1,
                    "by": answer.by,
                }
                self._records.history.note(
                    event, once=f"{release_id}:wave{answer.wave}", now=answer.at, pipe=pipe
                )

        return self._modify(release_id, change, note)

    def _modify(
        self,
        release_id: str,
        change: Callable[[ReleaseRecord], ReleaseRecord | None],
        also: Callable[[Any, ReleaseRecord], None] | None = None,
    ) -> ReleaseRecord | None:
        """Apply ``change`` atomically; None from it leaves the record as it is. ``also`` adds
        commands to the transaction that writes the change.

        None when there is no record (expired, or quarantined here as unreadable); raises
        NewerRecordError for a record of a newer Conveyor.
        """
        unreadable: list[tuple[Any, str]] = []

        def step(raw: Any) -> tuple[ReleaseRecord | None, bool]:
            unreadable.clear()
            try:
                current = self._parse(release_id, raw)
            except UnreadableRecordError as exc:
                unreadable.append((raw, str(exc)))
                return None, False
            changed = change(current)
            return (current, False) if changed is None else (changed, True)

        def finished(pipe: Any, release: ReleaseRecord) -> None:
            if also is not None:
                also(pipe, release)
            if release.terminal:
                self._records.history.note(
                    release_ended(release),
                    once=f"{release_id}:verdict",
                    now=release.finished_at or release.updated_at,
                    pipe=pipe,
                )
            stopped = _stopped_reason(release)
            if stopped is not None:
                pipe.set(self._k.release_stopped.format(id=release_id), stopped, ex=self._ttl)
            if release.terminal:
                pipe.zrem(self._k.active_releases, release_id)
                # Waves that never started: their full jobs (values included) go now.
                for wave in release.waves[release.wave + 1 :]:
                    for deployment_id in wave:
                        pipe.delete(self._k.job.format(id=deployment_id))

        result = compare_and_set(self._r, self.key(release_id), step, self._ttl, finished)
        for raw, why in unreadable:
            self.quarantine(release_id, raw, why)
        return result
