"""A job's service options applied to a service's deployment configuration. Pure.

UpdateService replaces the service's whole ``deploymentConfiguration``, so the update flow sends
the service's own (as DescribeServices gave it) with only what the job names changed. Every other
member passes through as it is: lifecycle hooks, early success criteria, the breaker's own
settings, alarms the job does not name, and members a newer ECS adds.

What each option changes:

- ``minimum_healthy_percent``, ``maximum_percent``: the member of that name.
- ``circuit_breaker``: turns the breaker on, with rollback, only when it is off; a breaker that
  is on keeps its own rollback setting. ``circuit_breaker_threshold`` (and its type, by default
  ECS's BOUNDED_PERCENT) sets the breaker's ``thresholdConfiguration``.
- ``strategy``: the member of that name. A strategy's own configuration block
  (``linearConfiguration``, ``canaryConfiguration``) is dropped when the job moves the service to
  another strategy: botocore's model documents each as "only valid when the deployment strategy
  is" its own.
- ``bake_minutes``: ``bakeTimeInMinutes``; the canary and linear options: the members of their
  block, the block's other member kept.
- ``alarms``: added after the service's own alarm names, with ``enable`` and ``rollback`` on.

The contract has already checked each option against AWS's bounds and the others
(:mod:`producers.contract.strategy`). What only the service's own configuration shows is checked
here, before UpdateService: a job that makes a service blue/green must leave it a bake time, which
the model says ECS requires.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from producers.contract.jobs import UpdateServiceJob
from producers.contract.strategy import (
    DEFAULT_THRESHOLD_TYPE,
    ECS_STRATEGY,
    ECS_THRESHOLD_TYPE,
    MAX_BAKE_MINUTES,
    STRATEGY_FIELDS,
)
from worker.domain.errors import InvalidJobError

# The job options that change the deployment configuration (desired count is a member of the
# service itself).
DEPLOYMENT_OPTIONS = frozenset(
    {"minimum_healthy_percent", "maximum_percent", "circuit_breaker", *STRATEGY_FIELDS}
)
# Each strategy's own block, which ECS takes only with that strategy.
_BLOCKS = {"LINEAR": "linearConfiguration", "CANARY": "canaryConfiguration"}


def merged_configuration(own: Mapping[str, Any], job: UpdateServiceJob) -> dict[str, Any]:
    """``own`` (a service's deploymentConfiguration) with ``job``'s options applied.

    Raises InvalidJobError when the job makes the service blue/green and neither the job nor
    the service gives a bake time.
    """
    configuration = dict(own)
    if job.minimum_healthy_percent is not None:
        configuration["minimumHealthyPercent"] = job.minimum_healthy_percent
    if job.maximum_percent is not None:
        configuration["maximumPercent"] = job.maximum_percent
    _apply_breaker(configuration, job)
    if job.strategy is not None:
        strategy = ECS_STRATEGY[job.strategy]
        configuration["strategy"] = strategy
        for name, block in _BLOCKS.items():
            if name != strategy:
                configuration.pop(block, None)
    if job.bake_minutes is not None:
        configuration["bakeTimeInMinutes"] = job.bake_minutes
    _set_in_block(
        configuration,
        "canaryConfiguration",
        {"canaryPercent": job.canary_percent, "canaryBakeTimeInMinutes": job.canary_bake_minutes},
    )
    _set_in_block(
        configuration,
        "linearConfiguration",
        {
            "stepPercent": job.linear_step_percent,
            "stepBakeTimeInMinutes": job.linear_step_bake_minutes,
        },
    )
    if job.alarms:
        alarms = dict(configuration.get("alarms") or {})
        names = list(alarms.get("alarmNames") or [])
        names += [name for name in job.alarms if name not in names]
        configuration["alarms"] = {**alarms, "alarmNames": names, "enable": True, "rollback": True}
    if job.strategy == "blue-green" and configuration.get("bakeTimeInMinutes") is None:
        raise InvalidJobError(
            f"bake_minutes: strategy blue-green needs a bake time, and service {job.service!r} "
            f"has none; give bake_minutes (--bake-minutes), 0 to {MAX_BAKE_MINUTES} minutes"
        )
    return configuration


def _apply_breaker(configuration: dict[str, Any], job: UpdateServiceJob) -> None:
    """Turn the breaker on (with rollback) when it is off, and set the job's threshold."""
    if not job.circuit_breaker:
        return
    breaker = dict(configuration.get("deploymentCircuitBreaker") or {})
    if not breaker.get("enable"):
        breaker.update(enable=True, rollback=True)
    if job.circuit_breaker_threshold is not None:
        kind = job.circuit_breaker_threshold_type or DEFAULT_THRESHOLD_TYPE
        breaker["thresholdConfiguration"] = {
            "type": ECS_THRESHOLD_TYPE[kind],
            "value": job.circuit_breaker_threshold,
        }
    configuration["deploymentCircuitBreaker"] = breaker


def _set_in_block(configuration: dict[str, Any], block: str, values: Mapping[str, Any]) -> None:
    """Set the given (not None) members of ``configuration[block]``, keeping its others."""
    given = {key: value for key, value in values.items() if value is not None}
    if given:
        configuration[block] = {**(configuration.get(block) or {}), **given}
