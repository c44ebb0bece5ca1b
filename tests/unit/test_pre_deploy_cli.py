"""`conveyor update --pre-deploy-*` and how `conveyor status` shows a pre-deploy task."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis

from producers.cli.deploy import pre_deploy_task
from producers.contract.records import DeploymentRecord, DeploymentState, PreDeployInfo
from producers.contract.store import RecordStore
from tests.unit.cli_support import conveyor, point_at


def test_the_flags_make_the_jobs_task_with_the_command_split_as_a_shell_would() -> None:
    """--pre-deploy-command is split as a shell would; no container: no task."""
    task = pre_deploy_task("web", "bin/migrate --to 'v 42'", 120)
    assert task is not None
    assert task.container == "web"
    assert task.command == ("bin/migrate", "--to", "v 42")
    assert task.timeout_seconds == 120
    assert pre_deploy_task(None, None, None) is None


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--pre-deploy-command", "migrate"], "need --pre-deploy-container NAME"),
        (["--pre-deploy-container", "web", "--pre-deploy-timeout", "5"], "--pre-deploy-timeout"),
        (
            ["--pre-deploy-container", "web", "--pre-deploy-command", "'open"],
            "--pre-deploy-command",
        ),
        (["--pre-deploy-container", "no such"], "--pre-deploy-container"),
    ],
)
def test_bad_pre_deploy_flags_are_usage_errors_naming_the_flag(
    flags: list[str], message: str
) -> None:
    """Each bad pre-deploy flag exits 2 before anything is enqueued, naming the flag."""
    result = conveyor("update", "--cluster", "c", "--service", "s", "--image", "s=r:2", *flags)
    assert result.exit_code == 2
    assert message in result.stderr


@pytest.fixture
def store(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordStore]:
    """The records of a clean Redis that the CLI is pointed at."""
    point_at(monkeypatch, redis_url)
    client = redis.Redis.from_url(redis_url)
    yield RecordStore(client)
    client.close()


def test_status_shows_the_task_its_exit_code_and_its_log_tail(store: RecordStore) -> None:
    """A deployment whose task exited 1: status names the task, the exit code, ECS's reason and
    the log's tail, as text and in --json."""
    task = PreDeployInfo(
        container="web",
        task_arn="arn:aws:ecs:us-east-1:1:task/demo/abc123",
        exit_code=1,
        stopped_reason="EssentialContainerExited",
        last_status="STOPPED",
        log_group="/ecs/web",
        log_stream="web/web/abc123",
        log_tail=["applying 0042", "error: relation exists"],
    )
    store.create(
        DeploymentRecord(
            id="d1",
            job={},
            cluster="demo",
            service="web",
            created_at=1.0,
            updated_at=1.0,
            state=DeploymentState.FAILED,
            reason="pre-deploy task abc123 (web) exited 1; the service was not changed",
            pre_deploy=task,
        ),
        due=time.time() + 3600,
    )
    result = conveyor("status", "d1")
    assert result.exit_code == 1
    assert "  task      abc123 (web): exited 1 (EssentialContainerExited)" in result.stdout
    assert "    | applying 0042\n    | error: relation exists" in result.stdout
    shown = json.loads(conveyor("status", "d1", "--json").stdout)
    assert shown["pre_deploy"]["exit_code"] == 1
    assert shown["pre_deploy"]["log_tail"][-1] == "error: relation exists"


def test_release_status_marks_held_and_unstarted_entries() -> None:
    """A release's text says which entries wait for their wave's tasks and which never
    started, with why."""
    from producers.cli.rendering import release_text
    from producers.contract.releases import ReleaseRecord

    jobs = {i: {"cluster": "demo", "service": s} for i, s in (("r-0", "db"), ("r-1", "api"))}
    waiting = ReleaseRecord(
        id="rel", waves=[["r-0", "r-1"]], jobs=jobs, held_back=["r-1"], created_at=1, updated_at=1
    )
    assert "demo/api  pending  r-1  (waits for the wave's pre-deploy tasks)" in release_text(
        waiting, [None, None]
    )
    why = "not started: the pre-deploy task of db failed"
    stopped = waiting.model_copy(update={"held_back": [], "not_started": {"r-1": why}})
    assert f"demo/api  cancelled  r-1  ({why})" in release_text(stopped, [None, None])
