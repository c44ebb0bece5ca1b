"""Release records in Redis, and moving a release from wave to wave.

Order of effects that makes crashes harmless: a wave's deployments are created (each an
ordinary deployment, due and queued like any other, with an id derived from the release id, so
creating one twice is refused and changes nothing), then the release record moves to that wave
with a compare-and-set, then the first step of each of the wave's deployments is sent. A crash
after the creation leaves them due: the recovery sweeper sends them. Every deployment that ends
advances its release; the sweeper also advances every active release, so a worker that dies
between a deployment's end and the advance delays a release by one sweep, never stops it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

from producers.contract.dispatch import TaskSender, dispatch
from producers.contract.enums import FIRST_STEP, DeploymentState, JobKind
from producers.contract.jobs import UpdateServiceJob
from producers.contract.names import (
    JOB_KEY,
    KEY_PREFIX,
    PRIORITY_NEW,
    QUEUE,
)
from producers.contract.records import DeploymentRecord
from producers.contract.releases import (
    RELEASE_OK,
    ReleaseJob,
    ReleaseRecord,
    ReleaseState,
)
from producers.contract.store import NewerRecordError, RecordStore, compare_and_set

RELEASE_KEY = KEY_PREFIX + "release:{id}"  # JSON ReleaseRecord
RELEASES_KEY = KEY_PREFIX + "releases"  # zset: release id -> created time (trimmed to TTL)
ACTIVE_RELEASES_KEY = KEY_PREFIX + "releases:active"  # zset: unfinished release id -> created
# How many superseded deployments in a row a release follows to find where its change went.
MAX_CARRIERS = 20


def new_deployment(
    job: UpdateServiceJob,
    deployment_id: str,
    *,
    now: float,
    account: str | None,
    release_id: str | None = None,
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
        created_at=now,
        updated_at=now,
    )


def interleave_by_account(records: list[DeploymentRecord]) -> list[DeploymentRecord]:
    """The records one account after another in turn, each account's in their own order."""
    by_account: dict[str | None, list[DeploymentRecord]] = {}
    for record in records:
        by_account.setdefault(record.account, []).append(record)
    lanes = list(by_account.values())
    longest = max((len(lane) for lane in lanes), default=0)
    return [lane[i] for i in range(longest) for lane in lanes if i < len(lane)]


