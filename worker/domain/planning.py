"""Plan a new task definition revision: the latest one with only the requested images changed.

A task definition is pass-through data. Conveyor models only what it changes (container images
and its own idempotency tag) and carries every other key over untouched, including keys AWS adds
after this code was written. Pure: no I/O, no clock.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from producers.contract.images import ImageReferenceError, ImageSpec
from producers.contract.jobs import ContainerSettings
from worker.domain.errors import InvalidJobError, UnknownContainerError

# Keys DescribeTaskDefinition returns that RegisterTaskDefinition rejects.
READ_ONLY_KEYS = (
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
    # Set on a revision whose deletion was asked for (botocore 1.43).
    "deleteRequestedAt",
)
# The tag that marks a revision as made by one deployment, so a retried step can find it.
DEPLOYMENT_TAG = "conveyor:deployment-id"
# The tag that marks a revision a Conveyor deployment registered and that then did not succeed
# (its value is how the deployment ended). No later deployment builds on such a revision.
DISCARD_TAG = "conveyor:discarded"
# Tags of Conveyor's own that are never copied from a base revision to the next.
OWN_TAGS = frozenset({DEPLOYMENT_TAG, DISCARD_TAG})
MAX_TAGS = 50  # AWS's limit per resource.


@dataclass(frozen=True, slots=True)
class ImageChange:
    """One container's image before and after."""

    container: str
    before: str
    after: str


@dataclass(frozen=True, slots=True)
class SettingChange:
    """One environment variable or secret of a container that differs, by name only."""

    container: str
    kind: str  # "environment" or "secrets"
    name: str
    action: str  # "added", "changed" or "removed"

    def __str__(self) -> str:
        return f"{self.container} {self.kind} {self.name} {self.action}"


@dataclass(frozen=True)
class RevisionPlan:
    """The RegisterTaskDefinition payload plus what differs from the base revision."""

    payload: dict[str, Any]
    changes: tuple[ImageChange, ...]
    dropped_fields: tuple[str, ...] = field(default=())
    setting_changes: tuple[SettingChange, ...] = field(default=())

    @property
    def family(self) -> str:
        """The family the new revision belongs to."""
        return str(self.payload["family"])


def container_names(task_definition: Mapping[str, Any]) -> list[str]:
    """Return the container names of a task definition, in definition order."""
    return [str(c.get("name")) for c in task_definition.get("containerDefinitions", [])]


def check_containers(task_definition: Mapping[str, Any], requested: Iterable[str]) -> None:
    """Raise UnknownContainerError when a requested container is not in the task definition."""
    known = container_names(task_definition)
    missing = [name for name in requested if name not in known]
    if missing:
        where = task_definition.get("taskDefinitionArn") or task_definition.get("family", "?")
        label = where.rsplit("/", 1)[-1] if isinstance(where, str) else where
        names = ", ".join(repr(m) for m in missing)
        raise UnknownContainerError(
            f"container {names} is not in {label}; it has: {', '.join(known) or '(none)'}. "
            "Fix the name in --image CONTAINER=IMAGE."
        )


