"""The verdict follows Conveyor's own deployment; a breaker rollback is never a success."""

from __future__ import annotations

from typing import Any

from worker.domain.verdict import Outcome, breaker_threshold, judge

OURS = "arn:aws:ecs:us-east-1:1:task-definition/web:2"
OLD = "arn:aws:ecs:us-east-1:1:task-definition/web:1"


def dep(
    id_: str, td: str, status: str = "PRIMARY", state: str | None = "IN_PROGRESS", **kw: Any
) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": id_,
        "taskDefinition": td,
        "status": status,
        "desiredCount": 2,
        "runningCount": 0,
        "pendingCount": 2,
        "failedTasks": 0,
    }
    if state is not None:
        d["rolloutState"] = state
    d.update(kw)
    return d


def svc(*deployments: dict[str, Any]) -> dict[str, Any]:
    return {"status": "ACTIVE", "deployments": list(deployments)}


def test_completed_primary_on_our_revision_succeeds() -> None:
    """Succeeded: ours is PRIMARY, runs our revision, COMPLETED."""
    v = judge(
        svc(dep("a", OURS, state="COMPLETED", runningCount=2, pendingCount=0)),
        "a",
        OURS,
        now=0,
        deadline=10,
    )
    assert v.outcome is Outcome.SUCCEEDED


def test_in_progress_beside_old_deployment_is_not_done() -> None:
    """Two deployments, ours IN_PROGRESS: keep polling."""
    v = judge(
        svc(dep("a", OURS), dep("b", OLD, status="ACTIVE", state="COMPLETED")),
        "a",
        OURS,
        now=0,
        deadline=10,
    )
    assert v.outcome is Outcome.IN_PROGRESS


def test_breaker_rollback_is_a_failure_even_when_the_service_is_stable() -> None:
    """The waiter would call this stable (one deployment, all running); Conveyor says failed."""
    rollback = dep(
        "c",
        OLD,
        state="COMPLETED",
        runningCount=2,
        pendingCount=0,
        rolloutStateReason="ECS deployment circuit breaker: rolling back to deploymentId b.",
    )
    v = judge(svc(rollback), "a", OURS, now=0, deadline=10)
    assert v.outcome is Outcome.FAILED
    assert v.rolled_back_by_ecs
    assert v.primary_task_definition == OLD


def test_failed_rollout_state_fails() -> None:
    """rolloutState FAILED ends the deployment with ECS's reason."""
    v = judge(
        svc(dep("a", OURS, state="FAILED", rolloutStateReason="tasks failed to start.")),
        "a",
        OURS,
        now=0,
        deadline=10,
    )
    assert v.outcome is Outcome.FAILED
    assert "tasks failed to start" in v.reason


def test_superseded_by_someone_else_fails() -> None:
    """Another PRIMARY that is not a breaker rollback means someone else deployed over us."""
    v = judge(svc(dep("z", OLD), dep("a", OURS, status="ACTIVE")), "a", OURS, now=0, deadline=10)
    assert v.outcome is Outcome.FAILED
    assert "superseded" in v.reason
    assert not v.rolled_back_by_ecs


def test_deadline_fails_an_endless_rollout() -> None:
    """Without the breaker a broken rollout never fails by itself: the deadline ends it."""
    v = judge(svc(dep("a", OURS, failedTasks=7)), "a", OURS, now=10, deadline=10)
    assert v.outcome is Outcome.FAILED
    assert "timed out" in v.reason


def test_without_rollout_state_needs_single_deployment_and_full_counts() -> None:
    """Where rolloutState is absent: only deployment, running == desired, pending == 0."""
    partial = dep("a", OURS, state=None, runningCount=2, pendingCount=0)
    assert (
        judge(
            svc(partial, dep("b", OLD, status="ACTIVE", state=None)), "a", OURS, now=0, deadline=10
        ).outcome
        is Outcome.IN_PROGRESS
    )
    assert judge(svc(partial), "a", OURS, now=0, deadline=10).outcome is Outcome.SUCCEEDED


def test_missing_or_inactive_service_fails() -> None:
    """A deleted service cannot succeed."""
    assert judge(None, "a", OURS, now=0, deadline=10).outcome is Outcome.FAILED
    inactive = {"status": "INACTIVE", "deployments": []}
    assert judge(inactive, "a", OURS, now=0, deadline=10).outcome is Outcome.FAILED


def test_primary_on_other_revision_fails() -> None:
    """Our deployment id on another revision is not our rollout."""
    v = judge(svc(dep("a", OLD, state="COMPLETED")), "a", OURS, now=0, deadline=10)
    assert v.outcome is Outcome.FAILED


def test_breaker_threshold_bounds() -> None:
    """0.5 x desired, at least 3, at most 200."""
    assert [breaker_threshold(n) for n in (1, 2, 6, 7, 100, 1000)] == [3, 3, 3, 4, 50, 200]
