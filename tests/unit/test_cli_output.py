"""What `conveyor status`, `cancel` and `workers` print and exit with, for records in a real
Redis, through CliRunner; and the plan text, a pure function."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from producers.cli.rendering import plan_text
from producers.contract.records import DeploymentRecord, DeploymentState, ErrorInfo
from producers.contract.store import RecordStore
from tests.unit.cli_support import conveyor, point_at


@pytest.fixture
def store(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordStore]:
    """The records of a clean Redis that the CLI is pointed at."""
    point_at(monkeypatch, redis_url)
    client = redis.Redis.from_url(redis_url)
    yield RecordStore(client)
    client.close()


def _put(store: RecordStore, id_: str, state: DeploymentState, **fields: Any) -> None:
    store.create(
        DeploymentRecord(
            id=id_,
            job={},
            cluster="demo",
            service="web",
            created_at=1.0,
            updated_at=1.0,
            state=state,
            **fields,
        ),
        due=time.time() + 3600,
    )


@pytest.mark.parametrize(
    ("state", "code"),
    [
        (DeploymentState.SUCCEEDED, 0),
        (DeploymentState.FAILED, 1),
        (DeploymentState.ROLLED_BACK, 1),
        (DeploymentState.SUPERSEDED, 4),
        (DeploymentState.CANCELLED, 5),
        (DeploymentState.QUEUED, 6),
        (DeploymentState.RUNNING, 6),
    ],
)
def test_status_exits_with_the_records_code(
    store: RecordStore, state: DeploymentState, code: int
) -> None:
    """Each state has its exit code; the text names the deployment, its state and service."""
    _put(store, "d1", state, reason="because")
    result = conveyor("status", "d1")
    assert result.exit_code == code, result.stderr
    assert result.stdout.startswith(f"deployment d1: {state.value}\n")
    assert "  service   demo/web" in result.stdout
    assert "  reason    because" in result.stdout


def test_input_refused_by_the_worker_before_any_change_is_exit_2(store: RecordStore) -> None:
    """A failure whose code means bad input, with nothing changed, is exit 2, not 1."""
    error = ErrorInfo(type="InvalidJobError", code="UnknownContainer", message="no 'wbe'")
    _put(store, "d1", DeploymentState.FAILED, error=error)
    result = conveyor("status", "d1", "--json")
    assert result.exit_code == 2, result.stderr
    assert json.loads(result.stdout)["error"]["code"] == "UnknownContainer"


def test_cancel_of_an_ended_deployment_says_so_and_keeps_its_code(store: RecordStore) -> None:
    """Nothing to stop: stderr says it had ended, the record is printed, its code returned."""
    _put(store, "d1", DeploymentState.SUCCEEDED)
    result = conveyor("cancel", "d1")
    assert result.exit_code == 0
    assert "deployment d1 had already ended: succeeded" in result.stderr
    assert "deployment d1: succeeded" in result.stdout


def test_workers_with_none_alive_is_exit_3(store: RecordStore) -> None:
    """No heartbeat: exit 3 (a container's health check relies on it), JSON an empty list."""
    result = conveyor("workers")
    assert result.exit_code == 3
    assert "no live workers" in result.stderr
    as_json = conveyor("workers", "--json", "--here")
    assert as_json.exit_code == 3
    assert json.loads(as_json.stdout) == []


def test_plan_text_shows_fields_hides_values_and_pins_versions() -> None:
    """A changed field shows before and after, a secret field only that it changed; a resolved
    version prints its digest once when the image is pinned to it."""
    plan = {
        "cluster": "demo",
        "service": "web",
        "current_task_definition": "web:3",
        "task_definition": {
            "family": "web",
            "base": "web:3",
            "fields": [
                {"field": "web.image", "before": "app:1", "after": "app:2"},
                {"field": "web.secrets"},
            ],
            "settings": [],
            "dropped_fields": ["runtimePlatform"],
        },
        "service_changes": [{"field": "desiredCount", "before": 2, "after": 3}],
        "versions": [
            {"container": "web", "rule": ">=2", "image": "app:2@sha256:abc", "digest": "sha256:abc"}
        ],
    }
    assert plan_text(plan).splitlines() == [
        "demo/web (runs web:3)",
        "  task definition: new revision of web from web:3",
        "    web.image: app:1 -> app:2",
        "    web.secrets: changed (value not shown)",
        "    runtimePlatform: not copied (unknown to this SDK)",
        "  service desiredCount: 2 -> 3",
        "  version web: {>=2} -> app:2@sha256:abc",
    ]
    assert plan_text({"cluster": "c", "service": "s", "error": "no such service"}) == (
        "c/s: cannot plan: no such service"
    )


def test_approve_and_reject_record_who_answered_and_leave_ended_deployments_alone(
    store: RecordStore,
) -> None:
    """`approve` records a CONTINUE for the worker to send, with who asked and when; a later
    `reject` replaces it while it is unsent; an ended deployment is left as it was."""
    _put(store, "d1", DeploymentState.RUNNING, step="watch", seq=3)
    before = time.time()
    approved = conveyor("approve", "d1", "--by", "ana", "--no-wait")
    assert approved.exit_code == 0, approved.stderr
    assert "approval requested for d1" in approved.stderr
    record = store.get("d1")
    assert record is not None
    assert record.approval_requested is not None
    assert record.approval_requested.action == "CONTINUE"
    assert record.approval_requested.by == "ana"
    assert record.approval_requested.requested_at >= before - 1
    assert record.seq == 4  # the step is dispatched again, so a running worker sends it
    rejected = conveyor("reject", "d1", "--no-wait")
    assert rejected.exit_code == 0, rejected.stderr
    record = store.get("d1")
    assert record is not None
    assert record.approval_requested is not None
    assert record.approval_requested.action == "ROLLBACK"
    assert "@" in record.approval_requested.by  # user@host by default

    _put(store, "d2", DeploymentState.SUCCEEDED)
    ended = conveyor("approve", "d2", "--no-wait")
    assert ended.exit_code == 0
    assert "deployment d2 had already ended: succeeded" in ended.stderr
    done = store.get("d2")
    assert done is not None
    assert done.approval_requested is None
    missing = conveyor("reject", "nope", "--no-wait")
    assert missing.exit_code == 2


def test_status_shows_who_answered_a_hook_and_an_answer_not_yet_sent(store: RecordStore) -> None:
    from producers.contract.records import Approval

    sent = Approval(
        action="CONTINUE",
        by="ana",
        requested_at=1.0,
        hook_id="h-1",
        stage="PRE_PRODUCTION_TRAFFIC_SHIFT",
        acted_at=2.0,
        outcome="sent to ECS (ContinueServiceDeployment CONTINUE)",
    )
    pending = Approval(action="ROLLBACK", by="bo", requested_at=3.0)
    _put(store, "d1", DeploymentState.RUNNING, approvals=[sent], approval_requested=pending)
    out = conveyor("status", "d1").stdout
    assert (
        "  approved  by ana at PRE_PRODUCTION_TRAFFIC_SHIFT: sent to ECS "
        "(ContinueServiceDeployment CONTINUE)"
    ) in out
    assert "  asked     rejection by bo, not yet sent to ECS" in out
