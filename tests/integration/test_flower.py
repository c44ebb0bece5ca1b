"""Flower runs only with authentication, however it is started."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from localaws.devstack import ROOT, VENV_BIN, free_port
from tests.selfsigned import self_signed

pytestmark = pytest.mark.integration

PLAIN: list[str] = []  # `celery -A worker.app flower`, nothing else
WITH_CONF = ["--conf=deploy/flowerconfig.py"]


PASSWORD = "s3cret-flower-pass"
ANY = "0.0.0.0"  # noqa: S104 - what Flower must refuse, or serve only over TLS


def _get(
    url: str, auth: str | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url)  # noqa: S310 - loopback URL made by the test
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as answer:  # noqa: S310
            return int(answer.status), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def _flower(
    redis_url: str,
    port: int,
    auth: str | None,
    extra: list[str],
    cwd: Path = ROOT,
    env_extra: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "FLOWER_"))}
    env.update(CONVEYOR_REDIS_URL=redis_url, CONVEYOR_FLOWER_PORT=str(port))
    env["PYTHONPATH"] = str(ROOT)  # the app, from wherever Flower is started
    if auth is not None:
        env["CONVEYOR_FLOWER_BASIC_AUTH"] = auth
    env.update(env_extra or {})
    return subprocess.Popen(
        [str(VENV_BIN / "celery"), "-A", "worker.app", "flower", *extra],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _refused(proc: subprocess.Popen[bytes]) -> bytes:
    """The output of a Flower expected to exit by itself; killed, and the test failed, if not."""
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=20)
        pytest.fail("flower started instead of refusing")
    return out


def _wait_until_up(
    proc: subprocess.Popen[bytes], url: str, context: ssl.SSLContext | None = None
) -> int:
    deadline = time.monotonic() + 60
    while True:
        try:
            return _get(url, context=context)[0]
        except (urllib.error.URLError, ConnectionError):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else b""
            assert time.monotonic() < deadline, "flower did not start"
            time.sleep(0.3)


@pytest.mark.parametrize("extra", [PLAIN, WITH_CONF], ids=["plain", "with-conf"])
def test_flower_refuses_to_start_without_auth(
    redis_url: str, extra: list[str], tmp_path: Path
) -> None:
    """Without CONVEYOR_FLOWER_BASIC_AUTH the process exits with a message saying what to set,
    started plainly (from another directory too) or with the deploy/ configuration file."""
    proc = _flower(redis_url, free_port(), None, extra, cwd=ROOT if extra else tmp_path)
    out = _refused(proc)
    assert proc.returncode != 0
    assert b"CONVEYOR_FLOWER_BASIC_AUTH" in out


def test_flower_refuses_a_configuration_file_without_auth(redis_url: str, tmp_path: Path) -> None:
    """--conf pointing at a file that sets no authentication is refused too."""
    conf = tmp_path / "open.py"
    conf.write_text("port = 5599\n")
    proc = _flower(redis_url, free_port(), None, [f"--conf={conf}"])
    out = _refused(proc)
    assert proc.returncode != 0
    assert b"does not run without authentication" in out


@pytest.mark.parametrize("extra", [PLAIN, WITH_CONF], ids=["plain", "with-conf"])
@pytest.mark.parametrize(
    ("auth", "problem"),
    [
        ("admin:", b"empty password"),
        ("admin:Zq7-xw", b"shorter than 12"),
        (f"ops:{PASSWORD},admin:", b"pair 2 of 2 has an empty password"),
    ],
    ids=["empty", "short", "second-empty"],
)
def test_flower_refuses_empty_and_short_passwords(
    redis_url: str, extra: list[str], auth: str, problem: bytes, tmp_path: Path
) -> None:
    """Every user:password pair is checked before Flower serves: exit 2, naming the setting and
    the fix, never the password; started plainly or with the deploy/ configuration file."""
    proc = _flower(redis_url, free_port(), auth, extra, cwd=ROOT if extra else tmp_path)
    out = _refused(proc)
    assert proc.returncode == 2, out
    assert b"CONVEYOR_FLOWER_BASIC_AUTH" in out
    assert problem in out
    assert b"Zq7-xw" not in out
    assert PASSWORD.encode() not in out


def test_flower_checks_its_own_basic_auth_option_too(redis_url: str) -> None:
    """A short password given through Flower's --basic_auth is refused as well."""
    proc = _flower(redis_url, free_port(), None, ["--basic_auth=admin:Zq7-xw"])
    out = _refused(proc)
    assert proc.returncode == 2, out
    assert b"--basic_auth" in out
    assert b"Zq7-xw" not in out


