"""``conveyor fargate``: Fargate services owned by Conveyor, each one CloudFormation stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from producers.cli import core, options, rendering

_spec_file = click.option(
    "-f",
    "--file",
    "spec_file",
    required=True,
    type=click.Path(path_type=Path),
    help="The service spec, YAML or JSON (see deploy/examples/fargate-demo.yaml).",
)


def _load_fargate_job(spec_file: Path) -> Any:
    """The spec file as a validated FargateServiceJob (exit 2 naming the field when not)."""
    from pydantic import ValidationError

    from producers.contract.fargate_spec import FargateServiceJob, SpecError, load_spec
    from producers.contract.jobs import describe_validation_error
    from producers.envfiles import EnvFileError, expand_env_files

    try:
        return FargateServiceJob.model_validate(
            expand_env_files(load_spec(spec_file), spec_file.parent)
        )
    except (SpecError, EnvFileError) as exc:
        core.usage_error(str(exc))
    except ValidationError as exc:
        core.usage_error(
            f"{spec_file}: invalid spec:\n  " + "\n  ".join(describe_validation_error(exc))
        )


@click.group()
def fargate() -> None:
    """Fargate services owned by Conveyor, each one CloudFormation stack."""


@fargate.command()
@_spec_file
def render(spec_file: Path) -> None:
    """Print the CloudFormation template for a spec (JSON); needs no AWS access."""
    from producers.contract.stack_template import render_template

    job = _load_fargate_job(spec_file)
    rendering.echo_json(render_template(job), sort_keys=False)


@fargate.command()
@_spec_file
@options.no_wait()
@options.dry_run("Show the stack's change set (created, read and deleted); change nothing.")
@options.pin_digest
@options.override_freeze
@options.as_json()
def apply(spec_file: Path, no_wait: bool, dry_run: bool, pin_digest: bool, as_json: bool) -> None:
    """Create or update the service's stack and follow it to a verdict.

    A container's image may be REPOSITORY:{RULE} (see `conveyor update --help`)."""
    job = _load_fargate_job(spec_file)
    if dry_run:
        core.show_plan(job, pin_digest, as_json)
    core.submit(core.resolved(job, pin_digest), no_wait=no_wait, as_json=as_json)
