"""Click options that several ``conveyor`` commands share, each defined once.

Only click is imported here: ``conveyor --help`` and every command's start-up load this module,
so the limits below are plain numbers, checked against the contract's by a unit test.
"""

from __future__ import annotations

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
