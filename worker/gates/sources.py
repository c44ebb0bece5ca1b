"""What the gate flow asks of a source: one measurement of a gate, never an exception.

A source turns every failure of its query (unreachable, refused, malformed answer, timeout)
into an error measurement, so that the evaluator counts it against the gate's
``inconclusive_limit`` instead of the step crashing; error texts never carry credentials.
"""

from __future__ import annotations

from typing import Protocol

from producers.contract.gates import Gate
from worker.domain.gates import Measurement, failed_query


class MetricSource(Protocol):
    """Measures gates of one kind (Prometheus, CloudWatch metric data, CloudWatch alarms)."""

    async def measure(self, gate: Gate) -> Measurement:
        """Take one measurement of ``gate`` now."""
        ...


class GateSources:
    """Measures any gate with the source it names: Prometheus, or CloudWatch (metric data and
    alarms); a source this worker lacks is an error measurement that says how to add it."""

    def __init__(
        self, *, prometheus: MetricSource | None = None, cloudwatch: MetricSource | None = None
    ) -> None:
        self._prometheus = prometheus
        self._cloudwatch = cloudwatch

    async def measure(self, gate: Gate) -> Measurement:
        """One measurement of ``gate`` by its own source."""
        if gate.source == "prometheus":
            if self._prometheus is None:
                return failed_query("this worker has no Prometheus source")
            return await self._prometheus.measure(gate)
        if self._cloudwatch is None:
            return failed_query(
                "this worker has no CloudWatch client for the deployment's account and region"
            )
        return await self._cloudwatch.measure(gate)
