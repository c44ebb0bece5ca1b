"""What every ``conveyor`` command shares: the client, errors as exit codes, and submitting
and following a deployment or a release.

Heavy modules (pydantic models, redis-py, the client) are imported inside the functions that
need them, so that ``conveyor --help`` and a command's argument checks cost only click.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click

from producers.cli import rendering
from producers.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from pydantic import ValidationError

    from producers.client import ConveyorClient
    from producers.contract.records import DeploymentRecord
    from producers.contract.releases import ReleaseRecord


def usage_error(message: str) -> NoReturn:
    """Exit 2 with ``message``: bad input, nothing was done."""
    click.echo(f"conveyor: error: {message}", err=True)
    sys.exit(ExitCode.USAGE)


def unavailable(message: str) -> NoReturn:
    """Exit 3 with ``message``: Redis, the workers or the record cannot be reached."""
    click.echo(f"conveyor: unavailable: {message}", err=True)
    sys.exit(ExitCode.UNAVAILABLE)


def invalid(exc: ValidationError, prefix: str = "") -> NoReturn:
    """Exit 2 naming each invalid field of a pydantic validation error."""
    from producers.contract.jobs import describe_validation_error

    usage_error(prefix + "; ".join(describe_validation_error(exc)))


def settings() -> Any:
    """The settings from the environment (exit 2 naming the bad variable).

    Read as Settings reads them, without importing pydantic-settings (config.fields).
    """
    from pydantic import ValidationError

    from config.fields import from_environ

    try:
        return from_environ()
    except ValidationError as exc:
        invalid(exc, "invalid settings: ")


def client() -> ConveyorClient:
    """A client on the configured Redis that says on stderr when it retries."""
    from producers.client import ConveyorClient

    return ConveyorClient(settings(), on_retry=rendering.say_retrying)


def exit_code(record: DeploymentRecord) -> ExitCode:
    """The exit code a deployment's record means (6 while it runs)."""
    from producers.contract.enums import INPUT_ERROR_CODES, DeploymentState

    changed = record.ecs_deployment_id is not None or (
        record.stack is not None and record.stack.operation not in (None, "none")
    )
    if record.error is not None and record.error.code in INPUT_ERROR_CODES and not changed:
        return ExitCode.USAGE
    if record.state is DeploymentState.SUCCEEDED:
        return ExitCode.OK
    if record.state in (DeploymentState.FAILED, DeploymentState.ROLLED_BACK):
        return ExitCode.FAILED
    if record.state is DeploymentState.SUPERSEDED:
        return ExitCode.SUPERSEDED
    if record.state is DeploymentState.CANCELLED:
        return ExitCode.CANCELLED
    return ExitCode.PENDING


def release_exit_code(release: ReleaseRecord) -> ExitCode:
    """The exit code a release's record means (6 while it runs)."""
    return {
        "succeeded": ExitCode.OK,
        "failed": ExitCode.FAILED,
        "cancelled": ExitCode.CANCELLED,
    }.get(release.state.value, ExitCode.PENDING)


def no_consumer(client: ConveyorClient, what: str) -> str:
    """Why no job can be accepted: no live worker consumes the fleet's queue."""
    queue = client.settings.queue
    others = sorted({q for w in client.workers() for q in w.queues})
    seen = f"; the live workers consume only {', '.join(others)}" if others else " (no heartbeat)"
    return (
        f"no Conveyor worker consuming queue {queue!r} is alive on "
        f"{client.settings.redis_display}{seen}; start one with `celery -A worker.app worker` "
        f"and CONVEYOR_QUEUE={queue} {what}"
    )


def warn_without_worker(client: ConveyorClient, what: str) -> None:
    """Say on stderr when no live worker consumes the fleet's queue: a release's answer or
    cancel is recorded all the same, but only a worker acts on it. Redis being away here
    only leaves the warning out (the change itself was recorded)."""
    from producers.client import ConveyorUnavailableError

    try:
        if client.consumers():
            return
        why = no_consumer(client, what)
    except ConveyorUnavailableError:
        return
    click.echo(f"warning: {why}", err=True)


