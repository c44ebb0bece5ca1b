"""When may a newer job for a service replace an older one that has not started? Pure.

Only when nothing the older one asked for is lost: the newer job changes every container the
older one changes (with its own, newer, image), through the same family and role, with options
at least as strong. A create-Fargate spec is the whole desired state of its stack, so a newer
spec for the same service always covers an older one. Each job kind names its rule in
:mod:`worker.kinds`; jobs of two kinds never cover each other.

Merging two jobs' changes into one was the alternative. It would make one deployment's worker
write another deployment's record (a second writer to a fenced record), while coverage only
reads: two jobs that do not cover each other simply both run, in arrival order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from producers.contract.strategy import STRATEGY_FIELDS

# Compared by value; alarms (a list the newer job may extend) apart.
_STRATEGY_OPTIONS = tuple(name for name in STRATEGY_FIELDS if name != "alarms")


def _containers(job: Mapping[str, Any]) -> set[str]:
    images = job.get("images") or []
    return {str(i.get("container")) for i in images if isinstance(i, Mapping)}


def _settings_covered(newer: Any, older: Any) -> bool:
    """Every variable and secret the older job sets, the newer sets too (with its own value);
    an older replace is carried only by a newer replace. Names only: records mask values."""
    by_container = {s.get("container"): s for s in newer if isinstance(s, Mapping)}
    for entry in older:
        if not isinstance(entry, Mapping):
            return False
        other = by_container.get(entry.get("container"))
        if other is None:
            return False
        if entry.get("mode") == "replace" and other.get("mode") != "replace":
            return False
        for kind in ("environment", "secrets"):
            if not set(entry.get(kind) or {}) <= set(other.get(kind) or {}):
                return False
    return True


def covers_whole_state(newer: Mapping[str, Any], older: Mapping[str, Any]) -> bool:
    """A job that states the whole desired state (a spec) carries everything an older one of
    the same service asked for."""
    return True


def _pinned(job: Mapping[str, Any]) -> bool:
    """Whether the job builds from a pinned base revision (a reviewed plan's, or a release
    gate's rollback, which carries the old images).

    Such a job restores that revision's whole definition: as the newer job it would carry the
    past, not the older job's change (a rollback would swallow a queued hotfix); as the older
    one, its base would be lost with a newer job built from another.
    """
    return job.get("base_revision") is not None


def covers_changes(newer: Mapping[str, Any], older: Mapping[str, Any]) -> bool:
    """True when the ``newer`` update job carries every change the ``older`` one asked for."""
    if not _containers(older) <= _containers(newer):
        return False
    if _pinned(newer) or _pinned(older):
        return False
    if newer.get("family") != older.get("family") or newer.get("role_arn") != older.get("role_arn"):
        return False
    # A restart asked for by the older job is carried only by a newer job that restarts too.
    if older.get("force_new_deployment") and not newer.get("force_new_deployment"):
        return False
    # Service options (desired count, percents, breaker, strategy and its settings) the older
    # job sets must be set the same way by the newer one, or the older's would be lost.
    for option in (
        "desired_count",
        "minimum_healthy_percent",
        "maximum_percent",
        *_STRATEGY_OPTIONS,
        # A bake gate the older job asked for is carried only by the same gate.
        "bake_gate",
        # So is a pre-deploy task (a migration): without it the new image would ship with
        # the migration never run.
        "pre_deploy",
    ):
        if older.get(option) is not None and newer.get(option) != older.get(option):
            return False
    if older.get("circuit_breaker") and not newer.get("circuit_breaker"):
        return False
    # Alarms are added to the service's: the newer job must add at least the older's.
    if not set(older.get("alarms") or ()) <= set(newer.get("alarms") or ()):
        return False
    if not _settings_covered(newer.get("settings") or [], older.get("settings") or []):
        return False
    # Rollback on is the stronger promise; a newer job without it would drop the older's.
    return not (older.get("rollback", True) and not newer.get("rollback", True))
