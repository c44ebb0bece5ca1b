"""Every queue name, task name and Redis key Conveyor uses, in one place."""

from __future__ import annotations

QUEUE = "conveyor"

# Celery task names: stable across refactors, since messages on the queue carry them.
TASK_RESOLVE = "conveyor.update.resolve"
TASK_REGISTER = "conveyor.update.register"
TASK_UPDATE = "conveyor.update.update"
TASK_WATCH = "conveyor.update.watch"
TASK_ROLLBACK = "conveyor.update.rollback"
TASK_WATCH_ROLLBACK = "conveyor.update.watch_rollback"
TASK_VALIDATE = "conveyor.fargate.validate"
TASK_APPLY = "conveyor.fargate.apply"
TASK_DELETE_STALE = "conveyor.fargate.delete_stale"
TASK_WATCH_STACK = "conveyor.fargate.watch_stack"
TASK_WATCH_SERVICE = "conveyor.fargate.watch_service"

KEY_PREFIX = "conveyor:"
RECORD_KEY = KEY_PREFIX + "deployment:{id}"  # JSON DeploymentRecord (job redacted)
JOB_KEY = KEY_PREFIX + "job:{id}"  # the full job payload, only while the deployment runs
DUE_KEY = KEY_PREFIX + "due"  # zset: deployment id -> time by which its next step must run
INDEX_KEY = KEY_PREFIX + "deployments"  # zset: deployment id -> created time
STEP_LOCK_KEY = KEY_PREFIX + "lock:deployment:{id}"  # one copy of a step at a time
SWEEP_LOCK_KEY = KEY_PREFIX + "lock:sweeper"  # one recovery sweep at a time, fleet-wide
# zset per service: unfinished deployment ids by enqueue time. The head holds the service.
SERVICE_QUEUE_KEY = KEY_PREFIX + "service:{service}:queue"
QUEUE_COUNTER_KEY = KEY_PREFIX + "queue-arrivals"  # arrival numbers for the service queues

MAX_EVENTS = 100  # as many as ECS keeps per service
MAX_STOPPED_TASKS = 20

STEP_TASKS = {
    "resolve": TASK_RESOLVE,
    "register": TASK_REGISTER,
    "update": TASK_UPDATE,
    "watch": TASK_WATCH,
    "rollback": TASK_ROLLBACK,
    "watch_rollback": TASK_WATCH_ROLLBACK,
    "validate": TASK_VALIDATE,
    "apply": TASK_APPLY,
    "delete_stale": TASK_DELETE_STALE,
    "watch_stack": TASK_WATCH_STACK,
    "watch_service": TASK_WATCH_SERVICE,
}
