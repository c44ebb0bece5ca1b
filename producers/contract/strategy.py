"""ECS-native deployment strategies as job options: their names, AWS's bounds, and the checks
across them.

Plain Python (no pydantic), so the update job, release files and Fargate specs share one set
of rules and one wording of each error. Every check runs when a job is built, before any AWS
call, and its message names the field, the bound and the fix.

Bounds, as botocore 1.43.117's ECS model documents them:

- ``linearConfiguration.stepPercent``: multiples of 0.1 from 3.0 to 100.0 (default 10);
  ``stepBakeTimeInMinutes``: 0 to 1440 (default 6).
- ``canaryConfiguration.canaryPercent``: multiples of 0.1 from 0.1 to 100.0 (default 5);
  ``canaryBakeTimeInMinutes``: 0 to 1440 (default 10).
- ``bakeTimeInMinutes``: the model gives no bound; CloudFormation's schema of AWS::ECS::Service
  gives 0 to 1440, for every strategy (a rolling deployment may bake too).
- ``deploymentCircuitBreaker.thresholdConfiguration``: ``type`` COUNT, BOUNDED_PERCENT or
  UNBOUNDED_PERCENT and ``value``, both required; the model bounds ``value`` only as an
  Integer. Conveyor asks for at least 1.
- ``alarms.alarmNames``: CloudWatch alarm names, 1 to 255 characters (CloudWatch's model);
  ECS reads the list as comma-separated, so a name may not hold a comma.

The options of one strategy make sense only with that strategy: each model member is
documented "only valid when the deployment strategy is ...". A job therefore names the strategy
whenever it sets one of its options, even when the service already has that strategy, so the
check needs no AWS call.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

Strategy = Literal["rolling", "blue-green", "linear", "canary"]
ThresholdType = Literal["count", "bounded-percent", "unbounded-percent"]

# The job's spelling (like the CLI's) -> ECS's.
ECS_STRATEGY: Final[Mapping[str, str]] = {
    "rolling": "ROLLING",
    "blue-green": "BLUE_GREEN",
    "linear": "LINEAR",
    "canary": "CANARY",
}
ECS_THRESHOLD_TYPE: Final[Mapping[str, str]] = {
    "count": "COUNT",
    "bounded-percent": "BOUNDED_PERCENT",
    "unbounded-percent": "UNBOUNDED_PERCENT",
}
# ECS's default when only a value is given (the model: "The default is BOUNDED_PERCENT").
DEFAULT_THRESHOLD_TYPE: Final = "bounded-percent"

MAX_BAKE_MINUTES: Final = 1440
MIN_LINEAR_STEP_PERCENT: Final = 3.0
MIN_CANARY_PERCENT: Final = 0.1
MAX_TRAFFIC_PERCENT: Final = 100.0
MIN_THRESHOLD: Final = 1
MAX_THRESHOLD: Final = 2**31 - 1  # the model's Integer
MAX_ALARM_NAME: Final = 255
# Conveyor's own bound, so that a job stays small; the model gives none.
MAX_ALARMS: Final = 100

# Every strategy option of a job, by its field name (JSON messages and release files).
STRATEGY_FIELDS: Final = (
    "strategy",
    "bake_minutes",
    "canary_percent",
    "canary_bake_minutes",
    "linear_step_percent",
    "linear_step_bake_minutes",
    "alarms",
    "circuit_breaker_threshold_type",
    "circuit_breaker_threshold",
)


def check_minutes(value: int) -> int:
    """A bake time in whole minutes, 0 to 1440 (24 hours)."""
    if not 0 <= value <= MAX_BAKE_MINUTES:
        raise ValueError(
            f"{value} is outside ECS's bounds of 0 to {MAX_BAKE_MINUTES} minutes (24 hours); "
            "give a whole number of minutes in that range"
        )
    return value


def check_percent(value: float, low: float) -> float:
    """A traffic percent, a multiple of 0.1 from ``low`` to 100, rounded to one decimal."""
    if not (math.isfinite(value) and low <= value <= MAX_TRAFFIC_PERCENT):
        raise ValueError(
            f"{value} is outside ECS's bounds of {low:g} to {MAX_TRAFFIC_PERCENT:g} percent; "
            f"give a percent in that range, in steps of 0.1"
        )
    tenths = value * 10
    if abs(tenths - round(tenths)) > 1e-6:
        raise ValueError(
            f"{value} is not a multiple of 0.1, which ECS requires ({low:g} to "
            f"{MAX_TRAFFIC_PERCENT:g} percent); give e.g. {round(value, 1):g}"
        )
    return round(value, 1)


def check_threshold(value: int) -> int:
    """A circuit-breaker threshold value: at least 1, at most the model's Integer."""
    if not MIN_THRESHOLD <= value <= MAX_THRESHOLD:
        raise ValueError(
            f"{value} is outside {MIN_THRESHOLD} to {MAX_THRESHOLD}: the breaker trips at this "
            "many failed tasks (count) or this percent of the desired count (the percent "
            "types); give a positive whole number"
        )
    return value


