"""The verdict of a metric gate: a pure function of the gate and its measurements so far.

Each measurement is a value, no data, or an error (:class:`Measurement`). A value that meets
the gate's condition is a success, one that does not is a failure; no data, an error, or NaN is
inconclusive (±Inf is a value: a ratio over zero traffic is compared like any other). The
measurements are judged in the order taken, and the first of these that applies decides:

1. more failures than ``failure_limit``: the gate **failed**;
2. more inconclusive measurements than ``inconclusive_limit``: the gate is **inconclusive**, and
   the gate's ``on_inconclusive`` (pause, fail or pass) says what the release does;
3. ``count`` measurements taken: the gate **passed** (the gate model guarantees at least one
   success among them);
4. otherwise: take the next measurement, ``interval_seconds`` after the last one
   (``initial_delay_seconds`` before the first).

Measurements past ``count`` are ignored, so a measurement taken twice (a redelivered step)
cannot change a verdict already reached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from producers.contract.gates import ALARM_FIRING, ALARM_OK, Gate, OnInconclusive
from producers.contract.releases import GateState


@dataclass(frozen=True)
class Measurement:
    """One reading of a gate's source: a value, or no data (``value`` None), or an error.

    ``detail`` is what the source said besides the number (an alarm's state), for reasons.
    """

    value: float | None = None
    error: str | None = None
    detail: str = ""

    @property
    def conclusive(self) -> bool:
        """Whether this measurement has a value to compare (not no data, an error or NaN)."""
        return self.error is None and self.value is not None and not math.isnan(self.value)

    def describe(self) -> str:
        """The measurement for a reason: its value, 'no data' or 'error: ...'."""
        if self.error is not None:
            return f"error: {self.error}"
        if self.value is None:
            return f"no data ({self.detail})" if self.detail else "no data"
        text = f"{self.value:g}"
        return f"{text} ({self.detail})" if self.detail else text


def value(number: float, detail: str = "") -> Measurement:
    """A measurement with a value."""
    return Measurement(value=number, detail=detail)


def no_data(detail: str = "") -> Measurement:
    """A measurement that found no data."""
    return Measurement(detail=detail)


def failed_query(error: str) -> Measurement:
    """A measurement whose query failed; ``error`` says how (never with credentials)."""
    return Measurement(error=error)


class GateOutcome(StrEnum):
    """Where a gate stands."""

    MEASURING = "measuring"  # take another measurement
    PASSED = "passed"  # the wave stands
    FAILED = "failed"  # roll the wave back and stop the release
    INCONCLUSIVE = "inconclusive"  # do what the gate's on_inconclusive says


TERMINAL_OUTCOMES = frozenset({GateOutcome.PASSED, GateOutcome.FAILED, GateOutcome.INCONCLUSIVE})


@dataclass(frozen=True)
class GateVerdict:
    """The outcome, the reason for people, and what to do next."""

    outcome: GateOutcome
    reason: str
    successes: int
    failures: int
    inconclusive: int
    # MEASURING: seconds from the last measurement (or from the start) to the next one.
    next_in_seconds: float | None = None
    # INCONCLUSIVE: what the release does (the gate's on_inconclusive).
    action: OnInconclusive | None = None


# A verdict as the release store records it: (state, reason, seconds to the next measurement
# when measuring, on_inconclusive when inconclusive); see worker.services.release_gates.judge.
GateJudgement = tuple[GateState, str, float | None, str | None]


def is_success(gate: Gate, measurement: Measurement) -> bool | None:
    """True when the measurement meets the gate's condition, False when it does not, None when
    it is inconclusive."""
    if not measurement.conclusive or measurement.value is None:
        return None
    return gate.condition.holds(measurement.value)


def _listing(measurements: list[Measurement]) -> str:
    shown = [m.describe() for m in measurements[-5:]]
    more = len(measurements) - len(shown)
    return ("..., " if more else "") + ", ".join(shown)


def evaluate(gate: Gate, measurements: list[Measurement]) -> GateVerdict:
    """Judge ``gate`` on ``measurements`` (oldest first); see the module docstring's rule."""
    condition = gate.condition
    wanted = "alarm " + gate.alarm.name + " OK" if gate.alarm is not None else str(condition)
    good = bad = unknown = 0
    failed: list[Measurement] = []
    undecided: list[Measurement] = []
    taken = measurements[: gate.count]
    for measurement in taken:
        verdict = is_success(gate, measurement)
        if verdict is None:
            unknown += 1
            undecided.append(measurement)
        elif verdict:
            good += 1
        else:
            bad += 1
            failed.append(measurement)
        if bad > gate.failure_limit:
            return GateVerdict(
                GateOutcome.FAILED,
                f"gate {gate.name}: {bad} measurement(s) did not meet {wanted} "
                f"(tolerated: {gate.failure_limit}): {_listing(failed)}",
                good,
                bad,
                unknown,
            )
        if unknown > gate.inconclusive_limit:
            return GateVerdict(
                GateOutcome.INCONCLUSIVE,
                f"gate {gate.name}: {unknown} measurement(s) without a value to compare with "
                f"{wanted} (tolerated: {gate.inconclusive_limit}): {_listing(undecided)}; "
                f"on_inconclusive: {gate.on_inconclusive}",
                good,
                bad,
                unknown,
                action=gate.on_inconclusive,
            )
    if len(taken) >= gate.count:
        return GateVerdict(
            GateOutcome.PASSED,
            f"gate {gate.name}: {good} of {gate.count} measurement(s) met {wanted} "
            f"({bad} failed, {unknown} inconclusive)",
            good,
            bad,
            unknown,
        )
    return GateVerdict(
        GateOutcome.MEASURING,
        f"gate {gate.name}: {len(taken)} of {gate.count} measurement(s) taken",
        good,
        bad,
        unknown,
        next_in_seconds=float(gate.interval_seconds if taken else gate.initial_delay_seconds),
    )


def alarm_measurement(state: str) -> Measurement:
    """An alarm's state as a measurement: OK is 0, ALARM is 1, anything else is no data."""
    if state == "OK":
        return value(ALARM_OK, "OK")
    if state == "ALARM":
        return value(ALARM_FIRING, "ALARM")
    return no_data(state)