def plan_revision(
    base: Mapping[str, Any],
    tags: Iterable[Mapping[str, str]],
    images: Mapping[str, ImageSpec],
    deployment_id: str,
    known_fields: frozenset[str] | None = None,
    settings: Sequence[ContainerSettings] = (),
) -> RevisionPlan:
    """Build the RegisterTaskDefinition payload for a new revision of ``base``.

    ``base`` is DescribeTaskDefinition's ``taskDefinition``; ``tags`` its top-level ``tags``.
    Only the images of the containers named in ``images`` change. Read-only keys are removed;
    tags are copied with this deployment's tag added, so the list is never empty. When
    ``known_fields`` (the installed SDK's RegisterTaskDefinition input members) is given, keys it
    does not know are left out, since the SDK would refuse them, and reported in
    ``dropped_fields`` so that the caller can log them: nothing is dropped silently.
    """
    check_containers(base, [*images, *(s.container for s in settings)])
    payload: dict[str, Any] = copy.deepcopy(dict(base))
    for key in READ_ONLY_KEYS:
        payload.pop(key, None)
    dropped: list[str] = []
    if known_fields is not None:
        for key in sorted(payload):
            if key not in known_fields:
                dropped.append(key)
                payload.pop(key)

    changes: list[ImageChange] = []
    for container in payload.get("containerDefinitions", []):
        spec = images.get(container.get("name"))
        if spec is None:
            continue
        before = str(container.get("image", ""))
        try:
            after = spec.apply(before)
        except ImageReferenceError as exc:
            raise InvalidJobError(
                f"container {container.get('name')!r}: cannot apply {spec} to its current image "
                f"{before!r}: {exc}. Give a full image reference instead."
            ) from exc
        container["image"] = after
        changes.append(ImageChange(container=str(container["name"]), before=before, after=after))

    setting_changes: list[SettingChange] = []
    by_name = {str(c.get("name")): c for c in payload.get("containerDefinitions", [])}
    for wanted in settings:
        container = by_name[wanted.container]
        for kind, key, values in (
            ("environment", "value", wanted.environment),
            ("secrets", "valueFrom", wanted.secrets),
        ):
            # Replace is per kind: `--replace-env --env ...` gives the environment and says
            # nothing of the secrets, which stay as they are (and the other way round).
            replace = wanted.mode == "replace" and bool(values)
            merged, diff = apply_settings(container.get(kind) or [], values, key, replace=replace)
            if merged or kind in container:
                container[kind] = merged
            setting_changes += [SettingChange(wanted.container, kind, n, a) for n, a in diff]

    kept = [
        {"key": str(t["key"]), "value": str(t.get("value", ""))}
        for t in tags
        if t.get("key") not in OWN_TAGS
    ]
    if len(kept) > MAX_TAGS - len(OWN_TAGS):
        # Without its tag a retried register step could not find the revision it made, and
        # would register a second one; without room for the discard tag a failed revision
        # could become the base of the next deployment. Dropping one of the owner's tags is
        # not ours to do.
        raise InvalidJobError(
            f"task definition family {payload.get('family')!r} has {len(kept)} tags; AWS allows "
            f"{MAX_TAGS} and Conveyor needs two ({DEPLOYMENT_TAG}, {DISCARD_TAG}). Remove a tag "
            "from the family."
        )
    # Never empty: AWS rejects an empty tag list ("Tags can not be empty").
    payload["tags"] = [*kept, {"key": DEPLOYMENT_TAG, "value": deployment_id}]
    return RevisionPlan(
        payload=payload,
        changes=tuple(changes),
        dropped_fields=tuple(dropped),
        setting_changes=tuple(setting_changes),
    )


def apply_settings(
    current: Sequence[Mapping[str, Any]], wanted: Mapping[str, str], key: str, *, replace: bool
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """A container's environment (``key`` "value") or secrets (``key`` "valueFrom") with
    ``wanted`` applied, and what changed as (name, "added" | "changed" | "removed"), by name.

    Append keeps every other entry where it is and replaces same-named ones in place; replace
    keeps only ``wanted``. New names come last, in the order given.
    """
    merged: list[dict[str, Any]] = []
    diff: list[tuple[str, str]] = []
    seen: set[str] = set()
    for entry in current:
        name = str(entry.get("name"))
        if name in wanted:
            if name not in seen:
                merged.append({**entry, key: wanted[name]})
                if entry.get(key) != wanted[name]:
                    diff.append((name, "changed"))
            seen.add(name)
        elif replace:
            diff.append((name, "removed"))
        else:
            merged.append(dict(entry))
    for name, value in wanted.items():
        if name not in seen:
            merged.append({"name": name, key: value})
            diff.append((name, "added"))
    return merged, diff


def revision_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Return the JSON paths at which two task definitions differ (read-only keys ignored).

    Used to prove that a new revision differs from its base only where the plan said.
    """
    paths: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for key in sorted(set(a) | set(b), key=str):
                if path == "" and key in READ_ONLY_KEYS:
                    continue
                walk(a.get(key, _MISSING), b.get(key, _MISSING), f"{path}.{key}" if path else key)
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for index, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{path}[{index}]")
        elif a != b:
            paths.append(path)

    walk(before, after, "")
    return paths


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def discard_mark(tags: Iterable[Mapping[str, str]]) -> str | None:
    """How the deployment that registered a revision ended, when it was discarded; else None."""
    for tag in tags:
        if tag.get("key") == DISCARD_TAG:
            return str(tag.get("value") or "discarded")
    return None


def registered_by(tags: Iterable[Mapping[str, str]]) -> str | None:
    """The id of the Conveyor deployment that registered a revision (None: someone else)."""
    for tag in tags:
        if tag.get("key") == DEPLOYMENT_TAG:
            return str(tag.get("value") or "") or None
    return None
