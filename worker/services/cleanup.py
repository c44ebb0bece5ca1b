"""Deregister a family's old revisions after a deployment, at low priority.

Runs after a deployment with ``keep_revisions`` ended, whatever its verdict. It lists the
family's ACTIVE revisions, keeps the newest N, and of the older ones keeps every revision that
is in use or about to be (:mod:`worker.domain.cleanup` lists what counts). The rest are
deregistered one at a time, oldest first, each only while the register/deregister bucket has
tokens to spare: when it has not, the cleanup stops and is sent again later, so a fleet being
deployed never waits for it. It is safe to run twice: a revision already INACTIVE is not listed.

Two sources, read differently:

- **What AWS runs** (services and their deployments, running tasks, EventBridge rule targets)
  is one view of the whole account and region (:class:`InUseView`), computed at low priority
  by one worker and shared through Redis for ``IN_USE_TTL`` seconds: the cleanups of a
  1,000-service release scan the account once a minute, not once each. While one worker
  computes it, the others' cleanups come back later rather than scan too.
- **What Conveyor's own deployments hold** is read fresh from Redis just before each
  deregistration (cheap: the family's index of unfinished deployments, then one record per
  tag): the revision each registered or deploys, its base and its rollback target, and any
  revision whose ``conveyor:deployment-id`` tag names a deployment that has not ended, which
  covers the moment between RegisterTaskDefinition and the commit that records the revision.

The trade-off of the shared view: something outside Conveyor (a person, Terraform, another
tool) that points a service at an old revision, starts a task from one or adds a schedule
naming one, less than ``IN_USE_TTL`` seconds before a cleanup, is not seen by that cleanup, and
the revision may be deregistered. ECS then refuses that actor's next UpdateService, CreateService
or RunTask naming it ("TaskDefinition is inactive"); tasks already running keep running. Set
``keep_revisions`` high enough to cover revisions people roll back to by hand.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Protocol

import redis
import structlog

from producers.contract.enums import Step
from producers.contract.names import KEY_PREFIX
from producers.contract.records import DeploymentRecord
from producers.contract.store import NewerRecordError
from worker.aws.gateway import EcsGateway
from worker.domain.cleanup import revisions_held, revisions_to_deregister, short_name
from worker.domain.errors import TransientError
from worker.domain.planning import DEPLOYMENT_TAG
from worker.services.update_flow import BASE_NOTE

log = structlog.get_logger("conveyor.cleanup")

# set per "account:region": ``family:revision`` of every revision in use, plus "" (a set is never
# empty, so that an empty account still has a view); expires after IN_USE_TTL.
IN_USE_KEY = KEY_PREFIX + "in-use:{scope}"
IN_USE_LOCK_KEY = KEY_PREFIX + "lock:in-use:{scope}"  # one scan of an account at a time
IN_USE_TTL = 60
# Longer than any scan: a worker that dies while scanning holds the others back this long.
SCAN_LOCK_TTL = 300

# Which of ARGV are members of KEYS[1], or nil when the view has expired: one atomic read, so a
# view that expires between "is it there" and "who is in it" cannot read as "nothing in use".
_MEMBERS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local found = {}
for i, name in ipairs(ARGV) do found[i] = redis.call('SISMEMBER', KEYS[1], name) end
return found
"""


class InUseView:
    """The revisions AWS runs or will start in one account and region, shared via Redis."""

    def __init__(self, client: redis.Redis, *, ttl: int = IN_USE_TTL) -> None:
        self._r = client
        self._ttl = ttl
        self._members = client.register_script(_MEMBERS)

    async def in_use(self, ecs: EcsGateway, names: Sequence[str]) -> set[str] | None:
        """Which of ``names`` (``family:revision``) are in use; None while another worker
        computes the view (come back later).

        A gateway that does not name its scope (``account:region``) gets a view of its own,
        computed for this call.
        """
        scope = ecs.scope
        if scope is None:
            used = await scan_in_use(ecs)
            return {n for n in names if n in used}
        key = IN_USE_KEY.format(scope=scope)
        found = self._lookup(key, names)
        if found is not None:
            return found
        lock = IN_USE_LOCK_KEY.format(scope=scope)
        if not self._r.set(lock, "1", nx=True, ex=SCAN_LOCK_TTL):
            return None
        try:
            used = await scan_in_use(ecs)
            fresh = f"{key}:new:{uuid.uuid4().hex}"
            with self._r.pipeline(transaction=True) as pipe:
                pipe.sadd(fresh, "", *sorted(used))
                pipe.expire(fresh, self._ttl)
                pipe.rename(fresh, key)
                pipe.execute()
        finally:
            self._r.delete(lock)
        log.info("revisions in use scanned", scope=scope, count=len(used))
        return {n for n in names if n in used}

    def _lookup(self, key: str, names: Sequence[str]) -> set[str] | None:
        if not names:
            return set() if self._r.exists(key) else None
        flags = self._members(keys=[key], args=list(names))
        if flags is None:
            return None
        return {n for n, flag in zip(names, flags, strict=True) if int(flag)}


