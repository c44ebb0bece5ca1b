"""The Python API for release tooling: enqueue a deployment, read its status, wait for it.

::

    from config.settings import Settings
    from producers.client import ConveyorClient
    from producers.contract.jobs import ImageUpdate, UpdateServiceJob

    client = ConveyorClient(Settings())
    record = client.enqueue(UpdateServiceJob(
        cluster="demo", service="web",
        images=(ImageUpdate(container="web", image="repo/web:1.4.2"),),
    ))
    final = client.wait(record.id, on_progress=lambda r: print(r.step, r.progress.running))
    assert final.state == "succeeded"
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import json
import time
import uuid
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import redis
from redis.exceptions import AuthenticationError, AuthorizationError, ReadOnlyError

from producers.contract.errors import ProducerError
from producers.contract.records import DeploymentRecord, FreezeOverride
from producers.contract.store import NewerRecordError, RecordStore, wall_clock

# `conveyor status` and `conveyor update --no-wait` run in a shell loop and pay for every
# import: what only releases, plans, Fargate specs or version rules need is imported where it
# is used (tests/unit/test_cli_startup.py pins what the two commands load).
if TYPE_CHECKING:
    from config.fields import SettingsFields
    from producers.contract.dispatch import RedisTaskSender
    from producers.contract.fargate_spec import FargateServiceJob
    from producers.contract.jobs import UpdateServiceJob
    from producers.contract.kinds import Job
    from producers.contract.release_store import ReleaseStore
    from producers.contract.releases import ReleaseJob, ReleaseRecord
    from producers.contract.workers import WorkerInfo

T = TypeVar("T")

# The setting that bounds how long a producer rides out an outage; named in every give-up.
RETRY_SETTING = "CONVEYOR_REDIS_RETRY_SECONDS"
# Redis is away for now (refused, reset, timed out, loading its AOF, no primary elected yet, or
# a demoted primary refusing writes), not saying no: worth asking again. So is a primary
# without the replicas min-replicas-to-write asks for (NOREPLICAS, see _no_replicas).
_TRANSIENT: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    ReadOnlyError,
)
# A wrong password is a ConnectionError too, but waiting does not fix it.
_PERMANENT: tuple[type[Exception], ...] = (AuthenticationError, AuthorizationError)
_FIRST_DELAY, _MAX_DELAY = 0.25, 2.0
# What the retry loop catches; a ResponseError other than NOREPLICAS is then raised at once.
_RETRYABLE: tuple[type[Exception], ...] = (*_TRANSIENT, redis.ResponseError)


def _no_replicas(exc: Exception) -> bool:
    """A primary with ``min-replicas-to-write`` refusing writes until its replica is back
    (redis-py has no class for it; in a pipeline the code follows the command's name)."""
    return str(exc).startswith("NOREPLICAS") or "error: NOREPLICAS" in str(exc)


class ConveyorUnavailableError(ProducerError):
    """Raised when Redis or the workers cannot be reached."""


class DeploymentNotFoundError(ProducerError):
    """Raised when no record exists for a deployment id, and none ever did recently."""


class DeploymentLostError(ProducerError):
    """Raised when a deployment's record exists no more, or cannot be read.

    It vanished (expired, evicted by a Redis that evicts, deleted), was quarantined as
    unreadable, or was written by a newer Conveyor than this one.
    """


class ConveyorClient:
    """Enqueue deployments and follow them, through Redis.

    Every call rides out a Redis that cannot be reached (a Sentinel failover, a restart) for up
    to ``settings.redis_retry_seconds``, calling ``on_retry`` with the seconds waited so far
    before each new attempt; only then does it raise ConveyorUnavailableError. Enqueues are
    safe to retry: the deployment's id is chosen here, before the first attempt, and its record
    is created only if absent (see :meth:`enqueue`).
    """

    def __init__(
        self, settings: SettingsFields, *, on_retry: Callable[[float], None] | None = None
    ) -> None:
        self.settings = settings
        self.retry_seconds = settings.redis_retry_seconds
        self.on_retry = on_retry
        self._redis = settings.redis_client(
            socket_connect_timeout=3,
            socket_timeout=10,
        )
        self._store = RecordStore(
            self._redis,
            ttl_seconds=settings.record_ttl_days * 86400,
            queue=settings.queue,
            history_days=settings.history_retention_days,
        )

    @cached_property
    def actor(self) -> str:
        """Who this client acts for, as the audit trail notes it: CONVEYOR_ACTOR, else
        user@host."""
        if self.settings.actor:
            return self.settings.actor
        import getpass
        import socket

        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no login name in a bare container
            user = "unknown"
        return f"{user}@{socket.gethostname()}"

    def freeze_check(self, override: str | None, now: float) -> FreezeOverride | None:
        """The override to record when ``now`` is inside a freeze window; FrozenError when it
        is and ``override`` (the reason) is None, or when the freeze file cannot be used."""
        path = self.settings.freeze_file
        if not path:
            return None
        # Only with a freeze file: it brings dateutil, zoneinfo and its own models.
        from producers.contract.errors import FrozenError
        from producers.contract.freeze import calendar_at

        try:
            freeze = calendar_at(path).active(now)
        except ValueError as exc:
            raise FrozenError(f"{exc}; nothing was enqueued") from None
        if freeze is None:
            return None
        if override is None or not override.strip():
            raise FrozenError(
                f"refused: inside {freeze.describe()}; nothing was enqueued. Deploy after it "
                "ends, or give --override-freeze --reason TEXT (recorded with your name)"
            )
        return FreezeOverride(window=freeze.name, reason=override.strip(), by=self.actor, at=now)

    def _note_override(
        self, what: str, override: FreezeOverride | None, about: dict[str, str] | None = None
    ) -> None:
        if override is not None:
            event = {
                "event": "freeze override",
                "id": what,
                **(about or {}),
                "window": override.window,
                "reason": override.reason,
                "by": override.by,
            }
            self._store.history.note(event, once=f"{what}:override", now=override.at)

    def history(
        self, *, since: float | None = None, service: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """The audit trail, oldest first (see producers.contract.history)."""
        return self._retrying(
            lambda: self._store.history.read(since=since, service=service, limit=limit)
        )

    @cached_property
    def _sender(self) -> RedisTaskSender:
        from producers.contract.dispatch import RedisTaskSender

        return RedisTaskSender(self._redis)

    @cached_property
    def _releases(self) -> ReleaseStore:
        from producers.contract.release_store import ReleaseStore

        return ReleaseStore(
            self._redis,
            self._store,
            ttl_seconds=self.settings.record_ttl_days * 86400,
            recovery_grace=self.settings.recovery_grace,
            queue=self.settings.queue,
        )

    def retrying_for(self, seconds: float) -> ConveyorClient:
        """This client (the same connections) with another bound on riding out an outage."""
        other = copy.copy(self)
        other.retry_seconds = seconds
        return other

    def _retrying(self, call: Callable[[], T], doing: str = "reach Redis at") -> T:
        """``call()``, tried again while Redis cannot be reached, for up to ``retry_seconds``
        from the first failure; ConveyorUnavailableError (naming the setting) after that, or
        at once for an error that waiting does not fix."""
        started: float | None = None
        delay = _FIRST_DELAY
        while True:
            try:
                return call()
            except _PERMANENT as exc:
                raise ConveyorUnavailableError(
                    f"cannot {doing} {self.settings.redis_display}: {type(exc).__name__}; "
                    "check the password in CONVEYOR_REDIS_URL"
                ) from exc
            except _RETRYABLE as exc:
                if not isinstance(exc, _TRANSIENT) and not _no_replicas(exc):
                    raise ConveyorUnavailableError(
                        f"cannot {doing} {self.settings.redis_display}: {type(exc).__name__}"
                    ) from exc
                now = time.monotonic()
                started = now if started is None else started
                waited = now - started
                left = self.retry_seconds - waited
                if left <= 0:
                    raise ConveyorUnavailableError(
                        f"cannot {doing} {self.settings.redis_display}: {type(exc).__name__}; "
                        f"gave up after {waited:.0f} s ({RETRY_SETTING}="
                        f"{self.retry_seconds:g}); check CONVEYOR_REDIS_URL and that the server "
                        "runs"
                    ) from exc
                if self.on_retry is not None:
                    self.on_retry(waited)
                time.sleep(min(delay, left))
                delay = min(delay * 2, _MAX_DELAY)
            except redis.RedisError as exc:
                raise ConveyorUnavailableError(
                    f"cannot {doing} {self.settings.redis_display}: {type(exc).__name__}"
                ) from exc

    def check_redis(self) -> None:
        """Raise ConveyorUnavailableError when Redis does not answer (within the retry time)."""
        self._retrying(self._redis.ping)

    def workers(self) -> list[WorkerInfo]:
        """The workers whose heartbeat is current (one Redis read; no broadcast ping)."""
        from producers.contract.workers import live as live_workers

        return self._retrying(lambda: live_workers(self._redis))

    def consumers(self) -> list[WorkerInfo]:
        """The live workers that consume this fleet's queue of steps that change things.

        A worker that only watches (``-Q QUEUE.watch``) or serves another fleet's queue would
        accept nothing of a job enqueued here: a job is enqueued only when one of these lives.
        """
        return [w for w in self.workers() if self.settings.queue in w.queues]

    def resolve_versions(
        self, job: UpdateServiceJob | ReleaseJob | FargateServiceJob, *, pin_digest: bool = True
    ) -> Any:
        """The job (or release) with every ``REPOSITORY:{RULE}`` image resolved against ECR,
        one choice per repository and rule; VersionRuleError (naming the container and the
        nearest tags) when a rule matches nothing. Jobs without rules come back as they are."""
        from producers.contract.jobs import UpdateServiceJob

        if isinstance(job, UpdateServiceJob) and not any(i.unresolved_rule for i in job.images):
            return job  # what the resolver returns for it, without loading it
        from producers.contract.fargate_spec import FargateServiceJob
        from producers.contract.releases import ReleaseJob
        from producers.resolve import Resolver

        resolver = Resolver(self._ecr_tags, pin_digest=pin_digest)
        if isinstance(job, FargateServiceJob):
            return resolver.fargate(job)
        if isinstance(job, ReleaseJob):
            waves = [[resolver.job(j) for j in wave] for wave in job.waves]
            return job.model_copy(update={"waves": waves})
        return resolver.job(job)

    def _ecr_tags(self, repository: str) -> list[Any]:
        import boto3

        from producers.resolve import ecr_tags

        return ecr_tags(lambda region: boto3.client("ecr", region_name=region))(repository)

    def plan(
        self,
        job: UpdateServiceJob | ReleaseJob | FargateServiceJob,
        *,
        pin_digest: bool = True,
        timeout: float = 90.0,
    ) -> list[dict[str, Any]]:
        """What the job (or each job of the release) would change, computed by a worker with
        read calls only (for a Fargate spec, a change set deleted afterwards); nothing is
        enqueued and nothing changes. Version rules are resolved first, as an enqueue would."""
        from producers.contract.messages import PlanMessage
        from producers.contract.releases import ReleaseJob

        resolved = self.resolve_versions(job, pin_digest=pin_digest)
        jobs = (
            [j for wave in resolved.waves for j in wave]
            if isinstance(resolved, ReleaseJob)
            else [resolved]
        )
        ids = [uuid.uuid4().hex for _ in jobs]

        def send() -> None:
            # Sent again by a retry, a plan is only computed twice: it changes nothing.
            for plan_id, one in zip(ids, jobs, strict=True):
                # The full job: a plan needs the settings' names only, but the worker validates
                # the job as sent. Gone when the worker takes it, or after a minute.
                self._redis.set(
                    self._store.keys.plan.format(id=plan_id),
                    json.dumps(one.model_dump(mode="json")),
                    ex=120,
                )
                message = PlanMessage(plan_id)
                self._sender.send_task(
                    message.TASK, args=message.args(), queue=self.settings.queue, priority=0
                )

        self._retrying(send, "plan on")
        end = time.monotonic() + timeout
        plans: dict[str, dict[str, Any]] = {}

        def collect() -> None:
            for plan_id in ids:
                if plan_id not in plans:
                    raw = self._redis.get(self._store.keys.plan_result.format(id=plan_id))
                    if raw is not None:
                        plans[plan_id] = json.loads(raw)

        while len(plans) < len(ids):
            self._retrying(collect)
            if len(plans) < len(ids):
                if time.monotonic() >= end:
                    raise ConveyorUnavailableError(
                        f"no worker answered the plan within {timeout:.0f} s"
                    )
                time.sleep(0.2)
        return [plans[i] for i in ids]

    def enqueue(self, job: Job, *, override_freeze: str | None = None) -> DeploymentRecord:
        """Record the deployment as queued and send its first step. Returns the record.

        An update job's version rules must be resolved first (:meth:`resolve_versions`).
        Inside a freeze window it is refused (FrozenError) unless ``override_freeze`` gives
        the reason, which the record and the audit trail keep.
        """
        from producers.contract.dispatch import dispatch
        from producers.contract.kinds import kind_spec
        from producers.contract.names import PRIORITY_NEW
        from producers.contract.patterns import account_of_arn

        kind = kind_spec(job.kind)
        if kind.has_rules(job):
            job = self.resolve_versions(job)
        now = wall_clock()
        override = self.freeze_check(override_freeze, now)
        self.check_redis()
        payload = job.model_dump(mode="json")
        role = getattr(job, "role_arn", None)
        # The queue key needs the real account: a role's is in its ARN; the workers' own is
        # published by the workers. A worker corrects a guess before the job starts.
        account = (
            account_of_arn(role) if role else self._retrying(self._store.self_account, "enqueue on")
        )
        # The id is chosen once, before the first attempt: every retry creates the same
        # deployment, and the store creates a record only where there is none.
        record = DeploymentRecord(
            id=uuid.uuid4().hex,
            account=account,
            kind=kind.kind,
            step=kind.first_step,
            # Records are read by anyone with `conveyor status`: no environment values or secret
            # references in them. The full payload is kept apart while the deployment runs.
            job=kind.redact(job),
            cluster=job.cluster,
            service=job.service,
            freeze_override=override,
            created_at=now,
            updated_at=now,
        )
        attempts = 0

        def create_and_send() -> None:
            nonlocal attempts
            attempts += 1
            try:
                self._store.create(
                    record, due=now + self.settings.recovery_grace, job=payload, by=self.actor
                )
                self._note_override(
                    record.id, override, {"cluster": record.cluster, "service": record.service}
                )
            except ValueError:
                if attempts == 1:
                    raise
                # An earlier attempt created it and its answer was lost: it is this one.
            # Sent again by a retry, the first step is fenced by the record's seq: a second
            # copy finds the step taken (or the step lock held) and does nothing.
            dispatch(
                self._sender,
                record.id,
                record.step,
                record.seq,
                queue=self.settings.queue,
                priority=PRIORITY_NEW,
            )

        self._retrying(create_and_send, "enqueue on")
        return record

    def release(self, job: ReleaseJob, *, override_freeze: str | None = None) -> ReleaseRecord:
        """Record a release, enqueue its first wave, and return its record.

        Later waves are enqueued by the workers as each wave ends (see ReleaseJob). Inside a
        freeze window it is refused unless ``override_freeze`` gives the reason; an overridden
        release's later waves start through freezes too.
        """
        from producers.contract.ids import new_release_id

        if any(i.unresolved_rule for wave in job.waves for j in wave for i in j.images):
            job = self.resolve_versions(job)
        release_id = new_release_id()
        now = wall_clock()
        override = self.freeze_check(override_freeze, now)
        self.check_redis()
        attempts = 0

        def create_and_send() -> ReleaseRecord:
            nonlocal attempts
            attempts += 1
            # A retry finds the release its lost attempt recorded and completes that one.
            record = self._releases.create(
                job, release_id, now, retried=attempts > 1, by=self.actor, freeze_override=override
            )
            self._note_override(release_id, override)
            self._releases.dispatch_wave(record, self._sender)
            return record

        return self._retrying(create_and_send, "enqueue on")

    def release_status(self, release_id: str) -> ReleaseRecord:
        """The release's record; DeploymentNotFoundError when there is none, and
        DeploymentLostError when its record is unreadable (quarantined) or of a newer Conveyor."""

        def read() -> ReleaseRecord | None:
            try:
                found = self._releases.get(release_id)
            except NewerRecordError as exc:
                raise DeploymentLostError(str(exc)) from exc
            if found is None and self._releases.is_quarantined(release_id):
                moved = self._store.keys.release_quarantine.format(id=release_id)
                raise DeploymentLostError(
                    f"the record of release {release_id} is unreadable (edited by hand or "
                    f"damaged) and was moved aside to {moved}; Conveyor no longer follows it: "
                    "check its deployments with `conveyor list`"
                )
            return found

        record = self._retrying(read)
        if record is None:
            raise DeploymentNotFoundError(
                f"no release {release_id!r}; ids are printed by `conveyor release` "
                f"(records are kept {self.settings.record_ttl_days} days)"
            )
        return record

    def release_deployments(self, release: ReleaseRecord) -> list[DeploymentRecord | None]:
        """The records of the release's deployments created so far (None: not started)."""

        def read() -> list[DeploymentRecord | None]:
            found: list[DeploymentRecord | None] = []
            for ids in release.waves:
                for deployment_id in ids:
                    try:
                        found.append(self._store.get(deployment_id))
                    except NewerRecordError:
                        found.append(None)
            return found

        return self._retrying(read)

    def wait_release(
        self,
        release_id: str,
        *,
        on_progress: Callable[[ReleaseRecord], None] | None = None,
        timeout: float | None = None,
        interval: float = 1.0,
    ) -> ReleaseRecord:
        """Poll the release until it has a verdict (or ``timeout`` passes); return its record."""
        end = None if timeout is None else time.monotonic() + timeout
        last: str | None = None
        while True:
            record = self.release_status(release_id)
            fingerprint = record.model_dump_json(include={"state", "wave", "outcomes"})
            if on_progress is not None and fingerprint != last:
                on_progress(record)
                last = fingerprint
            if record.terminal or (end is not None and time.monotonic() >= end):
                return record
            time.sleep(interval)

    def cancel_release(self, release_id: str) -> ReleaseRecord:
        """Stop a release: no further wave starts, and the deployments of the waves started
        that have not ended are cancelled (a rollout under way is rolled back, as for `cancel`):
        with ``move_on_at`` those of earlier waves may still be running.

        Returns the release as the cancel request left it: a worker gives it its verdict once
        those deployments have ended (:meth:`wait_release` follows it there).
        """

        def request() -> ReleaseRecord:
            # Each part is safe to repeat: a retry after a lost answer redoes them all. The
            # cancel's time is read when it is written, not when it was asked for: a request
            # that waited out a Redis failover takes effect only then.
            release = self._releases.request_cancel(release_id, wall_clock, by=self.actor)
            if release is None:
                raise DeploymentNotFoundError(f"no release {release_id!r}")
            begun = [i for ids in release.waves[: release.wave + 1] for i in ids]
            for deployment_id in (i for i in begun if i not in release.outcomes):
                with contextlib.suppress(DeploymentNotFoundError, DeploymentLostError):
                    self.cancel(deployment_id)
            self._ask_to_advance(release_id)
            return release

        return self._retrying(request)

    def answer_release(
        self, release_id: str, action: Literal["CONTINUE", "REJECT"], by: str
    ) -> ReleaseRecord:
        """Approve (``CONTINUE``) or reject (``REJECT``) the wave a release waits before, as
        ``by``; returns the release with the answer recorded.

        A worker acts on the answer (starts the wave, or ends the release) as soon as it takes
        the message this sends; :meth:`wait_release` follows it. ValueError when the release
        waits for no approval. Safe to repeat: the first answer for a wave stands.
        """

        def request() -> ReleaseRecord:
            answered = self._releases.answer_wave(release_id, action, by, wall_clock())
            if answered is None:
                raise DeploymentNotFoundError(f"no release {release_id!r}")
            self._ask_to_advance(release_id)
            return answered

        return self._retrying(request)

    def _ask_to_advance(self, release_id: str) -> None:
        """Ask a worker to move the release on now, after an answer or a cancel request was
        recorded. Only workers advance releases; a message lost here only delays the advance
        until the workers' next sweep, which advances every active release."""
        from producers.contract.messages import AdvanceMessage
        from producers.contract.names import PRIORITY_UNDER_WAY

        message = AdvanceMessage(release_id)
        self._sender.send_task(
            message.TASK,
            args=message.args(),
            queue=self.settings.queue,
            priority=PRIORITY_UNDER_WAY,
        )

    def cancel(self, deployment_id: str) -> DeploymentRecord:
        """Ask for a deployment to stop; returns its record (terminal ones are left as they are).

        The request takes effect at once: the deployment's current step is dispatched again
        and handles it (see docs/operations.md for what happens to a rollout under way).
        """
        now = wall_clock()

        def request(record: DeploymentRecord) -> DeploymentRecord | None:
            if record.terminal or record.cancel_requested_at:
                return None
            return record.model_copy(
                update={"cancel_requested_at": now, "seq": record.seq + 1, "updated_at": now}
            )

        return self._request_step(
            deployment_id,
            request,
            mine=lambda current: current.cancel_requested_at == now,
            due=now + self.settings.recovery_grace,
            event=({"event": "cancel requested", "by": self.actor}, f"{deployment_id}:cancel", now),
        )

    def answer_hook(
        self, deployment_id: str, action: Literal["CONTINUE", "ROLLBACK"], by: str
    ) -> DeploymentRecord:
        """Approve (``CONTINUE``) or reject (``ROLLBACK``) a deployment paused at a PAUSE
        lifecycle hook, as ``by``; returns its record.

        The request is recorded at once and the deployment's current step is dispatched again:
        the worker following it sends the answer to ECS (ContinueServiceDeployment) for the
        hook awaiting action, and records who answered, when, and what came of it. A later
        answer replaces one not yet sent. Terminal deployments are left as they are.
        """
        from producers.contract.records import Approval

        now = wall_clock()

        def request(record: DeploymentRecord) -> DeploymentRecord | None:
            if record.terminal:
                return None
            answer = Approval(action=action, by=by, requested_at=now)
            return record.model_copy(
                update={"approval_requested": answer, "seq": record.seq + 1, "updated_at": now}
            )

        def mine(current: DeploymentRecord) -> bool:
            pending = current.approval_requested
            return pending is not None and pending.requested_at == now

        word = "approval requested" if action == "CONTINUE" else "rejection requested"
        event = ({"event": word, "by": by}, f"{deployment_id}:answer:{now}", now)
        return self._request_step(deployment_id, request, mine=mine, event=event)

    def _request_step(
        self,
        deployment_id: str,
        request: Callable[[DeploymentRecord], DeploymentRecord | None],
        *,
        mine: Callable[[DeploymentRecord], bool],
        due: float | None = None,
        event: tuple[dict[str, Any], str, float] | None = None,
    ) -> DeploymentRecord:
        """Record a person's request on a deployment (``request``, which bumps its seq) and
        dispatch its current step again, so that a worker acts on it now; returns the record.

        A retry after a lost answer finds the request already recorded: ``mine`` tells it is
        this call's own (then the step still needs its message, and ``due`` its due time).
        ``event`` (what, once-key, when) goes to the audit trail with the deployment's service.
        """
        from producers.contract.dispatch import dispatch

        def request_and_send() -> DeploymentRecord | None:
            changed = self._store.modify(deployment_id, request)
            if changed is None:
                try:
                    current = self._store.get(deployment_id)
                except NewerRecordError:
                    current = None
                if current is not None and not current.terminal:
                    # Our own request, recorded by an attempt whose answer was lost: it still
                    # needs its due time and its message.
                    changed = current if mine(current) else None
            if changed is not None:
                if event is not None:
                    what, once, at = event
                    about = {"id": deployment_id, "cluster": changed.cluster}
                    self._store.history.note(
                        {**what, **about, "service": changed.service}, once=once, now=at
                    )
                if due is not None:
                    self._store.set_due(deployment_id, due)
                dispatch(
                    self._sender,
                    deployment_id,
                    changed.step,
                    changed.seq,
                    queue=self.settings.queue,
                )
            return changed

        changed = self._retrying(request_and_send)
        return changed or self.status(deployment_id)

    def list_deployments(
        self,
        *,
        services: tuple[str, ...] = (),
        states: tuple[str, ...] = (),
        clusters: tuple[str, ...] = (),
        limit: int = 20,
    ) -> list[DeploymentRecord]:
        """The newest deployments, newest first, filtered by service (shell-style patterns such
        as ``api-*``), state and cluster; each filter matches any of its values."""

        def keep(record: DeploymentRecord) -> bool:
            return (
                (not services or any(fnmatch.fnmatchcase(record.service, p) for p in services))
                and (not states or record.state.value in states)
                and (not clusters or record.cluster in clusters)
            )

        return self._retrying(lambda: self._store.recent_matching(keep, limit=limit))

    def list_releases(
        self,
        *,
        states: tuple[str, ...] = (),
        limit: int = 20,
        unreadable: list[str] | None = None,
    ) -> list[ReleaseRecord]:
        """The newest releases, newest first, optionally only those in ``states``.

        Records that cannot be read are left out (an unreadable one is quarantined on the way);
        their ids are appended to ``unreadable`` when it is given.
        """
        found, skipped = self._retrying(
            lambda: self._releases.listing(limit=limit if not states else max(limit, 500))
        )
        if unreadable is not None:
            unreadable.extend(skipped)
        return [r for r in found if not states or r.state.value in states][:limit]

    def status(self, deployment_id: str) -> DeploymentRecord:
        """Return the deployment's record.

        DeploymentNotFoundError when no such deployment was made; DeploymentLostError when it
        was, but its record is gone or unreadable.
        """

        def read() -> DeploymentRecord | None:
            try:
                record = self._store.get(deployment_id)
            except NewerRecordError as exc:
                raise DeploymentLostError(str(exc)) from exc
            if record is not None:
                return record
            if self._store.is_quarantined(deployment_id):
                moved = self._store.keys.quarantine.format(id=deployment_id)
                raise DeploymentLostError(
                    f"the record of deployment {deployment_id} is unreadable (edited by hand or "
                    f"damaged) and was moved aside to {moved}; "
                    "Conveyor no longer follows it: check the service in ECS"
                )
            if self._store.exists_in_index(deployment_id):
                raise DeploymentLostError(_vanished(deployment_id))
            return None

        found = self._retrying(read)
        if found is not None:
            return found
        raise DeploymentNotFoundError(
            f"no deployment {deployment_id!r}; ids are printed by `conveyor update` "
            f"(records are kept {self.settings.record_ttl_days} days)"
        )

    def wait(
        self,
        deployment_id: str,
        *,
        on_progress: Callable[[DeploymentRecord], None] | None = None,
        timeout: float | None = None,
        interval: float = 1.0,
        until: Callable[[DeploymentRecord], bool] | None = None,
    ) -> DeploymentRecord:
        """Poll the record until it is terminal, ``until`` holds for it, or ``timeout`` passes;
        return the last one.

        ``on_progress`` is called with each record that differs from the previous one.
        """
        end = None if timeout is None else time.monotonic() + timeout
        last: str | None = None
        seen = False
        while True:
            try:
                record = self.status(deployment_id)
            except DeploymentNotFoundError as exc:
                if seen:
                    raise DeploymentLostError(_vanished(deployment_id)) from exc
                raise
            seen = True
            fingerprint = record.model_dump_json(include={"state", "step", "progress", "events"})
            if on_progress is not None and fingerprint != last:
                on_progress(record)
                last = fingerprint
            if record.terminal or (until is not None and until(record)):
                return record
            if end is not None and time.monotonic() >= end:
                return record
            time.sleep(interval)


def _vanished(deployment_id: str) -> str:
    return (
        f"the record of deployment {deployment_id} vanished from Redis (expired, evicted by a "
        "maxmemory policy, or deleted); Conveyor no longer follows it: check the service in ECS"
    )
