"""Metric gates between a release's waves, end to end: the real CLI and a worker, the local AWS,
and a real Prometheus scraping an exporter whose values the test sets (the fixtures of
tests/integration/test_gates_prometheus.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from localaws.devstack import Worker, free_port
from localaws.testing import create_alarm
from tests.integration.conftest import Stack
from tests.integration.test_gates_prometheus import (  # noqa: F401 - fixtures used by name
    Exporter,
    PrometheusServer,
    exporter,
    gate,
    prometheus,
    settled,
)
from tests.integration.test_metrics import scrape, total
from tests.integration.test_releases_e2e import image_of, services, write

pytestmark = pytest.mark.integration


def _gate(query: str, **fields: Any) -> dict[str, Any]:
    """A gate on the workers' Prometheus with the shortest interval, measured at once."""
    return {
        "name": "errors",
        "prometheus": {"query": query},
        "success": "result < 0.01",
        "interval_seconds": 5,
        "initial_delay_seconds": 0,
        "count": 1,
        **fields,
    }


def _error_ratio(server: PrometheusServer, gauges: Exporter, ratio: float) -> None:
    """Set the error ratio and wait until Prometheus answers it."""
    gauges.error_ratio.set(ratio)
    settled(server, gate("max(error_ratio)", "result < 1"), ratio)


def _release(stack: Stack, path: Path) -> dict[str, Any]:
    """Run `conveyor release -f PATH --json` to its end; the release as printed."""
    result = stack.cli("release", "-f", str(path), "--json")
    assert result.returncode in (0, 1), result.stderr + result.stdout
    release: dict[str, Any] = json.loads(result.stdout)
    return release


def _trail(stack: Stack, release_id: str) -> list[str]:
    out = stack.cli("history", "--json")
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    return [e["event"] for e in events if e.get("id") == release_id]


def test_a_passed_gate_lets_the_next_wave_start(
    stack: Stack,
    start_worker: Callable[[str], Worker],
    tmp_path: Path,
    prometheus: PrometheusServer,  # noqa: F811
    exporter: tuple[Exporter, int],  # noqa: F811
) -> None:
    """The error ratio is low: the gate after wave 1 passes on two measurements taken by the
    worker, and only then does wave 2 start; the record, `status`, the audit trail and the
    worker's metrics show the gate's readings and verdict."""
    _error_ratio(prometheus, exporter[0], 0.001)
    port = free_port()
    stack.env.update(
        CONVEYOR_PROMETHEUS_URL=prometheus.url,
        CONVEYOR_METRICS_PORT=str(port),
        CONVEYOR_METRICS_DIR=str(tmp_path / "samples"),
    )
    start_worker("w1")
    a, b = services(stack, 2)
    path = write(
        tmp_path,
        {
            "cluster": "demo",
            "waves": [
                {
                    "services": [{"service": a, "images": {"app": ":4.0.0"}}],
                    "gate": _gate("max(error_ratio)", count=2),
                },
                [{"service": b, "images": {"app": ":4.0.0"}}],
            ],
        },
    )
    release = _release(stack, path)
    assert release["state"] == "succeeded", release
    (run,) = release["gate_runs"]
    assert (run["wave"], run["gate"], run["state"]) == (0, "errors", "passed")
    assert [m["value"] for m in run["measurements"]] == [0.001, 0.001]
    second = stack.record(release["waves"][1][0])
    assert second["created_at"] >= run["decided_at"]
    assert image_of(stack, b).endswith(":4.0.0")
    shown = stack.cli("status", release["id"])
    assert "gate      wave 1 errors: passed · 0.001, 0.001" in shown.stdout
    assert "gate passed" in _trail(stack, release["id"])
    samples = scrape(port)
    assert total(samples, "conveyor_release_gate_verdicts_total", verdict="passed") == 1
    assert (
        total(
            samples,
            "conveyor_release_gate_measurements_total",
            source="prometheus",
            result="value",
        )
        == 2
    )


