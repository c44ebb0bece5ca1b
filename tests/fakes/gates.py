"""A scripted :class:`worker.gates.sources.MetricSource`, for tests of flows that measure gates.

Each gate (by name) answers the measurements the test scripted, in order; a gate whose script
ran out answers no data, as a metric that stopped reporting would. Every call is recorded in
:attr:`ScriptedMetrics.calls`.
"""

from __future__ import annotations

from collections.abc import Iterable

from producers.contract.gates import Gate
from worker.domain.gates import Measurement, no_data


class ScriptedMetrics:
    """Answers each gate's scripted measurements in order, then no data."""

    def __init__(self, scripts: dict[str, Iterable[Measurement]] | None = None) -> None:
        self._scripts = {name: list(items) for name, items in (scripts or {}).items()}
        self.calls: list[str] = []

    def script(self, gate: str, *measurements: Measurement) -> None:
        """Add measurements that ``gate`` answers next."""
        self._scripts.setdefault(gate, []).extend(measurements)

    async def measure(self, gate: Gate) -> Measurement:
        """The next scripted measurement of ``gate`` (no data once none is left)."""
        self.calls.append(gate.name)
        script = self._scripts.get(gate.name, [])
        return script.pop(0) if script else no_data("nothing scripted")
