"""ECS's own deployment strategies, and how long a deployment of each may take. Pure.

A service on the ECS deployment controller deploys with ``deploymentConfiguration.strategy``:
ROLLING (the default, and what a service without the field does), or BLUE_GREEN, LINEAR and
CANARY, which ECS runs through lifecycle stages, with bake times and lifecycle hooks. Those
deployments stay in progress for their whole bake: a timeout that ignores it rolls back a
healthy deployment. :func:`strategy_times` says, from the service's deployment configuration
(the DeploymentConfiguration shape of DescribeServices), what the least is that such a
deployment takes, and the default timeout that covers it.

Defaults follow ECS's documentation of the shapes: ``bakeTimeInMinutes`` absent counts as 0,
``canaryBakeTimeInMinutes`` 10, ``stepPercent`` 10 and ``stepBakeTimeInMinutes`` 6 (not applied
after the last step), a hook's ``timeoutInMinutes`` 1,440. For LINEAR and CANARY, hooks at
PRE_PRODUCTION_TRAFFIC_SHIFT and PRODUCTION_TRAFFIC_SHIFT run at every traffic shift step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from producers.contract.jobs import (
    DEFAULT_TIMEOUT_SECONDS,
    MAX_TIMEOUT_SECONDS,
    MIN_TIMEOUT_SECONDS,
    UpdateServiceJob,
)
from producers.contract.records import ProgressInfo
from producers.contract.strategy import linear_steps as baked_linear_steps
from worker.domain.errors import InvalidJobError
from worker.domain.verdict import StagedVerdict

ROLLING = "ROLLING"
BLUE_GREEN = "BLUE_GREEN"
LINEAR = "LINEAR"
CANARY = "CANARY"

# The lifecycle stage in which both revisions run after the production traffic shifted.
BAKE_TIME = "BAKE_TIME"

_CANARY_BAKE_MINUTES = 10
_STEP_PERCENT = 10.0
_STEP_BAKE_MINUTES = 6
_HOOK_TIMEOUT_MINUTES = 1440
# Stages that ECS enters once per traffic shift step of a LINEAR or CANARY deployment.
_PER_SHIFT_STAGES = frozenset({"PRE_PRODUCTION_TRAFFIC_SHIFT", "PRODUCTION_TRAFFIC_SHIFT"})
# The stages at which ECS runs the lifecycle hooks of a ROLLING deployment.
_ROLLING_HOOK_STAGES = frozenset({"PRE_SCALE_UP", "POST_SCALE_UP"})


def strategy_of(configuration: Mapping[str, Any] | None) -> str:
    """The strategy a deployment configuration names; ROLLING when it names none."""
    return str((configuration or {}).get("strategy") or ROLLING)


def service_strategy(service: Mapping[str, Any] | None) -> str:
    """The strategy a DescribeServices entry deploys with (ROLLING when it says none)."""
    return strategy_of((service or {}).get("deploymentConfiguration"))


def has_lifecycle_hooks(service: Mapping[str, Any] | None) -> bool:
    """Whether a DescribeServices entry's deployment configuration names lifecycle hooks: ECS
    runs them on ROLLING deployments too (PRE_SCALE_UP, POST_SCALE_UP)."""
    configuration = (service or {}).get("deploymentConfiguration") or {}
    return bool(configuration.get("lifecycleHooks"))


def is_staged(strategy: str | None) -> bool:
    """Whether ECS runs this strategy through lifecycle stages and service deployments
    (every strategy but ROLLING): its verdict comes from the service deployment."""
    return strategy is not None and strategy != ROLLING


@dataclass(frozen=True, slots=True)
class StrategyTimes:
    """How long a deployment of one strategy takes, in seconds.

    ``minimum_seconds`` is what no deployment of it can take less than (its bake times, plus
    the contract's least timeout for the tasks to start); ``default_seconds`` adds the longest
    its lifecycle hooks may wait and Conveyor's margin for a rolling update. ``parts`` names
    what was counted, for messages.
    """

    strategy: str
    minimum_seconds: int
    default_seconds: int
    parts: tuple[str, ...] = ()


def _minutes(value: Any, default: int) -> int:
    """A whole number of minutes from the configuration; absent or unreadable: ``default``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return max(0, int(value))


def linear_steps(configuration: Mapping[str, Any] | None) -> int:
    """How many traffic shift steps a LINEAR deployment makes: 100 % in ``stepPercent`` steps,
    one more than the step bakes CloudFormation counts (none follows the last shift)."""
    linear = (configuration or {}).get("linearConfiguration") or {}
    percent = linear.get("stepPercent")
    if isinstance(percent, bool) or not isinstance(percent, int | float) or percent <= 0:
        percent = _STEP_PERCENT
    # ECS takes multiples of 0.1: a smaller value read from a service counts as the least step.
    return baked_linear_steps(max(float(percent), 0.1)) + 1


def _shifts(strategy: str, configuration: Mapping[str, Any]) -> int:
    """How many production traffic shift steps the strategy makes."""
    if strategy == LINEAR:
        return linear_steps(configuration)
    if strategy == CANARY:
        return 2
    return 1


def _hook_minutes(strategy: str, configuration: Mapping[str, Any]) -> tuple[int, int]:
    """The longest all lifecycle hooks may wait, in minutes, and how many hook runs that is
    (of a ROLLING deployment, only the hooks at the stages a rolling update has)."""
    total = runs = 0
    for hook in configuration.get("lifecycleHooks") or []:
        if not isinstance(hook, Mapping):
            continue
        timeout = (hook.get("timeoutConfiguration") or {}).get("timeoutInMinutes")
        minutes = _minutes(timeout, _HOOK_TIMEOUT_MINUTES)
        for stage in hook.get("lifecycleStages") or []:
            if strategy == ROLLING and stage not in _ROLLING_HOOK_STAGES:
                continue
            times = _shifts(strategy, configuration) if stage in _PER_SHIFT_STAGES else 1
            total += minutes * times
            runs += times
    return total, runs


def strategy_times(configuration: Mapping[str, Any] | None) -> StrategyTimes:
    """The least and the default time of a deployment with this deployment configuration.

    ROLLING keeps Conveyor's own default (``DEFAULT_TIMEOUT_SECONDS``), plus the timeouts of its
    lifecycle hooks at PRE_SCALE_UP and POST_SCALE_UP, and asks for no more than the contract's
    least timeout.
    """
    configuration = configuration or {}
    strategy = strategy_of(configuration)
    if not is_staged(strategy):
        hooks, runs = _hook_minutes(strategy, configuration)
        if not runs:
            return StrategyTimes(strategy, MIN_TIMEOUT_SECONDS, DEFAULT_TIMEOUT_SECONDS)
        return StrategyTimes(
            strategy,
            MIN_TIMEOUT_SECONDS,
            hooks * 60 + DEFAULT_TIMEOUT_SECONDS,
            (f"{runs} lifecycle hook run{'s' if runs > 1 else ''} of up to {hooks} min",),
        )
    bake = _minutes(configuration.get("bakeTimeInMinutes"), 0)
    parts = [f"bake time {bake} min"]
    waits = bake
    if strategy == CANARY:
        canary = (configuration.get("canaryConfiguration") or {}).get("canaryBakeTimeInMinutes")
        minutes = _minutes(canary, _CANARY_BAKE_MINUTES)
        parts.append(f"canary bake {minutes} min")
        waits += minutes
    elif strategy == LINEAR:
        step = (configuration.get("linearConfiguration") or {}).get("stepBakeTimeInMinutes")
        minutes = _minutes(step, _STEP_BAKE_MINUTES)
        steps = linear_steps(configuration)
        # ECS bakes after every step but the last (the one that reaches 100 %).
        parts.append(f"{steps - 1} step bakes of {minutes} min")
        waits += (steps - 1) * minutes
    minimum = waits * 60 + MIN_TIMEOUT_SECONDS
    hooks, runs = _hook_minutes(strategy, configuration)
    if runs:
        parts.append(f"{runs} lifecycle hook run{'s' if runs > 1 else ''} of up to {hooks} min")
    default = (waits + hooks) * 60 + DEFAULT_TIMEOUT_SECONDS
    return StrategyTimes(strategy, minimum, default, tuple(parts))


def deployment_timeout(job: UpdateServiceJob, times: StrategyTimes) -> int:
    """The seconds a deployment may take: the job's timeout as given, else the default of the
    service's strategy.

    A timeout given that is shorter than the strategy takes at the least would roll back
    every deployment, healthy ones too: it is refused (InvalidJobError) naming the least
    and the fix, before anything is changed.
    """
    if job.timeout_seconds is None:
        return times.default_seconds
    if job.timeout_seconds >= times.minimum_seconds:
        return job.timeout_seconds
    fix = f"leave it out for the strategy's default ({times.default_seconds} s)"
    if times.minimum_seconds <= MAX_TIMEOUT_SECONDS:
        fix = f"give --timeout {times.minimum_seconds} or more, or " + fix
    raise InvalidJobError(
        f"timeout_seconds: {job.timeout_seconds} s is shorter than a {times.strategy} deployment "
        f"of service {job.service!r} takes at the least, {times.minimum_seconds} s "
        f"({', '.join(times.parts)}, plus {MIN_TIMEOUT_SECONDS} s for its tasks to start): "
        f"{fix}; nothing was changed"
    )


def staged_progress(
    progress: ProgressInfo,
    before: ProgressInfo,
    verdict: StagedVerdict,
    *,
    strategy: str,
    bake_minutes: int | None,
    now: float,
) -> ProgressInfo:
    """``progress`` with the lifecycle stage of a staged deployment, as seen at ``now``.

    ``before`` is the progress of the previous poll: a stage seen then keeps the time it was
    first seen, so the bake time left counts from there. ``bake_minutes`` is the service's own
    bake time, used when the service deployment does not say.
    """
    stage = verdict.stage
    seen: float | None = None
    if stage is not None:
        same = before.lifecycle_stage == stage and before.stage_seen_at is not None
        seen = before.stage_seen_at if same else now
    bake = verdict.bake_minutes if verdict.bake_minutes is not None else bake_minutes
    ends = None
    if stage == BAKE_TIME and bake is not None and seen is not None:
        ends = seen + bake * 60
    waiting = verdict.waiting
    return progress.model_copy(
        update={
            "strategy": verdict.strategy or strategy,
            "lifecycle_stage": stage,
            "stage_seen_at": seen,
            "bake_ends_at": ends,
            "awaiting_hook_id": waiting.hook_id if waiting else None,
            "hook_expires_at": waiting.expires_at if waiting else None,
            "hook_timeout_action": waiting.timeout_action if waiting else None,
            "production_traffic": verdict.production_traffic,
        }
    )


def bake_minutes_of(configuration: Mapping[str, Any] | None) -> int | None:
    """The bake time a deployment configuration sets, in minutes (None when it sets none)."""
    value = (configuration or {}).get("bakeTimeInMinutes")
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value
