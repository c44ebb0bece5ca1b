"""Commands that look at or steer what is under way: ``status``, ``wait``, ``cancel``,
``approve``, ``reject``, ``list`` and ``workers``."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import click

from producers.cli import core, options, rendering
from producers.cli.exit_codes import ExitCode, worst

if TYPE_CHECKING:
    from producers.client import ConveyorClient

# The states `conveyor list --state` accepts; DeploymentState's values plus the release-only
# "running", kept here as plain strings so that `conveyor --help` needs no contract import.
# tests/unit/test_cli_options.py keeps them equal to the enumerations.
LIST_STATES = sorted(
    {
        "queued",
        "running",
        "succeeded",
        "failed",
        "rolled_back",
        "cancelled",
        "superseded",
    }
)


def _is_release_id(text: str) -> bool:
    from producers.contract.ids import is_release_id

    return is_release_id(text)


@click.command()
@click.argument("deployment_id")
@options.as_json("the record")
def status(deployment_id: str, as_json: bool) -> None:
    """Show a deployment's or a release's record."""
    if _is_release_id(deployment_id):
        made = core.client()
        found = core.load_release(made, deployment_id)
        core.print_release(made, found, as_json)
        sys.exit(core.release_exit_code(found))
    record = core.load(core.client(), deployment_id)
    rendering.print_record(record, as_json)
    sys.exit(core.exit_code(record))


@click.command()
@click.argument("deployment_id")
@click.option("--no-wait", is_flag=True, help="Return once the request is recorded.")
@options.as_json()
def cancel(deployment_id: str, no_wait: bool, as_json: bool) -> None:
    """Stop a queued or running deployment (a rollout under way is rolled back)."""
    from producers.client import ConveyorUnavailableError, DeploymentNotFoundError

    made = core.client()
    if _is_release_id(deployment_id):
        found = core.load_release(made, deployment_id)
        if found.terminal:
            click.echo(f"release {deployment_id} had already ended: {found.state.value}", err=True)
            core.print_release(made, found, as_json)
            sys.exit(core.release_exit_code(found))
        try:
            made.cancel_release(deployment_id)
        except DeploymentNotFoundError as exc:
            core.usage_error(str(exc))
        except ConveyorUnavailableError as exc:
            core.unavailable(str(exc))
        core.warn_without_worker(
            made, f"(the cancel is recorded; release {deployment_id} moves on once one runs)"
        )
        if no_wait:
            click.echo(f"cancel requested for {deployment_id}", err=True)
            sys.exit(ExitCode.OK)
        core.follow_release(made, deployment_id, as_json)
    record = core.load(made, deployment_id)
    if record.terminal:
        click.echo(f"deployment {deployment_id} had already ended: {record.state.value}", err=True)
        rendering.print_record(record, as_json)
        sys.exit(core.exit_code(record))
    try:
        made.cancel(deployment_id)
    except DeploymentNotFoundError as exc:
        core.usage_error(str(exc))
    except ConveyorUnavailableError as exc:
        core.unavailable(str(exc))
    if no_wait:
        click.echo(f"cancel requested for {deployment_id}", err=True)
        sys.exit(ExitCode.OK)
    core.follow(made, deployment_id, as_json)


def _who() -> str:
    """Who is answering: ``user@host``, as the record notes it."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name in a bare container
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _answer_hook(
    deployment_id: str,
    action: Literal["CONTINUE", "ROLLBACK"],
    by: str | None,
    no_wait: bool,
    as_json: bool,
) -> None:
    from producers.client import ConveyorUnavailableError, DeploymentNotFoundError
    from producers.contract.ids import is_release_id

    made = core.client()
    if is_release_id(deployment_id):
        _answer_release(made, deployment_id, action, by, no_wait, as_json)
    record = core.load(made, deployment_id)
    if record.terminal:
        click.echo(f"deployment {deployment_id} had already ended: {record.state.value}", err=True)
        rendering.print_record(record, as_json)
        sys.exit(core.exit_code(record))
    try:
        made.answer_hook(deployment_id, action, by or _who())
    except DeploymentNotFoundError as exc:
        core.usage_error(str(exc))
    except ConveyorUnavailableError as exc:
        core.unavailable(str(exc))
    word = "approval" if action == "CONTINUE" else "rejection"
    if no_wait:
        click.echo(f"{word} requested for {deployment_id}", err=True)
        sys.exit(ExitCode.OK)
    core.follow(made, deployment_id, as_json)


