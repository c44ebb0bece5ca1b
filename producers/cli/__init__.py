"""The ``conveyor`` command: a package split by concern.

* :mod:`.exit_codes` — the exit codes (an ``IntEnum``) and which outcome is the worst;
* :mod:`.options` — click options that several commands share;
* :mod:`.rendering` — text, JSON, tables and the live progress line;
* :mod:`.core` — the client, errors as exit codes, submitting and following;
* the commands by topic: :mod:`.deploy` (update, restart, release, plan), :mod:`.fargate`,
  :mod:`.tracking` (status, wait, cancel, approve, reject, list, workers), :mod:`.serve`
  (dashboard, local-aws).

A shell loop pays for every import at each call, so the modules import only click at load
time; pydantic models, redis-py and the client are imported inside the commands that use them.
A new command goes into the module of its topic and is added to ``main`` below.
"""

from __future__ import annotations

import click

from producers.cli import deploy, fargate, serve, tracking
from producers.cli.exit_codes import ExitCode

__all__ = ["ExitCode", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="conveyor")
def main() -> None:
    """Conveyor: queue-driven, truthful deployments for Amazon ECS."""


for _command in (
    deploy.update,
    deploy.restart,
    deploy.release,
    deploy.plan,
    tracking.workers,
    tracking.list_,
    serve.dashboard,
    tracking.status,
    tracking.cancel,
    tracking.approve,
    tracking.reject,
    tracking.wait,
    tracking.history,
    fargate.fargate,
    serve.local_aws,
):
    main.add_command(_command)
