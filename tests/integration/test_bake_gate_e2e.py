"""A canary's bake gate end to end: the real CLI, Redis, a celery worker, the local AWS
(deploying the canary stage by stage) and a real Prometheus scraping an exporter whose error
ratio the test sets too high.

The worker reads Prometheus through its CONVEYOR_PROMETHEUS_URL, measures the gate once the
canary takes its share of production traffic, finds it failed, asks ECS to stop and roll back,
and the deployment ends rolled back with the gate, its condition and the value in its reason.
A simulated minute lasts 0.1 s: the canary bake of 300 minutes lasts 30 s, and no assert is a
timing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from localaws.devstack import Worker
from localaws.testing import control
from tests.integration.conftest import Stack
from tests.integration.test_gates_prometheus import (  # noqa: F401  # module-scoped fixtures
    Exporter,
    PrometheusServer,
    exporter,
    gate,
    prometheus,
    settled,
)
from tests.integration.test_strategies_e2e import _end, _start, _steady, create_service

pytestmark = pytest.mark.integration

CANARY = {
    "strategy": "CANARY",
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
    "deploymentCircuitBreaker": {"enable": True, "rollback": True},
    "canaryConfiguration": {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 300},
}
GATE = {
    "name": "error-rate",
    "prometheus": {"query": "max(error_ratio)"},
    "success": "result < 0.01",
    "interval_seconds": 5,
    "count": 3,
    "on_inconclusive": "fail",
}


def test_a_failing_bake_gate_rolls_the_canary_back(
    stack: Stack,
    start_worker: Callable[[str], Worker],
    prometheus: PrometheusServer,  # noqa: F811  # the fixture imported above
    exporter: tuple[Exporter, int],  # noqa: F811
    tmp_path: Path,
) -> None:
    """The error ratio is over the gate's condition during the canary's bake: rolled back
    through ECS, before the rest of the production traffic moved."""
    gauges, _ = exporter
    gauges.error_ratio.set(0.2)
    settled(prometheus, gate("max(error_ratio)", "result < 0.01"), 0.2)
    name = create_service(stack, "bakegate", {**CANARY, "bakeTimeInMinutes": 0})
    _steady(stack, name)
    stack.env["CONVEYOR_PROMETHEUS_URL"] = prometheus.url
    start_worker("gates")
    gate_file = tmp_path / "gate.yaml"
    gate_file.write_text(yaml.safe_dump({"gate": GATE}))

    code, record = _end(_start(stack, name, ":1.1.0", "--bake-gate", str(gate_file)))

    assert record["state"] == "rolled_back", record["reason"]
    assert code == 1
    reason = record["reason"]
    assert "gate error-rate" in reason
    assert "result < 0.01" in reason
    assert "0.2" in reason
    assert "StopServiceDeployment" in reason
    windows = record["bake_gate"]["windows"]
    assert [(w["traffic"], w["outcome"]) for w in windows] == [(10.0, "failed")]
    assert record["bake_gate"]["measurements"][0]["value"] == 0.2
    _, view = control(stack.endpoint, "GET", "traffic")
    (mine,) = [s for s in view["services"] if s["service"] == name]
    shares = [stage["production_percent"] for stage in mine["stages"]]
    assert 10.0 in shares
    assert 100.0 not in shares  # stopped before the rest of the traffic moved
    assert mine["stages"][-1]["stage"] == "ROLLBACK"
    (service,) = stack.ecs().describe_services(cluster="demo", services=[name])["services"]
    assert service["taskDefinition"].endswith(f"{name}:1")
