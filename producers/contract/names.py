"""Every queue name, task name and Redis key Conveyor uses, in one place.

Both sides of the queue import these: producers to enqueue and read records, workers to run
steps. Task names and keys are stable across versions, since messages and records carry them.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def watch_queue(queue: str = QUEUE) -> str:
    """The queue of watching steps (and background cleanups) that goes with ``queue``.

    Watching steps have a queue of their own, so that a large fleet of rollouts being watched
    never starves new deployments of workers.
    """
    return f"{queue}.watch"


def priority_list(queue: str, priority: int) -> str:
    """The Redis list that holds ``queue``'s messages of ``priority`` (as kombu names it)."""
    step = max(p for p in PRIORITY_STEPS if p <= max(0, priority))
    return queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}"


# Celery task names: stable across refactors, since messages on the queue carry them.
TASK_RESOLVE = "conveyor.update.resolve"
TASK_REGISTER = "conveyor.update.register"
TASK_RUN_TASK = "conveyor.update.run_task"
TASK_WATCH_TASK = "conveyor.update.watch_task"
TASK_UPDATE = "conveyor.update.update"
TASK_WATCH = "conveyor.update.watch"
TASK_ROLLBACK = "conveyor.update.rollback"
TASK_WATCH_ROLLBACK = "conveyor.update.watch_rollback"
# Not a step: deregisters a family's old revisions after a deployment (low priority).
TASK_CLEANUP = "conveyor.cleanup.revisions"
# Not a step: computes what an update job would change (`conveyor plan`, --dry-run).
TASK_PLAN = "conveyor.update.plan"
# Not a step: takes one measurement of a release wave's metric gate.
TASK_RELEASE_GATE = "conveyor.release.gate"
# Not a step: moves a release on now, after a producer recorded an answer or a cancel request.
TASK_RELEASE_ADVANCE = "conveyor.release.advance"
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


@dataclass(frozen=True, slots=True)
class Keys:
    """The Redis keys of one fleet: the workers and producers that share a ``CONVEYOR_QUEUE``.

    Every key a fleet owns starts with its queue's name and a colon, so fleets that share a
    Redis never read, sweep or advance each other's deployments and releases. The default
    queue, ``conveyor``, keeps the keys Conveyor always used. Keys about AWS itself (rate-limit
    buckets, the batched watch's cache, the cleanups' view of what is in use) are not a
    fleet's: fleets that act in one account share its API limits, so they share those keys.
    A limit of this: a cleanup sees only its own fleet's unfinished deployments.
    """

    prefix: str = KEY_PREFIX

    @classmethod
    def of(cls, queue: str = QUEUE) -> Keys:
        """The keys of the fleet consuming ``queue``."""
        return cls(f"{queue}:")

    def _k(self, template: str) -> str:
        return self.prefix + template[len(KEY_PREFIX) :]

    @property
    def record(self) -> str:
        """See RECORD_KEY."""
        return self._k(RECORD_KEY)

    @property
    def attempts(self) -> str:
        """See ATTEMPTS_KEY."""
        return self._k(ATTEMPTS_KEY)

    @property
    def job(self) -> str:
        """See JOB_KEY."""
        return self._k(JOB_KEY)

    @property
    def due(self) -> str:
        """See DUE_KEY."""
        return self._k(DUE_KEY)

    @property
    def index(self) -> str:
        """See INDEX_KEY."""
        return self._k(INDEX_KEY)

    @property
    def plan(self) -> str:
        """See PLAN_KEY."""
        return self._k(PLAN_KEY)

    @property
    def plan_result(self) -> str:
        """See PLAN_RESULT_KEY."""
        return self._k(PLAN_RESULT_KEY)

    @property
    def quarantine(self) -> str:
        """See QUARANTINE_KEY."""
        return self._k(QUARANTINE_KEY)

    @property
    def step_lock(self) -> str:
        """See STEP_LOCK_KEY."""
        return self._k(STEP_LOCK_KEY)

    @property
    def sweep_lock(self) -> str:
        """See SWEEP_LOCK_KEY."""
        return self._k(SWEEP_LOCK_KEY)

    @property
    def service_queue(self) -> str:
        """See SERVICE_QUEUE_KEY."""
        return self._k(SERVICE_QUEUE_KEY)

    @property
    def queue_counter(self) -> str:
        """See QUEUE_COUNTER_KEY."""
        return self._k(QUEUE_COUNTER_KEY)

    @property
    def self_account(self) -> str:
        """See SELF_ACCOUNT_KEY."""
        return self._k(SELF_ACCOUNT_KEY)

    @property
    def workers(self) -> str:
        """See WORKERS_KEY."""
        return self._k(WORKERS_KEY)

    @property
    def worker(self) -> str:
        """See WORKER_KEY."""
        return self._k(WORKER_KEY)

    @property
    def family(self) -> str:
        """See FAMILY_KEY."""
        return self._k(FAMILY_KEY)

    @property
    def release(self) -> str:
        """JSON ReleaseRecord."""
        return self.prefix + "release:{id}"

    @property
    def releases(self) -> str:
        """zset: release id -> created time (trimmed to the TTL)."""
        return self.prefix + "releases"

    @property
    def active_releases(self) -> str:
        """zset: unfinished release id -> created time."""
        return self.prefix + "releases:active"

    @property
    def release_quarantine(self) -> str:
        """An unreadable release record, moved aside."""
        return self.prefix + "quarantine:release:{id}"

    @property
    def history(self) -> str:
        """stream: the audit trail (see producers.contract.history)."""
        return self.prefix + "history"

    @property
    def history_once(self) -> str:
        """Set once an event of the audit trail is written, so that a retry writes it no more."""
        return self.prefix + "history:once:{event}"

    @property
    def release_stopped(self) -> str:
        """Set (to the reason) once a release's queued deployments may no longer start."""
        return self.prefix + "release:{id}:stopped"


STEP_TASKS: dict[Step, str] = {
    Step.RESOLVE: TASK_RESOLVE,
    Step.REGISTER: TASK_REGISTER,
    Step.RUN_TASK: TASK_RUN_TASK,
    Step.WATCH_TASK: TASK_WATCH_TASK,
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
