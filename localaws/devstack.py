"""A local stack of real processes: redis-server and celery workers on free ports.

Used by `make demo` and the integration tests: nothing is mocked, everything talks over real
sockets, and every process is stopped afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    """The redis-server executable; fails (not skips) with the fix when it is missing."""
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError(
            "redis-server is not installed; `make test` installs it (Debian package "
            "redis-server), or run: apt-get install -y redis-server"
        )
    return found


@dataclass(frozen=True)
class RedisTls:
    """Server certificate, key and the CA that signed them, for a TLS-only redis-server."""

    cert: Path
    key: Path
    ca: Path


@contextmanager
def run_redis(
    *,
    appendonly: bool = False,
    port: int | None = None,
    workdir: Path | None = None,
    password: str | None = None,
    tls: RedisTls | None = None,
    extra_args: tuple[str, ...] = (),
) -> Iterator[str]:
    """Start a redis-server on a free port; yield its URL; stop it afterwards.

    With ``tls`` the server speaks only TLS (``rediss://``); with ``password`` it requires AUTH.
    ``extra_args`` are further ``--option value`` pairs for the server.
    """
    port = port or free_port()
    with tempfile.TemporaryDirectory(prefix="conveyor-redis-") as tmp:
        directory = workdir or Path(tmp)
        args = [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--save",
            "",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--appendonly",
            "yes" if appendonly else "no",
        ]
        if tls is None:
            args += ["--port", str(port)]
        else:
            args += [
                "--port",
                "0",
                "--tls-port",
                str(port),
                "--tls-cert-file",
                str(tls.cert),
                "--tls-key-file",
                str(tls.key),
                "--tls-ca-cert-file",
                str(tls.ca),
                "--tls-auth-clients",
                "no",
            ]
        if password is not None:
            args += ["--requirepass", password]
        args += list(extra_args)
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        auth = f":{password}@" if password is not None else ""
        url = f"{'rediss' if tls else 'redis'}://{auth}127.0.0.1:{port}/0"
        options: dict[str, Any] = {}
        if tls is not None:
            options = {"ssl_cert_reqs": "required", "ssl_ca_certs": str(tls.ca)}
        client = redis.Redis.from_url(url, **options)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server did not start on port {port}") from None
                    time.sleep(0.05)
            yield url
        finally:
            client.close()
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def aws_env(endpoint: str) -> dict[str, str]:
    """Environment that points the AWS SDK at the local AWS with dummy credentials."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


class Worker:
    """A real `celery -A worker.app worker` process group."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        log_path: Path,
        concurrency: int = 2,
        queues: str | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                str(VENV_BIN / "celery"),
                "-A",
                "worker.app",
                "worker",
                "-n",
                f"{name}@%h",
                "--pool",
                "prefork",
                "--concurrency",
                str(concurrency),
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
                *(["-Q", queues] if queues else []),
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a test can kill it whole
        )

    def wait_ready(self, redis_url: str, timeout: float = 60.0) -> None:
        """Block until this worker answers a ping through Redis; RuntimeError if it died."""
        from celery import Celery

        app = Celery("conveyor-probe", broker=redis_url)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                replies = app.control.ping(timeout=0.5) or []
                if any(self.name in host for reply in replies for host in reply):
                    return
                if self.proc.poll() is not None:
                    break
        finally:
            app.close()
        raise RuntimeError(f"worker {self.name} did not start:\n{self.log()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole worker, children included, as a machine failure would."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()

    def stop(self) -> None:
        """Warm shutdown, then kill if it hangs."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()

    def log(self) -> str:
        """What the worker printed."""
        return self.log_path.read_text(errors="replace")
