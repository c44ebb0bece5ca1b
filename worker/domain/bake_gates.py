"""A bake gate: a metric gate measured while a canary or linear deployment bakes. Pure.

ECS bakes a CANARY deployment once with production traffic partly shifted (``canaryPercent``,
for ``canaryBakeTimeInMinutes``) and a LINEAR one after every step but the last. Each such
stretch is a **bake window**: the deployment is in progress and ECS asks for more than 0 % and
less than 100 % of production traffic for the new revision. A window starts when the watch
first sees that share, and ends when the share changes (the next linear step) or leaves the
open interval (the last shift, a rollback, the end).

In each window the gate is judged afresh (:func:`worker.domain.gates.evaluate` on that window's
measurements): the first measurement is due ``initial_delay_seconds`` after the window started,
each next one ``interval_seconds`` after the window's previous due time. A window whose verdict
is reached takes no more measurements; one that ends before (ECS does not wait for Conveyor) is
``unfinished``, and nothing follows from it.

Measurements live on the deployment record, and a measurement is due only by the record's
own times: a step run twice from the same record takes the one measurement it lost, and a step
run after the record was committed finds it there, not due again.
"""

from __future__ import annotations

from dataclasses import dataclass

from producers.contract.gates import Gate
from producers.contract.records import (
    MAX_GATE_MEASUREMENTS,
    BakeGateInfo,
    BakeWindow,
    GateMeasurement,
)
from worker.domain.gates import GateOutcome, GateVerdict, Measurement, evaluate
from worker.domain.strategies import CANARY, LINEAR
from worker.domain.verdict import History, StagedVerdict

BAKE_GATE_STRATEGIES = frozenset({CANARY, LINEAR})


def bake_traffic(strategy: str | None, staged: StagedVerdict) -> float | None:
    """The production traffic share of the new revision while a canary or linear deployment
    bakes partly shifted; None outside a bake window."""
    traffic = staged.production_traffic
    if (
        strategy not in BAKE_GATE_STRATEGIES
        or staged.outcome is not History.IN_PROGRESS
        or traffic is None
        or not 0 < traffic < 100
    ):
        return None
    return traffic


def start_info(gate: Gate) -> BakeGateInfo:
    """A bake gate with nothing measured yet."""
    condition = f"alarm {gate.alarm.name} OK" if gate.alarm is not None else str(gate.condition)
    return BakeGateInfo(name=gate.name, condition=condition)


def current(info: BakeGateInfo) -> BakeWindow | None:
    """The newest window, or None."""
    return info.windows[-1] if info.windows else None


def window_measurements(info: BakeGateInfo, number: int) -> list[Measurement]:
    """The measurements of window ``number``, oldest first, as :func:`evaluate` takes them."""
    return [
        Measurement(value=m.value, error=m.error, detail=m.detail)
        for m in info.measurements
        if m.window == number
    ]


def _replace_current(info: BakeGateInfo, window: BakeWindow) -> BakeGateInfo:
    return info.model_copy(update={"windows": [*info.windows[:-1], window]})


def follow(gate: Gate, info: BakeGateInfo, traffic: float | None, now: float) -> BakeGateInfo:
    """``info`` as of ``now``, when ECS asks for ``traffic`` (None: outside a bake window).

    A window still measuring that ended is marked unfinished; a share of traffic not seen in
    the newest window opens a new one.
    """
    window = current(info)
    same = window is not None and traffic is not None and window.traffic == traffic
    if window is not None and not same and window.outcome == GateOutcome.MEASURING.value:
        taken = len(window_measurements(info, window.number))
        reason = (
            f"gate {gate.name}: the bake at {window.traffic:g} % ended after {taken} of "
            f"{gate.count} measurement(s), before a verdict; ECS went on"
        )
        info = _replace_current(
            info, window.model_copy(update={"outcome": "unfinished", "reason": reason})
        )
    if traffic is None or same:
        return info
    number = 1 if window is None else window.number + 1
    fresh = BakeWindow(number=number, traffic=traffic, started_at=now)
    return info.model_copy(update={"windows": [*info.windows, fresh]})


def next_due(gate: Gate, info: BakeGateInfo) -> float | None:
    """When the newest window's next measurement is due (None: no window measuring)."""
    window = current(info)
    if window is None or window.outcome != GateOutcome.MEASURING.value:
        return None
    taken = len(window_measurements(info, window.number))
    return window.started_at + gate.initial_delay_seconds + taken * gate.interval_seconds


@dataclass(frozen=True, slots=True)
class Judged:
    """A bake gate after a measurement: the record's part, and the newest window's verdict."""

    info: BakeGateInfo
    verdict: GateVerdict

    @property
    def fails(self) -> bool:
        """Whether the deployment must be rolled back: failed, or inconclusive with
        ``on_inconclusive: fail``."""
        outcome = self.verdict.outcome
        return outcome is GateOutcome.FAILED or (
            outcome is GateOutcome.INCONCLUSIVE and self.verdict.action == "fail"
        )


def add_measurement(gate: Gate, info: BakeGateInfo, measurement: Measurement, now: float) -> Judged:
    """Add ``measurement`` to the newest window (which must be measuring) and judge it."""
    window = current(info)
    assert window is not None, "a measurement belongs to a window"
    taken = GateMeasurement(
        at=now,
        window=window.number,
        value=measurement.value,
        error=measurement.error,
        detail=measurement.detail,
    )
    measurements = [*info.measurements, taken][-MAX_GATE_MEASUREMENTS:]
    info = info.model_copy(update={"measurements": measurements})
    verdict = evaluate(gate, window_measurements(info, window.number))
    if verdict.outcome is not GateOutcome.MEASURING:
        where = f"{verdict.reason} (bake at {window.traffic:g} % of production traffic)"
        info = _replace_current(
            info, window.model_copy(update={"outcome": verdict.outcome.value, "reason": where})
        )
    return Judged(info, verdict)
