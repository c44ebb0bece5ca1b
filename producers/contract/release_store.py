"""Release records in Redis, and moving a release from wave to wave.

Order of effects that makes crashes and races harmless: a wave's deployments are created (each
an ordinary deployment, due and queued like any other, with an id derived from the release id,
so creating one twice changes nothing) in the same transaction that moves the release record to
that wave, a compare-and-set on the release record; then the first step of each of the wave's
deployments is sent. A crash after the transaction leaves them due: the recovery sweeper sends
them. A cancel request is a write to the same record, so a cancel and a move to the next wave
are serialized: either the move happened first (its deployments are the current wave, and the
cancel cancels them) or it never happens (its transaction fails and the retry sees the cancel),
so no deployment of a later wave exists after a cancel. Workers also end a queued deployment of
a cancelled or finished release as ``cancelled`` before its first step acts. Every deployment
that ends advances its release; the sweeper also advances every active release, so a worker
that dies between a deployment's end and the advance delays a release by one sweep, never stops
it.

Metric gates: once a wave with a gate has passed, the move that starts its gate run (a
compare-and-set) precedes the measuring message, sent after it; each measurement is appended by
a compare-and-set that accepts only the index the run expects, so a message delivered twice is
counted once, and a message lost with a worker is sent again by an advance (the sweeper's) once
the next measurement is overdue by the recovery grace. A failed (or rejected) gate records the
rollbacks it starts in the same transaction that creates their deployments (ids derived from
the rolled-back deployment's, so creating one twice changes nothing); they are dispatched after
it, and the sweeper's re-dispatch covers a crash in between. The release fails once every
rollback has ended.

A release record that no longer validates is quarantined (moved to a key of its own and out of
the active set), and an active entry whose record has expired is dropped, so that no sweep,
list or status stops at a damaged release. A record written by a newer Conveyor is left alone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import redis
from pydantic import ValidationError

from producers.contract.dispatch import TaskSender, dispatch
from producers.contract.enums import DeploymentState, JobKind, Step
from producers.contract.freeze import calendar_at
from producers.contract.history import gate_decided, release_ended, release_enqueued
from producers.contract.jobs import ImageUpdate, UpdateServiceJob
from producers.contract.kinds import FIRST_STEP
from producers.contract.messages import GateMessage
from producers.contract.names import (
    KEY_PREFIX,
    PRIORITY_NEW,
    QUEUE,
    watch_queue,
)
from producers.contract.records import DeploymentRecord, FreezeOverride
from producers.contract.releases import (
    GATED_RELEASE_SCHEMA,
    RELEASE_OK,
    RELEASE_SCHEMA,
    GateReading,
    GateRollback,
    GateState,
    ReleaseJob,
    ReleaseRecord,
    ReleaseState,
    WaveApproval,
    WaveGateRun,
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
# How many superseded deployments in a row a release follows to find where its change went.
MAX_CARRIERS = 20
RELEASE_QUARANTINE_KEY = KEY_PREFIX + "quarantine:release:{id}"  # unreadable, moved aside
# Set (to the reason) once a release's queued deployments may no longer start: cancelled or ended.
RELEASE_STOPPED_KEY = KEY_PREFIX + "release:{id}:stopped"
# An advance after one deployment ended reads that one only, while more of its wave than this
# have no outcome yet; below it, the rest too. Reading the whole wave on every end cost a release
# of 1,000 deployments a million record reads, which held every worker's CPU.
_READ_ALL_BELOW = 32
# Active entries read per round trip, and at most per call: a backlog of dead entries is
# cleared a page at a time without ever holding up the live releases behind it for long.
_ACTIVE_PAGE = 100
_ACTIVE_SCAN = 10_000


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


@dataclass(frozen=True)
class HeldDecision:
    """What the current wave's pre-deploy tasks decide for its held-back deployments."""

    update: dict[str, Any]  # fields of the release record to change
    start: list[str] = field(default_factory=list)  # held deployments to create and start now
    cancelled: list[str] = field(default_factory=list)  # held deployments that never start


