"""Measuring a release wave's metric gate: one measurement per message, then a verdict.

A measuring message names the release, the wave and the index of the measurement it takes.
Order of effects that makes crashes and copies harmless: the release record is read; a message
whose index the gate run no longer expects (a copy, or one re-sent by the sweeper after the
original arrived) is dropped; the source is asked (it never raises: a failed query is an
inconclusive measurement); the reading is appended by a compare-and-set that accepts only that
index, with the verdict of :func:`worker.domain.gates.evaluate` on all readings so far; only the
message whose reading was counted sends the next one (after ``next_in_seconds``) or, once a
verdict is reached, advances the release (which acts on it: see
:meth:`worker.release_store.WorkerReleaseStore.advance`). A message lost with its worker
is sent again by the sweeper's advance once the measurement is overdue.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import structlog

from producers.contract.dispatch import TaskSender
from producers.contract.gates import Gate, load_gate
from producers.contract.messages import GateMessage
from producers.contract.names import watch_queue
from producers.contract.releases import GateReading, ReleaseRecord
from worker.domain.gates import GateJudgement, Measurement, evaluate

log = structlog.get_logger("conveyor.gates")

# A message that arrives this much before its measurement is due is sent again for its time.
EARLY_SECONDS = 0.5

# (gate, role ARN of the release's identity or None) -> one measurement; never raises.
Measure = Callable[[Gate, str | None], Measurement]


class GateReleases(Protocol):
    """What measuring a gate reads and writes of releases (the worker's release store,
    worker/release_store.py)."""

    def get(self, release_id: str) -> ReleaseRecord | None:
        """The release's record, or None."""
        ...

    def record_gate_measurement(
        self,
        release_id: str,
        wave: int,
        reading: GateReading,
        judge: Callable[[list[GateReading]], GateJudgement],
    ) -> tuple[ReleaseRecord | None, bool]:
        """Append a reading with the verdict so far; the release and whether it counted."""
        ...

    def advance(
        self, release_id: str, sender: TaskSender, clock: Callable[[], float]
    ) -> ReleaseRecord | None:
        """Move the release on (here: act on the gate's verdict)."""
        ...


def judge(gate: Gate) -> Callable[[list[GateReading]], GateJudgement]:
    """The verdict on a gate's stored readings, as the release store records it."""

    def verdict(readings: list[GateReading]) -> GateJudgement:
        measurements = [Measurement(r.value, r.error, r.detail) for r in readings]
        found = evaluate(gate, measurements)
        return found.outcome.value, found.reason, found.next_in_seconds, found.action

    return verdict


def reading(measurement: Measurement, index: int, at: float) -> GateReading:
    """A measurement as the release record keeps it."""
    return GateReading(
        index=index,
        at=at,
        value=measurement.value,
        error=measurement.error,
        detail=measurement.detail,
    )


def release_role(release: ReleaseRecord, wave: int) -> str | None:
    """The identity the release's gate is measured with: its wave's role (None: the
    workers' own credentials)."""
    for deployment_id in release.waves[wave]:
        role = release.jobs.get(deployment_id, {}).get("role_arn")
        if isinstance(role, str) and role:
            return role
    return None


def _send(sender: TaskSender, message: GateMessage, countdown: float, queue: str) -> None:
    sender.send_task(
        message.TASK,
        args=message.args(),
        countdown=countdown if countdown > 0 else None,
        queue=watch_queue(queue),
    )


def take_measurement(
    message: GateMessage,
    *,
    releases: GateReleases,
    measure: Measure,
    sender: TaskSender,
    clock: Callable[[], float],
    queue: str,
    on_verdict: Callable[[str, str], None] | None = None,
) -> dict[str, Any]:
    """Take the measurement ``message`` asks for, record it, and send the next or advance.

    ``on_verdict(source, verdict)`` is called once per gate verdict (for metrics).
    Returns what happened, for the task's result and logs.
    """
    release = releases.get(message.release_id)
    if release is None or release.terminal:
        return {"status": "gone"}
    run = release.gate_run(message.wave)
    spec = release.gate_of(message.wave)
    if (
        run is None
        or spec is None
        or release.wave != message.wave
        or run.state != "measuring"
        or len(run.measurements) != message.index
    ):
        return {"status": "stale"}
    now = clock()
    if run.next_at is not None and now < run.next_at - EARLY_SECONDS:
        _send(sender, message, run.next_at - now, queue)
        return {"status": "early"}
    try:
        gate = load_gate(spec)
    except ValueError as exc:
        return _unreadable(message, run.gate, releases, sender, clock, exc)
    measurement = measure(gate, release_role(release, message.wave))
    taken = reading(measurement, message.index, clock())
    result, counted = releases.record_gate_measurement(
        message.release_id, message.wave, taken, judge(gate)
    )
    if not counted or result is None:
        return {"status": "duplicate"}
    run = result.gate_run(message.wave)
    if run is None:
        return {"status": "stale"}
    log.info(
        "gate measured",
        release_id=message.release_id,
        wave=message.wave,
        gate=gate.name,
        index=message.index,
        measurement=taken.describe(),
        state=run.state,
    )
    if run.state == "measuring":
        due = run.next_at if run.next_at is not None else clock()
        _send(
            sender,
            GateMessage(message.release_id, message.wave, message.index + 1),
            due - clock(),
            queue,
        )
        return {"status": "measuring", "index": message.index}
    if on_verdict is not None:
        on_verdict(gate.source, run.state)
    log.info("gate decided", release_id=message.release_id, gate=gate.name, reason=run.reason)
    releases.advance(message.release_id, sender, clock)
    return {"status": run.state}


def _unreadable(
    message: GateMessage,
    name: str,
    releases: GateReleases,
    sender: TaskSender,
    clock: Callable[[], float],
    exc: ValueError,
) -> dict[str, Any]:
    """A stored gate this worker cannot read (written by a newer Conveyor, or damaged): its
    run ends inconclusive and the release pauses for a person, instead of failing this task
    and being sent again by every sweep. The gate's text is not echoed (it may hold a URL)."""
    log.error(
        "gate unreadable",
        release_id=message.release_id,
        wave=message.wave,
        gate=name,
        error=type(exc).__name__,
    )
    reason = (
        f"gate {name}: this worker cannot read it (a newer Conveyor wrote it, or the record is "
        "damaged); `conveyor approve` continues, `conveyor reject` rolls the wave back"
    )

    def pause(_readings: list[GateReading]) -> GateJudgement:
        return "inconclusive", reason, None, "pause"

    taken = GateReading(index=message.index, at=clock(), error="the gate cannot be read")
    releases.record_gate_measurement(message.release_id, message.wave, taken, pause)
    releases.advance(message.release_id, sender, clock)
    return {"status": "inconclusive"}
