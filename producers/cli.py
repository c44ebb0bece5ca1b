"""The ``conveyor`` command.

Exit codes: 0 succeeded; 1 failed or rolled back; 2 invalid input: refused before anything was
enqueued, or found invalid by the worker before anything changed (an unknown container or
service); 3 Redis (retried for CONVEYOR_REDIS_RETRY_SECONDS) or the workers cannot be
reached, or the deployment's record is gone or unreadable; 4 superseded by a newer
deployment of the same service before it started; 5 cancelled; 6 not finished yet
(``status`` of a queued or running deployment); 130 interrupted while waiting (the
deployment goes on).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
from pydantic import ValidationError

from producers.contract.enums import INPUT_ERROR_CODES
from producers.contract.jobs import (
    MAX_TIMEOUT_SECONDS,
    MIN_TIMEOUT_SECONDS,
    ImageUpdate,
    UpdateServiceJob,
    describe_validation_error,
)
from producers.contract.records import DeploymentRecord, DeploymentState
from producers.contract.releases import ReleaseRecord, is_release_id

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_SUPERSEDED = 0, 1, 2, 3, 4
EXIT_CANCELLED = 5
EXIT_PENDING = 6
EXIT_INTERRUPTED = 130


def _client() -> Any:
    from config.settings import Settings
    from producers.client import ConveyorClient

    try:
        settings = Settings()
    except ValidationError as exc:
        _usage_error("invalid settings: " + "; ".join(describe_validation_error(exc)))
    return ConveyorClient(settings, on_retry=_say_retrying)


def _retrying_text(waited: float) -> str:
    return f"Redis unavailable, retrying ({waited:.0f} s)"


def _say_retrying(waited: float) -> None:
    """Tell the person (or the CI log) why nothing moves: on stderr, never in --json output."""
    click.echo(f"conveyor: {_retrying_text(waited)}", err=True)


def _usage_error(message: str) -> NoReturn:
    click.echo(f"conveyor: error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _unavailable(message: str) -> NoReturn:
    click.echo(f"conveyor: unavailable: {message}", err=True)
    sys.exit(EXIT_UNAVAILABLE)


def _exit_code(record: DeploymentRecord) -> int:
    changed = record.ecs_deployment_id is not None or (
        record.stack is not None and record.stack.operation not in (None, "none")
    )
    if record.error is not None and record.error.code in INPUT_ERROR_CODES and not changed:
        return EXIT_USAGE
    if record.state is DeploymentState.SUCCEEDED:
        return EXIT_OK
    if record.state in (DeploymentState.FAILED, DeploymentState.ROLLED_BACK):
        return EXIT_FAILED
    if record.state is DeploymentState.SUPERSEDED:
        return EXIT_SUPERSEDED
    if record.state is DeploymentState.CANCELLED:
        return EXIT_CANCELLED
    return EXIT_PENDING


def _summary(record: DeploymentRecord) -> str:
    lines = [f"deployment {record.id}: {record.state.value}"]
    lines.append(f"  service   {record.cluster}/{record.service}")
    for container, change in record.images.items():
        lines.append(f"  image     {container}: {change['before']} -> {change['after']}")
    if record.task_definition_arn:
        lines.append(f"  revision  {record.task_definition_arn}")
    if record.previous_task_definition_arn:
        lines.append(f"  previous  {record.previous_task_definition_arn}")
    if record.reason:
        lines.append(f"  reason    {record.reason}")
    if record.error:
        lines.append(f"  error     [{record.error.code}] {record.error.message}")
    if record.stack is not None:
        lines.append(f"  stack     {record.stack.name} ({record.stack.status or 'not started'})")
        for event in [e for e in record.stack.events if e.reason][:3]:
            lines.append(f"  event     {event.logical_id} {event.status}: {event.reason}")
    for task in record.stopped_tasks[:3]:
        lines.append(f"  stopped   {task.task_arn.rsplit('/', 1)[-1]}: {task.stopped_reason}")
    for warning in record.warnings:
        lines.append(f"  warning   {warning}")
    return "\n".join(lines)


class _Progress:
    """Live progress: a rich status line on terminals, one plain line per change elsewhere."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._live: Any = None
        self._last = ""
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.status import Status

            self._live = Status("queued", console=Console(stderr=True))
            self._live.start()

    def __call__(self, record: DeploymentRecord) -> None:
        if not self.enabled:
            return
        p = record.progress
        text = f"{record.state.value} · {record.step.value}"
        if p.desired:
            text += f" · {p.running}/{p.desired} running"
            if p.failed_tasks:
                text += f" · {p.failed_tasks} failed tasks"
        if p.latest_event:
            text += f" · {p.latest_event}"
        if text == self._last:
            return
        self._last = text
        if self._live is not None:
            self._live.update(text)
        else:
            click.echo(f"[{record.id[:8]}] {text}", err=True)

    def retrying(self, waited: float) -> None:
        """Show that Redis cannot be reached and is being asked again."""
        if self._live is not None:
            self._live.update(_retrying_text(waited))
            self._last = ""
        else:
            _say_retrying(waited)

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()


