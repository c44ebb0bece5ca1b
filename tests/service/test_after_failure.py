"""The deployment after a failure: a revision of a deployment that did not succeed is never the
base of a later one, against the in-memory fake ECS."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from producers.contract.jobs import UpdateServiceJob
from producers.contract.records import DeploymentRecord, DeploymentState, Step
from tests.fakes.ecs import FakeEcs
from worker.aws.gateway import EcsGateway
from worker.domain.errors import AwsRequestError, AwsUnavailableError
from worker.domain.planning import DISCARD_TAG, plan_revision
from worker.services.plan import plan_update
from worker.services.transitions import Transition
from worker.steps import StepContext, _on_cancel, execute, settle

FIXTURE = Path(__file__).parent.parent / "fixtures" / "describe_task_definition_web.json"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ecs() -> FakeEcs:
    """Services demo/web and demo/web-eu, both on web:1 (containers web and proxy)."""
    fake = FakeEcs()
    described = json.loads(FIXTURE.read_text())
    arn = fake.add_task_definition(described["taskDefinition"], described["tags"])
    fake.add_service("demo", "web", arn)
    fake.add_service("demo", "web-eu", arn)
    return fake


def _ctx(attempts: int = 3) -> StepContext:
    return StepContext(
        store=None,  # type: ignore[arg-type]
        redis=None,  # type: ignore[arg-type]
        sender=None,  # type: ignore[arg-type]
        clock=Clock(),
        poll_interval=5,
        recovery_grace=60,
        step_time_limit=60,
        max_step_attempts=attempts,
    )


def _gw(ecs: FakeEcs) -> Any:
    async def gateway(_: DeploymentRecord) -> EcsGateway:
        return ecs

    return gateway


def _record(deployment_id: str, service: str = "web", **job: Any) -> DeploymentRecord:
    payload = UpdateServiceJob.model_validate(
        {"cluster": "demo", "service": service, **job}, strict=False
    ).model_dump(mode="json")
    return DeploymentRecord(
        id=deployment_id,
        job=payload,
        cluster="demo",
        service=service,
        created_at=1000.0,
        updated_at=1000.0,
    )


def _step(ecs: FakeEcs, record: DeploymentRecord, ctx: StepContext | None = None) -> Transition:
    transition = asyncio.run(execute(ctx or _ctx(), _gw(ecs), record))
    nxt = transition.next_step or transition.record.step
    return Transition(
        transition.record.model_copy(update={"step": nxt}),
        transition.next_step,
        transition.countdown,
    )


def _deploy(ecs: FakeEcs, record: DeploymentRecord, *, breaks: bool) -> DeploymentRecord:
    """Run a deployment to its verdict; the rollout fails (the breaker rolls back) or completes."""
    acted = False
    for _ in range(50):
        t = _step(ecs, record)
        record = t.record
        if t.next_step is None:
            return record
        if record.step is Step.WATCH and record.ecs_deployment_id and not acted:
            acted = True
            if breaks:
                ecs.fail_rollout("demo", record.service)
            else:
                ecs.complete("demo", record.service)
        elif record.step is Step.WATCH_ROLLBACK:
            ecs.complete("demo", record.service)
    raise AssertionError("no verdict")


def _images(ecs: FakeEcs, arn: str) -> dict[str, str]:
    definition, _ = asyncio.run(ecs.describe_task_definition(arn))
    return {c["name"]: c["image"] for c in definition["containerDefinitions"]}


def _tags(ecs: FakeEcs, arn: str) -> dict[str, str]:
    _, tags = asyncio.run(ecs.describe_task_definition(arn))
    return {t["key"]: t["value"] for t in tags}


def test_a_rolled_back_change_never_comes_back(ecs: FakeEcs) -> None:
    """The scenario as users hit it: a broken proxy image is rolled back; the next deployment
    of web builds from the last good revision, so it does not ship the broken proxy again."""
    broken = _deploy(
        ecs, _record("d-1", images=[{"container": "proxy", "image": ":fail-x"}]), breaks=True
    )
    assert broken.state is DeploymentState.ROLLED_BACK
    assert broken.task_definition_arn is not None
    assert _tags(ecs, broken.task_definition_arn)[DISCARD_TAG] == "rolled_back by d-1"
    fixed = _deploy(
        ecs, _record("d-2", images=[{"container": "web", "image": ":1.1.0"}]), breaks=False
    )
    assert fixed.state is DeploymentState.SUCCEEDED, fixed.reason
    assert fixed.base_task_definition_arn == broken.previous_task_definition_arn
    images = _images(ecs, str(fixed.task_definition_arn))
    assert ":fail-x" not in images["proxy"]
    assert images["web"].endswith(":1.1.0")
    register = next(s for s in fixed.steps if s.step == Step.REGISTER)
    assert "stepped over web:2 (rolled_back by d-1)" in (register.detail or "")
    # The discard mark is Conveyor's own: it is never copied to the next revision.
    assert DISCARD_TAG not in _tags(ecs, str(fixed.task_definition_arn))


def test_no_service_of_the_family_builds_on_a_failed_revision(ecs: FakeEcs) -> None:
    """A revision that failed on one service is not the base of another service's deployment."""
    _deploy(ecs, _record("d-1", images=[{"container": "proxy", "image": ":fail-x"}]), breaks=True)
    other = _deploy(
        ecs,
        _record("d-2", service="web-eu", images=[{"container": "web", "image": ":2.0"}]),
        breaks=False,
    )
    assert other.state is DeploymentState.SUCCEEDED
    assert ":fail-x" not in _images(ecs, str(other.task_definition_arn))["proxy"]