def check_alarm_names(names: Sequence[str]) -> tuple[str, ...]:
    """CloudWatch alarm names, each once: 1 to 255 characters, no comma or control character."""
    if len(names) > MAX_ALARMS:
        raise ValueError(f"{len(names)} alarm names; give at most {MAX_ALARMS}")
    seen: set[str] = set()
    for name in names:
        if not name.strip():
            raise ValueError("an empty alarm name; give each CloudWatch alarm's name")
        if len(name) > MAX_ALARM_NAME:
            raise ValueError(
                f"{name[:40]!r}... is {len(name)} characters; a CloudWatch alarm name has at "
                f"most {MAX_ALARM_NAME}"
            )
        if "," in name:
            raise ValueError(
                f"{name!r} holds a comma, which ECS reads as a separator between alarm names; "
                "give each alarm on its own"
            )
        if any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise ValueError(f"{name!r} holds a control character; give the alarm's name")
        if name in seen:
            raise ValueError(f"{name!r} is given twice; give each alarm once")
        seen.add(name)
    return tuple(names)


def check_together(options: Mapping[str, Any]) -> None:
    """Refuse options that belong to a strategy the job does not name (ValueError).

    ``options`` maps the field names of :data:`STRATEGY_FIELDS` (and ``circuit_breaker``) to
    their values; a missing or None value is not set. The message starts with the field it is
    about ("canary_percent: ..."), names what it needs, and how to fix it.
    """
    strategy = options.get("strategy")
    shown = f"it is {strategy}" if strategy else "none is given"
    for field, needs in (
        ("canary_percent", "canary"),
        ("canary_bake_minutes", "canary"),
        ("linear_step_percent", "linear"),
        ("linear_step_bake_minutes", "linear"),
    ):
        if options.get(field) is not None and strategy != needs:
            raise ValueError(
                f"{field}: is for strategy {needs} only ({shown}); set strategy {needs}, or "
                f"drop {field}"
            )
    kind = options.get("circuit_breaker_threshold_type")
    value = options.get("circuit_breaker_threshold")
    if kind is not None and value is None:
        raise ValueError(
            "circuit_breaker_threshold_type: ECS needs the threshold's value as well; give "
            "circuit_breaker_threshold, or drop circuit_breaker_threshold_type"
        )
    if value is not None and not options.get("circuit_breaker"):
        raise ValueError(
            "circuit_breaker_threshold: the threshold is the circuit breaker's; turn "
            "circuit_breaker on as well, or drop circuit_breaker_threshold"
        )


# CloudFormation refuses a linear or canary service whose estimated deployment time exceeds 33
# hours (its own limit is 36), estimated from the template with these defaults for what the
# template leaves out (the AWS::ECS::Service schema's documentation).
CLOUDFORMATION_MAX_MINUTES: Final = 33 * 60
CLOUDFORMATION_DEFAULT_BAKE_MINUTES: Final = 15
DEFAULT_CANARY_BAKE_MINUTES: Final = 10
DEFAULT_LINEAR_STEP_PERCENT: Final = 10.0
DEFAULT_LINEAR_STEP_BAKE_MINUTES: Final = 6


def linear_steps(step_percent: float) -> int:
    """The deployment steps CloudFormation counts for a linear shift of ``step_percent``.

    No step bake follows the last shift: (100 / step) - 1 steps when the step divides 100,
    else floor(100 / step).
    """
    tenths = round(step_percent * 10)
    return 1000 // tenths - 1 if 1000 % tenths == 0 else 1000 // tenths


def cloudformation_minutes(
    strategy: str | None,
    *,
    bake: int | None,
    canary_bake: int | None = None,
    step_percent: float | None = None,
    step_bake: int | None = None,
) -> int | None:
    """CloudFormation's estimate of a deployment's minutes (None: it estimates no other
    strategy): bake + canary bake, or bake + step bake x steps."""
    total_bake = CLOUDFORMATION_DEFAULT_BAKE_MINUTES if bake is None else bake
    if strategy == "canary":
        return total_bake + (DEFAULT_CANARY_BAKE_MINUTES if canary_bake is None else canary_bake)
    if strategy == "linear":
        steps = linear_steps(DEFAULT_LINEAR_STEP_PERCENT if step_percent is None else step_percent)
        each = DEFAULT_LINEAR_STEP_BAKE_MINUTES if step_bake is None else step_bake
        return total_bake + each * steps
    return None
