"""ECS's lifecycle stages of a service deployment, and the names `--wait-until` takes for them.

A blue/green, linear or canary deployment moves through these stages in this order (ECS's
ServiceDeploymentLifecycleStage, with PRE_PRODUCTION_TRAFFIC_SHIFT, a stage lifecycle hooks
run at). A person names one in lower case with hyphens (``production-traffic-shift``), or by
its short name (``production-traffic``, ``bake``).
"""

from __future__ import annotations

LIFECYCLE_STAGES = (
    "RECONCILE_SERVICE",
    "PRE_SCALE_UP",
    "SCALE_UP",
    "POST_SCALE_UP",
    "TEST_TRAFFIC_SHIFT",
    "POST_TEST_TRAFFIC_SHIFT",
    "PRE_PRODUCTION_TRAFFIC_SHIFT",
    "PRODUCTION_TRAFFIC_SHIFT",
    "POST_PRODUCTION_TRAFFIC_SHIFT",
    "BAKE_TIME",
    "CLEAN_UP",
)
SHORT_NAMES = {
    "scale-up": "SCALE_UP",
    "test-traffic": "TEST_TRAFFIC_SHIFT",
    "production-traffic": "PRODUCTION_TRAFFIC_SHIFT",
    "bake": "BAKE_TIME",
    "clean-up": "CLEAN_UP",
}


def stage_choices() -> list[str]:
    """Every name `--wait-until` accepts, short names first."""
    names = [*SHORT_NAMES, *(s.lower().replace("_", "-") for s in LIFECYCLE_STAGES)]
    return list(dict.fromkeys(names))


def stage_named(text: str) -> str:
    """ECS's stage for a name a person gave; ValueError naming the choices otherwise."""
    key = text.strip().lower().replace("_", "-")
    if key in SHORT_NAMES:
        return SHORT_NAMES[key]
    stage = key.upper().replace("-", "_")
    if stage in LIFECYCLE_STAGES:
        return stage
    raise ValueError(f"unknown stage {text!r}; choose one of: {', '.join(stage_choices())}")


def reached(current: str | None, wanted: str) -> bool:
    """Whether a deployment at stage ``current`` has reached ``wanted`` (or gone past it)."""
    if current not in LIFECYCLE_STAGES:
        return False
    return LIFECYCLE_STAGES.index(current) >= LIFECYCLE_STAGES.index(wanted)
