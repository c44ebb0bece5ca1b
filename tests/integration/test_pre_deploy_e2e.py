"""Pre-deploy tasks end to end: a release's migration gates its waves (CLI, workers, local AWS)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from localaws.devstack import Worker
from localaws.testing import control, create_services
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration
IMAGE = "registry.local:5000/team/app:1.0.0"


def _container(group: str) -> dict[str, Any]:
    """Container ``app``, logging to ``group`` (created by the first task that logs)."""
    options = {
        "awslogs-group": group,
        "awslogs-region": "us-east-1",
        "awslogs-stream-prefix": "app",
        "awslogs-create-group": "true",
    }
    return {
        "name": "app",
        "image": IMAGE,
        "memory": 128,
        "logConfiguration": {"logDriver": "awslogs", "options": options},
    }


def _services(stack: Stack, count: int) -> list[str]:
    names = [f"pre-{uuid.uuid4().hex[:6]}-{i}" for i in range(count)]
    for name in names:
        create_services(stack.endpoint, [name], containers=[_container(f"/ecs/{name}")], desired=1)
    return names


def _release(tmp_path: Path, db: str, api: str, web: str, *, fail_fast: bool) -> Path:
    """Wave 1: db (a migration before it changes) and api; wave 2: web."""
    task = {"container": "app", "command": ["bin/migrate", "--up"], "timeout_seconds": 60}
    path = tmp_path / "release.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "cluster": "demo",
                "fail_fast": fail_fast,
                "waves": [
                    [
                        {"service": db, "images": {"app": ":2.0.0"}, "pre_deploy": task},
                        {"service": api, "images": {"app": ":2.0.0"}},
                    ],
                    [{"service": web, "images": {"app": ":2.0.0"}}],
                ],
            }
        )
    )
    return path


def _runs(stack: Stack, name: str) -> str:
    """The task definition (family:revision) the service runs."""
    service = stack.ecs().describe_services(cluster="demo", services=[name])["services"][0]
    return str(service["taskDefinition"]).rsplit("/", 1)[-1]


def test_a_failed_migration_stops_the_release_before_any_service_changes(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """The first wave's migration exits 1 (the control API says so): its deployment fails with
    the exit code and the task's log, the wave's other service is never deployed, the release
    fails (exit 1) even with --continue-on-failure's fail_fast off, and every service of the
    release still runs its first revision."""
    start_worker("w1")
    db, api, web = _services(stack, 3)
    lines = [f"applying 00{n}" for n in range(30)] + ["error: relation exists"]
    status, answer = control(
        stack.endpoint,
        "POST",
        "task-results",
        {"family": db, "container": "app", "exitCode": 1, "logLines": lines},
    )
    assert status == 200, answer
    path = _release(tmp_path, db, api, web, fail_fast=False)
    result = stack.cli("release", "-f", str(path), "--json")
    assert result.returncode == 1, result.stderr + result.stdout
    release = json.loads(result.stdout)
    assert release["state"] == "failed"
    assert release["reason"].startswith(f"the pre-deploy task of {db} did not pass")
    by_service = {d["service"]: d for d in release["deployments"]}
    assert [by_service[n]["state"] for n in (db, api, web)] == ["failed", "cancelled", "pending"]
    assert by_service[api]["reason"] == f"not started: the pre-deploy task of {db} failed"
    failed = stack.record(by_service[db]["id"])
    assert "exited 1" in failed["reason"]
    assert failed["pre_deploy"]["exit_code"] == 1
    assert failed["pre_deploy"]["log_tail"] == lines[-20:]
    shown = stack.cli("status", by_service[db]["id"])
    assert "    | error: relation exists" in shown.stdout
    for name in (db, api, web):
        assert _runs(stack, name) == f"{name}:1"


def test_a_passing_migration_lets_the_release_succeed(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """The migration exits 0: db's service changes after its task, api's only then, wave 2
    after both; the release succeeds and every service runs its new revision."""
    start_worker("w1")
    db, api, web = _services(stack, 3)
    result = stack.cli(
        "release", "-f", str(_release(tmp_path, db, api, web, fail_fast=True)), "--json"
    )
    assert result.returncode == 0, result.stderr + result.stdout
    release = json.loads(result.stdout)
    assert release["state"] == "succeeded"
    by_service = {d["service"]: d for d in release["deployments"]}
    db_record = stack.record(by_service[db]["id"])
    assert db_record["pre_deploy"]["exit_code"] == 0
    assert db_record["pre_deploy"]["log_tail"][-1] == "app: exited 0"
    passed_at = release["tasks_passed"][by_service[db]["id"]]
    assert stack.record(by_service[api]["id"])["created_at"] >= passed_at
    for name in (db, api, web):
        assert _runs(stack, name) == f"{name}:2"


def test_update_with_a_failing_pre_deploy_task_never_changes_the_service(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """`conveyor update --pre-deploy-container` with a `fail-` image: the task on the new
    revision exits 1, the update exits 1 naming it, status shows the task's log, the service
    still runs its first revision, and the new revision is marked discarded."""
    start_worker("w1")
    (name,) = _services(stack, 1)
    result = stack.cli(
        "update",
        "--cluster",
        "demo",
        "--service",
        name,
        "--image",
        "app=:fail-2.0.0",
        "--pre-deploy-container",
        "app",
        "--pre-deploy-command",
        "bin/migrate --up",
        "--json",
    )
    assert result.returncode == 1, result.stderr + result.stdout
    record = json.loads(result.stdout)
    assert record["state"] == "failed"
    assert "exited 1" in record["reason"]
    assert record["pre_deploy"]["exit_code"] == 1
    shown = stack.cli("status", record["id"])
    assert "    | app: exited 1" in shown.stdout
    assert _runs(stack, name) == f"{name}:1"
    tags = stack.ecs().describe_task_definition(taskDefinition=f"{name}:2", include=["TAGS"])
    assert any(t["key"] == "conveyor:discarded" for t in tags["tags"])