class ReleaseStore:
    """Reads and fenced writes of release records; creates and dispatches their waves."""

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

    @staticmethod
    def key(release_id: str) -> str:
        """The Redis key of a release record."""
        return RELEASE_KEY.format(id=release_id)

    def get(self, release_id: str) -> ReleaseRecord | None:
        """The release's record, or None."""
        raw = self._r.get(self.key(release_id))
        return None if raw is None else ReleaseRecord.model_validate_json(raw)

    def recent(self, limit: int = 20) -> list[ReleaseRecord]:
        """The newest release records, newest first (one round trip for the records)."""
        ids = self._r.zrevrange(RELEASES_KEY, 0, max(0, limit - 1))
        if not ids:
            return []
        raws = self._r.mget([self.key(i.decode() if isinstance(i, bytes) else str(i)) for i in ids])
        return [ReleaseRecord.model_validate_json(raw) for raw in raws if raw is not None]

    def active(self, limit: int = 100) -> list[str]:
        """Ids of releases not finished yet, oldest first."""
        ids = self._r.zrange(ACTIVE_RELEASES_KEY, 0, limit - 1)
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    def _account(self, job: UpdateServiceJob) -> str | None:
        if job.role_arn:
            return job.role_arn.split(":")[4]
        return self._records.self_account()

    def _create_wave(self, release: ReleaseRecord, wave: int, now: float) -> list[DeploymentRecord]:
        """Create the wave's deployments (those not created yet); return all of the wave's."""
        created = []
        for deployment_id in release.waves[wave]:
            job = UpdateServiceJob.model_validate(release.jobs[deployment_id], strict=False)
            record = new_deployment(
                job, deployment_id, now=now, account=self._account(job), release_id=release.id
            )
            try:
                self._records.create(record, due=now + self._grace)
            except ValueError:
                existing = self._records.get(deployment_id)
                if existing is not None:
                    record = existing
            created.append(record)
        return created

    def create(
        self, job: ReleaseJob, release_id: str, now: float, *, retried: bool = False
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
        release = ReleaseRecord(
            id=release_id,
            name=job.release,
            fail_fast=job.fail_fast,
            waves=ids,
            jobs=jobs,
            created_at=now,
            updated_at=now,
        )
        with self._r.pipeline(transaction=True) as pipe:
            pipe.set(self.key(release_id), release.model_dump_json(), ex=self._ttl, nx=True)
            for deployment_id, wave_job in by_id.items():
                pipe.set(
                    JOB_KEY.format(id=deployment_id),
                    json.dumps(wave_job.model_dump(mode="json")),
                    ex=self._ttl,
                    nx=True,
                )
            pipe.zadd(RELEASES_KEY, {release_id: now})
            pipe.zremrangebyscore(RELEASES_KEY, "-inf", f"({now - self._ttl}")
            pipe.zadd(ACTIVE_RELEASES_KEY, {release_id: now})
            created, *_ = pipe.execute()
        if not created:
            existing = self.get(release_id) if retried else None
            if existing is None:
                raise ValueError(f"release {release_id} already exists")
            release = existing
        self._create_wave(release, 0, now)
        return release

    def dispatch_wave(self, release: ReleaseRecord, sender: TaskSender) -> None:
        """Send the first step of every queued deployment of the release's current wave.

        The messages go out one account after another in turn (round robin), not in file order:
        each account's API buckets are its own, so every account starts deploying at once
        instead of waiting for the first steps of the accounts listed before it. Sending twice
        is harmless: a step message is fenced by the record's seq.
        """
        queued: list[DeploymentRecord] = []
        for deployment_id in release.waves[release.wave]:
            try:
                record = self._records.get(deployment_id)
            except NewerRecordError:
                continue
            if record is not None and record.state is DeploymentState.QUEUED:
                queued.append(record)
        for record in interleave_by_account(queued):
            dispatch(
                sender, record.id, record.step, record.seq, queue=self._queue, priority=PRIORITY_NEW
            )

    def request_cancel(self, release_id: str, now: float) -> ReleaseRecord | None:
        """Mark the release as to be cancelled; returns it (None when there is none)."""
        return self._modify(
            release_id,
            lambda r: (
                None
                if r.terminal or r.cancel_requested_at
                else r.model_copy(update={"cancel_requested_at": now, "updated_at": now})
            ),
        )

    def _modify(
        self, release_id: str, change: Callable[[ReleaseRecord], ReleaseRecord | None]
    ) -> ReleaseRecord | None:
        """Apply ``change`` atomically; None from it leaves the record as it is."""

        def step(raw: Any) -> tuple[ReleaseRecord | None, bool]:
            current = ReleaseRecord.model_validate_json(raw)
            changed = change(current)
            return (current, False) if changed is None else (changed, True)

        def finished(pipe: Any, release: ReleaseRecord) -> None:
            if release.terminal:
                pipe.zrem(ACTIVE_RELEASES_KEY, release_id)
                # Waves that never started: their full jobs (values included) go now.
                for wave in release.waves[release.wave + 1 :]:
                    for deployment_id in wave:
                        pipe.delete(JOB_KEY.format(id=deployment_id))

        return compare_and_set(self._r, self.key(release_id), step, self._ttl, finished)

    def _carried_outcome(self, record: DeploymentRecord) -> str | None:
        """The outcome a finished deployment counts as in its release; None: not known yet.

        A superseded deployment's change went out with the newer deployment that carried it:
        it counts as that one ended (following a chain of carriers), and not before, so the
        next wave never starts before the change is live.
        """
        seen = {record.id}
        while record.state is DeploymentState.SUPERSEDED and record.superseded_by:
            carrier_id = record.superseded_by
            if carrier_id in seen or len(seen) > MAX_CARRIERS:
                return "lost"
            seen.add(carrier_id)
            try:
                carrier = self._records.get(carrier_id)
            except NewerRecordError:
                return None
            if carrier is None:
                return "lost"
            if not carrier.terminal:
                return None
            record = carrier
        return record.state.value

    def advance(
        self, release_id: str, sender: TaskSender, clock: Callable[[], float]
    ) -> ReleaseRecord | None:
        """Record the ends of the current wave's deployments; when all have ended, start the
        next wave (or give the release its verdict). Safe to call any number of times.

        ``clock`` is read on every attempt: an attempt retried after losing a race must not
        stamp the next wave with a time from before the ends it saw.
        """
        started: list[ReleaseRecord] = []

        def step(release: ReleaseRecord) -> ReleaseRecord | None:
            started.clear()
            now = clock()
            current = release.waves[release.wave]
            outcomes = dict(release.outcomes)
            for deployment_id in current:
                try:
                    record = self._records.get(deployment_id)
                except NewerRecordError:
                    continue
                if record is None:
                    outcomes.setdefault(deployment_id, "lost")
                elif record.terminal:
                    outcome = self._carried_outcome(record)
                    if outcome is not None:
                        outcomes[deployment_id] = outcome
            update: dict[str, Any] = {"outcomes": outcomes, "updated_at": now}
            if not all(i in outcomes for i in current):
                return None if outcomes == release.outcomes else release.model_copy(update=update)
            bad = [
                i
                for ids in release.waves
                for i in ids
                if i in outcomes and outcomes[i] not in RELEASE_OK
            ]
            last = release.wave + 1 >= len(release.waves)
            if release.cancel_requested_at:
                update.update(
                    state=ReleaseState.CANCELLED,
                    reason="cancelled on request; later waves were not started",
                    finished_at=now,
                )
            elif bad and (release.fail_fast or last):
                skipped = sum(len(ids) for ids in release.waves[release.wave + 1 :])
                update.update(
                    state=ReleaseState.FAILED,
                    reason=f"{len(bad)} deployment(s) did not succeed: {', '.join(bad[:5])}"
                    + (f"; {skipped} not started (fail fast)" if skipped else ""),
                    finished_at=now,
                )
            elif last:
                update.update(state=ReleaseState.SUCCEEDED, finished_at=now)
            else:
                moved = release.model_copy(update={**update, "wave": release.wave + 1})
                self._create_wave(moved, moved.wave, now)
                started.append(moved)
                return moved
            return release.model_copy(update=update)

        result = self._modify(release_id, step)
        for release in started:
            if result is not None and result.wave == release.wave:
                self.dispatch_wave(result, sender)
        return result
