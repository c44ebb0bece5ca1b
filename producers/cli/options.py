"""Click options that several ``conveyor`` commands share, each defined once.

Only click is imported here: ``conveyor --help`` and every command's start-up load this module,
so the limits below are plain numbers, checked against the contract's by a unit test.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

# The contract's bounds and default of a job's timeout (producers.contract.jobs), for the help
# text only: the job model enforces them. tests/unit/test_cli_startup.py keeps the two equal.
MIN_TIMEOUT_SECONDS = 30
MAX_TIMEOUT_SECONDS = 24 * 3600
DEFAULT_TIMEOUT_SECONDS = 1800

cluster = click.option("--cluster", required=True, help="ECS cluster name or ARN.")


def services(help_text: str) -> Callable[[F], F]:
    """--service, repeatable and required, as ``services``; ``help_text`` says what many do."""
    return click.option("--service", "services", required=True, multiple=True, help=help_text)


timeout = click.option(
    "--timeout",
    type=int,
    default=None,
    help=(
        f"Seconds the rollout may take ({MIN_TIMEOUT_SECONDS}-{MAX_TIMEOUT_SECONDS}). Default: "
        f"{DEFAULT_TIMEOUT_SECONDS} for a rolling update; for a service ECS deploys blue/green, "
        "linear or canary, its bake times and lifecycle hook timeouts plus "
        f"{DEFAULT_TIMEOUT_SECONDS}."
    ),
)


def no_wait(what: str = "deployment") -> Callable[[F], F]:
    """--no-wait: print the id of ``what`` and return at once."""
    return click.option("--no-wait", is_flag=True, help=f"Print the {what} id and return at once.")


role_arn = click.option("--role-arn", default=None, help="IAM role to assume (cross-account).")


def _stage(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    from producers.contract.stages import stage_named

    try:
        return stage_named(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


wait_until = click.option(
    "--wait-until",
    "until_stage",
    metavar="STAGE",
    default=None,
    callback=_stage,
    help="Return (exit 0) once the deployment reaches this lifecycle stage of a blue/green, "
    "linear or canary deployment (for example production-traffic, or bake); the workers "
    "follow it to its verdict, which `conveyor wait ID` picks up. A rolling update is "
    "followed to its verdict.",
)

pin_digest = click.option(
    "--pin-digest/--tag-only",
    default=True,
    help="A resolved version rule deploys REPOSITORY:TAG@DIGEST (default), or only the tag.",
)


def as_json(what: str = "the final record") -> Callable[[F], F]:
    """--json, as ``as_json``: print ``what`` as JSON."""
    return click.option("--json", "as_json", is_flag=True, help=f"Print {what} as JSON.")


def dry_run(help_text: str) -> Callable[[F], F]:
    """--dry-run: show what would change, change nothing."""
    return click.option("--dry-run", is_flag=True, help=help_text)


def release_file(help_text: str, *, required: bool, dir_okay: bool = True) -> Callable[[F], F]:
    """-f/--file, a release file, as ``release_file``."""
    return click.option(
        "-f",
        "--file",
        "release_file",
        required=required,
        default=None,
        type=click.Path(path_type=Path, dir_okay=dir_okay),
        help=help_text,
    )


# The contract's bounds of the strategy options (producers.contract.strategy), for the help
# text only: the job model enforces them. tests/unit/test_strategy_cli.py keeps them equal.
MAX_BAKE_MINUTES = 1440
MIN_CANARY_PERCENT = 0.1
MIN_LINEAR_STEP_PERCENT = 3.0

# Job field -> the `conveyor update` flag that sets it, so that an error the contract reports
# about a field names the flag that was given.
STRATEGY_FLAGS = {
    "strategy": "--strategy",
    "bake_minutes": "--bake-minutes",
    "canary_percent": "--canary-percent",
    "canary_bake_minutes": "--canary-bake-minutes",
    "linear_step_percent": "--linear-step-percent",
    "linear_step_bake_minutes": "--linear-step-bake-minutes",
    "alarms": "--alarm",
    "circuit_breaker": "--circuit-breaker",
    "circuit_breaker_threshold": "--circuit-breaker-threshold",
    "circuit_breaker_threshold_type": "--circuit-breaker-threshold-type",
}
# Longest first, whole words only: circuit_breaker must not match inside its threshold's name.
_FIELD = re.compile(r"\b(" + "|".join(sorted(STRATEGY_FLAGS, key=len, reverse=True)) + r")\b")


def as_flags(message: str) -> str:
    """``message`` with each strategy option's field name replaced by its flag."""
    return _FIELD.sub(lambda found: STRATEGY_FLAGS[found.group(1)], message)