def load(client: ConveyorClient, deployment_id: str) -> DeploymentRecord:
    """The deployment's record (exit 2 when there is none, 3 when it cannot be read)."""
    from producers.client import (
        ConveyorUnavailableError,
        DeploymentLostError,
        DeploymentNotFoundError,
    )

    try:
        return client.status(deployment_id)
    except DeploymentNotFoundError as exc:
        usage_error(str(exc))
    except (ConveyorUnavailableError, DeploymentLostError) as exc:
        unavailable(str(exc))


def load_release(client: ConveyorClient, release_id: str) -> ReleaseRecord:
    """The release's record (exit 2 when there is none, 3 when it cannot be read)."""
    from producers.client import (
        ConveyorUnavailableError,
        DeploymentLostError,
        DeploymentNotFoundError,
    )

    try:
        return client.release_status(release_id)
    except DeploymentNotFoundError as exc:
        usage_error(str(exc))
    except (ConveyorUnavailableError, DeploymentLostError) as exc:
        unavailable(str(exc))


def print_release(client: ConveyorClient, release: ReleaseRecord, as_json: bool) -> None:
    """A release as JSON (with its deployments' records), or as text (exit 3 if unreadable)."""
    from producers.client import ConveyorUnavailableError
    from producers.views import release_view

    try:
        if as_json:
            rendering.echo_json(release_view(client, release))
            return
        records = client.release_deployments(release)
    except ConveyorUnavailableError as exc:
        unavailable(str(exc))
    click.echo(rendering.release_text(release, records))


def stage_reached(until_stage: str) -> Callable[[DeploymentRecord], bool]:
    """What `--wait-until STAGE` waits for: the deployment's service deployment is at
    ``until_stage`` (one of ECS's lifecycle stages) or past it, and ECS is not rolling it
    back (a deployment being rolled back has reached nothing): as a release's move_on_at."""
    return lambda r: r.reached_stage(until_stage)


def follow(
    client: ConveyorClient, deployment_id: str, as_json: bool, until_stage: str | None = None
) -> NoReturn:
    """Show a deployment's progress until it ends, print it and exit with its code.

    With ``until_stage`` (one of ECS's lifecycle stages), return with exit 0 as soon as the
    deployment reaches that stage, while ECS still deploys it: the workers follow it to its
    verdict, which `conveyor wait` picks up. A deployment that ends first exits with its own
    code; a rolling update has no stages, so it is followed to its verdict.
    """
    from producers.client import (
        ConveyorUnavailableError,
        DeploymentLostError,
        DeploymentNotFoundError,
    )

    progress = rendering.Progress(enabled=True)
    client.on_retry = progress.retrying
    try:
        record = client.wait(
            deployment_id,
            on_progress=progress,
            until=None if until_stage is None else stage_reached(until_stage),
        )
    except KeyboardInterrupt:
        progress.stop()
        click.echo(
            f"interrupted; deployment {deployment_id} goes on. Follow it with "
            f"`conveyor wait {deployment_id}`.",
            err=True,
        )
        sys.exit(ExitCode.INTERRUPTED)
    except (ConveyorUnavailableError, DeploymentLostError, DeploymentNotFoundError) as exc:
        progress.stop()
        unavailable(str(exc))
    progress.stop()
    if not record.terminal and until_stage is not None:
        click.echo(
            f"deployment {deployment_id} reached {record.progress.lifecycle_stage}; the workers "
            f"follow it to its verdict: `conveyor wait {deployment_id}`",
            err=True,
        )
        rendering.print_record(record, as_json)
        sys.exit(ExitCode.OK)
    rendering.print_record(record, as_json)
    sys.exit(exit_code(record))


def follow_release(client: ConveyorClient, release_id: str, as_json: bool) -> NoReturn:
    """Show a release's progress until it has a verdict, print it and exit with its code."""
    from producers.client import ConveyorUnavailableError, DeploymentNotFoundError

    try:
        release = client.wait_release(release_id, on_progress=rendering.release_progress)
    except KeyboardInterrupt:
        click.echo(
            f"interrupted; release {release_id} goes on. Follow it with "
            f"`conveyor wait {release_id}`.",
            err=True,
        )
        sys.exit(ExitCode.INTERRUPTED)
    except (ConveyorUnavailableError, DeploymentNotFoundError) as exc:
        unavailable(str(exc))
    print_release(client, release, as_json)
    sys.exit(release_exit_code(release))