def _answer_release(
    made: Any,
    release_id: str,
    action: Literal["CONTINUE", "ROLLBACK"],
    by: str | None,
    no_wait: bool,
    as_json: bool,
) -> NoReturn:
    """Approve or reject the wave a release waits before, then follow the release."""
    from producers.client import ConveyorUnavailableError, DeploymentNotFoundError

    answer: Literal["CONTINUE", "REJECT"] = "CONTINUE" if action == "CONTINUE" else "REJECT"
    try:
        release = made.answer_release(release_id, answer, by or _who())
    except DeploymentNotFoundError as exc:
        core.usage_error(str(exc))
    except ValueError as exc:
        core.usage_error(str(exc))
    except ConveyorUnavailableError as exc:
        core.unavailable(str(exc))
    word = "approved" if answer == "CONTINUE" else "rejected"
    click.echo(f"release {release_id}: {word}", err=True)
    core.warn_without_worker(
        made, f"(the answer is recorded; release {release_id} moves on once one runs)"
    )
    if no_wait:
        core.print_release(made, release, as_json)
        sys.exit(ExitCode.OK)
    core.follow_release(made, release_id, as_json)


_BY = click.option(
    "--by", metavar="NAME", help="Who answers, as the record notes it (default: user@host)."
)


@click.command()
@click.argument("deployment_id")
@_BY
@click.option("--no-wait", is_flag=True, help="Return once the approval is recorded.")
@options.as_json()
def approve(deployment_id: str, by: str | None, no_wait: bool, as_json: bool) -> None:
    """Let a deployment paused at a PAUSE lifecycle hook go on (ECS's CONTINUE), or a release
    paused before a wave (approve_before) start it."""
    _answer_hook(deployment_id, "CONTINUE", by, no_wait, as_json)


@click.command()
@click.argument("deployment_id")
@_BY
@click.option("--no-wait", is_flag=True, help="Return once the rejection is recorded.")
@options.as_json()
def reject(deployment_id: str, by: str | None, no_wait: bool, as_json: bool) -> None:
    """Roll back a deployment paused at a PAUSE lifecycle hook (ECS's ROLLBACK), or stop a
    release paused before a wave (it ends cancelled; no later wave starts)."""
    _answer_hook(deployment_id, "ROLLBACK", by, no_wait, as_json)


@click.command()
@click.argument("ids", nargs=-1, required=True, metavar="ID [ID ...]")
@options.as_json("the final records (with several ids: a list)")
def wait(ids: tuple[str, ...], as_json: bool) -> None:
    """Follow deployments or releases until they end.

    With several ids, all are followed at once and the exit code is the worst outcome, worst
    first: 3 unavailable (an outcome that cannot be known), 1 failed or rolled back, 2 invalid
    input, 5 cancelled, 4 superseded, 0 succeeded. An unknown id exits 2 before any is
    followed.
    """
    made = core.client()
    unique = list(dict.fromkeys(ids))
    for one in unique:
        if _is_release_id(one):
            core.load_release(made, one)
        else:
            core.load(made, one)
    if len(unique) == 1:
        if _is_release_id(unique[0]):
            core.follow_release(made, unique[0], as_json)
        core.follow(made, unique[0], as_json)
    sys.exit(_follow_many(made, unique, as_json))


