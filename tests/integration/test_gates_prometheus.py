"""Metric gates against a real Prometheus server scraping an exporter whose values the test sets.

One ``prometheus`` process (Debian's package; ``make packages`` installs it) per module, on a
free port, scraping a prometheus_client exporter in this process every 200 ms. Each test sets
its gauges, waits until Prometheus answers with the value set, then measures and judges gates
as the release flow will: with :class:`worker.gates.prometheus.PrometheusMetrics` and
:func:`worker.domain.gates.evaluate`.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from localaws.devstack import free_port
from producers.contract.gates import Gate, load_gate
from worker.domain.gates import GateOutcome, Measurement, evaluate
from worker.gates.prometheus import PrometheusMetrics

WAIT_SECONDS = 60.0


@dataclass
class Exporter:
    """The gauges Prometheus scrapes: ``error_ratio`` and ``latency_seconds{route}``."""

    error_ratio: Gauge
    latency: Gauge


@dataclass
class PrometheusServer:
    """A running Prometheus and its URL."""

    url: str
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def exporter() -> Iterator[tuple[Exporter, int]]:
    """A prometheus_client HTTP server on a free port, with a registry of its own."""
    registry = CollectorRegistry()
    gauges = Exporter(
        Gauge("error_ratio", "share of requests that failed", registry=registry),
        Gauge("latency_seconds", "latency by route", ["route"], registry=registry),
    )
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield gauges, port
    server.shutdown()
    server.server_close()  # shutdown() stops serving but leaves the socket open
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def prometheus(
    exporter: tuple[Exporter, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    """A real Prometheus scraping the exporter every 200 ms, on a free port."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed; run `make packages` (Debian's prometheus)")
    _, exporter_port = exporter
    directory = tmp_path_factory.mktemp("prometheus")
    config = directory / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 200ms, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: app\n"
        "    scrape_interval: 200ms\n"
        "    scrape_timeout: 150ms\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
    )
    port = free_port()
    log = (directory / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            # Look back only a second for the newest sample, so a changed gauge shows at once.
            "--query.lookback-delta=1s",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: _ready(url), what=f"Prometheus at {url} (log: {directory})")
        yield PrometheusServer(url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as answer:  # noqa: S310  # http on localhost
            return int(answer.status) == 200
    except OSError:
        return False


def _wait_for(condition: Callable[[], Any], *, what: str) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"waited {WAIT_SECONDS} s for {what}")
        time.sleep(0.1)


def gate(query: str, success: str, **fields: Any) -> Gate:
    """A Prometheus gate on the default server."""
    return load_gate(
        {"name": "g", "prometheus": {"query": query}, "success": success, **fields},
    )


def measure(server: PrometheusServer, g: Gate) -> Measurement:
    """One measurement of ``g`` on ``server`` (the worker's setting)."""
    return asyncio.run(PrometheusMetrics(server.url).measure(g))


def settled(server: PrometheusServer, g: Gate, expected: float) -> Measurement:
    """Wait until Prometheus has scraped the value the test set, then return the measurement."""
    found: Measurement = _wait_for(
        lambda: (m := measure(server, g)).value == expected and m,
        what=f"{g.prometheus.query if g.prometheus else g.name} to read {expected}",
    )
    return found


def test_a_gate_passes_then_fails_as_the_metric_moves(
    prometheus: PrometheusServer, exporter: tuple[Exporter, int]
) -> None:
    """Measurements under the threshold pass the gate; once the error ratio rises, the
    measurements fail it, and the reason names the gate, the values and the condition."""
    gauges, _ = exporter
    g = gate("max(error_ratio)", "result < 0.01", count=3, failure_limit=1)
    gauges.error_ratio.set(0.001)
    good = [settled(prometheus, g, 0.001) for _ in range(3)]
    assert evaluate(g, good).outcome is GateOutcome.PASSED

    gauges.error_ratio.set(0.2)
    bad = [settled(prometheus, g, 0.2) for _ in range(2)]
    verdict = evaluate(g, bad)
    assert verdict.outcome is GateOutcome.FAILED
    assert verdict.reason == (
        "gate g: 2 measurement(s) did not meet result < 0.01 (tolerated: 1): 0.2, 0.2"
    )


def test_scalar_results_and_conditions_with_and(
    prometheus: PrometheusServer, exporter: tuple[Exporter, int]
) -> None:
    """A scalar answer is a value; ``and`` bounds it on both sides."""
    gauges, _ = exporter
    gauges.error_ratio.set(0.5)
    g = gate("scalar(max(error_ratio)) * 4", "result >= 1 and result <= 3", count=1)
    assert evaluate(g, [settled(prometheus, g, 2.0)]).outcome is GateOutcome.PASSED


def test_no_series_is_no_data_and_inconclusive(prometheus: PrometheusServer) -> None:
    """A query that matches nothing is no data; past the limit the gate is inconclusive and
    carries its on_inconclusive action."""
    g = gate("max(no_such_metric)", "result < 1", count=2, inconclusive_limit=0)
    measured = measure(prometheus, g)
    assert measured == Measurement(detail="the query matched no series")
    verdict = evaluate(g, [measured])
    assert verdict.outcome is GateOutcome.INCONCLUSIVE
    assert verdict.action == "pause"


def test_several_series_and_bad_queries_are_errors(
    prometheus: PrometheusServer, exporter: tuple[Exporter, int]
) -> None:
    """Two series are an error naming them; a query Prometheus refuses is an error quoting
    Prometheus; a range vector is an error asking for an instant query."""
    gauges, _ = exporter
    gauges.latency.labels("/a").set(0.1)
    gauges.latency.labels("/b").set(0.2)
    g = gate("latency_seconds", "result < 1")

    def two_series() -> str | None:
        error = measure(prometheus, g).error
        return error if error and "2 series" in error else None

    error = _wait_for(two_series, what="both latency series")
    assert 'route="/a"' in error
    assert 'route="/b"' in error
    assert "aggregate it to one" in error

    refused = measure(prometheus, gate("sum(rate(", "result < 1")).error
    assert refused is not None
    assert refused.startswith(f"{prometheus.url}: HTTP 400, bad_data: ")

    ranged = measure(prometheus, gate("latency_seconds[1m]", "result < 1")).error
    assert ranged is not None
    assert "use an instant query" in ranged


def test_nan_is_no_data(prometheus: PrometheusServer) -> None:
    """Prometheus's NaN (0/0) is no data, not a value that fails every comparison."""
    g = gate("scalar(vector(0)) / 0", "result < 1")
    assert measure(prometheus, g) == Measurement(detail="the query answered NaN")


def measure_at(url: str) -> str | None:
    """The error of one measurement of a gate on ``url`` with a one-second timeout."""
    g = load_gate(
        {
            "name": "g",
            "prometheus": {"query": "up", "url": url, "timeout_seconds": 1},
            "success": "result > 0",
        }
    )
    return asyncio.run(PrometheusMetrics(None).measure(g)).error


def test_an_unreachable_or_slow_server_is_an_error() -> None:
    """Nothing listening is an error naming the server; so is a server that accepts the
    connection and never answers, once the gate's timeout has passed."""
    closed = f"http://127.0.0.1:{free_port()}"
    error = measure_at(closed)
    assert error is not None
    assert error.startswith(f"could not reach {closed}: ")

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        assert measure_at(url) == f"{url} did not answer within 1 s"
