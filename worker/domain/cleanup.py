"""Which old revisions of a family a cleanup may deregister. Pure.

A family's ACTIVE revisions, newest first, are kept up to ``keep``; of the older ones, every
revision something uses or is about to use is kept too:

- what a service runs (after a rollback that can be an old one) and what its deployments under
  way run, in any service of the account and region;
- what a running task uses (standalone tasks, started by RunTask or a schedule);
- what an EventBridge rule target names (a scheduled task starts from it later);
- what a Conveyor deployment that has not ended holds: the revision it registered or deploys,
  the base it built on, and the revision it rolls back to (:func:`revisions_held`);
- a revision registered by a Conveyor deployment that has not ended (its
  ``conveyor:deployment-id`` tag), even before that deployment's record names it.

Revisions are compared by ``family:revision``: services, tasks and records may spell them as
full ARNs or short names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from producers.contract.records import DeploymentRecord


def short_name(task_definition: str) -> str:
    """``family:revision`` of an ARN or short name (``...:task-definition/web:3`` -> ``web:3``)."""
    return task_definition.rsplit("/", 1)[-1]


def revisions_held(records: Iterable[DeploymentRecord]) -> set[str]:
    """``family:revision`` of every revision these (unfinished) deployments hold: the one each
    registered or deploys, its base, the one it rolls back to and the one ECS rolls back to."""
    held: set[str] = set()
    for record in records:
        for arn in (
            record.task_definition_arn,
            record.base_task_definition_arn,
            record.previous_task_definition_arn,
            record.rollback_task_definition_arn,
        ):
            if arn:
                held.add(short_name(arn))
    return held


def revisions_to_deregister(
    active_newest_first: Sequence[str], keep: int, in_use: Iterable[str]
) -> list[str]:
    """The ARNs past the newest ``keep`` that nothing uses, newest first.

    ``in_use`` holds ARNs or ``family:revision`` names.
    """
    if keep < 1:
        raise ValueError("keep must be at least 1: the newest revision is never deregistered")
    used = {short_name(arn) for arn in in_use}
    return [arn for arn in active_newest_first[keep:] if short_name(arn) not in used]
