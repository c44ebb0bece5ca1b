"""What the gate flow asks of a source: one measurement of a gate, never an exception.

A source turns every failure of its query (unreachable, refused, malformed answer, timeout)
into an error measurement, so that the evaluator counts it against the gate's
``inconclusive_limit`` instead of the step crashing; error texts never carry credentials.
"""

from __future__ import annotations

from typing import Protocol

from producers.contract.gates import Gate
from worker.domain.gates import Measurement


class MetricSource(Protocol):
    """Measures gates of one kind (Prometheus, CloudWatch metric data, CloudWatch alarms)."""

    async def measure(self, gate: Gate) -> Measurement:
        """Take one measurement of ``gate`` now."""
        ...