def _follow(client: Any, deployment_id: str, as_json: bool) -> NoReturn:
    from producers.client import (
        ConveyorUnavailableError,
        DeploymentLostError,
        DeploymentNotFoundError,
    )

    progress = _Progress(enabled=True)
    client.on_retry = progress.retrying
    try:
        record = client.wait(deployment_id, on_progress=progress)
    except KeyboardInterrupt:
        progress.stop()
        click.echo(
            f"interrupted; deployment {deployment_id} goes on. Follow it with "
            f"`conveyor wait {deployment_id}`.",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    except (ConveyorUnavailableError, DeploymentLostError, DeploymentNotFoundError) as exc:
        progress.stop()
        _unavailable(str(exc))
    progress.stop()
    _print_record(record, as_json)
    sys.exit(_exit_code(record))


def _print_record(record: DeploymentRecord, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(record.model_dump(mode="json"), indent=2, sort_keys=True))
    else:
        click.echo(_summary(record))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="conveyor")
def main() -> None:
    """Conveyor: queue-driven, truthful deployments for Amazon ECS."""


@main.command()
@click.option("--cluster", required=True, help="ECS cluster name or ARN.")
@click.option(
    "--service",
    "services",
    required=True,
    multiple=True,
    help="ECS service name or ARN; repeat it to deploy the same images to several services "
    "at once (one release).",
)
@click.option(
    "--image",
    "images",
    multiple=True,
    metavar="CONTAINER=IMAGE",
    help="New image for a container; repeatable. IMAGE may be ':TAG' or '@sha256:...' to keep "
    "the repository.",
)
@click.option("--family", default=None, help="Task definition family (default: the service's).")
@click.option(
    "--timeout",
    type=int,
    default=1800,
    show_default=True,
    help=f"Seconds the rollout may take ({MIN_TIMEOUT_SECONDS}-{MAX_TIMEOUT_SECONDS}).",
)
@click.option("--no-wait", is_flag=True, help="Print the deployment id and return at once.")
@click.option("--no-rollback", is_flag=True, help="On failure, leave the service as it is.")
@click.option("--force-new-deployment", is_flag=True, help="Restart tasks even if unchanged.")
@click.option("--role-arn", default=None, help="IAM role to assume (cross-account).")
@click.option("--desired-count", type=int, default=None, help="Also set the number of tasks.")
@click.option(
    "--min-healthy-percent",
    type=int,
    default=None,
    help="Also set the deployment's minimum healthy percent (0-100).",
)
@click.option(
    "--max-percent", type=int, default=None, help="Also set the deployment's maximum percent."
)
@click.option(
    "--circuit-breaker",
    is_flag=True,
    help="Turn ECS's circuit breaker (with rollback) on when the service has it off.",
)
@click.option(
    "--env",
    "env",
    multiple=True,
    metavar="CONTAINER:NAME=VALUE",
    help="Set an environment variable of a container; repeatable. Values on a command line are "
    "visible to other local users: prefer --env-file for secrets.",
)
@click.option(
    "--env-file",
    "env_files",
    multiple=True,
    metavar="CONTAINER=PATH",
    help="Set a container's environment variables from a NAME=VALUE file; repeatable.",
)
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    metavar="CONTAINER:NAME=REFERENCE",
    help="Set a container's secret (a Secrets Manager or SSM reference); repeatable.",
)
@click.option(
    "--secret-file",
    "secret_files",
    multiple=True,
    metavar="CONTAINER=PATH",
    help="Set a container's secrets from a file of NAME=REFERENCE lines (the --env-file "
    "format); repeatable.",
)
@click.option(
    "--pin-digest/--tag-only",
    default=True,
    help="A resolved version rule deploys REPOSITORY:TAG@DIGEST (default), or only the tag.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show what would change (revision diff, service changes, versions); change nothing.",
)
@click.option(
    "--replace-env",
    is_flag=True,
    help="A container given --env/--env-file gets exactly those variables, and one given "
    "--secret/--secret-file exactly those secrets; a kind not given is kept (default: merged "
    "by name into what the container has).",
)
@click.option(
    "--keep-revisions",
    type=int,
    default=None,
    help="Afterwards, deregister the family's revisions past the newest N that no service uses.",
)
@click.option(
    "--base",
    type=click.Choice(["family", "service"]),
    default="family",
    show_default=True,
    help="Build the new revision from the family's latest ACTIVE revision that no failed "
    "deployment discarded, or from the revision the service runs.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the final record as JSON.")
def update(
    cluster: str,
    services: tuple[str, ...],
    images: tuple[str, ...],
    family: str | None,
    timeout: int,
    no_wait: bool,
    no_rollback: bool,
    force_new_deployment: bool,
    role_arn: str | None,
    desired_count: int | None,
    min_healthy_percent: int | None,
    max_percent: int | None,
    circuit_breaker: bool,
    keep_revisions: int | None,
    env: tuple[str, ...],
    env_files: tuple[str, ...],
    secrets: tuple[str, ...],
    secret_files: tuple[str, ...],
    replace_env: bool,
    pin_digest: bool,
    dry_run: bool,
    base: str,
    as_json: bool,
) -> None:
    """Put new images (and environment variables or secrets) into containers of an existing
    service and follow the rollout.

    An image may be a repository plus a version rule, REPOSITORY:{RULE}: a range such as
    '>=1.4 <2', 'channel:beta', 're:^1\\.4\\.' or 'latest', resolved against ECR now."""
    settings = _container_settings(
        env, env_files, secrets, secret_files=secret_files, replace=replace_env
    )

    try:
        updates = tuple(ImageUpdate.parse(text) for text in images)
    except ValidationError as exc:
        _usage_error("--image: " + "; ".join(describe_validation_error(exc)))
    except ValueError as exc:
        _usage_error(f"--image: {exc}")
    try:
        jobs = [
            UpdateServiceJob(
                cluster=cluster,
                service=service,
                images=updates,
                family=family,
                wait=not no_wait,
                timeout_seconds=timeout,
                rollback=not no_rollback,
                force_new_deployment=force_new_deployment,
                role_arn=role_arn,
                desired_count=desired_count,
                minimum_healthy_percent=min_healthy_percent,
                maximum_percent=max_percent,
                circuit_breaker=circuit_breaker,
                keep_revisions=keep_revisions,
                settings=settings,
                base="service" if base == "service" else "family",
            )
            for service in services
        ]
    except ValidationError as exc:
        _usage_error("; ".join(describe_validation_error(exc)))
    if dry_run:
        from producers.contract.releases import ReleaseJob

        _show_plan(ReleaseJob(waves=[jobs], fail_fast=False), pin_digest, as_json)
    _submit_jobs(jobs, timeout=timeout, no_wait=no_wait, as_json=as_json, pin_digest=pin_digest)