async def scan_in_use(ecs: EcsGateway) -> set[str]:
    """``family:revision`` of every revision services, running tasks and EventBridge rule
    targets use in the gateway's account and region (three scans, at low priority)."""
    used = await ecs.service_task_definitions()
    used |= await ecs.running_task_definitions()
    used |= await ecs.scheduled_task_definitions()
    return {short_name(arn) for arn in used}


class FamilyRecords(Protocol):
    """What a cleanup reads of the fleet's records (the worker's store, worker/store.py)."""

    def unfinished_in_family(self, family: str) -> list[DeploymentRecord]:
        """The family's unfinished deployments, read fresh."""
        ...

    def read_note(self, deployment_id: str, name: str) -> str | None:
        """A note an attempt of the deployment kept, or None."""
        ...

    def get(self, deployment_id: str) -> DeploymentRecord | None:
        """The deployment's record, or None."""
        ...


async def _held_by_conveyor(
    ecs: EcsGateway, store: FamilyRecords, family: str, arn: str
) -> str | None:
    """The unfinished Conveyor deployment that holds ``arn``, or None. Read fresh.

    Raises NewerRecordError when a deployment that may hold it cannot be read by this version.
    """
    unfinished = store.unfinished_in_family(family)
    for record in unfinished:
        held = revisions_held([record])
        # The base is noted before anything is registered, and recorded only with the revision.
        noted = store.read_note(record.id, BASE_NOTE) if record.step is Step.REGISTER else None
        if noted:
            held.add(short_name(noted))
        if short_name(arn) in held:
            return record.id
    # Registered by a deployment whose record does not name it yet (between register and the
    # commit), or by one that is not in the family's index (a worker of an older version).
    _, tags = await ecs.describe_task_definition(arn)
    owner = next((t.get("value") for t in tags if t.get("key") == DEPLOYMENT_TAG), None)
    if not owner:
        return None
    if any(record.id == owner for record in unfinished):
        return owner
    found = store.get(owner)
    return owner if found is not None and not found.terminal else None


async def clean_up_revisions(
    ecs: EcsGateway, family: str, keep: int, *, store: FamilyRecords, view: InUseView
) -> tuple[list[str], bool]:
    """Deregister what may go; returns (deregistered ARNs, whether anything is left to do)."""
    active = await ecs.active_task_definition_arns(family)
    if len(active) <= keep:
        return [], False
    older = revisions_to_deregister(active, keep, ())
    in_use = await view.in_use(ecs, [short_name(arn) for arn in older])
    if in_use is None:
        log.info("cleanup waits for the view of revisions in use", family=family)
        return [], True
    doomed = revisions_to_deregister(active, keep, in_use)
    done: list[str] = []
    kept: list[str] = []
    for arn in reversed(doomed):  # oldest first: an interrupted run leaves the newer ones
        try:
            holder = await _held_by_conveyor(ecs, store, family, arn)
            if holder is not None:
                kept.append(arn)
                continue
            await ecs.deregister_revision(arn)
        except TransientError as exc:
            log.info("cleanup paused", family=family, left=len(doomed) - len(done), why=exc.code)
            return done, True
        except NewerRecordError:
            log.warning("cleanup paused: a deployment of the family needs a newer Conveyor")
            return done, True
        done.append(arn)
    log.info(
        "old revisions deregistered",
        family=family,
        count=len(done),
        kept=keep,
        held_by_deployments=len(kept),
    )
    return done, False