def decide_held_back(
    release: ReleaseRecord, outcomes: dict[str, str], passed: dict[str, float]
) -> HeldDecision | None:
    """Start the held-back deployments of the current wave once every pre-deploy task of the
    wave passed; cancel them, unstarted, once one did not pass (its deployment ended before
    its task exited 0) or the release was cancelled. None: they wait on.

    No service of the held deployments changes before the wave's migrations ran: a release
    whose task failed stops there.
    """
    held = release.held_back
    if not held:
        return None
    tasks = pre_deploy_ids(release, release.wave)
    failed = failed_task(release, outcomes, passed)
    if failed is not None or release.cancel_requested_at:
        if failed is not None:
            service = release.jobs.get(failed, {}).get("service", failed)
            ended = outcomes[failed]
            why = f"not started: the pre-deploy task of {service} " + (
                "failed" if ended == DeploymentState.FAILED.value else f"did not pass ({ended})"
            )
        else:
            why = "cancelled with its release before it started"
        update: dict[str, Any] = {
            "held_back": [],
            "not_started": {**release.not_started, **dict.fromkeys(held, why)},
        }
        if failed is not None:
            update["pre_deploy_failed"] = failed
        return HeldDecision(update=update, cancelled=list(held))
    if all(i in passed for i in tasks):
        return HeldDecision(update={"held_back": []}, start=list(held))
    return None


def failed_task(
    release: ReleaseRecord, outcomes: dict[str, str], passed: dict[str, float]
) -> str | None:
    """The first deployment of the current wave whose pre-deploy task did not pass: it ended
    without the task having exited 0. Whether or not the wave holds anything back, such a
    deployment stops the release (:attr:`ReleaseRecord.pre_deploy_failed`)."""
    tasks = pre_deploy_ids(release, release.wave)
    return next((i for i in tasks if i in outcomes and i not in passed), None)


def _passed_task(record: DeploymentRecord | None, seen: dict[str, float]) -> bool:
    """Whether ``record`` is a deployment whose pre-deploy task passed, not yet noted."""
    return record is not None and record.passed_pre_deploy and record.id not in seen


def _task_failure(release: ReleaseRecord, failed: str | None) -> str:
    """The head of a release's reason when a pre-deploy task stopped it ('' when none did)."""
    if failed is None:
        return ""
    service = release.jobs.get(failed, {}).get("service", failed)
    return (
        f"the pre-deploy task of {service} did not pass, so no other service of its wave was "
        "changed; "
    )


def _left_live(record: DeploymentRecord | None, outcome: str) -> str | None:
    """Why a deployment cancelled by its wave's gate ended with its change live (None: its
    change is not live, or its record is gone)."""
    if outcome == DeploymentState.SUCCEEDED.value:
        return "it succeeded before its cancel took effect"
    if (
        record is not None
        and record.state is DeploymentState.CANCELLED
        and not record.job.get("rollback", True)
        # Cancelled at these steps, a job with rollback off leaves its rollout to ECS; before
        # them the service was never changed.
        and record.step in (Step.UPDATE, Step.WATCH)
    ):
        return "its cancel left the rollout to ECS (rollback is off for its job)"
    return None


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


# Suffix of the id of the deployment that rolls a wave's deployment back after its gate failed.
ROLLBACK_SUFFIX = "-rollback"

# (state, reason, seconds to the next measurement when measuring, on_inconclusive when
# inconclusive): the worker's verdict on a gate's readings (worker.domain.gates.evaluate).
GateJudgement = tuple[GateState, str, float | None, str | None]


@dataclass
class _GateEffects:
    """What an advance does about gates once its transaction committed (cleared per attempt)."""

    changed: bool = False
    measure: tuple[GateMessage, float] | None = None
    rollbacks: list[tuple[DeploymentRecord, UpdateServiceJob]] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)
    rollback_started: bool = False

    def clear(self) -> None:
        """Forget the effects of an attempt that lost its compare-and-set."""
        self.changed = False
        self.rollback_started = False
        self.measure = None
        self.rollbacks.clear()
        self.cancels.clear()


def _replace_run(release: ReleaseRecord, run: WaveGateRun) -> list[WaveGateRun]:
    """The release's gate runs with ``run`` in place of its wave's (appended when new)."""
    runs = [run if r.wave == run.wave else r for r in release.gate_runs]
    return runs if any(r.wave == run.wave for r in release.gate_runs) else [*runs, run]


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


