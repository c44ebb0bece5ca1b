"""Deregister a family's old revisions after a deployment, at low priority.

Runs after a deployment with ``keep_revisions`` ended, whatever its verdict. It lists the
family's ACTIVE revisions and every revision a service of the family uses (in any cluster of
the account and region), keeps the newest N and the used ones (:mod:`worker.domain.cleanup`),
and deregisters the rest one at a time, each only while the register/deregister bucket has
tokens to spare: when it has not, the cleanup stops and is sent again later, so a fleet being
deployed never waits for it. It is safe to run twice: a revision already INACTIVE is not listed.
"""

from __future__ import annotations

import structlog

from worker.aws.gateway import EcsGateway
from worker.domain.cleanup import revisions_to_deregister
from worker.domain.errors import TransientError

log = structlog.get_logger("conveyor.cleanup")


async def clean_up_revisions(ecs: EcsGateway, family: str, keep: int) -> tuple[list[str], bool]:
    """Deregister what may go; returns (deregistered ARNs, whether anything is left to do)."""
    active = await ecs.active_task_definition_arns(family)
    if len(active) <= keep:
        return [], False
    in_use = await ecs.task_definitions_in_use(family)
    doomed = revisions_to_deregister(active, keep, in_use)
    done: list[str] = []
    for arn in reversed(doomed):  # oldest first: an interrupted run leaves the newer ones
        try:
            await ecs.deregister_revision(arn)
        except TransientError as exc:
            log.info("cleanup paused", family=family, left=len(doomed) - len(done), why=exc.code)
            return done, True
        done.append(arn)
    log.info("old revisions deregistered", family=family, count=len(done), kept=keep)
    return done, False
