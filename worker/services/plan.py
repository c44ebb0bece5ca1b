"""What an update job would change, without changing anything (`conveyor plan`, --dry-run).

The worker computes the plan with the same reads and the same pure planning as the real
register and update steps, under the same credentials (its own or the job's role), and calls no
write API. Environment and secret values never appear: settings are reported by name, and any
changed field under ``environment`` or ``secrets`` without its values.
"""

from __future__ import annotations

import re
from typing import Any

from producers.contract.jobs import UpdateServiceJob
from producers.contract.stack_template import STACK_TAG
from worker.aws.gateway import EcsGateway, family_of
from worker.domain.errors import ConveyorError
from worker.domain.planning import plan_revision, revision_diff
from worker.services.revisions import choose_base
from worker.services.update_flow import deployment_configuration

# Fields whose values are never shown: a container's environment and secrets, whole or in part.
_SECRET_PATH = re.compile(r"\.(environment|secrets)(\[|\.|$)")


def _short(arn: str | None) -> str:
    return (arn or "").rsplit("/", 1)[-1]


def _at(document: Any, path: str) -> Any:
    """The value at a revision_diff path such as ``containerDefinitions[0].image``."""
    current = document
    for part in path.replace("[", ".[").split("."):
        if not part:
            continue
        if part.startswith("["):
            index = int(part[1:-1])
            current = current[index] if isinstance(current, list) and index < len(current) else None
        else:
            current = current.get(part) if isinstance(current, dict) else None
    return current


async def plan_update(
    ecs: EcsGateway, job: UpdateServiceJob, known_fields: frozenset[str] | None = None
) -> dict[str, Any]:
    """The plan of an update job as JSON: the service, the revision diff, the service changes."""
    result: dict[str, Any] = {"cluster": job.cluster, "service": job.service}
    try:
        service = await ecs.describe_service(job.cluster, job.service)
        if service is None or service.get("status") != "ACTIVE":
            return {**result, "error": f"service {job.service!r} not found (or not ACTIVE)"}
        owner = {t.get("key"): t.get("value") for t in service.get("tags", [])}.get(STACK_TAG)
        if owner:
            return {**result, "error": f"service is owned by Conveyor stack {owner!r}"}
        current = str(service["taskDefinition"])
        result["current_task_definition"] = _short(current)
        if job.restart:
            result["task_definition"] = None
            result["restart"] = True
        else:
            family = job.family or family_of(current)
            choice = await choose_base(
                ecs,
                family,
                base=job.base,
                service_task_definition=current,
                pinned=job.base_revision,
            )
            base, tags = choice.definition, choice.tags
            plan = plan_revision(
                base, tags, job.image_specs(), "plan", known_fields, settings=job.settings
            )
            fields = []
            for path in revision_diff(base, plan.payload):
                if path.startswith("tags"):
                    continue  # only Conveyor's own deployment tag differs there
                if _SECRET_PATH.search(path):
                    fields.append({"field": path})
                else:
                    fields.append(
                        {"field": path, "before": _at(base, path), "after": _at(plan.payload, path)}
                    )
            result["task_definition"] = {
                "family": family,
                "base": _short(choice.arn),
                "base_reason": choice.reason,
                "skipped": list(choice.skipped),
                "fields": fields,
                "settings": [str(c) for c in plan.setting_changes],
                "dropped_fields": list(plan.dropped_fields),
            }
        changes: list[dict[str, Any]] = [
            {
                "field": "taskDefinition",
                "before": _short(current),
                "after": _short(current) if job.restart else "the new revision",
            }
        ]
        if job.desired_count is not None and job.desired_count != service.get("desiredCount"):
            changes.append(
                {"field": "desiredCount", "before": service.get("desiredCount"),
                 "after": job.desired_count}
            )  # fmt: skip
        own = dict(service.get("deploymentConfiguration") or {})
        wanted = deployment_configuration(service, job)
        for key in sorted(set(own) | set(wanted)):
            if own.get(key) != wanted.get(key):
                changes.append(
                    {"field": f"deploymentConfiguration.{key}", "before": own.get(key),
                     "after": wanted.get(key)}
                )  # fmt: skip
        if job.force_new_deployment:
            changes.append({"field": "forceNewDeployment", "before": None, "after": True})
        result["service_changes"] = changes
    except ConveyorError as exc:
        return {**result, "error": exc.message, "code": exc.code}
    result["versions"] = [
        {"container": i.container, "rule": i.rule, "image": i.image, "digest": i.digest}
        for i in job.images
        if i.rule
    ]
    return result
