"""The job kinds live in one place: every kind has one entry on each side, and the flows that
the entries name behave alike where the contract says they do (against the fake AWS)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from pydantic import ValidationError

from producers.contract.enums import DeploymentState, JobKind, Step
from producers.contract.fargate_spec import FargateServiceJob
from producers.contract.jobs import UpdateServiceJob, load_update_job
from producers.contract.kinds import FIRST_STEP, JOB_KINDS, load_job
from producers.contract.names import STEP_TASKS
from producers.contract.records import DeploymentRecord
from tests.fakes.ecs import FakeAws
from worker.aws.gateway import AwsGateway, EcsGateway
from worker.domain.errors import InvalidJobError
from worker.kinds import WORKER_KINDS, FlowDeps, worker_kind
from worker.services.update_flow import UpdateFlow
from worker.steps import StepContext, execute

EXAMPLE = Path(__file__).parents[2] / "deploy" / "examples" / "fargate-demo.yaml"


def _job(kind: JobKind) -> dict[str, Any]:
    if kind is JobKind.CREATE_FARGATE:
        spec = yaml.safe_load(EXAMPLE.read_text())
        return FargateServiceJob.model_validate(spec).model_dump(mode="json")
    job = {"cluster": "demo", "service": "shop", "images": [{"container": "web", "image": "a:1"}]}
    return load_update_job(job).model_dump(mode="json")


def _record(kind: JobKind, step: Step) -> DeploymentRecord:
    return DeploymentRecord(
        id="k1",
        kind=kind,
        step=step,
        job=_job(kind),
        cluster="demo",
        service="shop",
        created_at=0.0,
        updated_at=0.0,
    )


def _foreign_step(kind: JobKind) -> Step:
    """A step of another kind."""
    return next(s for s in Step if s not in JOB_KINDS[kind].steps)


def test_every_kind_has_one_entry_on_each_side() -> None:
    """Each JobKind is in the contract's table and the worker's, and the two agree."""
    assert set(JOB_KINDS) == set(JobKind) == set(WORKER_KINDS)
    for kind in JobKind:
        assert JOB_KINDS[kind].kind is kind
        assert worker_kind(kind).spec is JOB_KINDS[kind]
        assert FIRST_STEP[kind] in JOB_KINDS[kind].steps


def test_every_step_belongs_to_exactly_one_kind_and_has_a_task() -> None:
    """A step names its kind; its task name is how the queue reaches it."""
    owners = [kind for kind in JobKind for _ in JOB_KINDS[kind].steps]
    steps = [step for kind in JobKind for step in JOB_KINDS[kind].steps]
    assert len(steps) == len(set(steps)) == len(Step), owners
    assert set(STEP_TASKS) == set(Step)
    for kind in JobKind:
        policy = worker_kind(kind)
        assert policy.marked_steps <= JOB_KINDS[kind].steps
        assert policy.before_change <= JOB_KINDS[kind].steps


@pytest.mark.parametrize("kind", list(JobKind))
def test_an_unknown_step_is_refused_alike_by_every_flow(kind: JobKind) -> None:
    """A record at a step its kind does not have raises InvalidJobError in every flow (the
    update flow once raised KeyError), naming the step and the kind's steps."""
    record = _record(kind, _foreign_step(kind))
    flow = worker_kind(kind).flow(FakeAws(), FlowDeps(poll_interval=5, clock=lambda: 0.0))
    with pytest.raises(InvalidJobError, match="is not a step of the job kind") as caught:
        asyncio.run(flow.run(record, record.job))
    assert record.step.value in caught.value.message
    assert JOB_KINDS[kind].first_step.value in caught.value.message


@pytest.mark.parametrize("kind", list(JobKind))
def test_a_record_at_a_foreign_step_fails_as_invalid_not_as_a_crash(kind: JobKind) -> None:
    """Through the error policy, such a record fails with the code of bad input, not as an
    internal error; nothing was changed."""
    aws = FakeAws()
    ctx = StepContext(
        store=None,  # type: ignore[arg-type]
        redis=None,  # type: ignore[arg-type]
        sender=None,  # type: ignore[arg-type]
        clock=lambda: 10.0,
        poll_interval=5,
        recovery_grace=60,
        step_time_limit=60,
        max_step_attempts=3,
    )

    async def gateway(_: DeploymentRecord) -> AwsGateway:
        return aws

    record = _record(kind, _foreign_step(kind))
    done = asyncio.run(execute(ctx, gateway, record, record.job))
    assert done.next_step is None
    assert done.record.state is DeploymentState.FAILED
    assert done.record.error is not None
    assert done.record.error.code == "InvalidJob"


def test_the_gateway_protocol_names_its_scope_and_the_fake_takes_the_batched_path() -> None:
    """``scope`` is part of the protocol (no getattr), so a fake gateway polls its rollouts in
    batches as the real one does."""
    assert "scope" in EcsGateway.__dict__
    client = redis.Redis()  # never connected: building the flow makes no call
    deps = FlowDeps(poll_interval=5, clock=lambda: 0.0, redis=client, batch_watch=True)
    flow = worker_kind(JobKind.UPDATE_EXISTING).flow(FakeAws(), deps)
    assert isinstance(flow, UpdateFlow)
    assert flow._describer is not None
    alone = worker_kind(JobKind.UPDATE_EXISTING).flow(
        FakeAws(), FlowDeps(poll_interval=5, clock=lambda: 0.0, redis=client)
    )
    assert isinstance(alone, UpdateFlow)
    assert alone._describer is None


def test_a_payload_is_loaded_as_the_job_of_its_kind() -> None:
    """Plans and workers load a payload by its ``kind``; an unknown kind is a validation error
    that names the field."""
    assert isinstance(load_job(_job(JobKind.CREATE_FARGATE)), FargateServiceJob)
    assert isinstance(load_job(_job(JobKind.UPDATE_EXISTING)), UpdateServiceJob)
    with pytest.raises(ValidationError, match="kind"):
        load_job({**_job(JobKind.UPDATE_EXISTING), "kind": "create-lambda"})
