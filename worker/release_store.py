"""The worker's part of the release store: moving a release from wave to wave.

Producers create a release, read it, ask for a cancel and record answers through
:class:`producers.contract.release_store.ReleaseStore`; what moves a release on (recording the
ends of its deployments, starting the next wave, its metric gates, their rollbacks, the
verdict) is here, beside the steps, the sweeper and the tasks that call it. The keys are the
contract's, so both sides still agree on where everything lives.

Every deployment of a release that ends advances its release; so does a producer's answer or
cancel request, through an ``AdvanceMessage`` a worker acts on; and the sweeper advances every
active release. A worker that dies between a deployment's end and the advance, or a message
lost on the way, delays a release by one sweep, never stops it. An advance is safe to run any
number of times, by any number of workers at once: each write is a compare-and-set on the
release record, and a wave's deployments are created in the transaction that moves the release
to that wave (see the contract's store for why a cancel cannot race it).

Metric gates: once a wave with a gate has passed, the move that starts its gate run (a
compare-and-set) precedes the measuring message, sent after it; each measurement is appended by
a compare-and-set that accepts only the index the run expects, so a message delivered twice is
counted once, and a message lost with a worker is sent again by an advance (the sweeper's) once
the next measurement is overdue by the recovery grace. A failed (or rejected) gate records the
rollbacks it starts in the same transaction that creates their deployments (ids derived from
the rolled-back deployment's, so creating one twice changes nothing); they are dispatched after
it, and the sweeper's re-dispatch covers a crash in between. The release fails once every
rollback has ended.

An active entry whose record has expired is dropped, and an unreadable record quarantined, so
that no sweep stops at a damaged release.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import structlog

from producers.contract.dispatch import TaskSender, dispatch
from producers.contract.enums import DeploymentState, Step
from producers.contract.freeze import calendar_at
from producers.contract.history import gate_decided
from producers.contract.jobs import ImageUpdate, UpdateServiceJob
from producers.contract.messages import GateMessage
from producers.contract.names import QUEUE, watch_queue
from producers.contract.records import DeploymentRecord
from producers.contract.release_store import (
    ReleaseStore,
    held_at_start,
    new_deployment,
    pre_deploy_ids,
)
from producers.contract.releases import (
    RELEASE_OK,
    GateReading,
    GateRollback,
    ReleaseRecord,
    ReleaseState,
    WaveGateRun,
)
from producers.contract.store import NewerRecordError, RecordStore, UnreadableRecordError
from worker.domain.gates import GateJudgement

log = structlog.get_logger("conveyor.releases")

# How many superseded deployments in a row a release follows to find where its change went.
MAX_CARRIERS = 20
# An advance after one deployment ended reads that one only, while more of its wave than this
# have no outcome yet; below it, the rest too. Reading the whole wave on every end cost a release
# of 1,000 deployments a million record reads, which held every worker's CPU.
_READ_ALL_BELOW = 32
# Active entries read per round trip, and at most per call: a backlog of dead entries is
# cleared a page at a time without ever holding up the live releases behind it for long.
_ACTIVE_PAGE = 100
_ACTIVE_SCAN = 10_000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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


# Suffix of the id of the deployment that rolls a wave's deployment back after its gate failed.
ROLLBACK_SUFFIX = "-rollback"


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


class WorkerReleaseStore(ReleaseStore):
    """The release store with what only workers do: advance a release, measure and act on its
    gates, roll a wave back, and find the releases to advance."""

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
        super().__init__(
            client, records, ttl_seconds=ttl_seconds, recovery_grace=recovery_grace, queue=queue
        )
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
                    "dropped expired or finished releases from the active set", count=len(gone)
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
                log.warning("re-sending a lost gate measurement", release_id=release.id)
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
