"""Pure helpers of the pre-deploy task: what RunTask is sent, where its log is, how it ended.

No I/O: :mod:`worker.services.pre_deploy` sequences the calls and keeps the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from producers.contract.jobs import PreDeployTask

# RunTask's placement parameters that a task takes from its service, by RunTask's own names.
_PLACEMENT_KEYS = ("networkConfiguration", "platformVersion")
# How many of the task's log lines a record keeps.
LOG_TAIL_LINES = 20
# RunTask's clientToken is at most 64 characters.
MAX_CLIENT_TOKEN = 64


def task_placement(service: dict[str, Any]) -> dict[str, Any]:
    """RunTask's placement copied from the service: its network configuration, its launch
    type or capacity provider strategy (never both: RunTask refuses them together), and its
    platform version."""
    placement = {k: service[k] for k in _PLACEMENT_KEYS if service.get(k)}
    if service.get("capacityProviderStrategy"):
        placement["capacityProviderStrategy"] = service["capacityProviderStrategy"]
    elif service.get("launchType"):
        placement["launchType"] = service["launchType"]
    return placement


def task_overrides(task: PreDeployTask) -> dict[str, Any]:
    """RunTask's overrides: the named container's command, when the job gives one."""
    if task.command is None:
        return {}
    return {"containerOverrides": [{"name": task.container, "command": list(task.command)}]}


def container_names(definition: dict[str, Any]) -> list[str]:
    """The container names of a task definition, in order."""
    return [str(c.get("name")) for c in definition.get("containerDefinitions", [])]


def log_location(
    definition: dict[str, Any], container: str, task_arn: str
) -> tuple[str, str] | None:
    """The awslogs group and stream of ``container`` in the task ``task_arn``
    (``prefix/container/task-id``); None when it does not log to CloudWatch Logs with a
    stream prefix."""
    spec: dict[str, Any] = next(
        (c for c in definition.get("containerDefinitions", []) if c.get("name") == container), {}
    )
    logging = spec.get("logConfiguration") or {}
    options = logging.get("options") or {}
    group, prefix = options.get("awslogs-group"), options.get("awslogs-stream-prefix")
    if logging.get("logDriver") != "awslogs" or not group or not prefix:
        return None
    return str(group), f"{prefix}/{container}/{task_arn.rsplit('/', 1)[-1]}"


@dataclass(frozen=True, slots=True)
class TaskVerdict:
    """What one DescribeTasks answer says of the pre-deploy task."""

    stopped: bool
    last_status: str | None
    exit_code: int | None
    reason: str  # ECS's stop code and reason, when stopped

    @property
    def passed(self) -> bool:
        """The named container exited 0."""
        return self.stopped and self.exit_code == 0


def judge_task(task: dict[str, Any], container: str) -> TaskVerdict:
    """Judge a DescribeTasks entry: running, or stopped with the named container's exit code."""
    status = task.get("lastStatus")
    entry: dict[str, Any] = next(
        (c for c in task.get("containers", []) if c.get("name") == container), {}
    )
    code = entry.get("exitCode")
    parts = [str(p) for p in (task.get("stopCode"), task.get("stoppedReason")) if p]
    if entry.get("reason"):
        parts.append(f"{container}: {entry['reason']}")
    return TaskVerdict(
        stopped=status == "STOPPED",
        last_status=str(status) if status else None,
        exit_code=int(code) if isinstance(code, int) else None,
        reason="; ".join(parts),
    )
