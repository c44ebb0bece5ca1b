"""Paths production takes that the first suites did not script (issue: hardening).

Each test here failed on the code before the fix it pins; docs/reliability.md lists them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from localaws.devstack import ROOT, Worker, run_redis
from localaws.testing import create_services
from tests.integration.conftest import Stack
from tests.integration.test_update_e2e import make_service


def make_named_service(stack: Stack, name: str) -> None:
    """A steady one-container service called ``name`` on cluster demo, family ``name``."""
    container = {"name": "app", "image": "registry.local:5000/team/app:1.0.0", "memory": 128}
    create_services(stack.endpoint, [name], containers=[container])


# What RegisterTaskDefinition accepts of a DescribeTaskDefinition answer, for outside actors.
REGISTER_KEYS = ("family", "containerDefinitions", "networkMode", "requiresCompatibilities")

pytestmark = pytest.mark.integration


def test_workers_and_producers_on_a_custom_queue(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """CONVEYOR_QUEUE is honoured by every message, not only by the workers' consumer.

    Before, workers consumed the configured queue while every step was sent to the
    hard-coded one, so any other value stopped every deployment.
    """
    stack.env["CONVEYOR_QUEUE"] = "deploys-eu"
    start_worker("w1")
    tag = f"q-{uuid.uuid4().hex[:6]}"
    result = stack.cli(
        "update",
        "--cluster",
        "demo",
        "--service",
        "web",
        "--image",
        f"web=:{tag}",
        "--json",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    record = json.loads(result.stdout)
    assert record["state"] == "succeeded"
    # The worker asked STS who it is: the job is keyed under the real account, and the
    # account is published for producers.
    assert record["account"] == "123456789012"
    client = redis.Redis.from_url(stack.redis_url)
    # Under the fleet's own keys: fleets sharing a Redis never read each other's.
    assert client.get("deploys-eu:account:self") == b"123456789012"
    assert client.get("conveyor:account:self") is None
    assert client.keys("conveyor:deployment:*") == []
    assert client.exists("deploys-eu:deployment:" + record["id"])


def _wait_step(stack: Stack, deployment_id: str, step: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while stack.record(deployment_id)["step"] != step:
        assert time.monotonic() < deadline, stack.record(deployment_id)
        time.sleep(0.1)


def test_cancel_after_an_outside_deployment_leaves_it_alone(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """Someone deploys by hand while our broken rollout is watched; then we cancel.

    The rollback that a cancel starts checks the PRIMARY first: it is the outsider's, so the
    service stays on their revision and the deployment ends saying it was superseded.
    """
    start_worker("w1")
    name = make_service(stack, breaker=False)
    ecs = stack.ecs()
    original = ecs.describe_services(cluster="demo", services=[name])["services"][0]
    started = stack.cli(
        "update", "--cluster", "demo", "--service", name, "--image", "app=:fail-7", "--no-wait"
    )
    assert started.returncode == 0, started.stderr
    deployment_id = started.stdout.strip()
    _wait_step(stack, deployment_id, "watch")
    base = ecs.describe_task_definition(taskDefinition=original["taskDefinition"])
    definition = {k: v for k, v in base["taskDefinition"].items() if k in REGISTER_KEYS}
    theirs = ecs.register_task_definition(**definition)["taskDefinition"]["taskDefinitionArn"]
    ecs.update_service(cluster="demo", service=name, taskDefinition=theirs)
    result = stack.cli("cancel", deployment_id, "--json")
    record = json.loads(result.stdout)
    # Two endings are right, and which one comes depends only on whether the worker's watch
    # polled between the outsider's UpdateService and the cancel (a race this test cannot
    # order): the watch ends the deployment failed, or the cancel's rollback step finds the
    # outsider's PRIMARY and ends it cancelled. Each ending has its own reason; what Conveyor
    # promises (the outsider's deployment is left alone) holds for both.
    if record["state"] == "cancelled":
        assert "made outside this job: not rolled back" in record["reason"], record
    else:
        assert record["state"] == "failed", record
        assert "newer deployment owns the service now" in record["reason"], record
    service = ecs.describe_services(cluster="demo", services=[name])["services"][0]
    assert service["taskDefinition"] == theirs


def test_step_results_are_not_stored(stack: Stack, start_worker: Callable[[str], Worker]) -> None:
    """A deployment leaves no Celery result keys behind: nothing reads them, and each used to
    be kept for a day, one per step message."""
    start_worker("w1")
    result = stack.cli(
        "update",
        "--cluster",
        "demo",
        "--service",
        "web",
        "--image",
        f"web=:r-{uuid.uuid4().hex[:6]}",
    )
    assert result.returncode == 0, result.stderr + result.stdout
    client = redis.Redis.from_url(stack.redis_url)
    assert list(client.scan_iter("celery-task-meta-*")) == []
    # Every key Conveyor itself leaves has a bound: a TTL, or it is one of the bounded
    # structures (the index, trimmed to the TTL; the arrival counter; the live workers, trimmed
    # at every heartbeat; the throttle counts, one field per operation).
    bounded = ("conveyor:deployments", "conveyor:queue-arrivals", "conveyor:workers")
    for key in client.scan_iter("conveyor:*"):
        name = key.decode()
        if name in bounded or name == "conveyor:aws:throttled":
            continue
        # -1 is a key without a TTL; -2 one that expired since the scan (a short-lived cache
        # entry on a slow machine), which was bounded too.
        assert client.pttl(key) != -1, name


def test_wait_on_a_vanished_record_exits_3(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """A record that disappears (evicted, deleted) is a clear message and exit 3, not a crash."""
    start_worker("w1")
    started = stack.cli(
        "update", "--cluster", "demo", "--service", "web", "--image", "web=:v-1", "--no-wait"
    )
    deployment_id = started.stdout.strip()
    redis.Redis.from_url(stack.redis_url).delete(f"conveyor:deployment:{deployment_id}")
    result = stack.cli("wait", deployment_id)
    assert result.returncode == 3, result.stderr + result.stdout
    assert "vanished" in result.stderr
    assert "Traceback" not in result.stderr


def test_workers_refuse_a_redis_that_evicts(stack: Stack, tmp_path: Path) -> None:
    """Under allkeys-lru Redis would evict live records and the next job would start on top of
    a running rollout: the worker refuses to start and names the fix; the override works."""
    with run_redis(extra_args=("--maxmemory-policy", "allkeys-lru")) as url:
        env = {**stack.env, "CONVEYOR_REDIS_URL": url}
        refused = Worker("evicting", env, tmp_path / "evicting.log")
        try:
            code = refused.proc.wait(60)
        finally:
            refused.stop()
        assert code != 0
        assert "maxmemory-policy noeviction" in refused.log()
        allowed = Worker(
            "allowed", {**env, "CONVEYOR_ALLOW_EVICTING_REDIS": "true"}, tmp_path / "a.log"
        )
        try:
            allowed.wait_ready(url)
        finally:
            allowed.stop()


def test_worker_redis_client_has_socket_timeouts(stack: Stack) -> None:
    """A Redis that hangs fails a command after the timeout instead of hanging the worker."""
    code = (
        "from worker.app import redis_client\n"
        "kw = redis_client().connection_pool.connection_kwargs\n"
        "print(kw.get('socket_timeout'), kw.get('socket_connect_timeout'))\n"
    )
    env = {**stack.env, "CONVEYOR_REDIS_SOCKET_TIMEOUT": "7"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["7.0", "5"]


def test_the_sweeper_builds_no_runtime_in_the_main_process(stack: Stack) -> None:
    """The recovery sweep needs Redis and the broker only: it must not create an event loop
    and AWS clients in the worker's main process (children forked later would inherit them)."""
    code = (
        "import worker.app, worker.runtime\n"
        "worker.app.sweep_once()\n"
        "print(worker.runtime._runtime is None)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=stack.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "True"


def _service(stack: Stack, name: str) -> dict[str, Any]:
    found: dict[str, Any] = stack.ecs().describe_services(cluster="demo", services=[name])[
        "services"
    ][0]
    return found


def test_a_late_watcher_reports_a_breaker_rollback_as_rolled_back(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """The worker is killed right after UpdateService of a broken image; its replacement polls
    only after ECS's rollback has completed, when DescribeServices no longer shows the failed
    deployment. ECS's deployment history still does: the verdict is rolled_back."""
    doomed = start_worker("doomed")
    name = make_service(stack, breaker=True)
    before = _service(stack, name)
    started = stack.cli(
        "update", "--cluster", "demo", "--service", name, "--image", "app=:fail-5", "--no-wait"
    )
    assert started.returncode == 0, started.stderr
    deployment_id = started.stdout.strip()
    _wait_step(stack, deployment_id, "watch")
    doomed.kill()
    deadline = time.monotonic() + 90
    while True:  # ECS's breaker fails the rollout and its rollback completes, unobserved
        deployments = _service(stack, name)["deployments"]
        if len(deployments) == 1 and deployments[0]["rolloutState"] == "COMPLETED":
            break
        assert time.monotonic() < deadline, deployments
        time.sleep(0.5)
    assert deployments[0]["taskDefinition"] == before["taskDefinition"]
    start_worker("rescuer")
    waited = stack.cli("wait", deployment_id, "--json", timeout=180)
    record = json.loads(waited.stdout)
    assert record["state"] == "rolled_back", record["reason"]
    assert record["rolled_back_by_ecs"] is True
    assert "history" in record["reason"]
    assert waited.returncode == 1


def test_a_breaker_rollback_with_no_rollback_is_reported_rolled_back(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """--no-rollback: Conveyor does not roll back, but ECS's breaker did: rolled_back."""
    start_worker("w1")
    name = make_service(stack, breaker=True)
    result = stack.cli(
        "update",
        "--cluster",
        "demo",
        "--service",
        name,
        "--image",
        "app=:fail-6",
        "--no-rollback",
        "--json",
    )
    record = json.loads(result.stdout)
    assert record["state"] == "rolled_back", record["reason"]
    assert record["rolled_back_by_ecs"] is True


def test_a_family_of_thousands_of_revisions_costs_one_or_two_listings(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """Register used to page through every revision of the family; with 5,000 it timed out.
    Reading only the newest page, a deployment makes at most two ListTaskDefinitions calls."""
    from localaws.testing import control

    start_worker("w1")
    name = f"big-{uuid.uuid4().hex[:6]}"
    status, answer = control(
        stack.endpoint, "POST", "task-definitions", {"family": name, "count": 4999}
    )
    assert status == 200, answer
    make_named_service(stack, name)
    control(stack.endpoint, "DELETE", "stats")
    result = stack.cli(
        "update", "--cluster", "demo", "--service", name, "--image", "app=:2.0.0", "--json"
    )
    record = json.loads(result.stdout)
    assert record["state"] == "succeeded", record
    assert record["task_definition_arn"].endswith(f"{name}:5001")
    _, stats = control(stack.endpoint, "GET", "stats")
    # A first attempt does not look for an earlier one at all; a re-run reads one or two
    # pages (tests/gateway: test_a_rerun_reads_only_the_newest_pages_of_a_huge_family).
    assert stats["calls"].get("ListTaskDefinitions", 0) <= 2


def test_workers_publish_heartbeats_that_producers_read(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """`conveyor workers` lists live workers from their heartbeats, with both queues; a worker
    that stops withdraws its heartbeat, and with none left the CLI says so (exit 3)."""
    first = start_worker("w1")
    result = stack.cli("workers", "--json")
    assert result.returncode == 0, result.stderr
    workers = json.loads(result.stdout)
    assert [w["name"].split("@")[0] for w in workers] == ["w1"]
    assert workers[0]["queues"] == ["conveyor", "conveyor.watch"]
    first.stop()
    result = stack.cli("workers")
    assert result.returncode == 3
    assert "no live workers" in result.stderr


def test_a_message_sent_with_a_countdown_runs_later(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """The producers' Celery-free sender also does countdowns (an ETA the worker holds)."""
    from producers.contract.dispatch import RedisTaskSender, dispatch
    from producers.contract.records import DeploymentRecord, Step
    from producers.contract.store import RecordStore

    start_worker("w1")
    client = redis.Redis.from_url(stack.redis_url)
    record = DeploymentRecord(
        id="later", job={}, cluster="demo", service="web", created_at=1.0, updated_at=1.0
    )
    RecordStore(client).create(record, due=time.time() + 600)
    sent = time.monotonic()
    dispatch(RedisTaskSender(client), "later", Step.RESOLVE, 0, countdown=3.0)
    deadline = time.monotonic() + 60
    while stack.record("later")["seq"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert time.monotonic() - sent >= 2.5
