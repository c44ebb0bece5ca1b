"""How did a rollout end? A pure function of one DescribeServices answer.

The SDK's ``services_stable`` waiter calls a service stable when it has one deployment and
runningCount == desiredCount, so a deployment that ECS's circuit breaker rolled back counts as a
success there. Conveyor follows its own deployment by id instead: it succeeded only when that
deployment is PRIMARY, runs the revision Conveyor registered, and has COMPLETED.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    """Where a watched deployment stands."""

    IN_PROGRESS = "in_progress"  # no verdict yet: poll again
    SUCCEEDED = "succeeded"  # ours is PRIMARY, on our revision, COMPLETED
    FAILED = "failed"  # FAILED, rolled back, superseded, gone, or out of time


@dataclass(frozen=True, slots=True)
class Progress:
    """Counts for live progress output."""

    running: int = 0
    desired: int = 0
    pending: int = 0
    failed_tasks: int = 0
    rollout_state: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome, why, and whether ECS itself already rolled the service back.

    ``ours_visible`` is False when the deployment is no longer in DescribeServices: the answer
    then cannot tell what happened to it, and ECS's deployment history must
    (:func:`judge_history`).
    """

    outcome: Outcome
    reason: str
    progress: Progress
    rolled_back_by_ecs: bool = False
    primary_deployment_id: str | None = None
    primary_task_definition: str | None = None
    ours_visible: bool = True


class History(StrEnum):
    """What ECS's deployment history says of one service deployment."""

    IN_PROGRESS = "in_progress"  # pending or rolling out: look again later
    SUCCEEDED = "succeeded"  # SUCCESSFUL
    ROLLING_BACK = "rolling_back"  # ECS is rolling it back (breaker, or a stop request)
    ROLLED_BACK = "rolled_back"  # ECS rolled it back, and that rollback completed
    STOPPED = "stopped"  # replaced by a newer deployment before it completed
    FAILED = "failed"  # ECS's rollback failed too


@dataclass(frozen=True, slots=True)
class HistoryVerdict:
    """How ECS's history says a deployment ended, and why."""

    outcome: History
    reason: str
    breaker_triggered: bool = False


_HISTORY = {
    "PENDING": History.IN_PROGRESS,
    "IN_PROGRESS": History.IN_PROGRESS,
    "STOP_REQUESTED": History.IN_PROGRESS,
    "SUCCESSFUL": History.SUCCEEDED,
    "ROLLBACK_REQUESTED": History.ROLLING_BACK,
    "ROLLBACK_IN_PROGRESS": History.ROLLING_BACK,
    "ROLLBACK_SUCCESSFUL": History.ROLLED_BACK,
    "ROLLBACK_FAILED": History.FAILED,
    "STOPPED": History.STOPPED,
}


def judge_history(deployment: Mapping[str, Any]) -> HistoryVerdict:
    """Read one DescribeServiceDeployments entry.

    This is the source of truth once a deployment has left DescribeServices (a breaker
    rollback completed, or someone deployed after it): only here does ECS still say whether it
    succeeded, was rolled back, or was replaced.
    """
    status = str(deployment.get("status", ""))
    outcome = _HISTORY.get(status, History.IN_PROGRESS)
    breaker = deployment.get("deploymentCircuitBreaker") or {}
    triggered = str(breaker.get("status", "")) == "TRIGGERED"
    rollback = deployment.get("rollback") or {}
    why = str(rollback.get("reason") or deployment.get("statusReason") or "").strip()
    cause = "ECS's circuit breaker" if triggered else "ECS"
    if breaker.get("failureCount") is not None and triggered:
        cause += (
            f" ({breaker.get('failureCount')} failed tasks, threshold {breaker.get('threshold')})"
        )
    fired = [str(a) for a in (deployment.get("alarms") or {}).get("triggeredAlarmNames") or []]
    if fired:
        cause += f" (alarm{'s' if len(fired) > 1 else ''} {', '.join(fired)} in ALARM)"
    reasons = {
        History.IN_PROGRESS: f"ECS reports the deployment {status or 'in progress'}",
        History.SUCCEEDED: "ECS reports the deployment SUCCESSFUL",
        History.ROLLING_BACK: f"{cause} is rolling the deployment back",
        History.ROLLED_BACK: f"{cause} rolled the deployment back",
        History.STOPPED: "ECS stopped the deployment: a newer deployment replaced it",
        History.FAILED: f"{cause} could not roll the deployment back (ROLLBACK_FAILED)",
    }
    reason = reasons[outcome] + (f": {why}" if why else "")
    return HistoryVerdict(outcome, reason, breaker_triggered=triggered)