def _follow_many(made: ConveyorClient, ids: list[str], as_json: bool) -> ExitCode:
    """Poll every id until each has ended, print them in the order given, and return the
    worst exit code. A record lost on the way counts as unavailable; Redis gone (after the
    client's own retries) ends the wait for all that are left."""
    from producers.client import (
        ConveyorUnavailableError,
        DeploymentLostError,
        DeploymentNotFoundError,
    )

    progress = rendering.Progress(enabled=True, live=False)
    made.on_retry = progress.retrying
    final: dict[str, Any] = {}
    codes: dict[str, ExitCode] = {}
    shown: dict[str, str] = {}
    pending = list(ids)
    try:
        while pending:
            for one in list(pending):
                try:
                    found: Any = (
                        made.release_status(one) if _is_release_id(one) else made.status(one)
                    )
                except (DeploymentLostError, DeploymentNotFoundError) as exc:
                    click.echo(f"conveyor: unavailable: {exc}", err=True)
                    codes[one] = ExitCode.UNAVAILABLE
                    pending.remove(one)
                    continue
                _report(found, shown, progress)
                if found.terminal:
                    final[one] = found
                    pending.remove(one)
            if pending:
                time.sleep(1.0)
    except ConveyorUnavailableError as exc:
        click.echo(f"conveyor: unavailable: {exc}", err=True)
        codes.update(dict.fromkeys(pending, ExitCode.UNAVAILABLE))
    except KeyboardInterrupt:
        left = " ".join(pending)
        click.echo(f"interrupted; they go on. Follow them with `conveyor wait {left}`.", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    _print_many(made, ids, final, as_json)
    for one, record in final.items():
        codes[one] = (
            core.release_exit_code(record) if _is_release_id(one) else core.exit_code(record)
        )
    outcome = worst(codes.values())
    click.echo(
        "conveyor: "
        + ", ".join(f"{one} exit {int(codes[one])}" for one in ids)
        + f"; worst: {int(outcome)}",
        err=True,
    )
    return outcome


def _report(found: Any, shown: dict[str, str], progress: rendering.Progress) -> None:
    """One progress line per change of a followed deployment or release."""
    from producers.contract.releases import ReleaseRecord

    if isinstance(found, ReleaseRecord):
        text = f"{found.state.value} {found.wave} {sorted(found.summary().items())}"
        if shown.get(found.id) != text:
            shown[found.id] = text
            rendering.release_progress(found)
    else:
        progress(found)


def _print_many(made: ConveyorClient, ids: list[str], final: dict[str, Any], as_json: bool) -> None:
    """The records that ended, in the order given: text blocks, or one JSON list."""
    from producers.client import ConveyorUnavailableError
    from producers.views import release_view

    if as_json:
        try:
            rendering.echo_json(
                [
                    release_view(made, final[one])
                    if _is_release_id(one)
                    else final[one].model_dump(mode="json")
                    for one in ids
                    if one in final
                ]
            )
        except ConveyorUnavailableError as exc:
            core.unavailable(str(exc))
        return
    for one in ids:
        if one not in final:
            continue
        if _is_release_id(one):
            core.print_release(made, final[one], False)
        else:
            rendering.print_record(final[one], False)


@click.command()
@options.as_json("the workers")
@click.option(
    "--here",
    is_flag=True,
    help="Only workers on this host (names ending in @HOSTNAME); exit 3 when there is none. "
    "A container's health check.",
)
def workers(as_json: bool, here: bool) -> None:
    """List the live workers (by their heartbeats): name, queues, concurrency, last seen."""
    import socket

    from producers.client import ConveyorUnavailableError

    made = core.client()
    try:
        found = made.workers()
    except ConveyorUnavailableError as exc:
        core.unavailable(str(exc))
    if here:
        suffix = "@" + socket.gethostname()
        found = [w for w in found if w.name.endswith(suffix)]
    if as_json:
        rendering.echo_json([w.model_dump(mode="json") for w in found], sort_keys=False)
    elif not found:
        click.echo("no live workers" + (" on this host" if here else ""), err=True)
    else:
        rendering.print_workers(found)
    sys.exit(ExitCode.OK if found else ExitCode.UNAVAILABLE)


@click.command(name="list")
@click.option(
    "--service", "services", multiple=True, help="Only these services (repeatable; 'api-*' works)."
)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(LIST_STATES),
    help="Only deployments and releases in this state (repeatable).",
)
@click.option("--cluster", "clusters", multiple=True, help="Only this cluster (repeatable).")
@click.option(
    "--only",
    type=click.Choice(["deployments", "releases"]),
    default=None,
    help="Show only deployments or only releases.",
)
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="Rows of each."
)
@options.as_json("the records")
def list_(
    services: tuple[str, ...],
    states: tuple[str, ...],
    clusters: tuple[str, ...],
    only: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List recent deployments and releases, newest first."""
    from producers.client import ConveyorUnavailableError
    from producers.contract.records import DeploymentRecord
    from producers.contract.releases import ReleaseRecord
    from producers.views import list_view

    made = core.client()
    try:
        data = list_view(
            made, services=services, states=states, clusters=clusters, only=only, limit=limit
        )
    except ConveyorUnavailableError as exc:
        core.unavailable(str(exc))
    if as_json:
        rendering.echo_json(data)
        return
    rendering.print_list(
        [DeploymentRecord.model_validate(d) for d in data["deployments"]],
        [ReleaseRecord.model_validate({**r, "jobs": {}}) for r in data["releases"]],
        data["unreadable_releases"],
        only=only,
    )


def _since(text: str | None) -> float | None:
    """``--since``: an ISO 8601 time (UTC unless it says), or an age such as 30m, 12h or 7d."""
    import datetime
    import re

    if text is None:
        return None
    age = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if age:
        seconds = int(age.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[age.group(2)]
        return time.time() - seconds
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        core.usage_error(
            f"--since {text!r}: give an age (30m, 12h, 7d) or a time (2026-12-01T09:00:00Z)"
        )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


@click.command()
@click.option("--service", default=None, help="Only events about this service (by name).")
@click.option(
    "--since", default=None, metavar="WHEN", help="From this age (30m, 12h, 7d) or ISO time."
)
@click.option(
    "--limit",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    show_default=True,
    help="Events at most.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (to export).")
def history(service: str | None, since: str | None, limit: int, as_json: bool) -> None:
    """The audit trail, oldest first: who enqueued what, approvals, rejections, cancels and
    every verdict, kept for CONVEYOR_HISTORY_RETENTION_DAYS."""
    import json

    from producers.client import ConveyorUnavailableError

    start = _since(since)
    made = core.client()
    try:
        events = made.history(since=start, service=service, limit=limit)
    except ConveyorUnavailableError as exc:
        core.unavailable(str(exc))
    for event in events:
        if as_json:
            click.echo(json.dumps(event, sort_keys=True))
        else:
            click.echo(rendering.history_line(event))
    if not events and not as_json:
        click.echo("no events", err=True)
