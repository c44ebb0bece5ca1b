"""Producers ride out a Redis outage: `wait`, `release`, `update`, `status` and the dashboard
keep following across a Sentinel failover or a Redis restart, and an enqueue whose answer is
lost still makes exactly one deployment."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from config.settings import Settings
from localaws.devstack import ROOT, VENV_BIN, Worker, free_port, run_redis
from localaws.testing import create_services
from producers.client import ConveyorClient, ConveyorUnavailableError
from producers.contract.enums import DeploymentState
from producers.contract.jobs import ImageUpdate, UpdateServiceJob
from producers.contract.names import INDEX_KEY
from producers.contract.records import DeploymentRecord
from producers.contract.release_store import RELEASES_KEY
from producers.contract.releases import ReleaseJob
from producers.contract.store import _CREATE, RecordStore
from tests.integration.conftest import Stack
from tests.integration.test_sentinel import Sentinelled

AUTH = "viewer:f41l-over-dashboard"


class RestartableRedis:
    """A redis-server with AOF on a fixed port and directory, stopped and started at will."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self._running: contextlib.ExitStack | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        running = contextlib.ExitStack()
        running.enter_context(run_redis(appendonly=True, port=self.port, workdir=self.workdir))
        self._running = running

    def stop(self) -> None:
        """A clean shutdown (the AOF is flushed), as a restart by an operator does."""
        if self._running is not None:
            self._running.close()
            self._running = None


def _text(member: object) -> str:
    """A key or member a client without decode_responses read (redis-py types it loosely)."""
    return member.decode() if isinstance(member, bytes) else str(member)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RestartableRedis]:
    """A Redis of the test's own, to stop and start."""
    directory = tmp_path / "redis"
    directory.mkdir()
    found = RestartableRedis(directory)
    yield found
    found.stop()


