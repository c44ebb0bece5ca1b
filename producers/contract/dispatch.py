"""Sending a step's message: the one thing producers and workers both put on the queue.

A step message is ``[deployment_id, seq]`` sent by task name; the record in Redis holds
everything else. Any object with Celery's ``send_task`` can send it, so producers need no
worker code to start a deployment.
"""

from __future__ import annotations

from typing import Any, Protocol

from producers.contract.enums import Step
from producers.contract.names import QUEUE, STEP_TASKS


class TaskSender(Protocol):
    """The part of a Celery app that sends tasks."""

    def send_task(self, name: str, args: Any = ..., **options: Any) -> Any:
        """Send a task by name."""
        ...


def dispatch(
    sender: TaskSender,
    deployment_id: str,
    step: Step,
    seq: int,
    countdown: float = 0.0,
    *,
    queue: str = QUEUE,
) -> None:
    """Send the message that runs ``step`` of a deployment, fenced by ``seq``, to ``queue``."""
    sender.send_task(
        STEP_TASKS[step],
        args=[deployment_id, seq],
        countdown=countdown or None,
        queue=queue,
    )