@pytest.mark.parametrize("extra", [PLAIN, WITH_CONF], ids=["plain", "with-conf"])
def test_flower_refuses_plain_http_beyond_loopback(redis_url: str, extra: list[str]) -> None:
    """On 0.0.0.0 without TLS Flower exits 2 naming the TLS settings and the explicit opt-out."""
    env = {"CONVEYOR_FLOWER_ADDRESS": ANY}
    proc = _flower(redis_url, free_port(), f"ops:{PASSWORD}", extra, env_extra=env)
    out = _refused(proc)
    assert proc.returncode == 2, out
    assert b"CONVEYOR_FLOWER_TLS_CERT" in out
    assert b"CONVEYOR_FLOWER_INSECURE_HTTP" in out


def test_flower_serves_https_with_its_tls_settings(redis_url: str, tmp_path: Path) -> None:
    """CONVEYOR_FLOWER_TLS_CERT/KEY on 0.0.0.0: HTTPS, 401 without credentials, 200 with them."""
    cert, key = self_signed(tmp_path)
    port = free_port()
    env = {
        "CONVEYOR_FLOWER_ADDRESS": ANY,
        "CONVEYOR_FLOWER_TLS_CERT": str(cert),
        "CONVEYOR_FLOWER_TLS_KEY": str(key),
    }
    proc = _flower(redis_url, port, f"ops:{PASSWORD}", PLAIN, env_extra=env)
    trusted = ssl.create_default_context(cafile=str(cert))
    base = f"https://127.0.0.1:{port}"
    try:
        assert _wait_until_up(proc, f"{base}/api/workers", trusted) == 401
        assert _get(f"{base}/api/workers", f"ops:{PASSWORD}", trusted)[0] == 200
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert PASSWORD.encode() not in out


def test_flower_insecure_http_is_an_explicit_choice(redis_url: str) -> None:
    """CONVEYOR_FLOWER_INSECURE_HTTP=true (a proxy in front terminates TLS): plain HTTP on
    0.0.0.0, still behind auth."""
    port = free_port()
    env = {"CONVEYOR_FLOWER_ADDRESS": ANY, "CONVEYOR_FLOWER_INSECURE_HTTP": "true"}
    proc = _flower(redis_url, port, f"ops:{PASSWORD}", PLAIN, env_extra=env)
    try:
        assert _wait_until_up(proc, f"http://127.0.0.1:{port}/api/workers") == 401
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


@pytest.mark.parametrize("extra", [PLAIN, WITH_CONF], ids=["plain", "with-conf"])
def test_flower_api_needs_the_credentials(redis_url: str, extra: list[str], tmp_path: Path) -> None:
    """/api/workers and /api/tasks answer 401 without or with wrong credentials, 200 with them;
    the password is not in Flower's output."""
    port = free_port()
    proc = _flower(redis_url, port, f"ops:{PASSWORD}", extra, cwd=ROOT if extra else tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        assert _wait_until_up(proc, f"{base}/api/workers") == 401
        assert _get(f"{base}/api/workers", "ops:wrong")[0] == 401
        assert _get(f"{base}/api/tasks")[0] == 401
        status, body = _get(f"{base}/api/workers", f"ops:{PASSWORD}")
        assert status == 200
        assert isinstance(json.loads(body or b"{}"), dict)
        status, body = _get(f"{base}/api/tasks", f"ops:{PASSWORD}")
        assert status == 200
        assert isinstance(json.loads(body), dict)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert PASSWORD.encode() not in out
