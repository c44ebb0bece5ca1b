"""Pure helpers of the pre-deploy task: what RunTask is sent, where its log is, how it ended.

No I/O: :mod:`worker.services.pre_deploy` sequences the calls and keeps the record.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from producers.contract.jobs import PreDeployTask
from producers.contract.records import PreDeployInfo

# RunTask's placement parameters that a task takes from its service, by RunTask's own names.
_PLACEMENT_KEYS = ("networkConfiguration", "platformVersion")
# How many of the task's log lines a record keeps.
LOG_TAIL_LINES = 20
# RunTask's clientToken is at most 64 characters.
MAX_CLIENT_TOKEN = 64
# How many characters of one log line a record keeps: a CloudWatch event may hold 256 KB, and
# every sweep and `conveyor status` reads the record.
MAX_LOG_LINE_CHARS = 500
# How long past its own timeout a task's watch may keep retrying before it gives up: time for
# a last look and a StopTask after a few throttled calls.
TASK_DEADLINE_SLACK = 120.0

# Terminal escape sequences (CSI such as colours, OSC such as titles, and two-character ones).
_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")
# Bidirectional overrides and isolates: they reorder what a terminal shows.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


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


def task_deadline(info: PreDeployInfo | None) -> float | None:
    """When the watch of a started task gives up retrying: its own timeout plus
    :data:`TASK_DEADLINE_SLACK` (None: no task started yet)."""
    if info is None or info.deadline is None:
        return None
    return info.deadline + TASK_DEADLINE_SLACK


def clean_log_line(line: str) -> str:
    """A log line fit to store in a record and print on a terminal.

    Escape sequences are dropped, tabs become spaces, other control characters become ``?``,
    and a line longer than :data:`MAX_LOG_LINE_CHARS` is cut with a marker saying how much.
    """
    text = _ESCAPE.sub("", line).replace("\t", " ")
    text = "".join("?" if c in _BIDI or unicodedata.category(c) == "Cc" else c for c in text)
    if len(text) <= MAX_LOG_LINE_CHARS:
        return text
    cut = len(text) - MAX_LOG_LINE_CHARS
    return f"{text[:MAX_LOG_LINE_CHARS]} [… {cut} more characters cut]"


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