def test_a_failed_gate_rolls_the_wave_back_and_fails_the_release(
    stack: Stack,
    start_worker: Callable[[str], Worker],
    tmp_path: Path,
    prometheus: PrometheusServer,  # noqa: F811
    exporter: tuple[Exporter, int],  # noqa: F811
) -> None:
    """The error ratio is high: the gate after wave 1 fails, both services of the wave are
    rolled back to the revision they ran before (their previous images, built from that
    revision), the release fails naming the gate and the value, and wave 2 is never touched."""
    _error_ratio(prometheus, exporter[0], 0.2)
    stack.env["CONVEYOR_PROMETHEUS_URL"] = prometheus.url
    start_worker("w1")
    a, b, c = services(stack, 3)
    before = {name: image_of(stack, name) for name in (a, b, c)}
    path = write(
        tmp_path,
        {
            "cluster": "demo",
            "waves": [
                {
                    "services": [
                        {"service": a, "images": {"app": ":4.0.0"}},
                        {"service": b, "images": {"app": ":4.0.0"}},
                    ],
                    "gate": _gate("max(error_ratio)"),
                },
                [{"service": c, "images": {"app": ":4.0.0"}}],
            ],
        },
    )
    release = _release(stack, path)
    assert release["state"] == "failed", release
    assert release["reason"].startswith(
        "gate errors: 1 measurement(s) did not meet result < 0.01 (tolerated: 0): 0.2; "
        "wave 1 rolled back: "
    )
    assert [(r["service"], r["how"], r["outcome"]) for r in release["rollbacks"]] == [
        (a, "deployment", "succeeded"),
        (b, "deployment", "succeeded"),
    ]
    for rollback, name, deployment_id in zip(
        release["rollbacks"], (a, b), release["waves"][0], strict=True
    ):
        rolled = stack.record(deployment_id)
        assert rollback["to"] == rolled["previous_task_definition_arn"]
        back = stack.record(rollback["deployment"])
        assert back["base_task_definition_arn"] == rolled["previous_task_definition_arn"]
        assert image_of(stack, name) == before[name]
    assert image_of(stack, c) == before[c]
    assert [d["state"] for d in release["deployments"]] == ["succeeded", "succeeded", "pending"]
    trail = _trail(stack, release["id"])
    assert trail.count("gate failed") == 1
    assert "release verdict" in trail


def test_an_inconclusive_gate_pauses_until_approved(
    stack: Stack,
    start_worker: Callable[[str], Worker],
    tmp_path: Path,
    prometheus: PrometheusServer,  # noqa: F811
) -> None:
    """The gate's query finds no data: the release pauses after wave 1 (wave 2 untouched,
    `status` saying what it waits for), and `conveyor approve REL` continues it."""
    stack.env["CONVEYOR_PROMETHEUS_URL"] = prometheus.url
    start_worker("w1")
    a, b = services(stack, 2)
    path = write(
        tmp_path,
        {
            "cluster": "demo",
            "waves": [
                {
                    "services": [{"service": a, "images": {"app": ":4.0.0"}}],
                    "gate": _gate("max(no_such_metric)"),
                },
                [{"service": b, "images": {"app": ":4.0.0"}}],
            ],
        },
    )
    started = stack.cli("release", "-f", str(path), "--no-wait")
    assert started.returncode == 0, started.stderr
    release_id = started.stdout.strip()
    deadline = time.monotonic() + 120
    waiting = "awaiting  approval after gate errors of wave 1 was inconclusive"
    while waiting not in (shown := stack.cli("status", release_id)).stdout:
        assert time.monotonic() < deadline, shown.stdout + shown.stderr
        time.sleep(0.5)
    assert "gate      wave 1 errors: inconclusive · no data (the query matched no series)" in (
        shown.stdout
    )
    assert image_of(stack, b).endswith(":1.0.0")

    approved = stack.cli("approve", release_id, "--by", "release-manager", "--json")

    assert approved.returncode == 0, approved.stderr + approved.stdout
    release = json.loads(approved.stdout)
    assert release["state"] == "succeeded"
    assert image_of(stack, b).endswith(":4.0.0")
    trail = _trail(stack, release_id)
    assert trail.count("gate inconclusive") == 1
    assert "approved" in trail


def test_a_cloudwatch_alarm_gate_in_ok_passes_the_last_wave(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """A release-level alarm gate, measured with the workers' CloudWatch client on the local
    AWS: the alarm is OK, so the gate after the last wave passes and the release succeeds."""
    watch = boto3.client(
        "cloudwatch",
        endpoint_url=stack.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    alarm = f"gate-{time.time_ns()}"
    create_alarm(watch, alarm)
    watch.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="quiet")
    start_worker("w1")
    (a,) = services(stack, 1)
    path = write(
        tmp_path,
        {
            "cluster": "demo",
            "gate": {"name": "alarm", "alarm": {"name": alarm}, "count": 1, "interval_seconds": 5},
            "services": [{"service": a, "images": {"app": ":4.0.0"}}],
        },
    )
    release = _release(stack, path)
    assert release["state"] == "succeeded", release
    (run,) = release["gate_runs"]
    assert run["state"] == "passed"
    assert run["measurements"][0]["detail"] == "OK"