def _submit_jobs(
    jobs: list[Any], *, timeout: int, no_wait: bool, as_json: bool, pin_digest: bool = True
) -> NoReturn:
    """One job as a deployment; several (one per --service) as a release of one wave. Version
    rules are resolved once for all of them, so every service gets the same version."""
    if len(jobs) == 1:
        _submit(_resolved(jobs[0], pin_digest), no_wait=no_wait, as_json=as_json)
    from producers.contract.releases import ReleaseJob

    try:
        release = ReleaseJob(waves=[jobs], fail_fast=False, timeout_seconds=timeout)
    except ValidationError as exc:
        _usage_error("; ".join(describe_validation_error(exc)))
    _submit_release(_resolved(release, pin_digest), no_wait=no_wait, as_json=as_json)


def _show_plan(job: Any, pin_digest: bool, as_json: bool) -> NoReturn:
    """Print what the job or release would change and exit: 0, or 1 when a plan has an error."""
    from producers.client import ConveyorUnavailableError
    from producers.contract.versions import VersionRuleError

    client = _client()
    try:
        if not client.consumers():
            _unavailable(_no_consumer(client, "to compute the plan"))
        plans = client.plan(job, pin_digest=pin_digest)
    except VersionRuleError as exc:
        _usage_error(str(exc))
    except ConveyorUnavailableError as exc:
        _unavailable(str(exc))
    if as_json:
        click.echo(json.dumps(plans, indent=2, sort_keys=True))
    else:
        for plan in plans:
            click.echo(_plan_text(plan))
    sys.exit(EXIT_FAILED if any("error" in p for p in plans) else EXIT_OK)


def _plan_text(plan: dict[str, Any]) -> str:
    """A plan for people: one block per service."""
    head = f"{plan['cluster']}/{plan['service']}"
    if "error" in plan:
        return f"{head}: cannot plan: {plan['error']}"
    if "stack" in plan:
        lines = [f"{head}: {plan['operation']} stack {plan['stack']}"]
        for change in plan.get("changes", []):
            replace = " (replacement)" if change.get("replacement") == "True" else ""
            lines.append(f"  {change['action']} {change['logical_id']} {change['type']}{replace}")
        if not plan.get("changes"):
            lines.append(f"  no change ({plan.get('reason') or 'nothing to do'})")
        lines += _version_lines(plan)
        return "\n".join(lines)
    lines = [f"{head} (runs {plan.get('current_task_definition')})"]
    revision = plan.get("task_definition")
    if revision is None:
        lines.append("  task definition: unchanged (a restart)")
    else:
        lines.append(
            f"  task definition: new revision of {revision['family']} from {revision['base']}"
        )
        if revision.get("base_reason"):
            lines.append(f"    base: {revision['base_reason']}")
        for field in revision["fields"]:
            if "before" in field:
                lines.append(f"    {field['field']}: {field['before']} -> {field['after']}")
            else:
                lines.append(f"    {field['field']}: changed (value not shown)")
        for change in revision["settings"]:
            lines.append(f"    {change}")
        for dropped in revision["dropped_fields"]:
            lines.append(f"    {dropped}: not copied (unknown to this SDK)")
    for change in plan.get("service_changes", []):
        lines.append(f"  service {change['field']}: {change['before']} -> {change['after']}")
    lines += _version_lines(plan)
    return "\n".join(lines)


def _version_lines(plan: dict[str, Any]) -> list[str]:
    # A pinned image already ends with its digest: print it once.
    return [
        f"  version {v['container']}: {{{v['rule']}}} -> {v['image']}"
        + ("" if str(v["image"]).endswith(f"@{v['digest']}") else f" ({v['digest']})")
        for v in plan.get("versions", [])
    ]


def _resolved(job: Any, pin_digest: bool) -> Any:
    """The job or release with its version rules resolved (exit 2 when one matches nothing)."""
    from producers.contract.versions import VersionRuleError

    try:
        return _client().resolve_versions(job, pin_digest=pin_digest)
    except VersionRuleError as exc:
        _usage_error(f"{exc} (nothing was enqueued)")