def rollback_job(record: DeploymentRecord | None, outcome: str) -> UpdateServiceJob | str:
    """The update-existing job that returns a wave's deployment's service to the revision it
    ran before the wave, or why there is nothing to roll back.

    The job builds from exactly that revision (``base_revision``) with the images it had, so the
    service runs that revision's definition again (as a new revision of the family: the update
    flow always registers one), with every guarantee of an ordinary deployment.
    """
    if record is None:
        return "its record has expired"
    if outcome != DeploymentState.SUCCEEDED.value:
        return f"it ended {outcome}: its change is not live"
    if record.state is DeploymentState.SUPERSEDED:
        return f"its change went out with {record.superseded_by}, outside the release"
    previous = record.previous_task_definition_arn
    if previous is None or record.task_definition_arn in (None, previous):
        return "it registered no new revision (a restart)"
    before = {c: str(v.get("before")) for c, v in record.images.items() if v.get("before")}
    if not before:
        return "it changed no image (only settings), which a rollback cannot restore"
    job = record.job
    return UpdateServiceJob.model_validate(
        {
            "cluster": record.cluster,
            "service": record.service,
            "images": tuple(ImageUpdate(container=c, image=i) for c, i in before.items()),
            "base_revision": previous,
            "role_arn": job.get("role_arn"),
            "timeout_seconds": job.get("timeout_seconds"),
            "wait": False,
        },
        strict=False,
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
        freeze_file: str | None = None,
    ) -> None:
        self._r = client
        self._records = records
        self._ttl = ttl_seconds
        self._grace = recovery_grace
        self._queue = queue
        self._k = records.keys
        self._freeze_file = freeze_file

    def _frozen(self, now: float) -> str | None:
        """Why no wave may start at ``now`` (a freeze window in force), or None.

        A freeze file that cannot be read holds every wave (and says so): a typo in it must
        not let a release into the very window it was meant to declare.
        """
        if not self._freeze_file:
            return None
        try:
            freeze = calendar_at(self._freeze_file).active(now)
        except ValueError as exc:
            return f"the freeze file cannot be used: {exc}"
        return None if freeze is None else f"waiting for the end of {freeze.describe()}"

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

    def active(self, limit: int = 100) -> list[str]:
        """Ids of up to ``limit`` releases not finished yet, oldest first.

        Entries that can never finish are cleared on the way, so that they cannot hold up the
        releases behind them: an expired (or deleted) record's entry is dropped, an unreadable
        record is quarantined, a finished one's stray entry is dropped. A release written by a
        newer Conveyor stays, for the workers that can read it, but is not returned.
        """
        found: list[str] = []
        start = 0
        while len(found) < limit and start < _ACTIVE_SCAN:
            ids = [
                _text(i)
                for i in self._r.zrange(self._k.active_releases, start, start + _ACTIVE_PAGE - 1)
            ]
            if not ids:
                break
            raws = self._r.mget([self.key(i) for i in ids])
            gone: list[str] = []
            kept = 0
            for release_id, raw in zip(ids, raws, strict=True):
                if len(found) >= limit:
                    break
                if raw is None:
                    gone.append(release_id)
                    continue
                try:
                    record = self._parse(release_id, raw)
                except NewerRecordError:
                    kept += 1
                    continue
                except UnreadableRecordError as exc:
                    if not self.quarantine(release_id, raw, str(exc)):
                        kept += 1
                    continue
                if record.terminal:
                    gone.append(release_id)
                else:
                    found.append(release_id)
                    kept += 1
            if gone:
                # A record is created in the same transaction as its entry, and a finished
                # release never runs again: these entries can only be dead.
                self._r.zrem(self._k.active_releases, *gone)
                log.warning(
                    "dropped %d expired or finished release(s) from the active set", len(gone)
                )
            start += kept
        return found

    def holds_back(self, release_id: str) -> str | None:
        """Why a queued deployment of the release must not start (None: it may).

        A deployment of a release whose cancel was requested, or that has ended, must never
        start, whatever the order in which the cancel and the wave's creation were seen. One
        small read: the mark is written by the transaction that records the cancel or the end,
        so a worker need not read (and parse) a release record of a thousand jobs per step.
        """
        raw = self._r.get(self._k.release_stopped.format(id=release_id))
        return None if raw is None else _text(raw)

    def _account(self, job: UpdateServiceJob) -> str | None:
        if job.role_arn:
            return job.role_arn.split(":")[4]
        return self._records.self_account()

    def _wave_records(
        self, release: ReleaseRecord, wave: int, now: float, only: list[str] | None = None
    ) -> list[DeploymentRecord]:
        """The queued records of the wave's deployments (``only`` these, if given; not stored).

        Those the wave holds back for its pre-deploy tasks are left out: they are created when
        the tasks passed (:func:`decide_held_back`)."""
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

    # -- metric gates ---------------------------------------------------------------------

    def _gate_holds(
        self, release: ReleaseRecord, now: float, update: dict[str, Any], effects: _GateEffects
    ) -> bool:
        """Whether the gate of the wave that passed holds the release where it is; writes what
        changed into ``update`` (and sets ``effects.changed``).

        No gate, a passed one, or an inconclusive one that passes (or was approved): False, the
        release moves on. Otherwise the gate run starts, is measured, pauses for an approval, or
        rolls the wave back.
        """
        spec = release.gate_of(release.wave)
        if spec is None:
            return False
        wave = release.wave
        run = release.gate_run(wave)
        if run is None:
            delay = float(spec.get("initial_delay_seconds") or 0)
            run = WaveGateRun(
                wave=wave, gate=str(spec.get("name")), started_at=now, next_at=now + delay
            )
            update["gate_runs"] = _replace_run(release, run)
            effects.changed = True
            effects.measure = (GateMessage(release.id, wave, 0), delay)
            return True
        if run.state == "measuring":
            if run.next_at is not None and now > run.next_at + self._grace:
                # The measuring message was lost with a worker: send it again, once (the
                # write is a compare-and-set; the next sweep waits another grace).
                log.warning("re-sending a lost gate measurement of release %s", release.id)
                update["gate_runs"] = _replace_run(release, run.model_copy(update={"next_at": now}))
                effects.changed = True
                effects.measure = (GateMessage(release.id, wave, len(run.measurements)), 0.0)
            return True
        if run.state == "passed" or (run.state == "inconclusive" and run.action == "pass"):
            return False
        reason = run.reason or f"gate {run.gate} {run.state}"
        if run.state == "inconclusive" and run.action == "pause":
            answer = release.approval_of(wave + 1)
            since = release.awaiting_approval_since
            if answer is not None and answer.action == "CONTINUE":
                return False
            if answer is not None:
                reason = f"{reason}; rejected by {answer.by}"
            elif since is None:
                # Paused like approve_before: `conveyor approve` continues, `reject` rolls back.
                update["awaiting_approval_since"] = now
                effects.changed = True
                return True
            elif now < since + release.approval_timeout_minutes * 60:
                return True
            else:
                reason = f"{reason}; not approved within {release.approval_timeout_minutes} minutes"
        self._start_rollback(release, reason, now, update, effects)
        return True

    def _gate_rolls_back(self, release: ReleaseRecord, now: float) -> bool:
        """Whether the gate of the current wave has decided on rolling the wave back: failed,
        inconclusive with ``fail``, or paused and then rejected or not answered in time. A
        cancel arriving after such a verdict must not end the release with the wave's change
        live."""
        run = release.gate_run(release.wave)
        if run is None or release.gate_of(release.wave) is None:
            return False
        if run.state == "failed" or (run.state == "inconclusive" and run.action == "fail"):
            return True
        if run.state != "inconclusive" or run.action != "pause":
            return False
        answer = release.approval_of(release.wave + 1)
        if answer is not None:
            return answer.action == "REJECT"
        since = release.awaiting_approval_since
        return since is not None and now >= since + release.approval_timeout_minutes * 60

    def _start_rollback(
        self,
        release: ReleaseRecord,
        reason: str,
        now: float,
        update: dict[str, Any],
        effects: _GateEffects,
    ) -> None:
        """Return every service of the current wave to the revision it ran before the wave: an
        update-existing deployment each (created with the write), a cancel for one still
        running (move_on_at: its own rollback follows), nothing for one whose change is not live.
        """
        outcomes: dict[str, str] = update["outcomes"]
        ids = release.waves[release.wave]
        found = self._records.get_many([i for i in ids if i in outcomes])
        rollbacks = []
        for deployment_id in ids:
            job = release.jobs[deployment_id]
            where = {"of": deployment_id, "service": job["service"], "cluster": job["cluster"]}
            if deployment_id not in outcomes:
                rollbacks.append(GateRollback(**where, how="cancel"))
                effects.cancels.append(deployment_id)
                continue
            record = found.get(deployment_id)
            planned = rollback_job(record, outcomes[deployment_id])
            if isinstance(planned, str) or record is None:
                rollbacks.append(
                    GateRollback(**where, how="none", outcome="not needed", note=str(planned))
                )
                continue
            rollback_id = deployment_id + ROLLBACK_SUFFIX
            rollbacks.append(
                GateRollback(
                    **where,
                    how="deployment",
                    to=record.previous_task_definition_arn,
                    deployment=rollback_id,
                )
            )
            queued = new_deployment(planned, rollback_id, now=now, account=self._account(planned))
            effects.rollbacks.append((queued, planned))
        update.update(rolling_back=reason, rollbacks=rollbacks, awaiting_approval_since=None)
        effects.changed = True
        effects.rollback_started = True

    def _follow_rollbacks(
        self,
        release: ReleaseRecord,
        now: float,
        update: dict[str, Any],
        effects: _GateEffects,
    ) -> bool:
        """Record how the wave's rollbacks ended; True (and the release FAILED in ``update``)
        once all have, and no deployment of the release still runs."""
        outcomes: dict[str, str] = update["outcomes"]
        waiting = [
            r.deployment
            for r in release.rollbacks
            if r.outcome is None and r.how == "deployment" and r.deployment
        ]
        cancelled = [
            r.of
            for r in release.rollbacks
            if r.outcome is None and r.how == "cancel" and r.of in outcomes
        ]
        found = self._records.get_many(waiting + cancelled)
        rollbacks = []
        for rollback in release.rollbacks:
            ended: str | None = rollback.outcome
            if ended is None and rollback.how == "deployment" and rollback.deployment:
                record = found.get(rollback.deployment)
                ended = (
                    "lost" if record is None else (record.state.value if record.terminal else None)
                )
            elif ended is None and rollback.how == "cancel":
                ended = outcomes.get(rollback.of)
                if ended is None:
                    effects.cancels.append(rollback.of)
                else:
                    rollbacks.append(
                        self._after_cancel(rollback, found.get(rollback.of), ended, now, effects)
                    )
                    continue
            rollbacks.append(rollback.model_copy(update={"outcome": ended}))
        if rollbacks != release.rollbacks:
            update["rollbacks"] = rollbacks
            effects.changed = True
        begun = [i for ids in release.waves[: release.wave + 1] for i in ids]
        if any(r.outcome is None for r in rollbacks) or any(i not in outcomes for i in begun):
            return False
        done = ", ".join(
            f"{r.service} {r.outcome}" + (f" ({r.note})" if r.note else "") for r in rollbacks
        )
        later = sum(len(ids) for ids in release.waves[release.wave + 1 :])
        update.update(
            state=ReleaseState.FAILED,
            reason=f"{release.rolling_back}; wave {release.wave + 1} rolled back: {done}"
            + (f"; {later} not started" if later else ""),
            finished_at=now,
        )
        effects.changed = True
        return True

    def _after_cancel(
        self,
        rollback: GateRollback,
        record: DeploymentRecord | None,
        outcome: str,
        now: float,
        effects: _GateEffects,
    ) -> GateRollback:
        """How a deployment the gate cancelled ended, as its rollback entry records it.

        A cancel rolls a rollout back, unless the deployment succeeded before the cancel took
        effect, or its job has rollback off (ECS finishes the rollout): then its change is live,
        and a rollback deployment (added to ``effects``, created with the write) follows.
        """
        why = _left_live(record, outcome)
        if why is None or record is None:
            return rollback.model_copy(update={"outcome": outcome})
        planned = rollback_job(record, DeploymentState.SUCCEEDED.value)
        if isinstance(planned, str):
            return rollback.model_copy(update={"outcome": outcome, "note": f"{why}; {planned}"})
        rollback_id = rollback.of + ROLLBACK_SUFFIX
        queued = new_deployment(planned, rollback_id, now=now, account=self._account(planned))
        effects.rollbacks.append((queued, planned))
        return rollback.model_copy(
            update={
                "how": "deployment",
                "to": record.previous_task_definition_arn,
                "deployment": rollback_id,
                "note": why,
            }
        )

    def _create_rollbacks_in(self, pipe: Any, effects: _GateEffects) -> None:
        """Queue the creation of the rollback deployments (and their full jobs) on a write."""
        for record, job in effects.rollbacks:
            pipe.set(
                self._k.job.format(id=record.id),
                json.dumps(job.model_dump(mode="json")),
                ex=self._ttl,
                nx=True,
            )
        self._create_in(pipe, [record for record, _ in effects.rollbacks])

    def _send_gate_effects(
        self, release: ReleaseRecord, effects: _GateEffects, sender: TaskSender, now: float
    ) -> None:
        """After the write: the measuring message, the rollbacks' first steps, the cancels.

        Each is safe to send twice (the measurement index, the step's seq and an existing
        cancel request fence them); one lost here is sent again by a later advance.
        """
        if effects.measure is not None and not release.terminal:
            message, countdown = effects.measure
            sender.send_task(
                message.TASK,
                args=message.args(),
                countdown=countdown or None,
                queue=watch_queue(self._queue),
            )
        if effects.rollbacks and release.rolling_back is not None:
            found = self._records.get_many([r.id for r, _ in effects.rollbacks])
            for record in found.values():
                if record is not None and record.state is DeploymentState.QUEUED:
                    dispatch(sender, record.id, record.step, record.seq, queue=self._queue)
        for deployment_id in effects.cancels:
            self._cancel_deployment(deployment_id, sender, now)

    def _cancel_deployment(self, deployment_id: str, sender: TaskSender, now: float) -> None:
        """Ask a running deployment to stop (as `conveyor cancel`: its rollout is rolled back);
        nothing when it has ended or its cancel is already asked for."""

        def request(record: DeploymentRecord) -> DeploymentRecord | None:
            if record.terminal or record.cancel_requested_at:
                return None
            return record.model_copy(
                update={"cancel_requested_at": now, "seq": record.seq + 1, "updated_at": now}
            )

        changed = self._records.modify(deployment_id, request)
        if changed is not None:
            self._records.set_due(deployment_id, now + self._grace)
            dispatch(sender, deployment_id, changed.step, changed.seq, queue=self._queue)

    def record_gate_measurement(
        self,
        release_id: str,
        wave: int,
        reading: GateReading,
        judge: Callable[[list[GateReading]], GateJudgement],
    ) -> tuple[ReleaseRecord | None, bool]:
        """Append ``reading`` to the gate run of ``wave`` and record ``judge``'s verdict on the
        readings so far, atomically; returns the release and whether the reading was counted.

        Counted only while the run measures and expects exactly this index: a measurement
        taken twice for one index (a message delivered twice) is counted once. A verdict joins
        the audit trail in the same transaction.
        """

        counted: list[bool] = []

        def change(release: ReleaseRecord) -> ReleaseRecord | None:
            counted.clear()
            run = release.gate_run(wave)
            if (
                release.terminal
                or release.wave != wave
                or run is None
                or run.state != "measuring"
                or len(run.measurements) != reading.index
            ):
                return None
            readings = [*run.measurements, reading]
            state, reason, next_in, action = judge(readings)
            counted.append(True)
            measuring = state == "measuring"
            fresh = run.model_copy(
                update={
                    "measurements": readings,
                    "state": state,
                    "reason": reason,
                    "action": action,
                    "next_at": reading.at + (next_in or 0.0) if measuring else None,
                    "decided_at": None if measuring else reading.at,
                }
            )
            return release.model_copy(
                update={"gate_runs": _replace_run(release, fresh), "updated_at": reading.at}
            )

        def note(pipe: Any, release: ReleaseRecord) -> None:
            run = release.gate_run(wave)
            if run is not None and run.state != "measuring":
                self._records.history.note(
                    gate_decided(release, wave),
                    once=f"{release_id}:gate{wave}",
                    now=run.decided_at or reading.at,
                    pipe=pipe,
                )

        result = self._modify(release_id, change, note)
        # Set by the attempt whose write took effect (each retry after a lost race starts over).
        return result, result is not None and bool(counted)

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
        self,
        release_id: str,
        sender: TaskSender,
        clock: Callable[[], float],
        *,
        ended: str | None = None,
    ) -> ReleaseRecord | None:
        """Record the ends of the current wave's deployments; when all have ended, start the
        next wave (or give the release its verdict). Safe to call any number of times.

        ``ended``: the deployment whose end calls this. Only it is read then, unless few of the
        wave are left without an outcome (then all of those are): so a wave of N deployments
        costs O(N) reads, not O(N²). An end whose advance was lost, or a superseded deployment
        whose carrier ended outside the release, is still seen: by the last ends of the wave,
        and by the sweeper, which calls this without ``ended`` and reads every deployment
        without an outcome. Recorded outcomes are final (their records are terminal) and are
        never read again.

        ``clock`` is read on every attempt, after the records: an attempt retried after losing a
        race, or a read that saw an end committed a moment before, must not stamp the next wave
        with a time from before the ends it saw.
        """
        started: list[ReleaseRecord] = []
        wave_records: list[DeploymentRecord] = []
        effects = _GateEffects()
        # Deployments the wave held back for its pre-deploy tasks: started, or never.
        unheld: list[DeploymentRecord] = []
        dropped: list[str] = []

        def step(release: ReleaseRecord) -> ReleaseRecord | None:
            started.clear()
            wave_records.clear()
            effects.clear()
            unheld.clear()
            dropped.clear()
            if release.terminal:
                return None
            current = release.waves[release.wave]
            # Every deployment of the waves started so far: with move_on_at, earlier waves may
            # still be running while a later one deploys. Held-back ones have no record yet.
            begun = [
                i
                for ids in release.waves[: release.wave + 1]
                for i in ids
                if i not in release.held_back
            ]
            outcomes = dict(release.outcomes)
            reached = dict(release.reached)
            tasks_passed = dict(release.tasks_passed)
            unknown = [i for i in begun if i not in outcomes]
            if ended is not None and len(unknown) > _READ_ALL_BELOW:
                unknown = [ended] if ended in unknown else []
            arrived: list[str] = []
            passed_now: list[str] = []
            for deployment_id, record in self._records.get_many(unknown).items():
                if _passed_task(record, tasks_passed):
                    passed_now.append(deployment_id)
                if record is None:
                    outcomes.setdefault(deployment_id, "lost")
                elif record.terminal:
                    outcome = self._carried_outcome(record)
                    if outcome is not None:
                        outcomes[deployment_id] = outcome
                elif (
                    release.move_on_at is not None
                    and deployment_id not in reached
                    and record.reached_stage(release.move_on_at)
                ):
                    arrived.append(deployment_id)
            # Read after the records: a deployment that ended while they were being read has a
            # finished_at later than a time read before, and the next wave must not claim to
            # have been created before the end it waited for.
            now = clock()
            reached.update(dict.fromkeys(arrived, now))
            tasks_passed.update(dict.fromkeys(passed_now, now))
            update: dict[str, Any] = {"outcomes": outcomes, "reached": reached, "updated_at": now}
            if tasks_passed != release.tasks_passed:
                update["tasks_passed"] = tasks_passed
            decision = decide_held_back(release, outcomes, tasks_passed)
            if decision is not None:
                update.update(decision.update)
                outcomes.update(dict.fromkeys(decision.cancelled, DeploymentState.CANCELLED.value))
                dropped.extend(decision.cancelled)
                unheld.extend(self._wave_records(release, release.wave, now, only=decision.start))
            if release.pre_deploy_failed is None:
                # A wave of task entries only holds nothing back, and decides nothing above.
                failed = failed_task(release, outcomes, tasks_passed)
                if failed is not None:
                    update["pre_deploy_failed"] = failed
            unchanged = (
                outcomes == release.outcomes
                and reached == release.reached
                and decision is None
                and tasks_passed == release.tasks_passed
                and update.get("pre_deploy_failed", release.pre_deploy_failed)
                == release.pre_deploy_failed
            )
            if release.rolling_back is not None:
                # A gate failed: the release waits for the wave's rollbacks, then fails.
                self._follow_rollbacks(release, now, update, effects)
                same = unchanged and not effects.changed
                return None if same else release.model_copy(update=update)
            # A wave has passed once each of its deployments ended or reached move_on_at.
            passed = all(i in outcomes or i in reached for i in current)
            bad = [i for i in begun if i in outcomes and outcomes[i] not in RELEASE_OK]
            last = release.wave + 1 >= len(release.waves)
            spent = release.budget_spent(len(bad))
            # A pre-deploy task that did not pass stops the release, whatever fail_fast says.
            task_failed = update.get("pre_deploy_failed", release.pre_deploy_failed)
            # A gate that already decided on a rollback acts first: the cancel is honoured by
            # the rollback it starts (the release ends failed once the rollbacks ended).
            cancelled = bool(release.cancel_requested_at) and not self._gate_rolls_back(
                release, now
            )
            verdict_due = (
                cancelled
                or last
                or bool(bad and release.fail_fast)
                or spent is not None
                or task_failed is not None
            )
            running = [i for i in begun if i not in outcomes]
            if not passed or (verdict_due and running):
                # The verdict waits for every deployment started: a release never ends while
                # one of its deployments still runs.
                return None if unchanged else release.model_copy(update=update)
            if cancelled:
                update.update(
                    state=ReleaseState.CANCELLED,
                    reason="cancelled on request; later waves were not started",
                    finished_at=now,
                )
            elif task_failed is not None or (
                bool(bad) and (release.fail_fast or last or spent is not None)
            ):
                skipped = sum(len(ids) for ids in release.waves[release.wave + 1 :])
                why = "fail fast" if spent is None else spent
                if task_failed is not None:
                    why = "a pre-deploy task failed"
                update.update(
                    state=ReleaseState.FAILED,
                    reason=_task_failure(release, task_failed)
                    + f"{len(bad)} deployment(s) did not succeed"
                    + (f": {', '.join(bad[:5])}" if bad else "")
                    + (f"; {skipped} not started ({why})" if skipped else ""),
                    finished_at=now,
                )
            elif self._gate_holds(release, now, update, effects):
                same = unchanged and not effects.changed
                return None if same else release.model_copy(update=update)
            elif last:
                update.update(state=ReleaseState.SUCCEEDED, finished_at=now)
            else:
                upcoming = release.wave + 1
                answer = release.approval_of(upcoming)
                if upcoming in release.approve_before and answer is None:
                    since = release.awaiting_approval_since
                    expired = since is not None and (
                        now >= since + release.approval_timeout_minutes * 60
                    )
                    if expired and running:
                        # Ends once the deployments it moved on from have (move_on_at).
                        return None if unchanged else release.model_copy(update=update)
                    if expired:
                        update.update(
                            state=ReleaseState.FAILED,
                            reason=f"wave {upcoming + 1} was not approved within "
                            f"{release.approval_timeout_minutes} minutes; it and later waves "
                            "were not started",
                            finished_at=now,
                        )
                        return release.model_copy(update=update)
                    if since is None:
                        # Paused: the wave starts once `conveyor approve` records an answer.
                        update["awaiting_approval_since"] = now
                        return release.model_copy(update=update)
                    return None if unchanged else release.model_copy(update=update)
                if answer is not None and answer.action == "REJECT":
                    if running:
                        return None if unchanged else release.model_copy(update=update)
                    update.update(
                        state=ReleaseState.CANCELLED,
                        reason=f"rejected by {answer.by} before wave {upcoming + 1}; later "
                        "waves were not started",
                        finished_at=now,
                    )
                    return release.model_copy(update=update)
                held = None if release.freeze_override else self._frozen(now)
                if held is not None:
                    # The sweeper's advances look again; the wave starts once the window ends.
                    update["held"] = held
                    same = unchanged and held == release.held
                    return None if same else release.model_copy(update=update)
                update.update(awaiting_approval_since=None, held=None)
                moved = release.model_copy(
                    update={
                        **update,
                        "wave": upcoming,
                        "held_back": held_at_start(release, upcoming),
                    }
                )
                # Created by the transaction that moves the release, not before it: a cancel
                # landing between this read and that write fails the write, and with it the
                # creation, so no record of a wave the release never moved to can exist.
                wave_records.extend(self._wave_records(moved, moved.wave, now))
                started.append(moved)
                return moved
            return release.model_copy(update=update)

        def create_wave(pipe: Any, release: ReleaseRecord) -> None:
            if started and release.wave == started[0].wave:
                self._create_in(pipe, wave_records)
            if effects.rollbacks and release.rolling_back is not None:
                self._create_rollbacks_in(pipe, effects)
            self._settle_held_in(pipe, unheld, dropped)

        result = self._modify(release_id, step, create_wave)
        if result is None:
            # No record (expired or quarantined): the release can never move again.
            self._r.zrem(self._k.active_releases, release_id)
        for release in started:
            if result is not None and result.wave == release.wave:
                self.dispatch_wave(result, sender)
        if unheld and result is not None:
            self.dispatch_wave(result, sender)
        if result is not None:
            self._send_gate_effects(result, effects, sender, clock())
            if effects.rollback_started and not effects.rollbacks and not effects.cancels:
                # Nothing to roll back: the release fails now rather than at the next sweep.
                return self.advance(release_id, sender, clock)
        return result

    def _settle_held_in(self, pipe: Any, start: list[DeploymentRecord], never: list[str]) -> None:
        """Queue, on the transaction that records the decision, the creation of the held-back
        deployments that start now, and the deletion of the full jobs (values included) of
        those that never will."""
        self._create_in(pipe, start)
        for deployment_id in never:
            pipe.delete(self._k.job.format(id=deployment_id))
