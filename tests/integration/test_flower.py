"""Flower, as deployed with deploy/flowerconfig.py, runs only with authentication."""

from __future__ import annotations

import base64
import os
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from localaws.devstack import ROOT, VENV_BIN, free_port

pytestmark = pytest.mark.integration


def _get(url: str, auth: str | None = None) -> int:
    request = urllib.request.Request(url)  # noqa: S310 - loopback URL made by the test
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _flower(redis_url: str, port: int, auth: str | None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(CONVEYOR_REDIS_URL=redis_url, CONVEYOR_FLOWER_PORT=str(port))
    if auth is not None:
        env["CONVEYOR_FLOWER_BASIC_AUTH"] = auth
    return subprocess.Popen(
        [str(VENV_BIN / "celery"), "-A", "worker.app", "flower", "--conf=deploy/flowerconfig.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_flower_refuses_to_start_without_auth(redis_url: str) -> None:
    """Without CONVEYOR_FLOWER_BASIC_AUTH the process exits with a message saying what to set."""
    proc = _flower(redis_url, free_port(), None)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert b"CONVEYOR_FLOWER_BASIC_AUTH" in out


def test_flower_api_needs_the_credentials(redis_url: str) -> None:
    """The API answers 401 without credentials and 200 with them."""
    port = free_port()
    proc = _flower(redis_url, port, "ops:s3cret-pass")
    try:
        url = f"http://127.0.0.1:{port}/api/workers"
        deadline = time.monotonic() + 60
        while True:
            try:
                status = _get(url)
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else b""
                assert time.monotonic() < deadline, "flower did not start"
                time.sleep(0.3)
        assert status == 401
        assert _get(url, "ops:wrong") == 401
        assert _get(url, "ops:s3cret-pass") == 200
    finally:
        proc.terminate()
        proc.wait(20)
        if proc.stdout is not None:
            proc.stdout.close()