@main.command()
@click.option("--cluster", required=True, help="ECS cluster name or ARN.")
@click.option(
    "--service",
    "services",
    multiple=True,
    required=True,
    help="ECS service name or ARN; repeat it to restart several services at once (one release).",
)
@click.option(
    "--timeout",
    type=int,
    default=1800,
    show_default=True,
    help=f"Seconds the rollout may take ({MIN_TIMEOUT_SECONDS}-{MAX_TIMEOUT_SECONDS}).",
)
@click.option("--no-wait", is_flag=True, help="Print the deployment id and return at once.")
@click.option("--role-arn", default=None, help="IAM role to assume (cross-account).")
@click.option("--json", "as_json", is_flag=True, help="Print the final record as JSON.")
def restart(
    cluster: str,
    services: tuple[str, ...],
    timeout: int,
    no_wait: bool,
    role_arn: str | None,
    as_json: bool,
) -> None:
    """Replace a service's tasks with new ones on the revision it runs, and follow the rollout.

    No new revision is registered. There is nothing to roll back to: a restart whose new tasks
    fail ends failed, with ECS's circuit breaker (if on) keeping the old tasks.
    """
    try:
        jobs = [
            UpdateServiceJob(
                cluster=cluster,
                service=service,
                images=(),
                force_new_deployment=True,
                wait=not no_wait,
                timeout_seconds=timeout,
                role_arn=role_arn,
            )
            for service in services
        ]
    except ValidationError as exc:
        _usage_error("; ".join(describe_validation_error(exc)))
    _submit_jobs(jobs, timeout=timeout, no_wait=no_wait, as_json=as_json)


def _container_settings(
    env: tuple[str, ...],
    env_files: tuple[str, ...],
    secrets: tuple[str, ...],
    *,
    secret_files: tuple[str, ...] = (),
    replace: bool,
) -> tuple[Any, ...]:
    """--env, --env-file, --secret and --secret-file as one ContainerSettings per container
    (exit 2 on a bad one, naming the flag and the name, never the value)."""
    from producers.contract.jobs import ContainerSettings
    from producers.envfiles import EnvFileError, read_env_file

    wanted: dict[str, dict[str, dict[str, str]]] = {}

    def entry(container: str) -> dict[str, dict[str, str]]:
        return wanted.setdefault(container, {"environment": {}, "secrets": {}})

    # Files first, so that a variable also given by a flag takes the flag's value.
    for flag, items, kind, line_holds in (
        ("--env-file", env_files, "environment", "NAME=VALUE"),
        ("--secret-file", secret_files, "secrets", "NAME=REFERENCE"),
    ):
        for text in items:
            container, sep, path = text.partition("=")
            if not sep or not container or not path:
                _usage_error(f"{flag} {text!r}: give CONTAINER=PATH")
            try:
                found = read_env_file(Path(path), line_holds=line_holds)
            except EnvFileError as exc:
                _usage_error(f"{flag}: {exc}")
            if replace and not found:
                # Replace leaves a kind with nothing given as it is: an empty file would not
                # empty the container's list, as its author may expect.
                _usage_error(
                    f"{flag}: {path} has no variables, and --replace-env replaces only a kind "
                    "that is given; give the variables to keep, or drop --replace-env"
                )
            entry(container.strip())[kind].update(found)
    for flag, items, kind in (("--env", env, "environment"), ("--secret", secrets, "secrets")):
        for text in items:
            target, sep, value = text.partition("=")
            container, colon, name = target.partition(":")
            if not sep or not colon or not container or not name:
                shown = target if colon else "…"
                _usage_error(f"{flag} {shown}=…: give CONTAINER:NAME=VALUE")
            entry(container.strip())[kind][name.strip()] = value
    try:
        return tuple(
            ContainerSettings(
                container=container,
                mode="replace" if replace else "append",
                environment=values["environment"],
                secrets=values["secrets"],
            )
            for container, values in wanted.items()
        )
    except ValidationError as exc:
        _usage_error("; ".join(describe_validation_error(exc)))


def _no_consumer(client: Any, what: str) -> str:
    """Why no job can be accepted: no live worker consumes the fleet's queue."""
    queue = client.settings.queue
    others = sorted({q for w in client.workers() for q in w.queues})
    seen = f"; the live workers consume only {', '.join(others)}" if others else " (no heartbeat)"
    return (
        f"no Conveyor worker consuming queue {queue!r} is alive on "
        f"{client.settings.redis_display}{seen}; start one with `celery -A worker.app worker` "
        f"and CONVEYOR_QUEUE={queue} {what}"
    )


def _enqueue(enqueue: Callable[[Any], Any]) -> tuple[Any, Any]:
    """Make a client and run ``enqueue`` with it, only when a worker is alive (exit 3 if not).

    Returns the client and what ``enqueue`` returned.
    """
    from producers.client import ConveyorUnavailableError

    client = _client()
    try:
        if not client.consumers():
            _unavailable(_no_consumer(client, "(nothing was enqueued)"))
        return client, enqueue(client)
    except ConveyorUnavailableError as exc:
        _unavailable(str(exc))


def _submit(job: Any, *, no_wait: bool, as_json: bool) -> NoReturn:
    """Enqueue a validated job (only when a worker is alive), then print its id or follow it."""
    client, record = _enqueue(lambda c: c.enqueue(job))
    if no_wait:
        if as_json:
            _print_record(record, True)
        else:
            click.echo(record.id)
        sys.exit(EXIT_OK)
    click.echo(f"deployment {record.id} queued", err=True)
    _follow(client, record.id, as_json)


def _release_exit_code(release: Any) -> int:
    return {
        "succeeded": EXIT_OK,
        "failed": EXIT_FAILED,
        "cancelled": EXIT_CANCELLED,
    }.get(release.state.value, EXIT_PENDING)