def test_a_failure_without_rollback_and_a_timeout_are_discarded_too(ecs: FakeEcs) -> None:
    """With rollback off, the service stays on the failed revision, but nothing builds on it."""
    # Off on both sides: ECS's breaker on the service (else ECS rolls back on its own, and
    # the verdict is rolled_back) and Conveyor's own rollback in the job.
    ecs.add_service("demo", "web", "web:1", rollback=False)
    failed = _deploy(
        ecs,
        _record("d-1", rollback=False, images=[{"container": "proxy", "image": ":bad"}]),
        breaks=True,
    )
    assert failed.state is DeploymentState.FAILED, failed.reason
    service = asyncio.run(ecs.describe_service("demo", "web"))
    assert service is not None
    assert service["taskDefinition"] == failed.task_definition_arn
    assert DISCARD_TAG in _tags(ecs, str(failed.task_definition_arn))
    plan = asyncio.run(
        plan_update(
            ecs,
            UpdateServiceJob.model_validate(
                {
                    "cluster": "demo",
                    "service": "web",
                    "images": [{"container": "web", "image": ":3"}],
                },
                strict=False,
            ),
        )
    )
    assert plan["task_definition"]["base"] == "web:1"
    assert plan["task_definition"]["skipped"] == [
        "web:2 (" + _tags(ecs, "web:2")[DISCARD_TAG] + ")"
    ]
    assert "no failed deployment discarded" in plan["task_definition"]["base_reason"]


def test_a_revision_someone_else_registered_stays_the_base(ecs: FakeEcs) -> None:
    """Revisions Terraform or a person registered on purpose are built on, as before."""
    definition, _ = asyncio.run(ecs.describe_task_definition("web:1"))
    for key in ("taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities",
                "registeredAt", "registeredBy"):  # fmt: skip
        definition.pop(key, None)
    definition["containerDefinitions"][1]["image"] = "proxy:terraform"
    ecs.add_task_definition(definition, [{"key": "team", "value": "shop"}])
    done = _deploy(
        ecs, _record("d-1", images=[{"container": "web", "image": ":1.1.0"}]), breaks=False
    )
    assert done.base_task_definition_arn is not None
    assert done.base_task_definition_arn.endswith(":2")
    assert _images(ecs, str(done.task_definition_arn))["proxy"] == "proxy:terraform"


def test_base_service_builds_from_the_revision_the_service_runs(ecs: FakeEcs) -> None:
    """`--base service` ignores newer revisions of the family, good or not."""
    definition, _ = asyncio.run(ecs.describe_task_definition("web:1"))
    for key in ("taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities",
                "registeredAt", "registeredBy"):  # fmt: skip
        definition.pop(key, None)
    definition["containerDefinitions"][1]["image"] = "proxy:experiment"
    ecs.add_task_definition(definition)
    done = _deploy(
        ecs,
        _record("d-1", base="service", images=[{"container": "web", "image": ":9"}]),
        breaks=False,
    )
    assert str(done.base_task_definition_arn).endswith(":1")
    assert _images(ecs, str(done.task_definition_arn))["proxy"] != "proxy:experiment"
    register = next(s for s in done.steps if s.step == Step.REGISTER)
    assert "the revision the service runs (base: service)" in (register.detail or "")


def test_a_failed_restart_never_discards_the_revision_the_service_runs(ecs: FakeEcs) -> None:
    """A restart registers nothing: its failure must not mark the service's own revision."""
    restart = _record("d-1", images=[], force_new_deployment=True)
    ended = _deploy(ecs, restart, breaks=True)
    assert ended.state is not DeploymentState.SUCCEEDED
    assert DISCARD_TAG not in _tags(ecs, "web:1")


def test_a_cancel_after_an_interrupted_register_discards_what_it_registered(ecs: FakeEcs) -> None:
    """A register whose commit was lost, then a cancel: the revision it left is found by its
    deployment tag and marked, although the record never learnt its ARN."""
    record = _step(ecs, _record("d-1", images=[{"container": "proxy", "image": ":fail-x"}])).record
    assert record.step is Step.REGISTER
    _step(ecs, record)  # registered web:2; its commit is lost
    cancelled = record.model_copy(update={"cancel_requested_at": 1001.0})
    ending = _on_cancel(_ctx(), cancelled)
    assert ending is not None
    assert ending.record.state is DeploymentState.CANCELLED
    asyncio.run(settle(_ctx(), _gw(ecs), cancelled, ending))
    assert _tags(ecs, "web:2")[DISCARD_TAG] == "cancelled by d-1"
    assert DISCARD_TAG not in _tags(ecs, "web:1")


