"""GateSources: each gate measured by its own source; a source the worker lacks is an error
measurement (inconclusive), never an exception."""

from __future__ import annotations

import asyncio

from producers.contract.gates import load_gate
from tests.fakes.gates import ScriptedMetrics
from worker.domain.gates import value
from worker.gates.sources import GateSources

PROMETHEUS = load_gate({"name": "p", "prometheus": {"query": "up"}, "success": "result > 0"})
ALARM = load_gate({"name": "a", "alarm": {"name": "web-5xx"}})


def test_each_gate_goes_to_its_own_source() -> None:
    """A Prometheus gate to Prometheus, an alarm gate to CloudWatch."""
    prometheus = ScriptedMetrics({"p": [value(1.0)]})
    cloudwatch = ScriptedMetrics({"a": [value(0.0, "OK")]})
    sources = GateSources(prometheus=prometheus, cloudwatch=cloudwatch)
    assert asyncio.run(sources.measure(PROMETHEUS)).value == 1.0
    assert asyncio.run(sources.measure(ALARM)).detail == "OK"
    assert (prometheus.calls, cloudwatch.calls) == (["p"], ["a"])


def test_a_missing_source_is_an_error_measurement_naming_it() -> None:
    """No CloudWatch client (a gateway without one), no Prometheus: errors, not exceptions."""
    sources = GateSources()
    assert "no CloudWatch client" in (asyncio.run(sources.measure(ALARM)).error or "")
    assert "no Prometheus source" in (asyncio.run(sources.measure(PROMETHEUS)).error or "")
