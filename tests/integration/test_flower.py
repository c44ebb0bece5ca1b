"""Flower runs only with authentication, however it is started."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from localaws.devstack import ROOT, VENV_BIN, free_port

pytestmark = pytest.mark.integration

PLAIN: list[str] = []  # `celery -A worker.app flower`, nothing else
WITH_CONF = ["--conf=deploy/flowerconfig.py"]


def _get(url: str, auth: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)  # noqa: S310 - loopback URL made by the test
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
            return int(answer.status), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def _flower(
    redis_url: str, port: int, auth: str | None, extra: list[str], cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "FLOWER_"))}
    env.update(CONVEYOR_REDIS_URL=redis_url, CONVEYOR_FLOWER_PORT=str(port))
    env["PYTHONPATH"] = str(ROOT)  # the app, from wherever Flower is started
    if auth is not None:
        env["CONVEYOR_FLOWER_BASIC_AUTH"] = auth
    return subprocess.Popen(
        [str(VENV_BIN / "celery"), "-A", "worker.app", "flower", *extra],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.parametrize("extra", [PLAIN, WITH_CONF], ids=["plain", "with-conf"])
def test_flower_refuses_to_start_without_auth(
    redis_url: str, extra: list[str], tmp_path: Path
) -> None:
    """Without CONVEYOR_FLOWER_BASIC_AUTH the process exits with a message saying what to set,
    started plainly (from another directory too) or with the deploy/ configuration file."""
    proc = _flower(redis_url, free_port(), None, extra, cwd=ROOT if extra else tmp_path)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert b"CONVEYOR_FLOWER_BASIC_AUTH" in out


def test_flower_refuses_a_configuration_file_without_auth(redis_url: str, tmp_path: Path) -> None:
    """--conf pointing at a file that sets no authentication is refused too."""
    conf = tmp_path / "open.py"
    conf.write_text("port = 5599\n")
    proc = _flower(redis_url, free_port(), None, [f"--conf={conf}"])
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert b"does not run without authentication" in out


@pytest.mark.parametrize("extra", [PLAIN, WITH_CONF], ids=["plain", "with-conf"])
def test_flower_api_needs_the_credentials(redis_url: str, extra: list[str], tmp_path: Path) -> None:
    """/api/workers and /api/tasks answer 401 without or with wrong credentials, 200 with them;
    the password is not in Flower's output."""
    port = free_port()
    proc = _flower(redis_url, port, "ops:s3cret-pass", extra, cwd=ROOT if extra else tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _ = _get(f"{base}/api/workers")
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else b""
                assert time.monotonic() < deadline, "flower did not start"
                time.sleep(0.3)
        assert status == 401
        assert _get(f"{base}/api/workers", "ops:wrong")[0] == 401
        assert _get(f"{base}/api/tasks")[0] == 401
        status, body = _get(f"{base}/api/workers", "ops:s3cret-pass")
        assert status == 200
        assert isinstance(json.loads(body or b"{}"), dict)
        status, body = _get(f"{base}/api/tasks", "ops:s3cret-pass")
        assert status == 200
        assert isinstance(json.loads(body), dict)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert b"s3cret-pass" not in out