def _print_release(client: Any, release: Any, as_json: bool) -> None:
    from producers.client import ConveyorUnavailableError
    from producers.views import release_view

    try:
        if as_json:
            click.echo(json.dumps(release_view(client, release), indent=2, sort_keys=True))
            return
        records = client.release_deployments(release)
    except ConveyorUnavailableError as exc:
        _unavailable(str(exc))
    ids = [i for wave in release.waves for i in wave]
    waves = {i: n for n, wave in enumerate(release.waves, start=1) for i in wave}
    title = f"release {release.id}" + (f" ({release.name})" if release.name else "")
    click.echo(f"{title}: {release.state.value} · wave {release.wave + 1}/{len(release.waves)}")
    counts = ", ".join(f"{n} {state}" for state, n in sorted(release.summary().items()))
    click.echo(f"  summary   {counts}")
    if release.reason:
        click.echo(f"  reason    {release.reason}")
    for deployment_id, record in zip(ids, records, strict=True):
        job = release.jobs[deployment_id]
        state = record.state.value if record else "pending"
        line = f"  wave {waves[deployment_id]}  {job['cluster']}/{job['service']}  {state}"
        line += f"  {deployment_id}"
        if record is not None and record.reason and state not in ("succeeded", "running"):
            line += f"  ({record.reason[:120]})"
        click.echo(line)


