"""A worker whose metrics port is taken runs on, and its pool children never hold the port.

Found by the chaos campaign: a worker started in place of a killed one, whose orphaned pool
children still held the metrics port, logged "Unrecoverable error: Address already in use",
published a heartbeat and swept for a while (Celery orders bootsteps without dependencies by
hash, so the sweeper could start before the metrics endpoint), then exited.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from localaws.devstack import free_port
from worker.observe import metrics


@pytest.fixture
def samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A directory of samples for the multiprocess collector; the endpoint shut after."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    yield
    server = getattr(metrics, "_server", None)
    if server is not None:
        server.shutdown()
        server.server_close()
        monkeypatch.setattr(metrics, "_server", None)


def _holder(port: int) -> socket.socket:
    held = socket.socket()
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    held.bind(("127.0.0.1", port))
    held.listen()
    return held


def _scrape(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            return int(answer.status)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def test_a_taken_port_is_served_once_it_is_free(
    samples: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The port is held by another process's socket: serve() does not raise, and the endpoint
    answers once the holder lets the port go."""
    monkeypatch.setattr(metrics, "REBIND_SECONDS", 0.2, raising=False)
    port = free_port()
    held = _holder(port)
    try:
        metrics.serve("127.0.0.1", port, object(), ["conveyor"])
    finally:
        held.close()
    deadline = time.monotonic() + 30
    while _scrape(port) != 200:
        assert time.monotonic() < deadline, "the endpoint never came up"
        time.sleep(0.2)


def test_a_pool_child_does_not_hold_the_port(samples: None) -> None:
    """A child forked after the endpoint is up closes its copy of the listening socket: with
    the main process's endpoint closed, the port is free while the child still runs."""
    port = free_port()
    metrics.serve("127.0.0.1", port, object(), ["conveyor"])
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            with contextlib.suppress(Exception):
                metrics.close_in_child()  # what worker_process_init does
            os.write(ready_w, b"1")
            os.read(done_r, 1)  # stay alive until the parent has tried the port
        finally:
            os._exit(0)
    try:
        os.read(ready_r, 1)
        server = metrics._server
        server.shutdown()
        server.server_close()
        metrics._server = None
        with socket.socket() as again:
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            again.bind(("127.0.0.1", port))  # EADDRINUSE while the child holds the socket
            again.listen()
    finally:
        os.write(done_w, b"1")
        os.waitpid(child, 0)
        for fd in (ready_r, ready_w, done_r, done_w):
            os.close(fd)
