"""Every queue name, task name and Redis key Conveyor uses, in one place.

Both sides of the queue import these: producers to enqueue and read records, workers to run
steps. Task names and keys are stable across versions, since messages and records carry them.
"""

from __future__ import annotations

from producers.contract.enums import Step

QUEUE = "conveyor"
# Message priorities (Celery's Redis transport: 0 is served first). A deployment's first step
# waits behind the later steps of deployments already under way, so that a fleet enqueued at
# once keeps the register bucket busy from the first second instead of resolving every service
# before registering any.
PRIORITY_UNDER_WAY = 0
PRIORITY_NEW = 3
PRIORITY_BACKGROUND = 9  # cleanup: after everything else
# kombu's Redis transport: the list of priority p > 0 of queue q is named q + SEP + p.
PRIORITY_STEPS = (0, 3, 6, 9)
PRIORITY_SEP = "\x06\x16"


def priority_list(queue: str, priority: int) -> str:
    """The Redis list that holds ``queue``'s messages of ``priority`` (as kombu names it)."""
    step = max(p for p in PRIORITY_STEPS if p <= max(0, priority))
    return queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}"


# Celery task names: stable across refactors, since messages on the queue carry them.
TASK_RESOLVE = "conveyor.update.resolve"
TASK_REGISTER = "conveyor.update.register"
TASK_UPDATE = "conveyor.update.update"
TASK_WATCH = "conveyor.update.watch"
TASK_ROLLBACK = "conveyor.update.rollback"
TASK_WATCH_ROLLBACK = "conveyor.update.watch_rollback"
# Not a step: deregisters a family's old revisions after a deployment (low priority).
TASK_CLEANUP = "conveyor.cleanup.revisions"
# Not a step: computes what an update job would change (`conveyor plan`, --dry-run).
TASK_PLAN = "conveyor.update.plan"
TASK_VALIDATE = "conveyor.fargate.validate"
TASK_APPLY = "conveyor.fargate.apply"
TASK_DELETE_STALE = "conveyor.fargate.delete_stale"
TASK_WATCH_STACK = "conveyor.fargate.watch_stack"
TASK_WATCH_SERVICE = "conveyor.fargate.watch_service"

KEY_PREFIX = "conveyor:"
RECORD_KEY = KEY_PREFIX + "deployment:{id}"  # JSON DeploymentRecord (job redacted)
ATTEMPTS_KEY = KEY_PREFIX + "attempted:{id}"  # hash: steps that have acted at least once
JOB_KEY = KEY_PREFIX + "job:{id}"  # the full job payload, only while the deployment runs
DUE_KEY = KEY_PREFIX + "due"  # zset: deployment id -> time by which its next step must run
INDEX_KEY = KEY_PREFIX + "deployments"  # zset: deployment id -> created time (trimmed to TTL)
PLAN_KEY = KEY_PREFIX + "plan:{id}"  # the full job of a plan request (short TTL)
PLAN_RESULT_KEY = KEY_PREFIX + "plan:{id}:result"  # the plan, JSON (short TTL)
QUARANTINE_KEY = KEY_PREFIX + "quarantine:{id}"  # an unreadable record, moved aside
STEP_LOCK_KEY = KEY_PREFIX + "lock:deployment:{id}"  # one copy of a step at a time
SWEEP_LOCK_KEY = KEY_PREFIX + "lock:sweeper"  # one recovery sweep at a time, fleet-wide
# zset per service: unfinished deployment ids by enqueue time. The head holds the service.
SERVICE_QUEUE_KEY = KEY_PREFIX + "service:{service}:queue"
QUEUE_COUNTER_KEY = KEY_PREFIX + "queue-arrivals"  # arrival numbers for the service queues
# zset per task definition family: unfinished deployments of it (id -> last commit time), so
# that a cleanup of old revisions finds them without reading every unfinished deployment.
FAMILY_KEY = KEY_PREFIX + "family:{family}:deployments"
# The account of the workers' own credentials, published by workers (with a TTL) so that
# producers key jobs without a role under the real account from the start.
SELF_ACCOUNT_KEY = KEY_PREFIX + "account:self"
WORKERS_KEY = KEY_PREFIX + "workers"  # zset: worker name -> time of its last heartbeat
WORKER_KEY = KEY_PREFIX + "worker:{name}"  # JSON WorkerInfo, expiring with the heartbeat
SELF_ACCOUNT_TTL = 86400

STEP_TASKS: dict[Step, str] = {
    Step.RESOLVE: TASK_RESOLVE,
    Step.REGISTER: TASK_REGISTER,
    Step.UPDATE: TASK_UPDATE,
    Step.WATCH: TASK_WATCH,
    Step.ROLLBACK: TASK_ROLLBACK,
    Step.WATCH_ROLLBACK: TASK_WATCH_ROLLBACK,
    Step.VALIDATE: TASK_VALIDATE,
    Step.APPLY: TASK_APPLY,
    Step.DELETE_STALE: TASK_DELETE_STALE,
    Step.WATCH_STACK: TASK_WATCH_STACK,
    Step.WATCH_SERVICE: TASK_WATCH_SERVICE,
}