def _progress(deployment: Mapping[str, Any] | None) -> Progress:
    if not deployment:
        return Progress()
    return Progress(
        running=int(deployment.get("runningCount", 0)),
        desired=int(deployment.get("desiredCount", 0)),
        pending=int(deployment.get("pendingCount", 0)),
        failed_tasks=int(deployment.get("failedTasks", 0)),
        rollout_state=deployment.get("rolloutState"),
    )


def _is_breaker_rollback(deployment: Mapping[str, Any]) -> bool:
    reason = str(deployment.get("rolloutStateReason", "")).lower()
    return "circuit breaker" in reason and "rolling back" in reason


def judge(
    service: Mapping[str, Any] | None,
    deployment_id: str,
    task_definition_arn: str,
    *,
    now: float,
    deadline: float,
) -> Verdict:
    """Decide how deployment ``deployment_id`` of ``service`` stands at time ``now``.

    ``service`` is one entry of DescribeServices' ``services`` (None when the service is gone).
    Times are seconds on any one clock; ``deadline`` is when a rollout still in progress fails.
    """
    if service is None or service.get("status") not in (None, "ACTIVE"):
        state = "missing" if service is None else str(service.get("status"))
        return Verdict(Outcome.FAILED, f"the service is {state}", Progress())

    deployments: Sequence[Mapping[str, Any]] = service.get("deployments") or []
    ours = next((d for d in deployments if d.get("id") == deployment_id), None)
    primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
    primary_id = primary.get("id") if primary else None
    primary_td = primary.get("taskDefinition") if primary else None
    rolled_back = (
        primary is not None and primary_id != deployment_id and _is_breaker_rollback(primary)
    )

    def failed(reason: str) -> Verdict:
        return Verdict(
            Outcome.FAILED,
            reason,
            _progress(ours or primary),
            rolled_back_by_ecs=rolled_back,
            primary_deployment_id=primary_id,
            primary_task_definition=primary_td,
            ours_visible=ours is not None,
        )

    if ours is not None and ours.get("rolloutState") == "FAILED":
        reason = ours.get("rolloutStateReason") or "ECS marked the deployment FAILED"
        return failed(f"deployment {deployment_id} failed: {reason}")

    if ours is None or ours.get("status") != "PRIMARY":
        if rolled_back:
            return failed(
                f"ECS's circuit breaker rolled the service back to {primary_td}: "
                f"{primary.get('rolloutStateReason') if primary else ''}".rstrip(": ")
            )
        if primary is not None:
            return failed(
                f"deployment {deployment_id} was superseded by deployment {primary_id} "
                f"({primary_td}), made outside this job"
            )
        return failed(f"deployment {deployment_id} is no longer on the service")

    if ours.get("taskDefinition") != task_definition_arn:
        return failed(
            f"deployment {deployment_id} runs {ours.get('taskDefinition')}, "
            f"not {task_definition_arn}"
        )

    progress = _progress(ours)
    rollout: str | None = ours.get("rolloutState")
    done = rollout == "COMPLETED" or (
        rollout is None
        and len(deployments) == 1
        and progress.running == progress.desired
        and progress.pending == 0
    )
    if done:
        return Verdict(
            Outcome.SUCCEEDED,
            f"deployment {deployment_id} completed: {progress.running}/{progress.desired} running",
            progress,
            primary_deployment_id=primary_id,
            primary_task_definition=primary_td,
        )
    if now >= deadline:
        return failed(
            f"timed out with deployment {deployment_id} still {rollout or 'in progress'} "
            f"({progress.running}/{progress.desired} running, {progress.failed_tasks} failed tasks)"
        )
    return Verdict(
        Outcome.IN_PROGRESS,
        f"{progress.running}/{progress.desired} running",
        progress,
        primary_deployment_id=primary_id,
        primary_task_definition=primary_td,
    )


