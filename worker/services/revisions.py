"""Which revision a deployment builds on, and the revisions no deployment may build on.

A new revision is the family's latest ACTIVE revision with only the job's changes: that picks up
revisions that Terraform or a person registered on purpose. But after a Conveyor deployment
failed, was rolled back, cancelled or superseded, the latest revision is the one it registered,
and building on it would ship the failed change again with the next deployment of any service of
the family. So a deployment that did not succeed marks its own revision with ``DISCARD_TAG``
before its verdict is committed, and the base is the newest ACTIVE revision without that mark.

Why a tag rather than deregistering the revision: a tag is one call that never races a service
using the revision (a service left on it by ``--no-rollback`` keeps scaling normally), it keeps
the evidence of what failed on the revision itself, and it is read with the same
DescribeTaskDefinition the base is read with, so choosing the base costs nothing more until a
failure happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import structlog

from producers.contract.records import DeploymentRecord, DeploymentState, Step
from worker.aws.gateway import EcsGateway, family_of, revision_of
from worker.domain.errors import InvalidJobError
from worker.domain.planning import DISCARD_TAG, discard_mark, registered_by

log = structlog.get_logger("conveyor.revisions")

# How many discarded revisions in a row the base search steps over before it gives up: a family
# whose last 50 deployments all failed needs a person, not a guess.
MAX_SKIPPED = 50


@dataclass(frozen=True, slots=True)
class BaseChoice:
    """The revision a deployment builds on, and why (for the step log and the plan)."""

    definition: dict[str, Any]
    tags: list[dict[str, str]]
    reason: str
    # ``family:revision`` of each newer revision stepped over, with how its deployment ended.
    skipped: tuple[str, ...] = ()

    @property
    def arn(self) -> str:
        """The base revision's ARN."""
        return str(self.definition["taskDefinitionArn"])


def _short(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


async def choose_base(
    ecs: EcsGateway,
    family: str,
    *,
    base: Literal["family", "service"] = "family",
    service_task_definition: str | None = None,
    pinned: str | None = None,
) -> BaseChoice:
    """The revision a new revision of ``family`` is built from.

    ``base="family"``: the family's newest ACTIVE revision that no failed Conveyor deployment
    discarded. ``base="service"``: the revision the service runs (``service_task_definition``),
    whatever registered since. ``pinned``: exactly that revision (a reviewed plan's base),
    refused when it was deregistered or discarded since.
    """
    if pinned is not None:
        return await _pinned(ecs, family, pinned)
    if base == "service":
        if service_task_definition is None or family_of(service_task_definition) != family:
            raise InvalidJobError(
                f"base: service builds from the revision the service runs "
                f"({service_task_definition}), which is not of family {family!r}"
            )
        definition, tags = await ecs.describe_task_definition(service_task_definition)
        return BaseChoice(definition, tags, "the revision the service runs (base: service)")
    definition, tags = await ecs.describe_task_definition(family)
    mark = discard_mark(tags)
    if mark is None:
        return BaseChoice(definition, tags, "the family's latest ACTIVE revision")
    skipped = [f"{_short(str(definition['taskDefinitionArn']))} ({mark})"]
    latest = revision_of(str(definition["taskDefinitionArn"]))
    older = await ecs.newer_task_definition_arns(family, max(0, latest - MAX_SKIPPED - 1))
    for arn in older:
        if revision_of(arn) >= latest:
            continue
        definition, tags = await ecs.describe_task_definition(arn)
        mark = discard_mark(tags)
        if mark is None:
            reason = (
                "the family's latest ACTIVE revision that no failed deployment discarded "
                f"(stepped over {', '.join(skipped)})"
            )
            return BaseChoice(definition, tags, reason, tuple(skipped))
        skipped.append(f"{_short(arn)} ({mark})")
    raise InvalidJobError(
        f"family {family!r}: its newest ACTIVE revisions ({', '.join(skipped[:5])}"
        f"{', ...' if len(skipped) > 5 else ''}) were all registered by Conveyor deployments "
        "that did not succeed, and no good revision was found among the last "
        f"{MAX_SKIPPED}; deploy with --base service (the revision the service runs) or "
        "register a good revision"
    )


async def _pinned(ecs: EcsGateway, family: str, pinned: str) -> BaseChoice:
    """The pinned base revision, if it may still be built on."""
    name = _short(pinned)
    if family_of(pinned) != family:
        raise InvalidJobError(
            f"base_revision: {name} is not a revision of family {family!r}; plan again"
        )
    definition, tags = await ecs.describe_task_definition(pinned)
    mark = discard_mark(tags)
    if definition.get("status") != "ACTIVE" or mark is not None:
        why = f"discarded ({mark})" if mark else "deregistered"
        raise InvalidJobError(
            f"base_revision: the planned base {name} was {why} since the plan; plan the "
            "release again"
        )
    return BaseChoice(definition, tags, "the base revision of the reviewed plan (pinned)")


# How a deployment ended, as the discard tag says it.
_ENDINGS = {
    DeploymentState.FAILED: "failed",
    DeploymentState.ROLLED_BACK: "rolled_back",
    DeploymentState.CANCELLED: "cancelled",
    DeploymentState.SUPERSEDED: "superseded",
}


def needs_discard(record: DeploymentRecord) -> bool:
    """Whether a finished deployment may have left a revision of its own that must be marked.

    Only a deployment that did not succeed, and only a revision it registered: a restart runs
    the revision the service already runs, and the rollback target is never ours. Only for
    kinds that register revisions of their own (``WorkerKind.registers_revisions``).
    """
    if record.state not in _ENDINGS:
        return False
    if record.task_definition_arn is not None:
        return record.task_definition_arn != record.previous_task_definition_arn
    # Ended before its register step committed: an interrupted attempt may have registered.
    return record.step is Step.REGISTER


async def discard(ecs: EcsGateway, record: DeploymentRecord) -> str | None:
    """Mark the revision a deployment that did not succeed registered; return its ARN.

    Idempotent (tagging again changes nothing). Without a known ARN (the deployment ended at
    its register step), the family's newer revisions are searched for the deployment's own tag.
    A revision some other deployment registered is never marked.
    """
    if not needs_discard(record):
        return None
    arn = record.task_definition_arn
    if arn is None:
        if record.family is None or record.previous_task_definition_arn is None:
            return None
        after = revision_of(record.previous_task_definition_arn)
        for candidate in await ecs.newer_task_definition_arns(record.family, after):
            _, tags = await ecs.describe_task_definition(candidate)
            if registered_by(tags) == record.id:
                arn = candidate
                break
        if arn is None:
            return None
    ending = _ENDINGS[record.state]
    await ecs.tag_task_definition(arn, {DISCARD_TAG: f"{ending} by {record.id}"[:256]})
    log.info("revision discarded", task_definition=arn, ending=ending)
    return arn
