"""Fixtures for end-to-end tests: the local AWS, real workers, the real CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis

from localaws.devstack import ROOT, VENV_BIN, Worker, aws_env
from localaws.testing import run_local_aws


@pytest.fixture(scope="session")
def local_aws() -> Iterator[str]:
    """The local AWS with the demo world, rollouts taking about two seconds."""
    with run_local_aws(rollout_seconds=2.0, seed="demo") as url:
        yield url


@dataclass
class Stack:
    """Everything an end-to-end test drives."""

    env: dict[str, str]
    redis_url: str
    endpoint: str
    logs: Path

    def ecs(self) -> Any:
        """A boto3 ECS client on the local AWS."""
        return boto3.client(
            "ecs",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def ecr(self) -> Any:
        """A boto3 ECR client on the local AWS."""
        return boto3.client(
            "ecr",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def cli(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """Run the real `conveyor` command."""
        return subprocess.run(
            [str(VENV_BIN / "conveyor"), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def record(self, deployment_id: str) -> dict[str, Any]:
        """The deployment record, read straight from Redis."""
        raw = redis.Redis.from_url(self.redis_url).get(f"conveyor:deployment:{deployment_id}")
        assert raw is not None
        data: dict[str, Any] = json.loads(raw)
        return data


@pytest.fixture
def stack(redis_url: str, local_aws: str, tmp_path: Path) -> Stack:
    """A clean Redis database and the environment for workers and the CLI."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CONVEYOR_"))},
        **aws_env(local_aws),
        "CONVEYOR_REDIS_URL": redis_url,
        "CONVEYOR_POLL_INTERVAL": "1",
        "CONVEYOR_RECOVERY_INTERVAL": "2",
        "CONVEYOR_RECOVERY_GRACE": "15",
        "CONVEYOR_STEP_TIME_LIMIT": "10",
        "CONVEYOR_LOG_FORMAT": "json",
    }
    return Stack(env=env, redis_url=redis_url, endpoint=local_aws, logs=tmp_path)


@pytest.fixture
def start_worker(stack: Stack) -> Iterator[Callable[[str], Worker]]:
    """Start named workers; every one is killed after the test."""
    started: list[Worker] = []

    def start(name: str) -> Worker:
        worker = Worker(name, stack.env, stack.logs / f"{name}.log")
        started.append(worker)
        wait_ready(worker, stack.redis_url)
        return worker

    yield start
    # Killed, not shut down warm (about 1.8 s a worker): the test has checked what it checks,
    # and the next one starts on a flushed Redis, so nothing a warm shutdown finishes is read.
    # A test that needs a warm shutdown asks for it (Worker.stop) in its body.
    for worker in started:
        worker.kill()


def wait_ready(worker: Worker, redis_url: str, timeout: float = 60.0) -> None:
    """Block until ``worker`` answers a ping through Redis; RuntimeError if it died or did not
    answer within ``timeout`` seconds.

    Worker.wait_ready asks every worker and collects replies for its whole 0.5 s window; asking
    this worker alone for one reply returns as soon as it answers, some 0.5 s sooner on each
    worker start.
    """
    from celery import Celery

    me = f"{worker.name}@{socket.gethostname()}"  # what ``-n NAME@%h`` names it
    app = Celery("conveyor-probe", broker=redis_url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            replies = app.control.ping(destination=[me], limit=1, timeout=0.5) or []
            if any(me in reply for reply in replies):
                return
            if worker.proc.poll() is not None:
                break
    finally:
        app.close()
    raise RuntimeError(f"worker {worker.name} did not start:\n{worker.log()[-3000:]}")


def redis_contents(client: redis.Redis) -> bytes:
    """Every key and value in the database, read by type (DUMP may compress, hiding text)."""
    parts: list[object] = []
    for key in client.scan_iter("*"):
        kind = client.type(key)
        parts.append(key)
        if kind == b"string":
            parts.append(client.get(key) or b"")
        elif kind == b"hash":
            parts.extend(b"%s=%s" % (_bytes(k), _bytes(v)) for k, v in client.hgetall(key).items())
        elif kind == b"list":
            parts.extend(client.lrange(key, 0, -1))
        elif kind == b"set":
            parts.extend(client.smembers(key))
        elif kind == b"zset":
            parts.extend(client.zrange(key, 0, -1))
    return b"\n".join(_bytes(part) for part in parts)


def _bytes(value: object) -> bytes:
    """A reply of a client without decode_responses, which redis-py types as bytes or str."""
    return value if isinstance(value, bytes) else str(value).encode()
