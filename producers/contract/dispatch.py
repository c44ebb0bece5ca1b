"""Sending a step's message: the one thing producers and workers both put on the queue.

A step message is ``[deployment_id, seq]`` sent by task name; the record in Redis holds
everything else. Watching steps go to a queue of their own (``QUEUE.watch``), so that a large
fleet of rollouts being watched never starves new deployments of workers.

Workers send with their Celery app. Producers send with :class:`RedisTaskSender`, which writes
the same Celery message (protocol 2, JSON) straight onto the Redis list that Celery's Redis
transport reads: a `conveyor update` from a shell loop then starts without loading Celery.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import redis

from producers.contract.enums import Step
from producers.contract.messages import StepMessage
from producers.contract.names import (
    PRIORITY_UNDER_WAY,
    QUEUE,
    STEP_TASKS,
    priority_list,
    watch_queue,
)

__all__ = ["WATCH_STEPS", "RedisTaskSender", "TaskSender", "dispatch", "queue_for", "watch_queue"]

# Steps that only look at a rollout or a stack: they go to the watch queue.
WATCH_STEPS = frozenset(
    {
        Step.WATCH,
        Step.WATCH_TASK,
        Step.WATCH_ROLLBACK,
        Step.WATCH_STACK,
        Step.WATCH_SERVICE,
        Step.DELETE_STALE,
    }
)


def queue_for(step: Step, queue: str = QUEUE) -> str:
    """The queue a step's message goes to."""
    return watch_queue(queue) if step in WATCH_STEPS else queue


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
    priority: int = PRIORITY_UNDER_WAY,
) -> None:
    """Send the message that runs ``step`` of a deployment, fenced by ``seq``.

    ``queue`` is the base queue; watching steps go to its watch queue. A deployment's first
    step goes with ``PRIORITY_NEW``, behind the steps of deployments under way.
    """
    sender.send_task(
        STEP_TASKS[step],
        args=StepMessage(deployment_id, seq).args(),
        countdown=countdown or None,
        queue=queue_for(step, queue),
        priority=priority,
    )


class RedisTaskSender:
    """Puts Celery task messages on Redis directly, as Celery's Redis transport would.

    Only what Conveyor's steps need: positional JSON arguments, a countdown (an ETA, which the
    worker holds until due, as Celery does), a priority, no result expected.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._r = client
        self._origin = f"conveyor-producer-{os.getpid()}@{socket.gethostname()}"

    def send_task(
        self,
        name: str,
        args: Any = (),
        *,
        countdown: float | None = None,
        queue: str = QUEUE,
        priority: int = PRIORITY_UNDER_WAY,
        **_: Any,
    ) -> str:
        """Send task ``name`` with ``args`` to ``queue``; returns the task id."""
        task_id = str(uuid.uuid4())
        eta = None
        if countdown:
            eta = (datetime.now(UTC) + timedelta(seconds=countdown)).isoformat()
        arguments = list(args)
        embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
        body = json.dumps([arguments, {}, embed]).encode()
        message = {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py",
                "task": name,
                "id": task_id,
                "shadow": None,
                "eta": eta,
                "expires": None,
                "group": None,
                "group_index": None,
                "retries": 0,
                "timelimit": [None, None],
                "root_id": task_id,
                "parent_id": None,
                "argsrepr": repr(arguments),
                "kwargsrepr": "{}",
                "origin": self._origin,
                "ignore_result": True,
                "replaced_task_nesting": 0,
                "stamped_headers": None,
                "stamps": {},
            },
            "properties": {
                "correlation_id": task_id,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": priority,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        # Celery's Redis transport keeps a queue's messages in one list per priority, named
        # after the queue, pushed on the left and popped on the right.
        self._r.lpush(priority_list(queue, priority), json.dumps(message))
        return task_id
