"""`conveyor update`'s deployment-strategy flags: bad values exit 2 naming the flag and the
bound before anything is enqueued; good ones reach the job. Run through CliRunner."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from producers.cli import core, options
from producers.contract import strategy
from producers.contract.jobs import UpdateServiceJob
from tests.unit.cli_support import conveyor, point_at

UPDATE = ("update", "--cluster", "c", "--service", "s", "--image", "web=:2")


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    point_at(monkeypatch, redis_url)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (
            ("--strategy", "canary", "--canary-percent", "0.05"),
            ("--canary-percent: 0.05 is outside ECS's bounds of 0.1 to 100 percent",),
        ),
        (
            ("--strategy", "canary", "--canary-percent", "5.55"),
            ("--canary-percent: 5.55 is not a multiple of 0.1",),
        ),
        (
            ("--strategy", "linear", "--linear-step-percent", "2"),
            ("--linear-step-percent: 2.0 is outside ECS's bounds of 3 to 100 percent",),
        ),
        (
            ("--strategy", "linear", "--linear-step-bake-minutes", "1441"),
            ("--linear-step-bake-minutes: 1441 is outside ECS's bounds of 0 to 1440 minutes",),
        ),
        (
            ("--strategy", "canary", "--canary-bake-minutes", "-1"),
            ("--canary-bake-minutes: -1 is outside",),
        ),
        (
            ("--strategy", "blue-green", "--bake-minutes", "5000"),
            ("--bake-minutes: 5000 is outside ECS's bounds of 0 to 1440 minutes",),
        ),
        (
            ("--canary-percent", "5"),
            (
                "--canary-percent: is for --strategy canary only (none is given); set --strategy "
                "canary, or drop --canary-percent",
            ),
        ),
        (
            ("--circuit-breaker-threshold", "5"),
            (
                "--circuit-breaker-threshold: the threshold is the circuit breaker's; turn "
                "--circuit-breaker on as well",
            ),
        ),
        (
            ("--circuit-breaker", "--circuit-breaker-threshold", "0"),
            ("--circuit-breaker-threshold: 0 is outside 1 to",),
        ),
        (
            ("--circuit-breaker", "--circuit-breaker-threshold-type", "count"),
            (
                "--circuit-breaker-threshold-type: ECS needs the threshold's value as well; give "
                "--circuit-breaker-threshold",
            ),
        ),
        (("--alarm", "a,b"), ("--alarm: 'a,b' holds a comma",)),
        (("--strategy", "sideways"), ("'--strategy'", "rolling", "canary")),
        (("--canary-percent", "lots"), ("'--canary-percent'", "not a valid float")),
    ],
)
def test_bad_strategy_flags_exit_2_naming_the_flag_and_the_bound(
    flags: tuple[str, ...], named: tuple[str, ...]
) -> None:
    """Refused before Redis or a worker is needed (none is running here)."""
    result = conveyor(*UPDATE, *flags)
    assert result.exit_code == 2, result.stderr
    for text in named:
        assert text in result.stderr


def test_good_strategy_flags_reach_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every flag sets its field of the job that is enqueued."""
    sent: list[UpdateServiceJob] = []

    def submit(job: UpdateServiceJob, **_: Any) -> NoReturn:
        sent.append(job)
        raise SystemExit(0)

    monkeypatch.setattr(core, "submit", submit)
    result = conveyor(
        *UPDATE,
        "--strategy",
        "canary",
        "--bake-minutes",
        "30",
        "--canary-percent",
        "12.5",
        "--canary-bake-minutes",
        "15",
        "--alarm",
        "high-5xx",
        "--alarm",
        "p99-latency",
        "--circuit-breaker",
        "--circuit-breaker-threshold",
        "4",
        "--circuit-breaker-threshold-type",
        "count",
    )
    assert result.exit_code == 0, result.stderr
    (job,) = sent
    assert job.service_options() == {
        "circuit_breaker": True,
        "strategy": "canary",
        "bake_minutes": 30,
        "canary_percent": 12.5,
        "canary_bake_minutes": 15,
        "alarms": ("high-5xx", "p99-latency"),
        "circuit_breaker_threshold_type": "count",
        "circuit_breaker_threshold": 4,
    }


def test_a_release_file_with_a_bad_option_exits_2_naming_the_entry(tmp_path: Path) -> None:
    """The same bounds in release files, named by the entry and the field."""
    path = tmp_path / "release.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "cluster": "c",
                "strategy": "linear",
                "services": [
                    {"service": "web", "images": {"web": ":2"}, "linear_step_percent": 120}
                ],
            }
        )
    )
    for command in ("release", "plan"):
        result = conveyor(command, "-f", str(path))
        assert result.exit_code == 2, result.output
        assert "  waves[0][0] (web).linear_step_percent: 120.0 is outside" in result.stderr
        assert "3 to 100 percent" in result.stderr


def test_the_help_gives_the_contracts_bounds() -> None:
    """The CLI states the bounds as plain numbers (it loads no contract for --help): they are
    the contract's."""
    assert options.MAX_BAKE_MINUTES == strategy.MAX_BAKE_MINUTES
    assert options.MIN_CANARY_PERCENT == strategy.MIN_CANARY_PERCENT
    assert options.MIN_LINEAR_STEP_PERCENT == strategy.MIN_LINEAR_STEP_PERCENT
    assert set(options.STRATEGY_FLAGS) == {*strategy.STRATEGY_FIELDS, "circuit_breaker"}
    result = conveyor("update", "--help")
    assert result.exit_code == 0
    for flag in options.STRATEGY_FLAGS.values():
        assert flag in result.stdout