class ReplyCutter:
    """A TCP proxy to Redis that, once, forwards a command and then cuts the connection
    instead of passing on Redis's reply: the command took effect, its caller never hears so."""

    def __init__(self, upstream_port: int, command: bytes) -> None:
        self.command = command
        self.cut = threading.Event()
        self._upstream = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self._upstream))
            armed = threading.Event()
            threading.Thread(target=self._up, args=(client, server, armed), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, armed), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, armed: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if not self.cut.is_set() and self.command in data:
                    armed.set()
                server.sendall(data)

    def _down(self, server: socket.socket, client: socket.socket, armed: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := server.recv(65536):
                if armed.is_set() and not self.cut.is_set():
                    self.cut.set()
                    for sock in (client, server):
                        sock.shutdown(socket.SHUT_RDWR)
                        sock.close()
                    return
                client.sendall(data)

    def close(self) -> None:
        self._listener.close()


def _settings(url: str, **more: Any) -> Settings:
    return Settings(redis_url=url, **more)  # type: ignore[arg-type]


def _job(service: str) -> UpdateServiceJob:
    return UpdateServiceJob(
        cluster="demo", service=service, images=(ImageUpdate(container="app", image=":2.0.0"),)
    )


def _messages(client: redis.Redis) -> int:
    """Step messages waiting on the Celery queue lists, every priority."""
    return sum(int(client.llen(key)) for key in client.scan_iter("conveyor*") if
               client.type(key) == b"list")  # fmt: skip


def test_an_enqueue_whose_answer_is_lost_makes_one_deployment(
    own_redis: RestartableRedis,
) -> None:
    """The connection is cut right after Redis created the record, before the producer hears
    so. The producer retries with the same id: one record, one place in the service's queue,
    and every first-step message it sent carries the same id and seq (later copies are fenced
    off by the seq)."""
    direct = redis.Redis(port=own_redis.port)
    direct.script_load(_CREATE)  # the create runs at its first EVALSHA, not after a NOSCRIPT
    cutter = ReplyCutter(own_redis.port, b"EVALSHA")
    try:
        client = ConveyorClient(_settings(f"redis://127.0.0.1:{cutter.port}/0"))
        record = client.enqueue(_job("cut-web"))
    finally:
        cutter.close()
    assert cutter.cut.is_set(), "the proxy never cut a reply: the test proved nothing"
    assert direct.zcard(INDEX_KEY) == 1
    assert direct.zrange(INDEX_KEY, 0, -1) == [record.id.encode()]
    assert client.status(record.id).state is DeploymentState.QUEUED
    queued = list(direct.scan_iter("conveyor:service:*:queue"))
    assert len(queued) == 1
    assert direct.zcard(queued[0]) == 1
    assert _messages(direct) >= 1


def test_a_release_whose_answer_is_lost_is_recorded_once(own_redis: RestartableRedis) -> None:
    """The same for a release: the transaction that records it runs, its answer is cut; the
    retry finds its own release and completes it. One release, one deployment per service."""
    direct = redis.Redis(port=own_redis.port)
    direct.script_load(_CREATE)
    cutter = ReplyCutter(own_redis.port, b"EXEC")
    try:
        client = ConveyorClient(_settings(f"redis://127.0.0.1:{cutter.port}/0"))
        job = ReleaseJob.model_validate(
            {
                "cluster": "demo",
                "services": [{"service": s, "images": {"app": ":2.0.0"}} for s in ("a", "b")],
            }
        )
        release = client.release(job)
    finally:
        cutter.close()
    assert cutter.cut.is_set(), "the proxy never cut a reply: the test proved nothing"
    assert direct.zrange(RELEASES_KEY, 0, -1) == [release.id.encode()]
    assert direct.zcard(INDEX_KEY) == 2
    assert [r.state if r else None for r in client.release_deployments(release)] == [
        DeploymentState.QUEUED
    ] * 2


def _finished_record(store: RecordStore) -> DeploymentRecord:
    now = time.time()
    record = DeploymentRecord(
        id=uuid.uuid4().hex,
        job={},
        cluster="demo",
        service="done",
        state=DeploymentState.SUCCEEDED,
        created_at=now - 5,
        updated_at=now,
        finished_at=now,
    )
    store.create(record, due=now + 3600)
    return record


def _cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(VENV_BIN / "conveyor"), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_status_waits_for_a_redis_restart_and_gives_up_only_after_the_setting(
    stack: Stack, own_redis: RestartableRedis
) -> None:
    """`conveyor status --json` asked while Redis is down answers once it is back (exit 0,
    clean JSON on stdout, the retries on stderr); with a short CONVEYOR_REDIS_RETRY_SECONDS
    and Redis staying down, exit 3 naming the setting."""
    record = _finished_record(RecordStore(redis.Redis(port=own_redis.port)))
    env = {**stack.env, "CONVEYOR_REDIS_URL": own_redis.url}
    own_redis.stop()
    asked = _cli(env, "status", record.id, "--json")
    stderr = asked.stderr
    assert stderr is not None
    # Back once the command has said it is retrying: it was asked while Redis was down.
    first = stderr.readline()
    own_redis.start()
    out, rest = asked.communicate(timeout=120)
    assert "Redis unavailable, retrying" in first, first + rest
    assert asked.returncode == 0, first + rest
    assert json.loads(out)["id"] == record.id

    own_redis.stop()
    gave_up = _cli({**env, "CONVEYOR_REDIS_RETRY_SECONDS": "2"}, "status", record.id, "--json")
    out, err = gave_up.communicate(timeout=120)
    assert gave_up.returncode == 3, err
    assert "CONVEYOR_REDIS_RETRY_SECONDS" in err
    assert out == ""


def test_the_client_gives_up_at_once_with_no_retry_time(own_redis: RestartableRedis) -> None:
    """CONVEYOR_REDIS_RETRY_SECONDS=0: the first refused connection is the answer."""
    client = ConveyorClient(_settings(own_redis.url, redis_retry_seconds=0))
    retries: list[float] = []
    client.on_retry = retries.append
    own_redis.stop()
    with pytest.raises(ConveyorUnavailableError, match="CONVEYOR_REDIS_RETRY_SECONDS=0"):
        client.status("nope")
    assert retries == []


def _get(url: str) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url)  # noqa: S310 - loopback URL made by the test
    request.add_header("Authorization", "Basic " + base64.b64encode(AUTH.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return answer.status, dict(answer.headers), json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def test_the_dashboard_serves_the_last_data_while_redis_restarts(
    stack: Stack, own_redis: RestartableRedis
) -> None:
    """Redis goes away under a running dashboard: the API answers at once with the last data
    it read, marked as reconnecting (never an error for a page it has shown); a page it has
    not shown yet is a 503 that says it is reconnecting; once Redis is back, fresh data again,
    without restarting the dashboard."""
    record = _finished_record(RecordStore(redis.Redis(port=own_redis.port)))
    port = free_port()
    env = {**stack.env, "CONVEYOR_REDIS_URL": own_redis.url, "CONVEYOR_DASHBOARD_BASIC_AUTH": AUTH}
    proc = subprocess.Popen(
        [str(VENV_BIN / "conveyor"), "dashboard", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, headers, before = _get(base + "/api/list")
                break
            except OSError:
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.2)
        assert status == 200
        assert "X-Conveyor-Reconnecting" not in headers
        assert [d["id"] for d in before["deployments"]] == [record.id]

        own_redis.stop()
        status, headers, during = _get(base + "/api/list")
        assert status == 200
        assert "X-Conveyor-Reconnecting" in headers
        assert during == before
        status, headers, unseen = _get(base + "/api/deployments/" + uuid.uuid4().hex)
        assert status == 503
        assert unseen["reconnecting"] is True

        own_redis.start()
        newer = _finished_record(RecordStore(redis.Redis(port=own_redis.port)))
        status, headers, after = _get(base + "/api/list")
        assert status == 200
        assert "X-Conveyor-Reconnecting" not in headers
        assert {d["id"] for d in after["deployments"]} == {record.id, newer.id}
    finally:
        proc.terminate()
        proc.wait(10)


def _revisions(stack: Stack, family: str) -> int:
    arns = stack.ecs().list_task_definitions(familyPrefix=family)["taskDefinitionArns"]
    return len([a for a in arns if a.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family])


def _until(check: Any, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError):
            if check():
                return
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.mark.slow
def test_a_blocking_update_rides_out_a_plain_redis_restart(
    stack: Stack, own_redis: RestartableRedis, figures: dict[str, object]
) -> None:
    """`conveyor update` (blocking) is following its rollout when Redis (AOF on) is shut down
    for 10 s and started again: it waits, then exits 0 with the real outcome; one new revision
    and one deployment record."""
    name = f"rr-{uuid.uuid4().hex[:6]}"
    container = {"name": "app", "image": "registry.local:5000/team/app:1.0.0", "memory": 128}
    create_services(stack.endpoint, [name], containers=[container], desired=1)
    env = {**stack.env, "CONVEYOR_REDIS_URL": own_redis.url}
    worker = Worker("rr", env, stack.logs / "rr.log")
    direct = redis.Redis(port=own_redis.port)
    try:
        worker.wait_ready(own_redis.url)
        started = time.monotonic()
        update = _cli(env, "update", "--cluster", "demo", "--service", name,
                      "--image", "app=:2.0.0", "--json")  # fmt: skip
        _until(lambda: direct.zcard(INDEX_KEY) == 1, "the update was not enqueued")
        stopped = time.monotonic()
        own_redis.stop()
        time.sleep(10)
        own_redis.start()
        out, err = update.communicate(timeout=300)
        ended = time.monotonic()
    finally:
        worker.stop()
    assert update.returncode == 0, err[-3000:]
    assert json.loads(out)["state"] == "succeeded"
    assert "Redis unavailable, retrying" in err
    assert direct.zcard(INDEX_KEY) == 1
    assert _revisions(stack, name) == 2
    figures["producer_plain_redis_restart"] = {
        "client": "conveyor update (blocking)",
        "redis_down_seconds": 10,
        "seconds_from_stop_to_exit": round(ended - stopped, 1),
        "seconds_total": round(ended - started, 1),
        "exit_code": update.returncode,
    }


def _sentinel_env(stack: Stack, sentinelled: Sentinelled) -> dict[str, str]:
    return {**stack.env, "CONVEYOR_REDIS_URL": sentinelled.url, "CONVEYOR_RECOVERY_GRACE": "15"}


def _kill_and_wait_for_promotion(sentinelled: Sentinelled) -> float:
    """SIGKILL the primary; return the seconds until the sentinel promoted the replica."""
    killed = time.monotonic()
    sentinelled.kill_primary()
    _until(
        lambda: sentinelled.master_port() == sentinelled.replica_port,
        "the sentinel did not promote the replica",
        timeout=60,
    )
    return time.monotonic() - killed


@pytest.mark.slow
@pytest.mark.parametrize("follow", ["release", "wait"])
def test_a_release_is_followed_across_a_sentinel_failover(
    stack: Stack,
    tmp_path: Path,
    figures: dict[str, object],
    follow: str,
) -> None:
    """8 services in a release, 2 workers and the CLI through Sentinel; the primary is
    SIGKILLed once deployments are under way. `conveyor release -f` (blocking), or `conveyor
    wait REL` started beside it, rides out the failover and exits 0 with the release's real
    outcome; every service has one new revision and one deployment."""
    workdir = tmp_path / "sentinel"
    workdir.mkdir()
    sentinelled = Sentinelled(workdir)
    names = [f"fo-{uuid.uuid4().hex[:6]}-{i}" for i in range(8)]
    container = {"name": "app", "image": "registry.local:5000/team/app:1.0.0", "memory": 128}
    create_services(stack.endpoint, names, containers=[container], desired=1)
    env = _sentinel_env(stack, sentinelled)
    release_file = tmp_path / "release.yaml"
    release_file.write_text(
        yaml.safe_dump(
            {
                "release": "failover",
                "cluster": "demo",
                "services": [{"service": n, "images": {"app": ":2.0.0"}} for n in names],
            }
        )
    )
    direct = f"redis://127.0.0.1:{sentinelled.primary_port}/0"
    workers = [Worker(f"f{i}", env, stack.logs / f"f{i}.log") for i in range(2)]
    watcher: subprocess.Popen[str] | None = None
    try:
        for worker in workers:
            worker.wait_ready(direct)
        primary = sentinelled.primary()
        started = time.monotonic()
        release = _cli(env, "release", "-f", str(release_file), "--json")
        _until(lambda: primary.zcard(RELEASES_KEY) == 1, "the release was not enqueued")
        release_id = _text(primary.zrange(RELEASES_KEY, 0, -1)[0])
        if follow == "wait":
            watcher = _cli(env, "wait", release_id, "--json")
        followed = watcher or release
        _until(
            lambda: any(
                b'"state":"running"' in (primary.get(f"conveyor:deployment:{_text(k)}") or b"")
                for k in primary.zrange(INDEX_KEY, 0, -1)
            ),
            "no deployment got under way",
        )
        killed = time.monotonic()
        promotion = _kill_and_wait_for_promotion(sentinelled)
        out, err = followed.communicate(timeout=300)
        ended = time.monotonic()
        if watcher is not None:
            release.communicate(timeout=300)
    finally:
        for worker in workers:
            worker.stop()
        for proc in (release, watcher):
            if proc is not None and proc.poll() is None:
                proc.kill()
        sentinelled.stop()
    assert followed.returncode == 0, err[-3000:]
    final = json.loads(out)
    assert final["id"] == release_id
    assert final["state"] == "succeeded", final
    assert [d["state"] for d in final["deployments"]] == ["succeeded"] * len(names)
    for name in names:
        assert _revisions(stack, name) == 2, name
        history = stack.ecs().list_service_deployments(cluster="demo", service=name)
        assert len(history["serviceDeployments"]) == 2, name
    figures[f"producer_sentinel_failover_{follow}"] = {
        "client": f"conveyor {follow}" + (" -f (blocking)" if follow == "release" else " REL"),
        "services": len(names),
        "seconds_kill_to_promotion": round(promotion, 1),
        "seconds_kill_to_exit": round(ended - killed, 1),
        "seconds_total": round(ended - started, 1),
        "retried": "Redis unavailable, retrying" in err,
        "exit_code": followed.returncode,
    }