def test_marking_retries_on_throttling_and_a_denied_mark_keeps_the_verdict(ecs: FakeEcs) -> None:
    """A throttled TagResource runs the step again; a refused one (IAM) keeps the verdict and
    says in the record what to grant."""
    record = _record("d-1", images=[{"container": "proxy", "image": ":fail-x"}])
    ecs.inject("TagResource", AwsUnavailableError("throttled", "ThrottlingException"))
    retried = _deploy(ecs, record, breaks=True)
    assert retried.state is DeploymentState.ROLLED_BACK
    assert ecs.calls.count("TagResource") == 2
    assert DISCARD_TAG in _tags(ecs, str(retried.task_definition_arn))
    assert not retried.warnings

    denied = _record("d-2", service="web-eu", images=[{"container": "proxy", "image": ":fail-y"}])
    ecs.inject("TagResource", AwsRequestError("not authorized", "AccessDeniedException"))
    ended = _deploy(ecs, denied, breaks=True)
    assert ended.state is DeploymentState.ROLLED_BACK
    assert any("ecs:TagResource" in w for w in ended.warnings)


def test_the_discard_mark_is_never_copied_and_leaves_room() -> None:
    """Planning drops Conveyor's own tags from the base and keeps room for the discard mark."""
    described = json.loads(FIXTURE.read_text())
    base = described["taskDefinition"]
    tags = [{"key": DISCARD_TAG, "value": "rolled_back by x"}, {"key": "team", "value": "a"}]
    plan = plan_revision(base, tags, {}, "d-9", None)
    assert {t["key"] for t in plan.payload["tags"]} == {"team", "conveyor:deployment-id"}
    full = [{"key": f"k{i}", "value": "v"} for i in range(49)]
    with pytest.raises(Exception, match="Conveyor needs two"):
        plan_revision(base, full, {}, "d-9", None)


def test_a_family_of_only_failed_revisions_is_refused_with_the_fix(ecs: FakeEcs) -> None:
    """When no good revision is left to build on, the job fails before registering anything
    and names --base service."""
    asyncio.run(ecs.tag_task_definition("web:1", {DISCARD_TAG: "failed by x"}))
    registered = len(ecs.revisions["web"])
    ended = _deploy(ecs, _record("d-1", images=[{"container": "web", "image": ":1"}]), breaks=False)
    assert ended.state is DeploymentState.FAILED
    assert "--base service" in (ended.reason or "")
    assert len(ecs.revisions["web"]) == registered


def test_a_pinned_base_is_built_on_even_after_someone_registered_a_newer_one(ecs: FakeEcs) -> None:
    """A job from a reviewed plan names its base: the new revision is built from exactly it,
    whatever was registered since; a pinned base deregistered since is refused as bad input."""
    definition, _ = asyncio.run(ecs.describe_task_definition("web:1"))
    for key in ("taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities",
                "registeredAt", "registeredBy"):  # fmt: skip
        definition.pop(key, None)
    definition["containerDefinitions"][1]["image"] = "proxy:after-the-plan"
    ecs.add_task_definition(definition)
    done = _deploy(
        ecs,
        _record("d-1", base_revision="web:1", images=[{"container": "web", "image": ":7"}]),
        breaks=False,
    )
    assert done.state is DeploymentState.SUCCEEDED, done.reason
    assert str(done.base_task_definition_arn).endswith("web:1")
    assert _images(ecs, str(done.task_definition_arn))["proxy"] != "proxy:after-the-plan"
    register = next(s for s in done.steps if s.step == Step.REGISTER)
    assert "reviewed plan (pinned)" in (register.detail or "")

    ecs.deregister_task_definition("web:1")
    refused = _deploy(
        ecs,
        _record("d-2", base_revision="web:1", images=[{"container": "web", "image": ":8"}]),
        breaks=False,
    )
    assert refused.state is DeploymentState.FAILED
    assert refused.error is not None
    assert refused.error.code == "InvalidJob"
    assert "web:1 was deregistered since the plan" in refused.error.message


def test_a_pinned_base_with_base_service_or_a_restart_is_refused() -> None:
    """A pin means "build from this revision": with base service or a restart it is refused."""
    with pytest.raises(ValueError, match="base_revision"):
        UpdateServiceJob.model_validate(
            {"cluster": "c", "service": "s", "base": "service", "base_revision": "web:3",
             "images": [{"container": "web", "image": ":1"}]},
            strict=False,
        )  # fmt: skip
    with pytest.raises(ValueError, match="base_revision"):
        UpdateServiceJob.model_validate(
            {"cluster": "c", "service": "s", "base_revision": "web:3", "images": [],
             "force_new_deployment": True},
            strict=False,
        )  # fmt: skip
