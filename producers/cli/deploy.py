"""Commands that deploy services: ``update``, ``restart``, ``release`` and ``plan``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from producers.cli import core, options, rendering
from producers.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from producers.contract.jobs import PreDeployTask
    from producers.contract.strategy import Strategy, ThresholdType


@click.command()
@options.cluster
@options.services(
    "ECS service name or ARN; repeat it to deploy the same images to several services "
    "at once (one release)."
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
@options.timeout
@options.no_wait()
@options.wait_until
@click.option("--no-rollback", is_flag=True, help="On failure, leave the service as it is.")
@click.option("--force-new-deployment", is_flag=True, help="Restart tasks even if unchanged.")
@options.role_arn
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
@options.strategy_options
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
@options.pin_digest
@options.dry_run(
    "Show what would change (revision diff, service changes, versions); change nothing."
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
@click.option(
    "--bake-gate",
    "bake_gate_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="FILE",
    help="A metric gate (YAML or JSON, docs/gates.md) measured while a canary or linear "
    "deployment bakes with production traffic partly shifted; if it fails, ECS is asked to "
    "roll back.",
)
@click.option(
    "--pre-deploy-container",
    default=None,
    metavar="NAME",
    help="Before the service changes, run a one-off task (a migration) on the new revision and "
    "go on only if this container exits 0; it runs as the service's tasks do.",
)
@click.option(
    "--pre-deploy-command",
    default=None,
    metavar="'CMD ARGS'",
    help="The pre-deploy container's command, split as a shell would (default: the image's).",
)
@click.option(
    "--pre-deploy-timeout",
    type=int,
    default=None,
    metavar="SECONDS",
    help="How long the pre-deploy task may run (default 600).",
)
@options.override_freeze
@options.as_json()
def update(
    cluster: str,
    services: tuple[str, ...],
    images: tuple[str, ...],
    family: str | None,
    timeout: int | None,
    no_wait: bool,
    until_stage: str | None,
    no_rollback: bool,
    force_new_deployment: bool,
    role_arn: str | None,
    desired_count: int | None,
    min_healthy_percent: int | None,
    max_percent: int | None,
    circuit_breaker: bool,
    strategy: Strategy | None,
    bake_minutes: int | None,
    canary_percent: float | None,
    canary_bake_minutes: int | None,
    linear_step_percent: float | None,
    linear_step_bake_minutes: int | None,
    alarms: tuple[str, ...],
    circuit_breaker_threshold: int | None,
    circuit_breaker_threshold_type: ThresholdType | None,
    keep_revisions: int | None,
    env: tuple[str, ...],
    env_files: tuple[str, ...],
    secrets: tuple[str, ...],
    secret_files: tuple[str, ...],
    replace_env: bool,
    pin_digest: bool,
    dry_run: bool,
    base: str,
    bake_gate_file: Path | None,
    pre_deploy_container: str | None,
    pre_deploy_command: str | None,
    pre_deploy_timeout: int | None,
    as_json: bool,
) -> None:
    """Put new images (and environment variables or secrets) into containers of an existing
    service and follow the rollout.

    An image may be a repository plus a version rule, REPOSITORY:{RULE}: a range such as
    '>=1.4 <2', 'channel:beta', 're:^1\\.4\\.' or 'latest', resolved against ECR now."""
    from pydantic import ValidationError

    from producers.contract.jobs import ImageUpdate, UpdateServiceJob, describe_validation_error

    settings = container_settings(
        env, env_files, secrets, secret_files=secret_files, replace=replace_env
    )
    bake_gate = None if bake_gate_file is None else load_bake_gate(bake_gate_file)
    pre_deploy = pre_deploy_task(pre_deploy_container, pre_deploy_command, pre_deploy_timeout)

    try:
        updates = tuple(ImageUpdate.parse(text) for text in images)
    except ValidationError as exc:
        core.invalid(exc, "--image: ")
    except ValueError as exc:
        core.usage_error(f"--image: {exc}")
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
                strategy=strategy,
                bake_minutes=bake_minutes,
                canary_percent=canary_percent,
                canary_bake_minutes=canary_bake_minutes,
                linear_step_percent=linear_step_percent,
                linear_step_bake_minutes=linear_step_bake_minutes,
                alarms=alarms,
                circuit_breaker_threshold=circuit_breaker_threshold,
                circuit_breaker_threshold_type=circuit_breaker_threshold_type,
                keep_revisions=keep_revisions,
                settings=settings,
                base="service" if base == "service" else "family",
                bake_gate=bake_gate,
                pre_deploy=pre_deploy,
            )
            for service in services
        ]
    except ValidationError as exc:
        # Named by the flags given: the strategy options are fields of the job.
        problems = (
            options.as_flags(line).replace("bake_gate: ", "--bake-gate: ", 1)
            for line in describe_validation_error(exc)
        )
        core.usage_error("; ".join(problems))
    if dry_run:
        from producers.contract.releases import ReleaseJob

        core.show_plan(ReleaseJob(waves=[jobs], fail_fast=False), pin_digest, as_json)
    _submit_jobs(
        jobs,
        timeout=timeout,
        no_wait=no_wait,
        as_json=as_json,
        pin_digest=pin_digest,
        until_stage=until_stage,
    )


def load_bake_gate(path: Path) -> Any:
    """The gate in ``path`` (YAML or JSON: the gate itself, or under ``gate:``), validated;
    exit 2 naming the file and the field when it is not one."""
    import yaml
    from pydantic import ValidationError

    from producers.contract.gates import load_gate
    from producers.contract.jobs import describe_validation_error

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        core.usage_error(f"--bake-gate {path}: cannot read it ({exc.strerror or exc})")
    except yaml.YAMLError as exc:
        core.usage_error(f"--bake-gate {path}: not YAML or JSON ({exc})")
    if isinstance(raw, dict) and set(raw) == {"gate"}:
        raw = raw["gate"]
    if not isinstance(raw, dict):
        core.usage_error(f"--bake-gate {path}: give a gate (a mapping: name, a source, success)")
    try:
        return load_gate(raw)
    except ValidationError as exc:
        core.usage_error(f"--bake-gate {path}: " + "; ".join(describe_validation_error(exc)))


def pre_deploy_task(
    container: str | None, command: str | None, timeout: int | None
) -> PreDeployTask | None:
    """The job's pre-deploy task from ``--pre-deploy-*`` (None without a container); a usage
    error names the flag at fault."""
    import shlex

    from pydantic import ValidationError

    from producers.contract.jobs import PreDeployTask, describe_validation_error

    if container is None:
        if command is not None or timeout is not None:
            core.usage_error(
                "--pre-deploy-command and --pre-deploy-timeout need --pre-deploy-container NAME "
                "(the container whose exit code gates the deployment)"
            )
        return None
    try:
        argv = tuple(shlex.split(command)) if command is not None else None
    except ValueError as exc:
        core.usage_error(f"--pre-deploy-command: {exc}")
    fields: dict[str, Any] = {"container": container, "command": argv}
    if timeout is not None:
        fields["timeout_seconds"] = timeout
    try:
        return PreDeployTask(**fields)
    except ValidationError as exc:
        names = {"container": "container", "command": "command", "timeout_seconds": "timeout"}
        problems = []
        for line in describe_validation_error(exc):
            field, _, rest = line.partition(": ")
            flag = names.get(field.split(".")[0])
            problems.append(f"--pre-deploy-{flag}: {rest}" if flag else line)
        core.usage_error("; ".join(problems))


@click.command()
@options.cluster
@options.services(
    "ECS service name or ARN; repeat it to restart several services at once (one release)."
)
@options.timeout
@options.no_wait()
@options.wait_until
@options.role_arn
@options.override_freeze
@options.as_json()
def restart(
    cluster: str,
    services: tuple[str, ...],
    timeout: int | None,
    no_wait: bool,
    until_stage: str | None,
    role_arn: str | None,
    as_json: bool,
) -> None:
    """Replace a service's tasks with new ones on the revision it runs, and follow the rollout.

    No new revision is registered. There is nothing to roll back to: a restart whose new tasks
    fail ends failed, with ECS's circuit breaker (if on) keeping the old tasks.
    """
    from pydantic import ValidationError

    from producers.contract.jobs import UpdateServiceJob

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
        core.invalid(exc)
    _submit_jobs(jobs, timeout=timeout, no_wait=no_wait, as_json=as_json, until_stage=until_stage)


def _submit_jobs(
    jobs: list[Any],
    *,
    timeout: int | None,
    no_wait: bool,
    as_json: bool,
    pin_digest: bool = True,
    until_stage: str | None = None,
) -> NoReturn:
    """One job as a deployment; several (one per --service) as a release of one wave. Version
    rules are resolved once for all of them, so every service gets the same version."""
    from pydantic import ValidationError

    if until_stage is not None and no_wait:
        core.usage_error("--wait-until and --no-wait contradict each other: give one of them")
    if until_stage is not None and len(jobs) > 1:
        core.usage_error(
            "--wait-until follows one deployment: give one --service, or follow the release "
            "of several with `conveyor wait`"
        )
    if len(jobs) == 1:
        core.submit(
            core.resolved(jobs[0], pin_digest),
            no_wait=no_wait,
            as_json=as_json,
            until_stage=until_stage,
        )
    from producers.contract.releases import ReleaseJob

    try:
        release = ReleaseJob(waves=[jobs], fail_fast=False, timeout_seconds=timeout)
    except ValidationError as exc:
        core.invalid(exc)
    core.submit_release(core.resolved(release, pin_digest), no_wait=no_wait, as_json=as_json)


def container_settings(
    env: tuple[str, ...],
    env_files: tuple[str, ...],
    secrets: tuple[str, ...],
    *,
    secret_files: tuple[str, ...] = (),
    replace: bool,
) -> tuple[Any, ...]:
    """--env, --env-file, --secret and --secret-file as one ContainerSettings per container
    (exit 2 on a bad one, naming the flag and the name, never the value)."""
    from pydantic import ValidationError

    from producers.contract.jobs import ContainerSettings

    wanted: dict[str, dict[str, dict[str, str]]] = {}

    def entry(container: str) -> dict[str, dict[str, str]]:
        return wanted.setdefault(container, {"environment": {}, "secrets": {}})

    # Files first, so that a variable also given by a flag takes the flag's value.
    for flag, items, kind, line_holds in (
        ("--env-file", env_files, "environment", "NAME=VALUE"),
        ("--secret-file", secret_files, "secrets", "NAME=REFERENCE"),
    ):
        for text in items:
            # Only a file needs the parser (python-dotenv): not the common update.
            from producers.envfiles import EnvFileError, read_env_file

            container, sep, path = text.partition("=")
            if not sep or not container or not path:
                core.usage_error(f"{flag} {text!r}: give CONTAINER=PATH")
            try:
                found = read_env_file(Path(path), line_holds=line_holds)
            except EnvFileError as exc:
                core.usage_error(f"{flag}: {exc}")
            if replace and not found:
                # Replace leaves a kind with nothing given as it is: an empty file would not
                # empty the container's list, as its author may expect.
                core.usage_error(
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
                core.usage_error(f"{flag} {shown}=…: give CONTAINER:NAME=VALUE")
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
        core.invalid(exc)


@click.command()
@options.release_file("The release, YAML or JSON (see docs/releases.md).", required=False)
@click.option(
    "--plan",
    "plan_path",
    default=None,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Deploy a plan written by `conveyor plan --out` exactly (its digests), refused if a "
    "service moved since; with -f when its jobs set environment or secrets.",
)
@options.no_wait("release")
@click.option(
    "--fail-fast/--continue-on-failure",
    default=None,
    help="Stop at a failed wave (default), or go on with the next (overrides the file).",
)
@options.pin_digest
@options.dry_run("Show what each service would get; change nothing.")
@options.override_freeze
@options.as_json()
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
            core.usage_error("--plan: a plan file is already a dry run; drop --dry-run")
        planned = _release_from_plan(plan_path, release_file, fail_fast)
        core.submit_release(planned, no_wait=no_wait, as_json=as_json)
    if release_file is None:
        core.usage_error(
            "give the release: -f RELEASE.yaml, or --plan FILE from `conveyor plan --out`"
        )
    job = _read_release(release_file, fail_fast)
    if dry_run:
        core.show_plan(job, pin_digest, as_json)
    core.submit_release(core.resolved(job, pin_digest), no_wait=no_wait, as_json=as_json)


@click.command()
@options.release_file("Release file (YAML or JSON).", required=True, dir_okay=False)
@options.pin_digest
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the plan to this file, for `conveyor release --plan FILE` (no secret "
    "values are written).",
)
@options.as_json("the plans")
def plan(release_file: Path, pin_digest: bool, out: Path | None, as_json: bool) -> None:
    """Show what a release would change, service by service, without changing anything
    (the same as `conveyor release -f FILE --dry-run`). With --out, the plan is written to a
    file that `conveyor release --plan` deploys exactly: the same digests, refused if a service
    moved in between."""
    job = _read_release(release_file, None)
    if out is None:
        core.show_plan(job, pin_digest, as_json)
    if not pin_digest:
        core.usage_error(
            "--out: a plan file pins the digests its rules resolved to; drop --tag-only"
        )
    from producers.planfile import PlanFileError, plan_file

    resolved = core.resolved(job, pin_digest)
    plans = core.plans(resolved)
    rendering.print_plans(plans, as_json)
    try:
        written = plan_file(resolved, plans, str(release_file))
    except PlanFileError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(ExitCode.FAILED)
    try:
        out.write_text(json.dumps(written, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        core.usage_error(f"--out {out}: cannot write it ({exc.strerror}); give a writable path")
    click.echo(f"plan written to {out}; deploy it with: conveyor release --plan {out}", err=True)
    sys.exit(ExitCode.OK)


def _read_release(release_file: Path, fail_fast: bool | None) -> Any:
    """The release file as a validated ReleaseJob (exit 2 naming the field when not)."""
    from pydantic import ValidationError

    from producers.contract.fargate_spec import SpecError, load_spec
    from producers.contract.jobs import describe_validation_error
    from producers.contract.releases import ReleaseJob
    from producers.envfiles import EnvFileError, expand_env_files

    try:
        data = expand_env_files(load_spec(release_file), release_file.parent)
        if fail_fast is not None:
            data["fail_fast"] = fail_fast
        return ReleaseJob.model_validate(data)
    except (SpecError, EnvFileError) as exc:
        core.usage_error(str(exc))
    except ValidationError as exc:
        core.usage_error(
            f"{release_file}: invalid release:\n  " + "\n  ".join(describe_validation_error(exc))
        )


def _release_from_plan(plan_path: Path, release_file: Path | None, fail_fast: bool | None) -> Any:
    """The release a plan file holds, with settings from the release file, after checking
    with a fresh plan that no service moved since (exit 2 naming what moved)."""
    from producers.planfile import PlanFileError, load_plan, moved, pin_bases, with_settings

    try:
        data = json.loads(plan_path.read_text())
    except OSError as exc:
        core.usage_error(f"--plan {plan_path}: cannot read it ({exc.strerror})")
    except ValueError:
        core.usage_error(f"--plan {plan_path}: not JSON; write it with `conveyor plan --out`")
    try:
        planned, services = load_plan(data, str(plan_path))
        given = _read_release(release_file, None) if release_file is not None else None
        release = with_settings(planned, given, str(plan_path), str(release_file or ""))
    except PlanFileError as exc:
        core.usage_error(str(exc))
    if fail_fast is not None:
        release = release.model_copy(update={"fail_fast": fail_fast})
    changes = moved(services, core.plans(release))
    if changes:
        core.usage_error(
            f"{plan_path}: the world moved since the plan; nothing was deployed:\n  "
            + "\n  ".join(changes)
            + "\nReview a new plan: conveyor plan -f RELEASE --out FILE"
        )
    # Only now: the fresh plan above must see where each base would come from without the pin.
    return pin_bases(release, services)