def breaker_threshold(desired_count: int) -> int:
    """ECS's circuit breaker failure threshold: 0.5 x desired, at least 3, at most 200."""
    half = -(-desired_count // 2)
    return min(200, max(3, half))


@dataclass(frozen=True, slots=True)
class HookWait:
    """A PAUSE lifecycle hook waiting for ContinueServiceDeployment (AWAITING_ACTION)."""

    hook_id: str | None
    expires_at: float | None  # epoch seconds: when ECS takes the timeout action
    timeout_action: str | None  # ROLLBACK or CONTINUE


@dataclass(frozen=True, slots=True)
class StagedVerdict:
    """How one blue/green, linear or canary service deployment stands, from ECS's own record.

    ``outcome`` uses :class:`History`'s values. ``stage`` is its lifecycle stage, ``waiting``
    a PAUSE hook that waits for approval, ``bake_minutes`` the bake time the deployment was
    started with, ``production_traffic`` the percent of production traffic ECS asks for the new
    revision (None when ECS does not say).
    """

    outcome: History
    reason: str
    status: str
    strategy: str | None = None
    stage: str | None = None
    waiting: HookWait | None = None
    bake_minutes: int | None = None
    production_traffic: float | None = None


def _epoch(value: Any) -> float | None:
    """A timestamp as AWS gives it (a datetime from the SDK, or epoch seconds) as epoch seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    timestamp = getattr(value, "timestamp", None)
    return float(timestamp()) if callable(timestamp) else None


def _hook_name(hook: Mapping[str, Any]) -> str:
    """A lifecycle hook for messages: its Lambda's name, or ``PAUSE hook ID``."""
    target = str(hook.get("targetArn") or "")
    if target:
        return f"lifecycle hook {target.rsplit(':', 1)[-1]}"
    return f"{hook.get('targetType') or 'lifecycle'} hook {hook.get('hookId') or ''}".rstrip()


def _causes(deployment: Mapping[str, Any]) -> list[str]:
    """What ECS says made a service deployment fail: alarms, the breaker, failed hooks."""
    causes = []
    alarms = deployment.get("alarms") or {}
    triggered = [str(a) for a in alarms.get("triggeredAlarmNames") or []]
    if triggered:
        causes.append(f"alarm{'s' if len(triggered) > 1 else ''} {', '.join(triggered)} triggered")
    breaker = deployment.get("deploymentCircuitBreaker") or {}
    if str(breaker.get("status", "")) == "TRIGGERED":
        causes.append(
            f"circuit breaker triggered ({breaker.get('failureCount')} failed tasks, "
            f"threshold {breaker.get('threshold')})"
        )
    for hook in deployment.get("lifecycleHookDetails") or []:
        status = str(hook.get("status", ""))
        if status in ("FAILED", "TIMED_OUT"):
            causes.append(f"{_hook_name(hook)} {status}")
    return causes


def judge_service_deployment(deployment: Mapping[str, Any]) -> StagedVerdict:
    """Read one DescribeServiceDeployments entry of a blue/green, linear or canary deployment.

    ECS decides these itself, through its lifecycle stages: its ``status`` is the verdict, and
    nothing in DescribeServices is (its rolloutState stays IN_PROGRESS for the whole bake).
    SUCCESSFUL succeeded; ROLLBACK_SUCCESSFUL was rolled back by ECS; ROLLBACK_REQUESTED and
    ROLLBACK_IN_PROGRESS are being rolled back; ROLLBACK_FAILED and STOPPED failed (a stopped
    deployment is not Conveyor's to undo); PENDING, IN_PROGRESS and STOP_REQUESTED go on. The
    reason names the triggered alarms, the breaker's counts and the hooks that failed.
    """
    status = str(deployment.get("status", ""))
    outcome = _HISTORY.get(status, History.IN_PROGRESS)
    configuration = deployment.get("deploymentConfiguration") or {}
    strategy = configuration.get("strategy")
    stage = deployment.get("lifecycleStage")
    what = f"{strategy} deployment" if strategy else "deployment"
    causes = _causes(deployment)
    rollback = deployment.get("rollback") or {}
    said = str(rollback.get("reason") or deployment.get("statusReason") or "").strip()
    if said and said not in causes:
        causes.append(said)
    why = f": {'; '.join(causes)}" if causes else ""
    waiting = None
    for hook in deployment.get("lifecycleHookDetails") or []:
        if str(hook.get("status", "")) == "AWAITING_ACTION":
            waiting = HookWait(
                hook_id=hook.get("hookId"),
                expires_at=_epoch(hook.get("expiresAt")),
                timeout_action=hook.get("timeoutAction"),
            )
    at = f" at {stage}" if stage else ""
    reasons = {
        History.IN_PROGRESS: f"ECS reports the {what} {status or 'in progress'}{at}",
        History.SUCCEEDED: f"ECS reports the {what} SUCCESSFUL",
        History.ROLLING_BACK: f"ECS is rolling the {what} back{why}",
        History.ROLLED_BACK: f"ECS rolled the {what} back{why}",
        History.STOPPED: f"ECS stopped the {what} (STOPPED){why}",
        History.FAILED: f"ECS could not roll the {what} back (ROLLBACK_FAILED){why}",
    }
    reason = reasons[outcome]
    if outcome is History.IN_PROGRESS and waiting is not None:
        reason += ", awaiting approval"
    bake = configuration.get("bakeTimeInMinutes")
    target = deployment.get("targetServiceRevision") or {}
    weight = target.get("requestedProductionTrafficWeight")
    return StagedVerdict(
        outcome,
        reason,
        status,
        strategy=str(strategy) if strategy else None,
        stage=str(stage) if stage else None,
        waiting=waiting,
        bake_minutes=int(bake) if isinstance(bake, int) and not isinstance(bake, bool) else None,
        production_traffic=(
            float(weight)
            if isinstance(weight, int | float) and not isinstance(weight, bool)
            else None
        ),
    )
