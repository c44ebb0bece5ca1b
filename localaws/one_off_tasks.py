"""Standalone tasks (RunTask) that run, stop with exit codes, and write their logs.

moto's RunTask makes a task that stays RUNNING for ever, with containers that never exit and
no log. Here a task started by RunTask goes PROVISIONING → PENDING → RUNNING → STOPPED over
``task_seconds`` (settable with ``POST /_localaws/config``; the value in force when the task
started), judged from the clock whenever it is read. When it stops, each container gets an
``exitCode``: 0, 1 for an image whose tag starts with ``fail-`` (as services treat it), or
what ``POST /_localaws/task-results`` set for its family and container; the stop code and
reason are ECS's for an essential container that exited. Each container whose
``logConfiguration`` is ``awslogs`` with a stream prefix writes its lines to
``awslogs-group``, stream ``prefix/container/task-id``, in moto's CloudWatch Logs, where
GetLogEvents reads them. A group that does not exist fails the task as on ECS
(ResourceInitializationError), unless ``awslogs-create-group`` is ``"true"``.

``clientToken`` is honoured: a second RunTask with the same token returns the first task.
Everything here runs under the world lock, which the WSGI layer takes for every request.
"""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from moto.core.utils import utcnow
from moto.utilities.utils import get_partition

from localaws.images import is_broken_image

ESSENTIAL_EXIT_CODE = "EssentialContainerExited"
ESSENTIAL_EXIT_REASON = "Essential container in task exited"
FAILED_TO_START_CODE = "TaskFailedToStart"
USER_STOP_CODE = "UserInitiated"
# Each phase before RUNNING takes this share of a task's run; RUNNING takes the rest.
_PROVISIONING_SHARE = 0.25
_PENDING_SHARE = 0.25


class TaskResultError(ValueError):
    """Raised when a ``POST /_localaws/task-results`` payload is not valid."""


@dataclass(frozen=True)
class TaskResult:
    """What a container of a family exits with (None: it never starts) and the lines it logs."""

    exit_code: int | None
    log_lines: tuple[str, ...] = ()


@dataclass
class TaskRegistry:
    """The one-off tasks of one local AWS: their timing, their set results, their tokens."""

    task_seconds: float
    clock: Callable[[], float] = time.monotonic
    results: dict[tuple[str, str], TaskResult] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # "account:clientToken" -> task ARN
    _start_seconds: float = field(init=False)

    def __post_init__(self) -> None:
        self._start_seconds = self.task_seconds

    def reset(self) -> None:
        """Forget results and tokens; the task time returns to its start value."""
        self.results.clear()
        self.tokens.clear()
        self.task_seconds = self._start_seconds

    def set_result(self, payload: Any) -> None:
        """Apply ``{"family": F, "container": C, "exitCode": 1, "logLines": ["..."]}``:
        tasks of family F started from now on end with container C exiting so and logging
        these lines (``exitCode`` null: the container never starts)."""
        if not isinstance(payload, dict):
            raise TaskResultError("task-results must be a JSON object")
        unknown = sorted(set(payload) - {"family", "container", "exitCode", "logLines"})
        if unknown:
            raise TaskResultError(f"unknown field(s): {', '.join(unknown)}")
        family, container = payload.get("family"), payload.get("container")
        if not isinstance(family, str) or not family or not isinstance(container, str):
            raise TaskResultError("family and container must be the names of a task's container")
        if "exitCode" not in payload:
            raise TaskResultError("exitCode is required: a number, or null (never starts)")
        code = payload["exitCode"]
        if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
            raise TaskResultError("exitCode must be an integer or null")
        lines = payload.get("logLines", [])
        if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
            raise TaskResultError("logLines must be a list of strings")
        self.results[(family, container)] = TaskResult(code, tuple(lines))

    def results_json(self) -> list[dict[str, Any]]:
        """The results in force, for ``GET /_localaws/task-results``."""
        return [
            {
                "family": family,
                "container": container,
                "exitCode": r.exit_code,
                "logLines": list(r.log_lines),
            }
            for (family, container), r in sorted(self.results.items())
        ]

    def adopt(self, backend: Any, moto_task: Any, definition: Any) -> OneOffTask:
        """Turn a task moto's RunTask made into a one-off task that runs to its end."""
        family = str(definition.family)
        outcomes = {
            str(c.get("name")): self.results.get(
                (family, str(c.get("name"))),
                TaskResult(1 if is_broken_image(str(c.get("image", ""))) else 0),
            )
            for c in definition.container_definitions
        }
        return OneOffTask(
            registry=self,
            backend=backend,
            moto_task=moto_task,
            definition=definition,
            outcomes=outcomes,
            started=self.clock(),
        )


