"""Redis Sentinel: the primary is killed in the middle of a fleet release; nothing is lost,
nothing is doubled, and every deployment still ends with a verdict."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from config.settings import Settings
from localaws.devstack import Worker, free_port
from localaws.testing import create_services
from producers.client import ConveyorClient, ConveyorUnavailableError
from producers.contract.releases import ReleaseJob
from tests.integration.conftest import Stack

pytestmark = pytest.mark.slow


class Sentinelled:
    """A primary, one replica and one sentinel on free ports."""

    def __init__(self, workdir: Path) -> None:
        self.primary_port, self.replica_port, self.sentinel_port = (
            free_port(),
            free_port(),
            free_port(),
        )
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for name, port, extra in (
            ("primary", self.primary_port, []),
            ("replica", self.replica_port, ["--replicaof", "127.0.0.1", str(0)]),
        ):
            directory = workdir / name
            directory.mkdir()
            args = ["--port", str(port), "--bind", "127.0.0.1", "--appendonly", "yes",
                    "--dir", str(directory), "--save", ""]  # fmt: skip
            if extra:
                args += ["--replicaof", "127.0.0.1", str(self.primary_port)]
            self.procs[name] = self._start(args, workdir / f"{name}.log")
        conf = workdir / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {workdir}\n"
            f"sentinel monitor mymaster 127.0.0.1 {self.primary_port} 1\n"
            "sentinel down-after-milliseconds mymaster 1000\n"
            "sentinel failover-timeout mymaster 5000\n"
        )
        self.procs["sentinel"] = self._start([str(conf), "--sentinel"], workdir / "sentinel.log")
        self._until(lambda: self.primary().info("replication")["connected_slaves"] == 1)
        self._until(lambda: self.master_port() == self.primary_port)
        # The sentinel learns of replicas from the primary's INFO (every 10 s): a failover
        # before that finds "no good replica".
        self._until(self._replica_known, timeout=60)

    def _replica_known(self) -> bool:
        replicas = redis.Redis(port=self.sentinel_port).sentinel_slaves("mymaster")
        return any(r.get("is_slave") and not r.get("is_disconnected") for r in replicas)

    @staticmethod
    def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(["redis-server", *args], stdout=out, stderr=out)

    @staticmethod
    def _until(check: Any, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, "Redis did not get there in time"
            time.sleep(0.2)

    def primary(self) -> redis.Redis:
        return redis.Redis(port=self.primary_port)

    def master_port(self) -> int:
        """The primary's port, as the sentinel sees it."""
        _, port = redis.Redis(port=self.sentinel_port).execute_command(  # type: ignore[no-untyped-call]
            "SENTINEL", "get-master-addr-by-name", "mymaster"
        )
        return int(port)

    @property
    def url(self) -> str:
        return f"sentinel://127.0.0.1:{self.sentinel_port}/0"

    def kill_primary(self) -> None:
        self.procs["primary"].kill()
        self.procs["primary"].wait(10)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.kill()
            proc.wait(10)


@pytest.fixture
def sentinelled(tmp_path: Path) -> Iterator[Sentinelled]:
    """A primary, a replica and a sentinel; all killed afterwards."""
    found = Sentinelled(tmp_path)
    yield found
    found.stop()


def test_a_release_survives_losing_the_primary(
    stack: Stack, sentinelled: Sentinelled, figures: dict[str, object]
) -> None:
    """10 services in one release, 2 workers through Sentinel; the primary is SIGKILLed once
    a few deployments have updated their service. The sentinel promotes the replica, the
    workers and the records follow it, and every deployment ends succeeded, with one new
    revision and one new ECS deployment per service."""
    names = [f"sn-{uuid.uuid4().hex[:6]}-{i}" for i in range(10)]
    container = {"name": "app", "image": "registry.local:5000/team/app:1.0.0", "memory": 128}
    create_services(stack.endpoint, names, containers=[container], desired=1)
    env = {**stack.env, "CONVEYOR_REDIS_URL": sentinelled.url, "CONVEYOR_RECOVERY_GRACE": "15"}
    direct = f"redis://127.0.0.1:{sentinelled.primary_port}/0"
    workers = [Worker(f"s{i}", env, stack.logs / f"s{i}.log") for i in range(2)]
    try:
        for worker in workers:
            worker.wait_ready(direct)
        client = ConveyorClient(Settings(redis_url=sentinelled.url))  # type: ignore[arg-type]
        job = ReleaseJob.model_validate(
            {
                "release": "failover",
                "cluster": "demo",
                "services": [{"service": n, "images": {"app": ":2.0.0"}} for n in names],
            }
        )
        release = client.release(job)

        def updated() -> int:
            records = [
                r for r in client.release_deployments(client.release_status(release.id)) if r
            ]
            return sum(1 for r in records if any(s.step == "update" for s in r.steps))

        deadline = time.monotonic() + 60
        while updated() < 3:
            assert time.monotonic() < deadline, "no deployment reached its update"
            time.sleep(0.1)
        killed = time.time()
        sentinelled.kill_primary()
        deadline = time.monotonic() + 60
        while True:
            try:
                if sentinelled.master_port() == sentinelled.replica_port:
                    break
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, "the sentinel did not promote the replica"
            time.sleep(0.2)
        promoted = time.time()

        final = None
        deadline = time.monotonic() + 300
        while final is None or not final.terminal:
            assert time.monotonic() < deadline, final
            try:
                final = client.release_status(release.id)
            except ConveyorUnavailableError:  # the client sees the failover too: ask again
                final = None
            time.sleep(0.5)
        records = client.release_deployments(final)
    finally:
        for worker in workers:
            worker.stop()

    assert final.state.value == "succeeded", (final.state, final.reason, final.outcomes)
    assert [r.state.value if r else None for r in records] == ["succeeded"] * len(names)
    ecs = stack.ecs()
    for name in names:
        arns = ecs.list_task_definitions(familyPrefix=name)["taskDefinitionArns"]
        assert len([a for a in arns if a.rsplit("/", 1)[-1].rsplit(":", 1)[0] == name]) == 2
        history = ecs.list_service_deployments(cluster="demo", service=name)
        assert len(history["serviceDeployments"]) == 2, (name, history["serviceDeployments"])
    figures["sentinel_failover"] = {
        "services": len(names),
        "killed_after_updates": 3,
        "seconds_kill_to_promotion": round(promoted - killed, 1),
        "seconds_kill_to_last_verdict": round(
            max(r.finished_at or 0 for r in records if r) - killed, 1
        ),
        "succeeded": sum(1 for r in records if r and r.state.value == "succeeded"),
    }
