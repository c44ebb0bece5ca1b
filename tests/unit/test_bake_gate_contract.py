"""A job's bake gate as the contract takes it: from the job, a release entry and
`conveyor update --bake-gate FILE`; refused (exit 2, naming the field and the fix) when it could
only pause, or when the job asks for a strategy without a partly shifted bake. The status shows
its windows and measurements."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml
from pydantic import ValidationError

from producers.cli import core
from producers.cli.rendering import progress_text, summary
from producers.contract.jobs import UpdateServiceJob, describe_validation_error, load_update_job
from producers.contract.records import (
    BakeGateInfo,
    BakeWindow,
    DeploymentRecord,
    DeploymentState,
    GateMeasurement,
    ProgressInfo,
)
from producers.contract.releases import ReleaseJob
from tests.unit.cli_support import conveyor, point_at
from worker.domain.supersede import covers_changes

GATE: dict[str, Any] = {
    "name": "error-rate",
    "prometheus": {"query": "sum(rate(http_5xx[1m]))"},
    "success": "result < 0.01",
    "on_inconclusive": "fail",
}
UPDATE = ("update", "--cluster", "c", "--service", "s", "--image", "web=:2")


def job(**fields: Any) -> UpdateServiceJob:
    """An update job of web with ``fields``."""
    return load_update_job(
        {"cluster": "c", "service": "s", "images": [{"container": "web", "image": ":2"}], **fields}
    )


def problems(**fields: Any) -> list[str]:
    """What the contract says of a job with ``fields``."""
    with pytest.raises(ValidationError) as raised:
        job(**fields)
    return describe_validation_error(raised.value)


def test_a_bake_gate_is_carried_by_the_job_through_its_json() -> None:
    """The gate survives the record's JSON copy unchanged."""
    made = job(bake_gate=GATE, strategy="canary")
    assert made.bake_gate is not None
    again = load_update_job(json.loads(json.dumps(made.model_dump(mode="json"))))
    assert again.bake_gate == made.bake_gate


def test_a_bake_gate_that_would_pause_is_refused_naming_the_field_and_the_fix() -> None:
    """on_inconclusive: pause (also the default) cannot hold ECS's bake."""
    for gate in (
        {**GATE, "on_inconclusive": "pause"},
        {k: v for k, v in GATE.items() if k != "on_inconclusive"},
    ):
        (line,) = problems(bake_gate=gate)
        assert line.startswith("bake_gate: gate error-rate has on_inconclusive: pause")
        assert "write on_inconclusive: fail (roll back) or pass" in line


@pytest.mark.parametrize("strategy", ["rolling", "blue-green"])
def test_a_bake_gate_with_a_strategy_without_a_partly_shifted_bake_is_refused(
    strategy: str,
) -> None:
    """Rolling and blue/green deployments never bake with traffic partly shifted."""
    (line,) = problems(bake_gate=GATE, strategy=strategy)
    assert line.startswith("bake_gate: ")
    assert f"a {strategy} deployment has no such bake" in line
    assert "give strategy canary or linear, or drop bake_gate" in line


def test_a_bad_gate_is_refused_naming_its_field() -> None:
    """The gate's own checks, under bake_gate."""
    lines = problems(bake_gate={**GATE, "count": 0})
    assert any(line.startswith("bake_gate.count: ") for line in lines), lines


def test_a_release_entry_carries_its_bake_gate_and_is_named_when_it_is_bad() -> None:
    """A release file's entry takes bake_gate; a bad one is named by the entry."""
    entry = {"service": "web", "images": {"web": ":2"}, "strategy": "canary"}
    release = ReleaseJob.model_validate(
        {"cluster": "c", "services": [{**entry, "bake_gate": GATE}]}
    )
    assert release.waves[0][0].bake_gate is not None
    with pytest.raises(ValidationError, match=r"waves\[0\]\[0\] \(web\)\.bake_gate: gate"):
        ReleaseJob.model_validate(
            {
                "cluster": "c",
                "services": [{**entry, "bake_gate": {**GATE, "on_inconclusive": "pause"}}],
            }
        )