class OneOffTask:
    """A task started by RunTask, shaped for moto's response serializer.

    Public attribute names are the snake_case forms of the ECS ``Task`` shape's members;
    ``last_status`` and ``desired_status`` are worked out from the clock on every read.
    """

    def __init__(
        self,
        *,
        registry: TaskRegistry,
        backend: Any,
        moto_task: Any,
        definition: Any,
        outcomes: dict[str, TaskResult],
        started: float,
    ) -> None:
        self._registry = registry
        self._backend = backend
        self._definition = definition
        self._outcomes = outcomes
        self._started = started
        # A task runs for the task_seconds in force when it started.
        self._span = max(registry.task_seconds, 0.0)
        self._ended = False
        self.task_arn = str(moto_task.task_arn)
        self.id = self.task_arn.rsplit("/", 1)[-1]
        self.cluster_arn = moto_task.cluster_arn
        self.task_definition_arn = moto_task.task_definition_arn
        self.group = moto_task.group
        self.started_by = moto_task.started_by or None
        self.launch_type = moto_task.launch_type or None
        self.capacity_provider_name = moto_task.capacity_provider_name
        self.platform_version = moto_task.platform_version
        self.attachments = moto_task.attachments
        self.overrides = moto_task.overrides or {}
        self.tags = moto_task.tags
        self.container_instance_arn = moto_task.container_instance_arn
        self.resource_requirements = moto_task.resource_requirements
        self.created_at = utcnow()
        self.started_at: datetime.datetime | None = None
        self.stopped_at: datetime.datetime | None = None
        self.stopping_at: datetime.datetime | None = None
        self.execution_stopped_at: datetime.datetime | None = None
        self.stopped_reason: str | None = None
        self.stop_code: str | None = None
        self.version = 1
        self.health_status = "UNKNOWN"
        region, account = backend.region_name, backend.account_id
        self.containers: list[dict[str, Any]] = [
            {
                "containerArn": (
                    f"arn:{get_partition(region)}:ecs:{region}:{account}:container/"
                    f"{self.cluster_name}/{self.id}/{uuid.uuid4()}"
                ),
                "taskArn": self.task_arn,
                "name": c.get("name"),
                "image": c.get("image"),
                "lastStatus": "PENDING",
                "healthStatus": "UNKNOWN",
            }
            for c in definition.container_definitions
        ]
        self._status = "PROVISIONING"
        self._desired = "RUNNING"

    @property
    def cluster_name(self) -> str:
        """The cluster's name, as moto's backend indexes tasks by it."""
        return str(self.cluster_arn).rsplit("/", 1)[-1]

    # moto's ListTasks filters on desired_status and StopTask sets both statuses.
    @property
    def last_status(self) -> str:
        """The task's status now."""
        self.advance()
        return self._status

    @last_status.setter
    def last_status(self, value: str) -> None:
        self.advance()
        if value == "STOPPED" and not self._ended:
            self._stop(USER_STOP_CODE, self.stopped_reason or "Task stopped by user", user=True)

    @property
    def desired_status(self) -> str:
        """RUNNING until the task stops (or is asked to)."""
        self.advance()
        return self._desired

    @desired_status.setter
    def desired_status(self, value: str) -> None:
        self._desired = value

    def stop_by_user(self, reason: str | None) -> None:
        """StopTask: a task not yet stopped stops now, its started containers killed."""
        self.advance()
        if not self._ended:
            self._stop(USER_STOP_CODE, reason or "Task stopped by user", user=True)

    def advance(self) -> None:
        """Move the task to where its clock says it is; write its logs when it stops."""
        if self._ended:
            return
        elapsed = self._registry.clock() - self._started
        span = self._span
        if elapsed >= span:
            self._end()
        elif elapsed >= span * (_PROVISIONING_SHARE + _PENDING_SHARE):
            if self._status != "RUNNING":
                self._run()
        elif elapsed >= span * _PROVISIONING_SHARE:
            self._status = "PENDING"

    def _run(self) -> None:
        self._status = "RUNNING"
        self.started_at = utcnow()
        for container in self.containers:
            container["lastStatus"] = "RUNNING"

    def _end(self) -> None:
        """Stop as the containers' outcomes say: never started, or exited."""
        missing = self._missing_log_group()
        if missing is not None:
            self._failed_to_start(
                "ResourceInitializationError: failed to validate logger args: The specified "
                f"log group {missing} does not exist"
            )
            return
        if any(o.exit_code is None for o in self._outcomes.values()):
            self._failed_to_start(
                "CannotStartContainerError: the local AWS was told this container never starts"
            )
            return
        if self._status != "RUNNING":
            self._run()
        for container in self.containers:
            container["exitCode"] = self._outcomes[str(container["name"])].exit_code
        self._write_logs()
        self._stop(ESSENTIAL_EXIT_CODE, ESSENTIAL_EXIT_REASON)

    def _failed_to_start(self, reason: str) -> None:
        self._stop(FAILED_TO_START_CODE, reason)

    def _stop(self, code: str, reason: str, *, user: bool = False) -> None:
        now = utcnow()
        self._ended = True
        self._status = self._desired = "STOPPED"
        self.stop_code, self.stopped_reason = code, reason
        self.stopping_at = self.execution_stopped_at = self.stopped_at = now
        for container in self.containers:
            container["lastStatus"] = "STOPPED"
            if user and self.started_at is not None:
                container.setdefault("exitCode", 137)  # killed: SIGKILL after the stop timeout

    def _awslogs(self) -> list[tuple[str, str, bool, str]]:
        """(container, group, create-group, stream) of each container logging to awslogs."""
        found = []
        for spec in self._definition.container_definitions:
            logging = spec.get("logConfiguration") or {}
            options = logging.get("options") or {}
            group, prefix = options.get("awslogs-group"), options.get("awslogs-stream-prefix")
            if logging.get("logDriver") != "awslogs" or not group or not prefix:
                continue
            name = str(spec.get("name"))
            create = str(options.get("awslogs-create-group", "")).lower() == "true"
            found.append((name, str(group), create, f"{prefix}/{name}/{self.id}"))
        return found

    def _logs_backend(self) -> Any:
        from moto.logs.models import logs_backends

        return logs_backends[self._backend.account_id][self._backend.region_name]

    def _missing_log_group(self) -> str | None:
        logs = self._logs_backend()
        for _, group, create, _ in self._awslogs():
            if group not in logs.groups and not create:
                return group
        return None

    def _write_logs(self) -> None:
        logs = self._logs_backend()
        millis = int(time.time() * 1000)
        for name, group, _, stream in self._awslogs():
            outcome = self._outcomes[name]
            lines = list(outcome.log_lines) or [
                f"{name}: started on {str(self.task_definition_arn).rsplit('/', 1)[-1]}",
                f"{name}: exited {outcome.exit_code}",
            ]
            if group not in logs.groups:
                logs.create_log_group(group, {})
            if stream not in logs.groups[group].streams:
                logs.create_log_stream(group, stream)
            events = [{"timestamp": millis + i, "message": line} for i, line in enumerate(lines)]
            logs.put_log_events(group, stream, events)