def _follow_release(client: Any, release_id: str, as_json: bool) -> NoReturn:
    from producers.client import ConveyorUnavailableError, DeploymentNotFoundError

    def progress(release: Any) -> None:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(release.summary().items()))
        click.echo(
            f"[{release.id[:12]}] {release.state.value} · wave {release.wave + 1}/"
            f"{len(release.waves)} · {counts}",
            err=True,
        )

    try:
        release = client.wait_release(release_id, on_progress=progress)
    except KeyboardInterrupt:
        click.echo(
            f"interrupted; release {release_id} goes on. Follow it with "
            f"`conveyor wait {release_id}`.",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    except (ConveyorUnavailableError, DeploymentNotFoundError) as exc:
        _unavailable(str(exc))
    _print_release(client, release, as_json)
    sys.exit(_release_exit_code(release))


def _submit_release(release: Any, *, no_wait: bool, as_json: bool) -> NoReturn:
    """Enqueue a validated release (only when a worker is alive), then print or follow it."""
    client, record = _enqueue(lambda c: c.release(release))
    if no_wait:
        if as_json:
            _print_release(client, record, True)
        else:
            click.echo(record.id)
        sys.exit(EXIT_OK)
    count = sum(len(w) for w in record.waves)
    click.echo(
        f"release {record.id} queued: {count} service(s) in {len(record.waves)} wave(s)", err=True
    )
    _follow_release(client, record.id, as_json)


@main.command()
@click.option(
    "-f",
    "--file",
    "release_file",
    default=None,
    type=click.Path(path_type=Path),
    help="The release, YAML or JSON (see docs/releases.md).",
)
@click.option(
    "--plan",
    "plan_path",
    default=None,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Deploy a plan written by `conveyor plan --out` exactly (its digests), refused if a "
    "service moved since; with -f when its jobs set environment or secrets.",
)
@click.option("--no-wait", is_flag=True, help="Print the release id and return at once.")
@click.option(
    "--fail-fast/--continue-on-failure",
    default=None,
    help="Stop at a failed wave (default), or go on with the next (overrides the file).",
)
@click.option(
    "--pin-digest/--tag-only",
    default=True,
    help="A resolved version rule deploys REPOSITORY:TAG@DIGEST (default), or only the tag.",
)
@click.option("--dry-run", is_flag=True, help="Show what each service would get; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the final record as JSON.")
def release(
    release_file: Path | None,
    plan_path: Path | None,
    no_wait: bool,
    fail_fast: bool | None,
    pin_digest: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Deploy a set of services, wave after wave, and follow the release to a verdict."""
    if plan_path is not None:
        if dry_run:
            _usage_error("--plan: a plan file is already a dry run; drop --dry-run")
        planned = _release_from_plan(plan_path, release_file, fail_fast)
        _submit_release(planned, no_wait=no_wait, as_json=as_json)
    if release_file is None:
        _usage_error("give the release: -f RELEASE.yaml, or --plan FILE from `conveyor plan --out`")
    job = _read_release(release_file, fail_fast)
    if dry_run:
        _show_plan(job, pin_digest, as_json)
    _submit_release(_resolved(job, pin_digest), no_wait=no_wait, as_json=as_json)


@main.command()
@click.option(
    "-f",
    "--file",
    "release_file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Release file (YAML or JSON).",
)
@click.option(
    "--pin-digest/--tag-only",
    default=True,
    help="A resolved version rule deploys REPOSITORY:TAG@DIGEST (default), or only the tag.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the plan to this file, for `conveyor release --plan FILE` (no secret "
    "values are written).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plans as JSON.")
def plan(release_file: Path, pin_digest: bool, out: Path | None, as_json: bool) -> None:
    """Show what a release would change, service by service, without changing anything
    (the same as `conveyor release -f FILE --dry-run`). With --out, the plan is written to a
    file that `conveyor release --plan` deploys exactly: the same digests, refused if a service
    moved in between."""
    job = _read_release(release_file, None)
    if out is None:
        _show_plan(job, pin_digest, as_json)
    if not pin_digest:
        _usage_error("--out: a plan file pins the digests its rules resolved to; drop --tag-only")
    from producers.planfile import PlanFileError, plan_file

    resolved = _resolved(job, pin_digest)
    plans = _plans(resolved)
    _print_plans(plans, as_json)
    try:
        written = plan_file(resolved, plans, str(release_file))
    except PlanFileError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    try:
        out.write_text(json.dumps(written, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        _usage_error(f"--out {out}: cannot write it ({exc.strerror}); give a writable path")
    click.echo(f"plan written to {out}; deploy it with: conveyor release --plan {out}", err=True)
    sys.exit(EXIT_OK)


def _read_release(release_file: Path, fail_fast: bool | None) -> Any:
    """The release file as a validated ReleaseJob (exit 2 naming the field when not)."""
    from producers.contract.fargate_spec import SpecError, load_spec
    from producers.contract.releases import ReleaseJob
    from producers.envfiles import EnvFileError, expand_env_files

    try:
        data = expand_env_files(load_spec(release_file), release_file.parent)
        if fail_fast is not None:
            data["fail_fast"] = fail_fast
        return ReleaseJob.model_validate(data)
    except (SpecError, EnvFileError) as exc:
        _usage_error(str(exc))
    except ValidationError as exc:
        _usage_error(
            f"{release_file}: invalid release:\n  " + "\n  ".join(describe_validation_error(exc))
        )


def _plans(job: Any) -> list[dict[str, Any]]:
    """The workers' plans of a job or release whose rules are resolved (exit 3 when none
    answers)."""
    from producers.client import ConveyorUnavailableError

    client = _client()
    try:
        if not client.consumers():
            _unavailable(_no_consumer(client, "to compute the plan"))
        plans: list[dict[str, Any]] = client.plan(job)
    except ConveyorUnavailableError as exc:
        _unavailable(str(exc))
    return plans


def _print_plans(plans: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(plans, indent=2, sort_keys=True))
    else:
        for one in plans:
            click.echo(_plan_text(one))


def _release_from_plan(plan_path: Path, release_file: Path | None, fail_fast: bool | None) -> Any:
    """The release a plan file holds, with settings from the release file, after checking
    with a fresh plan that no service moved since (exit 2 naming what moved)."""
    from producers.planfile import PlanFileError, load_plan, moved, pin_bases, with_settings

    try:
        data = json.loads(plan_path.read_text())
    except OSError as exc:
        _usage_error(f"--plan {plan_path}: cannot read it ({exc.strerror})")
    except ValueError:
        _usage_error(f"--plan {plan_path}: not JSON; write it with `conveyor plan --out`")
    try:
        planned, services = load_plan(data, str(plan_path))
        given = _read_release(release_file, None) if release_file is not None else None
        release = with_settings(planned, given, str(plan_path), str(release_file or ""))
    except PlanFileError as exc:
        _usage_error(str(exc))
    if fail_fast is not None:
        release = release.model_copy(update={"fail_fast": fail_fast})
    changes = moved(services, _plans(release))
    if changes:
        _usage_error(
            f"{plan_path}: the world moved since the plan; nothing was deployed:\n  "
            + "\n  ".join(changes)
            + "\nReview a new plan: conveyor plan -f RELEASE --out FILE"
        )
    # Only now: the fresh plan above must see where each base would come from without the pin.
    return pin_bases(release, services)


def _load_release(client: Any, release_id: str) -> Any:
    from producers.client import (
        ConveyorUnavailableError,
        DeploymentLostError,
        DeploymentNotFoundError,
    )

    try:
        return client.release_status(release_id)
    except DeploymentNotFoundError as exc:
        _usage_error(str(exc))
    except (ConveyorUnavailableError, DeploymentLostError) as exc:
        _unavailable(str(exc))


def _load(client: Any, deployment_id: str) -> DeploymentRecord:
    from producers.client import (
        ConveyorUnavailableError,
        DeploymentLostError,
        DeploymentNotFoundError,
    )

    try:
        record: DeploymentRecord = client.status(deployment_id)
    except DeploymentNotFoundError as exc:
        _usage_error(str(exc))
    except (ConveyorUnavailableError, DeploymentLostError) as exc:
        _unavailable(str(exc))
    return record


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the workers as JSON.")
@click.option(
    "--here",
    is_flag=True,
    help="Only workers on this host (names ending in @HOSTNAME); exit 3 when there is none. "
    "A container's health check.",
)
def workers(as_json: bool, here: bool) -> None:
    """List the live workers (by their heartbeats): name, queues, concurrency, last seen."""
    import socket
    import time

    from producers.client import ConveyorUnavailableError

    client = _client()
    try:
        found = client.workers()
    except ConveyorUnavailableError as exc:
        _unavailable(str(exc))
    if here:
        suffix = "@" + socket.gethostname()
        found = [w for w in found if w.name.endswith(suffix)]
    if as_json:
        click.echo(json.dumps([w.model_dump(mode="json") for w in found], indent=2))
    elif not found:
        click.echo("no live workers" + (" on this host" if here else ""), err=True)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("worker", "queues", "concurrency", "pid", "up", "last seen")
        now = time.time()
        for w in found:
            table.add_row(
                w.name,
                ", ".join(w.queues),
                str(w.concurrency),
                str(w.pid),
                f"{now - w.started_at:.0f} s",
                f"{now - w.seen_at:.0f} s ago",
            )
        Console().print(table)
    sys.exit(EXIT_OK if found else EXIT_UNAVAILABLE)


_STATE_STYLE = {
    "succeeded": "green",
    "running": "cyan",
    "queued": "blue",
    "failed": "bold red",
    "rolled_back": "red",
    "cancelled": "yellow",
    "superseded": "dim",
}
_LIST_STATES = sorted({*(s.value for s in DeploymentState), "running"})


def _age(seconds: float) -> str:
    """A short human duration: 42 s, 7 min, 3 h, 2 d."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


@main.command(name="list")
@click.option(
    "--service", "services", multiple=True, help="Only these services (repeatable; 'api-*' works)."
)
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(_LIST_STATES),
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
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
def list_(
    services: tuple[str, ...],
    states: tuple[str, ...],
    clusters: tuple[str, ...],
    only: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List recent deployments and releases, newest first."""
    import time

    from producers.client import ConveyorUnavailableError
    from producers.views import list_view

    client = _client()
    try:
        data = list_view(
            client, services=services, states=states, clusters=clusters, only=only, limit=limit
        )
    except ConveyorUnavailableError as exc:
        _unavailable(str(exc))
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    deployments = [DeploymentRecord.model_validate(d) for d in data["deployments"]]
    releases = [ReleaseRecord.model_validate({**r, "jobs": {}}) for r in data["releases"]]
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Piped output is read by people with grep: wide rows rather than wrapped cells.
    console = Console(width=None if sys.stdout.isatty() else 240)
    now = time.time()
    if only != "releases":
        table = Table("deployment", "service", "state", "step", "age", "took", "latest", title=None)
        for r in deployments:
            took = (r.finished_at or now) - r.created_at
            latest = r.reason if r.terminal and r.reason else r.progress.latest_event or ""
            # Names and ECS events are untrusted text: Text() keeps rich from reading markup.
            table.add_row(
                Text(r.id),
                Text(f"{r.cluster}/{r.service}"),
                Text(r.state.value, style=_STATE_STYLE.get(r.state.value, "")),
                Text("" if r.terminal else r.step.value),
                _age(now - r.created_at),
                _age(took),
                Text(latest[:80]),
            )
        if deployments:
            console.print(table)
        else:
            click.echo("no deployments match", err=True)
    for release_id in data["unreadable_releases"]:
        click.echo(
            f"release {release_id}: its record cannot be read (moved aside, or written by a "
            f"newer Conveyor); see `conveyor status {release_id}`",
            err=True,
        )
    if releases:
        table = Table("release", "name", "state", "wave", "deployments", "age")
        for rel in releases:
            counts = ", ".join(f"{n} {state}" for state, n in sorted(rel.summary().items()))
            table.add_row(
                Text(rel.id),
                Text(rel.name),
                Text(rel.state.value, style=_STATE_STYLE.get(rel.state.value, "")),
                f"{rel.wave + 1}/{len(rel.waves)}",
                Text(counts),
                _age(now - rel.created_at),
            )
        console.print(table)


@main.command()
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--tls-cert",
    metavar="FILE",
    help="PEM certificate (chain): serve HTTPS [CONVEYOR_DASHBOARD_TLS_CERT].",
)
@click.option(
    "--tls-key", metavar="FILE", help="PEM private key of --tls-cert [CONVEYOR_DASHBOARD_TLS_KEY]."
)
@click.option(
    "--insecure-http",
    is_flag=True,
    default=None,
    help="Serve plain HTTP on an address other than loopback: only behind a proxy that "
    "terminates TLS [CONVEYOR_DASHBOARD_INSECURE_HTTP].",
)
def dashboard(
    address: str,
    port: int,
    tls_cert: str | None,
    tls_key: str | None,
    insecure_http: bool | None,
) -> None:
    """Serve the read-only deployments page (needs CONVEYOR_DASHBOARD_BASIC_AUTH).

    Plain HTTP only on loopback: elsewhere give --tls-cert and --tls-key, or --insecure-http
    behind a proxy that terminates TLS (basic authentication sends the password each request).
    """
    from config.settings import Settings
    from producers.client import ConveyorClient
    from producers.dashboard import (
        AUTH_VARIABLE,
        DashboardConfigError,
        check_exposure,
        is_loopback,
        make_server,
        parse_credentials,
        tls_context,
    )

    try:
        settings = Settings()
    except ValidationError as exc:
        _usage_error("invalid settings: " + "; ".join(describe_validation_error(exc)))
    secret = settings.dashboard_basic_auth
    cert = tls_cert or settings.dashboard_tls_cert
    key = tls_key or settings.dashboard_tls_key
    allow_http = settings.dashboard_insecure_http if insecure_http is None else insecure_http
    try:
        credentials = parse_credentials(secret.get_secret_value() if secret else None)
        context = tls_context(cert, key)
        check_exposure(address, context is not None, allow_http)
    except DashboardConfigError as exc:
        _usage_error(str(exc))
    try:
        server = make_server(ConveyorClient(settings), address, port, credentials, context)
    except OSError as exc:
        _usage_error(f"cannot listen on {address}:{port}: {exc.strerror or exc}")
    bound = server.server_address[1]
    scheme = "https" if context is not None else "http"
    click.echo(f"dashboard on {scheme}://{address}:{bound}/ (Ctrl-C stops it)", err=True)
    if context is None and not is_loopback(address):
        click.echo(
            f"conveyor: warning: plain HTTP on {address} (--insecure-http): {AUTH_VARIABLE}'s "
            "passwords cross the network in clear unless a proxy in front terminates TLS",
            err=True,
        )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    finally:
        server.server_close()


@main.command()
@click.argument("deployment_id")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
def status(deployment_id: str, as_json: bool) -> None:
    """Show a deployment's or a release's record."""
    if is_release_id(deployment_id):
        client = _client()
        found = _load_release(client, deployment_id)
        _print_release(client, found, as_json)
        sys.exit(_release_exit_code(found))
    record = _load(_client(), deployment_id)
    _print_record(record, as_json)
    sys.exit(_exit_code(record))


@main.command()
@click.argument("deployment_id")
@click.option("--no-wait", is_flag=True, help="Return once the request is recorded.")
@click.option("--json", "as_json", is_flag=True, help="Print the final record as JSON.")
def cancel(deployment_id: str, no_wait: bool, as_json: bool) -> None:
    """Stop a queued or running deployment (a rollout under way is rolled back)."""
    from producers.client import ConveyorUnavailableError, DeploymentNotFoundError

    client = _client()
    if is_release_id(deployment_id):
        found = _load_release(client, deployment_id)
        if found.terminal:
            click.echo(f"release {deployment_id} had already ended: {found.state.value}", err=True)
            _print_release(client, found, as_json)
            sys.exit(_release_exit_code(found))
        try:
            client.cancel_release(deployment_id)
        except DeploymentNotFoundError as exc:
            _usage_error(str(exc))
        except ConveyorUnavailableError as exc:
            _unavailable(str(exc))
        if no_wait:
            click.echo(f"cancel requested for {deployment_id}", err=True)
            sys.exit(EXIT_OK)
        _follow_release(client, deployment_id, as_json)
    record = _load(client, deployment_id)
    if record.terminal:
        click.echo(f"deployment {deployment_id} had already ended: {record.state.value}", err=True)
        _print_record(record, as_json)
        sys.exit(_exit_code(record))
    try:
        client.cancel(deployment_id)
    except DeploymentNotFoundError as exc:
        _usage_error(str(exc))
    except ConveyorUnavailableError as exc:
        _unavailable(str(exc))
    if no_wait:
        click.echo(f"cancel requested for {deployment_id}", err=True)
        sys.exit(EXIT_OK)
    _follow(client, deployment_id, as_json)


@main.command()
@click.argument("deployment_id")
@click.option("--json", "as_json", is_flag=True, help="Print the final record as JSON.")
def wait(deployment_id: str, as_json: bool) -> None:
    """Follow a deployment, or a release, until it ends."""
    client = _client()
    if is_release_id(deployment_id):
        _load_release(client, deployment_id)
        _follow_release(client, deployment_id, as_json)
    _load(client, deployment_id)
    _follow(client, deployment_id, as_json)


def _load_fargate_job(spec_file: Path) -> Any:
    from producers.contract.fargate_spec import FargateServiceJob, SpecError, load_spec
    from producers.envfiles import EnvFileError, expand_env_files

    try:
        return FargateServiceJob.model_validate(
            expand_env_files(load_spec(spec_file), spec_file.parent)
        )
    except (SpecError, EnvFileError) as exc:
        _usage_error(str(exc))
    except ValidationError as exc:
        _usage_error(
            f"{spec_file}: invalid spec:\n  " + "\n  ".join(describe_validation_error(exc))
        )


@main.group()
def fargate() -> None:
    """Fargate services owned by Conveyor, each one CloudFormation stack."""


_SPEC = click.option(
    "-f",
    "--file",
    "spec_file",
    required=True,
    type=click.Path(path_type=Path),
    help="The service spec, YAML or JSON (see deploy/examples/fargate-demo.yaml).",
)


@fargate.command()
@_SPEC
def render(spec_file: Path) -> None:
    """Print the CloudFormation template for a spec (JSON); needs no AWS access."""
    from producers.contract.stack_template import render_template

    job = _load_fargate_job(spec_file)
    click.echo(json.dumps(render_template(job), indent=2))


@fargate.command()
@_SPEC
@click.option("--no-wait", is_flag=True, help="Print the deployment id and return at once.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show the stack's change set (created, read and deleted); change nothing.",
)
@click.option(
    "--pin-digest/--tag-only",
    default=True,
    help="A resolved version rule deploys REPOSITORY:TAG@DIGEST (default), or only the tag.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the final record as JSON.")
def apply(spec_file: Path, no_wait: bool, dry_run: bool, pin_digest: bool, as_json: bool) -> None:
    """Create or update the service's stack and follow it to a verdict.

    A container's image may be REPOSITORY:{RULE} (see `conveyor update --help`)."""
    job = _load_fargate_job(spec_file)
    if dry_run:
        _show_plan(job, pin_digest, as_json)
    _submit(_resolved(job, pin_digest), no_wait=no_wait, as_json=as_json)


@main.command("local-aws")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=4566, show_default=True, help="0 picks a free port.")
@click.option(
    "--rollout-seconds",
    type=float,
    default=10.0,
    show_default=True,
    help="How long a simulated healthy rollout takes.",
)
@click.option("--seed", type=click.Choice(["demo"]), default=None, help="Create a demo world.")
def local_aws(host: str, port: int, rollout_seconds: float, seed: str | None) -> None:
    """Serve a local AWS (ECS, ECR, ELBv2, EC2, STS, IAM, CloudFormation) with real rollouts."""
    try:
        from localaws.server import serve
    except ImportError as exc:
        _usage_error(
            "the local AWS is not installed; it is a distribution of its own in Conveyor's "
            f"source tree: pip install -e ./localaws (make install does this) ({exc})"
        )
    serve(host=host, port=port, rollout_seconds=rollout_seconds, seed=seed)