def test_a_newer_job_without_the_older_jobs_bake_gate_does_not_supersede_it() -> None:
    """Superseding would drop the gate the older job asked for."""
    older = job(bake_gate=GATE).model_dump(mode="json")
    assert not covers_changes(job().model_dump(mode="json"), older)
    assert covers_changes(job(bake_gate=GATE).model_dump(mode="json"), older)


class TestTheCommand:
    """`conveyor update --bake-gate FILE`."""

    @pytest.fixture(autouse=True)
    def _env(self, monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
        point_at(monkeypatch, redis_url)

    def test_a_gate_file_reaches_the_job(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """YAML, under ``gate:`` as docs/gates.md writes it, becomes the job's bake gate."""
        sent: list[UpdateServiceJob] = []

        def submit(job: UpdateServiceJob, **_: Any) -> NoReturn:
            sent.append(job)
            raise SystemExit(0)

        monkeypatch.setattr(core, "submit", submit)
        path = tmp_path / "gate.yaml"
        path.write_text(yaml.safe_dump({"gate": GATE}))
        result = conveyor(*UPDATE, "--strategy", "canary", "--bake-gate", str(path))
        assert result.exit_code == 0, result.stderr
        (made,) = sent
        assert made.bake_gate is not None
        assert made.bake_gate.name == "error-rate"

    def test_a_gate_that_would_pause_exits_2_naming_the_flag(self, tmp_path: Path) -> None:
        """Refused before anything is enqueued, naming --bake-gate and the fix."""
        path = tmp_path / "gate.json"
        path.write_text(json.dumps({**GATE, "on_inconclusive": "pause"}))
        result = conveyor(*UPDATE, "--bake-gate", str(path))
        assert result.exit_code == 2
        assert "--bake-gate: gate error-rate has on_inconclusive: pause" in result.stderr

    def test_a_bad_gate_file_exits_2_naming_the_file_and_the_field(self, tmp_path: Path) -> None:
        """The gate's own validation, named by the file."""
        path = tmp_path / "gate.yaml"
        path.write_text(yaml.safe_dump({**GATE, "success": "result < x"}))
        result = conveyor(*UPDATE, "--bake-gate", str(path))
        assert result.exit_code == 2
        assert f"--bake-gate {path}: success: " in result.stderr
        assert "expected a number after '<'" in result.stderr


def test_status_shows_each_bake_window_with_its_verdict_and_measurements() -> None:
    """The human status lists the gate, each window's verdict and its values."""
    record = DeploymentRecord(
        id="d",
        job={},
        cluster="c",
        service="s",
        state=DeploymentState.ROLLED_BACK,
        created_at=1.0,
        updated_at=1.0,
        bake_gate=BakeGateInfo(
            name="error-rate",
            condition="result < 0.01",
            windows=[
                BakeWindow(
                    number=1,
                    traffic=10.0,
                    started_at=1.0,
                    outcome="failed",
                    reason="gate error-rate: 1 measurement(s) did not meet result < 0.01",
                )
            ],
            measurements=[
                GateMeasurement(at=2.0, window=1, value=0.2),
                GateMeasurement(at=3.0, window=1, error="refused"),
            ],
        ),
    )
    text = summary(record)
    assert "gate      error-rate (result < 0.01)" in text
    assert "at 10% of production traffic: failed, 2 measurement(s): 0.2, error: refused" in text
    assert "verdict   gate error-rate: 1 measurement(s) did not meet result < 0.01" in text


def test_the_progress_line_shows_the_gate_of_the_window_being_measured() -> None:
    """While it runs, the live line says the gate is measuring and how far it got."""
    record = DeploymentRecord(
        id="d",
        job={},
        cluster="c",
        service="s",
        state=DeploymentState.RUNNING,
        created_at=1.0,
        updated_at=1.0,
        progress=ProgressInfo(
            strategy="CANARY", lifecycle_stage="PRODUCTION_TRAFFIC_SHIFT", production_traffic=10.0
        ),
        bake_gate=BakeGateInfo(
            name="error-rate",
            condition="result < 0.01",
            windows=[BakeWindow(number=1, traffic=10.0, started_at=1.0)],
            measurements=[GateMeasurement(at=2.0, window=1, value=0.001)],
        ),
    )
    assert "gate error-rate measuring (1 measured)" in progress_text(record, 3.0)