def strategy_options(command: F) -> F:
    """ECS's deployment strategy and its settings, as ``conveyor update`` takes them."""
    decorators = (
        click.option(
            "--strategy",
            type=click.Choice(["rolling", "blue-green", "linear", "canary"]),
            default=None,
            help="Also set ECS's deployment strategy (default: the service's own).",
        ),
        click.option(
            "--bake-minutes",
            type=int,
            default=None,
            help="Minutes ECS keeps the old revision after the new one took all traffic, "
            f"before the deployment ends (0-{MAX_BAKE_MINUTES}).",
        ),
        click.option(
            "--canary-percent",
            type=float,
            default=None,
            help="With --strategy canary: the percent of traffic the new revision gets first "
            f"({MIN_CANARY_PERCENT:g}-100, in steps of 0.1).",
        ),
        click.option(
            "--canary-bake-minutes",
            type=int,
            default=None,
            help="With --strategy canary: minutes before the rest of the traffic moves "
            f"(0-{MAX_BAKE_MINUTES}).",
        ),
        click.option(
            "--linear-step-percent",
            type=float,
            default=None,
            help="With --strategy linear: the percent of traffic each step moves "
            f"({MIN_LINEAR_STEP_PERCENT:g}-100, in steps of 0.1).",
        ),
        click.option(
            "--linear-step-bake-minutes",
            type=int,
            default=None,
            help=f"With --strategy linear: minutes between steps (0-{MAX_BAKE_MINUTES}).",
        ),
        click.option(
            "--alarm",
            "alarms",
            multiple=True,
            metavar="NAME",
            help="A CloudWatch alarm that fails the rollout and rolls it back; repeatable "
            "(added to the service's own alarms).",
        ),
        click.option(
            "--circuit-breaker-threshold",
            type=int,
            default=None,
            help="With --circuit-breaker: the failed tasks (count) or percent of the desired "
            "count (the percent types) at which the breaker trips.",
        ),
        click.option(
            "--circuit-breaker-threshold-type",
            type=click.Choice(["count", "bounded-percent", "unbounded-percent"]),
            default=None,
            help="How --circuit-breaker-threshold is read (default: bounded-percent, which ECS "
            "holds between 3 and 200 tasks).",
        ),
    )
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


OVERRIDE_FREEZE = "conveyor.override_freeze"
FREEZE_REASON = "conveyor.freeze_reason"


def _stash(key: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def keep(ctx: click.Context, _: click.Parameter, value: Any) -> Any:
        ctx.meta[key] = value
        return value

    return keep


def override_freeze(f: F) -> F:
    """``--override-freeze --reason TEXT``: enqueue inside a freeze window, on the record.

    Kept in the click context (``OVERRIDE_FREEZE``, ``FREEZE_REASON``), where the enqueue
    reads it, so the commands' own parameters stay as they are.
    """
    f = click.option(
        "--reason",
        metavar="TEXT",
        default=None,
        expose_value=False,
        callback=_stash(FREEZE_REASON),
        help="Why the freeze is overridden (with --override-freeze); recorded with your name.",
    )(f)
    return click.option(
        "--override-freeze",
        is_flag=True,
        expose_value=False,
        callback=_stash(OVERRIDE_FREEZE),
        help="Enqueue even inside a freeze window (CONVEYOR_FREEZE_FILE); needs --reason.",
    )(f)
