"""A primary that refuses writes until a replica is back (`min-replicas-to-write`, as
docs/operations.md advises behind Sentinel) is an outage to ride out, not a refusal: found
by the chaos campaign (seed 6), where every enqueue in that window exited 3 at once."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis

from config.settings import Settings
from localaws.devstack import Worker, aws_env, free_port, redis_server_binary, run_redis
from producers.client import ConveyorClient, ConveyorUnavailableError
from producers.contract.enums import DeploymentState
from producers.contract.jobs import ImageUpdate, UpdateServiceJob

pytestmark = pytest.mark.integration

NO_LONE_WRITES = ("--min-replicas-to-write", "1", "--min-replicas-max-lag", "10")


def _replica_of(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            redis_server_binary(),
            "--port",
            str(free_port()),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(workdir),
            "--replicaof",
            "127.0.0.1",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


def _job() -> UpdateServiceJob:
    return UpdateServiceJob(
        cluster="demo", service="web", images=(ImageUpdate(container="app", image=":2.0.0"),)
    )


def test_an_enqueue_waits_for_the_primary_to_have_a_replica_again(tmp_path: Path) -> None:
    """The enqueue starts while the primary has no replica (NOREPLICAS); a replica connects a
    moment later; the same enqueue then goes through, once."""
    with run_redis(extra_args=NO_LONE_WRITES) as url:
        primary_port = int(url.rsplit(":", 1)[1].split("/")[0])
        direct = redis.Redis(port=primary_port)
        with pytest.raises(redis.ResponseError, match="NOREPLICAS"):
            direct.set("probe", "1")
        replica: list[subprocess.Popen[bytes]] = []

        def start_replica() -> None:
            time.sleep(1.5)
            replica.append(
                subprocess.Popen(
                    [
                        redis_server_binary(),
                        "--port",
                        str(free_port()),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--dir",
                        str(tmp_path),
                        "--replicaof",
                        "127.0.0.1",
                        str(primary_port),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.STDOUT,
                )
            )

        helper = threading.Thread(target=start_replica)
        helper.start()
        try:
            client = ConveyorClient(Settings(redis_url=url, redis_retry_seconds=60))  # type: ignore[arg-type]
            record = client.enqueue(_job())
            assert client.status(record.id).state is DeploymentState.QUEUED
            assert direct.zcard("conveyor:deployments") == 1
        finally:
            helper.join()
            for process in replica:
                process.kill()
                process.wait()
            direct.close()


def test_with_no_retry_time_it_still_gives_up_at_once() -> None:
    with run_redis(extra_args=NO_LONE_WRITES) as url:
        client = ConveyorClient(Settings(redis_url=url, redis_retry_seconds=0))  # type: ignore[arg-type]
        with pytest.raises(ConveyorUnavailableError, match="gave up after 0 s"):
            client.enqueue(_job())


def test_a_worker_started_while_the_primary_refuses_writes_waits_for_it(tmp_path: Path) -> None:
    """A worker that starts while the primary has no replica keeps trying to connect (it used
    to exit with "Unrecoverable error": kombu's first write met NOREPLICAS); once a replica is
    back it serves."""
    with run_redis(extra_args=NO_LONE_WRITES) as url:
        primary_port = int(url.rsplit(":", 1)[1].split("/")[0])
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CONVEYOR_"))},
            **aws_env("http://127.0.0.1:9"),  # no AWS call is made: the worker only starts
            "CONVEYOR_REDIS_URL": url,
            "CONVEYOR_RECOVERY_INTERVAL": "2",
        }
        worker = Worker("noreplicas", env, tmp_path / "worker.log")
        replica: subprocess.Popen[bytes] | None = None
        direct = redis.Redis(port=primary_port)
        try:
            # Refused twice: it lived through the first refusal and tried again.
            deadline = time.monotonic() + 120
            while worker.proc.poll() is None and time.monotonic() < deadline:
                if worker.log().count("Cannot connect") >= 2:
                    break
                time.sleep(0.5)
            assert worker.proc.poll() is None, worker.log()[-3000:]
            assert "NOREPLICAS" in worker.log()

            replica = _replica_of(primary_port, tmp_path)
            while True:
                try:
                    direct.set("probe", "1")
                    break
                except redis.ResponseError:
                    assert time.monotonic() < deadline, "the replica never synced"
                    time.sleep(0.5)
            worker.wait_ready(url)
        finally:
            worker.stop()
            if replica is not None:
                replica.kill()
                replica.wait()
            direct.close()
