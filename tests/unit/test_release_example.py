"""deploy/examples/progressive-release.yaml is a release Conveyor accepts, with each control."""

from __future__ import annotations

from pathlib import Path

import yaml

from producers.contract.releases import ReleaseJob

EXAMPLE = Path(__file__).parents[2] / "deploy" / "examples" / "progressive-release.yaml"


def test_the_progressive_release_example_is_valid_and_uses_every_control() -> None:
    """It validates as a release, with a failure budget (so no fail-fast), a stage to move on
    at, an approval before its second wave, canary deployments with alarms, a metric gate after
    every wave, a bake gate on a canary and a migration before the first wave."""
    job = ReleaseJob.model_validate(yaml.safe_load(EXAMPLE.read_text()))
    assert (job.fail_fast, job.max_failure_percent) == (False, 5)
    assert job.move_on_at == "PRODUCTION_TRAFFIC_SHIFT"
    assert job.approve_before == [1]
    entries = [entry for wave in job.waves for entry in wave]
    assert {entry.strategy for entry in entries} == {"canary"}
    assert all(entry.alarms for entry in entries)
    assert job.gate is not None
    assert job.gate.name == "shop-5xx"
    assert [job.gate_of(w) for w in range(len(job.waves))] == [job.gate, job.gate]
    tasks = [entry for entry in entries if entry.pre_deploy]
    assert [(t.service, t.pre_deploy.container) for t in tasks if t.pre_deploy] == [
        ("checkout-api", "api")
    ]
    assert [e.service for e in entries if e.bake_gate] == ["catalog-api"]