def enqueue(send: Callable[[ConveyorClient], Any]) -> tuple[ConveyorClient, Any]:
    """Make a client and run ``send`` with it, only when a worker is alive (exit 3 if not).

    Returns the client and what ``send`` returned.
    """
    from producers.client import ConveyorUnavailableError
    from producers.contract.errors import FrozenError

    made = client()
    try:
        if not made.consumers():
            unavailable(no_consumer(made, "(nothing was enqueued)"))
        return made, send(made)
    except ConveyorUnavailableError as exc:
        unavailable(str(exc))
    except FrozenError as exc:
        usage_error(str(exc))


def freeze_override() -> str | None:
    """The reason given with --override-freeze (None without it); exit 2 when the flag or
    the reason comes alone."""
    from producers.cli.options import FREEZE_REASON, OVERRIDE_FREEZE

    ctx = click.get_current_context(silent=True)
    meta = ctx.meta if ctx is not None else {}
    wanted, reason = bool(meta.get(OVERRIDE_FREEZE)), meta.get(FREEZE_REASON)
    if wanted and not (reason or "").strip():
        usage_error("--override-freeze needs --reason TEXT: say why, it is recorded")
    if reason is not None and not wanted:
        usage_error("--reason goes with --override-freeze; drop it, or add the flag")
    return str(reason).strip() if wanted else None


def submit(job: Any, *, no_wait: bool, as_json: bool, until_stage: str | None = None) -> NoReturn:
    """Enqueue a validated job (only when a worker is alive), then print its id or follow it
    (until it reaches ``until_stage``, when given)."""
    override = freeze_override()
    made, record = enqueue(lambda c: c.enqueue(job, override_freeze=override))
    if no_wait:
        if as_json:
            rendering.print_record(record, True)
        else:
            click.echo(record.id)
        sys.exit(ExitCode.OK)
    click.echo(f"deployment {record.id} queued", err=True)
    follow(made, record.id, as_json, until_stage)


def submit_release(release: Any, *, no_wait: bool, as_json: bool) -> NoReturn:
    """Enqueue a validated release (only when a worker is alive), then print or follow it."""
    override = freeze_override()
    made, record = enqueue(lambda c: c.release(release, override_freeze=override))
    if no_wait:
        if as_json:
            print_release(made, record, True)
        else:
            click.echo(record.id)
        sys.exit(ExitCode.OK)
    count = sum(len(w) for w in record.waves)
    click.echo(
        f"release {record.id} queued: {count} service(s) in {len(record.waves)} wave(s)", err=True
    )
    follow_release(made, record.id, as_json)


def resolved(job: Any, pin_digest: bool) -> Any:
    """The job or release with its version rules resolved (exit 2 when one matches nothing)."""
    from producers.contract.versions import VersionRuleError

    try:
        return client().resolve_versions(job, pin_digest=pin_digest)
    except VersionRuleError as exc:
        usage_error(f"{exc} (nothing was enqueued)")


def plans(job: Any) -> list[dict[str, Any]]:
    """The workers' plans of a job or release whose rules are resolved (exit 3 when none
    answers)."""
    from producers.client import ConveyorUnavailableError

    made = client()
    try:
        if not made.consumers():
            unavailable(no_consumer(made, "to compute the plan"))
        found: list[dict[str, Any]] = made.plan(job)
    except ConveyorUnavailableError as exc:
        unavailable(str(exc))
    return found


def show_plan(job: Any, pin_digest: bool, as_json: bool) -> NoReturn:
    """Print what the job or release would change and exit: 0, or 1 when a plan has an error."""
    from producers.client import ConveyorUnavailableError
    from producers.contract.versions import VersionRuleError

    made = client()
    try:
        if not made.consumers():
            unavailable(no_consumer(made, "to compute the plan"))
        found = made.plan(job, pin_digest=pin_digest)
    except VersionRuleError as exc:
        usage_error(str(exc))
    except ConveyorUnavailableError as exc:
        unavailable(str(exc))
    rendering.print_plans(found, as_json)
    sys.exit(ExitCode.FAILED if any("error" in p for p in found) else ExitCode.OK)
