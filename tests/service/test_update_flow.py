"""The update flow's sequencing, against the in-memory fake ECS."""

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
from worker.domain.planning import revision_diff
from worker.domain.tickets import Ticket
from worker.services.transitions import Transition
from worker.services.update_flow import UpdateFlow
from worker.steps import StepContext, execute

FIXTURE = Path(__file__).parent.parent / "fixtures" / "describe_task_definition_web.json"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ecs() -> FakeEcs:
    """A fake account with service demo/web on web:1 (two containers)."""
    fake = FakeEcs()
    described = json.loads(FIXTURE.read_text())
    definition = described["taskDefinition"]
    arn = fake.add_task_definition(definition, described["tags"])
    fake.add_service("demo", "web", arn)
    return fake


def record_for(**job: Any) -> DeploymentRecord:
    payload = UpdateServiceJob.model_validate(
        {
            "cluster": "demo",
            "service": "web",
            "images": [{"container": "web", "image": ":1.4.2"}],
            **job,
        },
        strict=False,
    ).model_dump(mode="json")
    return DeploymentRecord(
        id="dep-1", job=payload, cluster="demo", service="web", created_at=1000.0, updated_at=1000.0
    )


def step(flow: UpdateFlow, record: DeploymentRecord) -> Transition:
    transition = asyncio.run(flow.run(record))
    nxt = transition.next_step or transition.record.step
    return Transition(
        transition.record.model_copy(update={"step": nxt}),
        transition.next_step,
        transition.countdown,
    )


def run_until(flow: UpdateFlow, record: DeploymentRecord, stop: Step) -> DeploymentRecord:
    while record.step != stop:
        t = step(flow, record)
        assert t.next_step is not None, t.record.reason
        record = t.record
    return record


def test_happy_path_registers_once_and_succeeds(ecs: FakeEcs) -> None:
    """resolve → register → update → watch; success only after the rollout completed."""
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    record = run_until(flow, record_for(), Step.WATCH)
    assert ecs.calls.count("RegisterTaskDefinition") == 1
    assert record.previous_task_definition_arn
    assert record.previous_task_definition_arn.endswith(":1")
    t = step(flow, record)
    assert t.next_step is Step.WATCH
    ecs.complete("demo", "web")
    t = step(flow, t.record)
    assert t.next_step is None
    assert t.record.state is DeploymentState.SUCCEEDED
    assert any("steady state" in e.message for e in t.record.events)
    base, _ = asyncio.run(ecs.describe_task_definition("web:1"))
    new, tags = asyncio.run(ecs.describe_task_definition("web:2"))
    assert revision_diff(base, new) == ["containerDefinitions[0].image"]
    assert {"key": "team", "value": "shop"} in tags


def test_unknown_container_fails_before_anything_changes(ecs: FakeEcs) -> None:
    """The register step refuses an unknown container before registering anything; nothing is
    registered or updated."""
    bad = record_for(images=[{"container": "wbe", "image": ":2"}])
    t = asyncio.run(execute(_ctx(), _gw(ecs), bad))
    assert t.next_step is Step.REGISTER
    t = asyncio.run(execute(_ctx(), _gw(ecs), t.record.model_copy(update={"step": Step.REGISTER})))
    assert t.record.state is DeploymentState.FAILED
    assert t.record.error is not None
    assert t.record.error.code == "UnknownContainer"
    assert "it has: web, proxy" in t.record.error.message
    assert "RegisterTaskDefinition" not in ecs.calls
    assert "UpdateService" not in ecs.calls


def test_register_twice_reuses_the_first_revision(ecs: FakeEcs) -> None:
    """A register step re-run after a crash finds its tagged revision instead of a second one."""
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    record = run_until(flow, record_for(), Step.REGISTER)
    first = step(flow, record)
    again = step(flow, record)
    assert ecs.calls.count("RegisterTaskDefinition") == 1
    assert first.record.task_definition_arn == again.record.task_definition_arn


def test_update_twice_adopts_the_first_deployment(ecs: FakeEcs) -> None:
    """An update step re-run after a crash adopts the deployment it started; one UpdateService."""
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    record = run_until(flow, record_for(), Step.UPDATE)
    first = step(flow, record)
    again = step(flow, record)
    assert ecs.calls.count("UpdateService") == 1
    assert first.record.ecs_deployment_id == again.record.ecs_deployment_id


def test_breaker_rollback_ends_rolled_back_not_succeeded(ecs: FakeEcs) -> None:
    """ECS's breaker rolled back: Conveyor watches that rollback and ends rolled_back."""
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    record = run_until(flow, record_for(), Step.WATCH)
    ecs.fail_rollout("demo", "web")
    t = step(flow, record)
    assert t.next_step is Step.WATCH_ROLLBACK
    assert t.record.rolled_back_by_ecs
    assert t.record.stopped_tasks[0].stopped_reason == "Essential container in task exited"
    assert ecs.calls.count("UpdateService") == 1  # the breaker rolled back; Conveyor did not
    ecs.complete("demo", "web")
    t = step(flow, t.record)
    assert t.record.state is DeploymentState.ROLLED_BACK
    assert "circuit breaker" in (t.record.reason or "")


def test_timeout_without_breaker_rolls_back_through_conveyor(ecs: FakeEcs) -> None:
    """No verdict by the deadline: Conveyor points the service back and ends rolled_back."""
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    record = run_until(flow, record_for(timeout_seconds=60), Step.WATCH)
    clock.now += 61
    t = step(flow, record)
    assert t.next_step is Step.ROLLBACK
    assert "timed out" in (t.record.reason or "")
    t = step(flow, t.record)
    assert t.next_step is Step.WATCH_ROLLBACK
    assert ecs.services[("demo", "web")]["taskDefinition"].endswith("web:1")
    ecs.complete("demo", "web")
    t = step(flow, t.record)
    assert t.record.state is DeploymentState.ROLLED_BACK


def test_no_rollback_leaves_the_service_and_fails(ecs: FakeEcs) -> None:
    """With rollback off, a failure ends failed and the service is left as it is."""
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    record = run_until(flow, record_for(rollback=False, timeout_seconds=60), Step.WATCH)
    clock.now += 61
    t = step(flow, record)
    assert t.record.state is DeploymentState.FAILED
    assert ecs.calls.count("UpdateService") == 1


def _ctx() -> StepContext:
    return StepContext(
        store=None,  # type: ignore[arg-type]
        redis=None,  # type: ignore[arg-type]
        sender=None,  # type: ignore[arg-type]
        clock=Clock(),
        poll_interval=5,
        recovery_grace=60,
        step_time_limit=60,
        max_step_attempts=3,
    )


def _gw(ecs: FakeEcs) -> Any:
    async def gateway(_: DeploymentRecord) -> EcsGateway:
        return ecs

    return gateway


def test_transient_errors_retry_with_backoff_then_fail(ecs: FakeEcs) -> None:
    """Throttling retries the same step with jittered backoff; too many attempts fail it."""
    ecs.inject("DescribeServices", *[AwsUnavailableError("throttled", "ThrottlingException")] * 3)
    record = record_for()
    t = asyncio.run(execute(_ctx(), _gw(ecs), record))
    assert t.next_step is Step.RESOLVE
    assert 0 <= t.countdown <= 2
    assert t.record.attempt == 1
    t = asyncio.run(execute(_ctx(), _gw(ecs), t.record))
    t = asyncio.run(execute(_ctx(), _gw(ecs), t.record))
    assert t.record.state is DeploymentState.FAILED
    assert t.record.error is not None
    assert t.record.error.code == "ThrottlingException"


def test_permanent_aws_errors_fail_at_once_with_the_code(ecs: FakeEcs) -> None:
    """AccessDenied is not retried; the AWS error code is kept in the record."""
    ecs.inject("DescribeServices", AwsRequestError("no", "AccessDeniedException"))
    t = asyncio.run(execute(_ctx(), _gw(ecs), record_for()))
    assert t.record.state is DeploymentState.FAILED
    assert t.record.error is not None
    assert t.record.error.code == "AccessDeniedException"


def test_corrupt_job_in_record_fails_without_calling_aws(ecs: FakeEcs) -> None:
    """The worker validates the job again; garbage fails the job and never reaches AWS."""
    record = record_for().model_copy(update={"job": {"cluster": 5, "images": "x"}})
    t = asyncio.run(execute(_ctx(), _gw(ecs), record))
    assert t.record.state is DeploymentState.FAILED
    assert t.record.error is not None
    assert t.record.error.code == "InvalidJob"
    assert ecs.calls == []


def test_update_of_a_conveyor_owned_service_is_refused(ecs: FakeEcs) -> None:
    """A service owned by a Conveyor stack is not changed behind the stack's back."""
    ecs.services[("demo", "web")]["tags"] = [
        {"key": "conveyor:stack", "value": "conveyor-demo-web"}
    ]
    t = asyncio.run(execute(_ctx(), _gw(ecs), record_for()))
    assert t.record.state is DeploymentState.FAILED
    assert "conveyor fargate apply" in (t.record.reason or "")
    assert "RegisterTaskDefinition" not in ecs.calls


def test_backoff_is_jittered_and_capped() -> None:
    """Full-jitter backoff: within [0, min(cap, base * 2**attempt)], and not one fixed value."""
    from worker.steps import backoff

    for attempt in range(12):
        delays = {backoff(attempt) for _ in range(50)}
        assert all(0 <= d <= min(60.0, 2.0 * 2**attempt) for d in delays)
        assert len(delays) > 1


def test_deadline_fires_while_a_step_keeps_failing(ecs: FakeEcs) -> None:
    """A step failing transiently past the deployment's deadline fails at once: timeouts fire."""
    ecs.inject("DescribeServices", AwsUnavailableError("throttled", "ThrottlingException"))
    expired = record_for().model_copy(update={"deadline": 10.0})
    t = asyncio.run(execute(_ctx(), _gw(ecs), expired))
    assert t.record.state is DeploymentState.FAILED
    assert "timed out while retrying" in (t.record.reason or "")


def test_failure_while_watching_rolls_back_instead_of_abandoning(ecs: FakeEcs) -> None:
    """A permanent error after UpdateService goes to the rollback step, not straight to failed:
    the service is never left on a revision nobody follows."""
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    watching = run_until(flow, record_for(), Step.WATCH)
    ecs.inject("DescribeServices", AwsRequestError("denied", "AccessDeniedException"))
    t = asyncio.run(execute(_ctx(), _gw(ecs), watching))
    assert t.next_step is Step.ROLLBACK
    assert t.record.error is not None
    assert t.record.error.code == "AccessDeniedException"


def test_a_step_that_hangs_is_retried_not_abandoned(ecs: FakeEcs) -> None:
    """A step longer than its limit ends as a retryable timeout, well before Celery's limit."""
    import dataclasses

    # Any, as _gw's: the update flow needs only the ECS half of the gateway the fake has.
    async def slow(_: DeploymentRecord) -> Any:
        await asyncio.sleep(5)
        return ecs

    ctx = dataclasses.replace(_ctx(), step_time_limit=6.0)
    t = asyncio.run(execute(ctx, slow, record_for()))
    assert t.next_step is Step.RESOLVE
    assert t.record.attempt == 1
    assert "took too long" in t.record.steps[-1].detail


# -- hardening: rollbacks that finish, and never undo someone else's deployment ---------------


def _ctx_at(clock: Clock, attempts: int = 3) -> StepContext:
    import dataclasses

    return dataclasses.replace(_ctx(), clock=clock, max_step_attempts=attempts)


def _advance(t: Transition) -> DeploymentRecord:
    assert t.next_step is not None, t.record.reason
    return t.record.model_copy(update={"step": t.next_step})


def test_rollback_after_a_timeout_survives_throttling(ecs: FakeEcs) -> None:
    """The rollback gets a deadline of its own: a throttled call after the watch timed out is
    retried, and the service ends back on its old revision (it used to end failed at once)."""
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    watching = run_until(flow, record_for(timeout_seconds=60), Step.WATCH)
    clock.now += 61
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), watching))
    assert t.next_step is Step.ROLLBACK
    assert t.record.deadline is not None
    assert t.record.deadline > clock.now
    ecs.inject("DescribeServices", AwsUnavailableError("throttled", "ThrottlingException"))
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), _advance(t)))
    assert t.next_step is Step.ROLLBACK  # retried, not failed
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), t.record))
    assert t.next_step is Step.WATCH_ROLLBACK
    ecs.complete("demo", "web")
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), _advance(t)))
    assert t.record.state is DeploymentState.ROLLED_BACK
    assert ecs.services[("demo", "web")]["taskDefinition"].endswith("web:1")


class LostResponse:
    """A gateway whose UpdateService reaches ECS but whose answer is lost on the way back."""

    def __init__(self, ecs: FakeEcs) -> None:
        self._ecs = ecs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ecs, name)

    async def update_service(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        await self._ecs.update_service(*args, **kwargs)
        raise AwsUnavailableError("connection reset", "ConnectionError")


def test_update_that_gives_up_after_reaching_ecs_is_followed(ecs: FakeEcs) -> None:
    """An update step that gives up after its UpdateService may have reached ECS hands over to
    watch, which adopts the deployment: never failed with a rollout nobody follows."""
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    updating = run_until(flow, record_for(), Step.UPDATE)
    lossy = LostResponse(ecs)
    t = asyncio.run(execute(_ctx_at(clock, attempts=1), _gw(lossy), updating))  # type: ignore[arg-type]
    assert t.next_step is Step.WATCH
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), _advance(t)))
    assert t.next_step is Step.WATCH
    assert t.record.ecs_deployment_id is not None
    ecs.complete("demo", "web")
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), t.record))
    assert t.record.state is DeploymentState.SUCCEEDED
    assert ecs.calls.count("UpdateService") == 1


def test_update_that_never_reached_ecs_fails_without_changes(ecs: FakeEcs) -> None:
    """When the handed-over watch finds no deployment on our revision, the service was not
    changed: the deployment fails with the update's error and nothing is rolled back."""
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    updating = run_until(flow, record_for(), Step.UPDATE)
    ecs.inject("UpdateService", AwsUnavailableError("throttled", "ThrottlingException"))
    t = asyncio.run(execute(_ctx_at(clock, attempts=1), _gw(ecs), updating))
    assert t.next_step is Step.WATCH
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), _advance(t)))
    assert t.record.state is DeploymentState.FAILED
    assert "the service was not changed" in (t.record.reason or "")
    assert ecs.services[("demo", "web")]["taskDefinition"].endswith("web:1")


def test_no_update_service_after_the_deadline(ecs: FakeEcs) -> None:
    """An update step that runs after the deadline does not start a rollout."""
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    updating = run_until(flow, record_for(timeout_seconds=60), Step.UPDATE)
    clock.now += 61
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), updating))
    assert t.record.state is DeploymentState.FAILED
    assert "no UpdateService was sent" in (t.record.reason or "")
    assert "UpdateService" not in ecs.calls


def _someone_else_deploys(ecs: FakeEcs) -> str:
    from worker.domain.planning import READ_ONLY_KEYS

    base, _ = asyncio.run(ecs.describe_task_definition("web:1"))
    payload = {k: v for k, v in base.items() if k not in READ_ONLY_KEYS}
    theirs = asyncio.run(ecs.register_task_definition({**payload, "cpu": "512"}))
    arn = str(theirs["taskDefinitionArn"])
    asyncio.run(ecs.update_service("demo", "web", arn, force_new_deployment=False))
    return arn


def test_rollback_after_a_timeout_leaves_someone_elses_deployment_alone(ecs: FakeEcs) -> None:
    """Our rollout timed out, then someone else deployed: the rollback step sees their PRIMARY,
    ends with "superseded by", and does not call UpdateService (it used to undo their change)."""
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    watching = run_until(flow, record_for(timeout_seconds=60), Step.WATCH)
    clock.now += 61
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), watching))
    assert t.next_step is Step.ROLLBACK
    theirs = _someone_else_deploys(ecs)
    updates = ecs.calls.count("UpdateService")
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), _advance(t)))
    assert t.record.state is DeploymentState.FAILED
    assert "superseded by deployment" in (t.record.reason or "")
    assert ecs.calls.count("UpdateService") == updates
    assert ecs.services[("demo", "web")]["taskDefinition"] == theirs


def test_cancel_never_rolls_back_someone_elses_deployment(ecs: FakeEcs) -> None:
    """Cancelled while watching, after someone else deployed: cancelled, their change kept."""
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    watching = run_until(flow, record_for(), Step.WATCH)
    theirs = _someone_else_deploys(ecs)
    cancelled = watching.model_copy(
        update={"step": Step.ROLLBACK, "cancel_requested_at": clock.now}
    )
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), cancelled))
    assert t.record.state is DeploymentState.CANCELLED
    assert "superseded by deployment" in (t.record.reason or "")
    assert ecs.services[("demo", "web")]["taskDefinition"] == theirs


# -- hardening: verdicts from ECS's deployment history; idempotent re-runs -------------------


def test_a_late_watch_after_a_breaker_rollback_reports_rolled_back(ecs: FakeEcs) -> None:
    """ECS's breaker rolled back and finished before the next poll (a worker died, a countdown
    was lost): the failed deployment is gone from DescribeServices, and the PRIMARY reads
    "completed". The history says ROLLBACK_SUCCESSFUL: rolled_back, not "superseded"."""
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    watching = run_until(flow, record_for(), Step.WATCH)
    ecs.fail_rollout("demo", "web")
    ecs.complete("demo", "web")  # the rollback finished before anyone looked
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), watching))
    assert t.record.state is DeploymentState.ROLLED_BACK, t.record.reason
    assert t.record.rolled_back_by_ecs
    assert "circuit breaker" in (t.record.reason or "")
    assert ecs.calls.count("UpdateService") == 1


def test_an_alarm_rollback_of_a_rolling_update_is_rolled_back_naming_the_alarm(
    ecs: FakeEcs,
) -> None:
    """A deployment alarm in ALARM failed our rolling deployment and ECS rolled back to the
    previous revision. DescribeServices shows a new PRIMARY whose reason is not the breaker's:
    the history tells it is ECS's rollback, so Conveyor follows it (it used to report failed,
    "a newer deployment owns the service") and ends rolled_back, naming the alarm."""
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    watching = run_until(flow, record_for(), Step.WATCH)
    ecs.fail_rollout("demo", "web", alarm="web-5xx")
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), watching))
    assert t.next_step is Step.WATCH_ROLLBACK, t.record.reason
    assert t.record.rolled_back_by_ecs
    ecs.complete("demo", "web")
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), _advance(t)))
    assert t.record.state is DeploymentState.ROLLED_BACK, t.record.reason
    assert "web-5xx" in (t.record.reason or "")
    assert ecs.calls.count("UpdateService") == 1


def test_a_breaker_rollback_with_rollback_off_is_still_rolled_back(ecs: FakeEcs) -> None:
    """--no-rollback means Conveyor does not roll back; when ECS's breaker did, the truth is
    rolled_back (it used to be reported failed)."""
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    watching = run_until(flow, record_for(rollback=False), Step.WATCH)
    ecs.fail_rollout("demo", "web")
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), watching))
    assert t.next_step is Step.WATCH_ROLLBACK
    ecs.complete("demo", "web")
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), _advance(t)))
    assert t.record.state is DeploymentState.ROLLED_BACK
    ecs.calls.clear()
    late = run_until(
        UpdateFlow(ecs, poll_interval=5, clock=clock), record_for(rollback=False), Step.WATCH
    )
    ecs.fail_rollout("demo", "web")
    ecs.complete("demo", "web")
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), late))
    assert t.record.state is DeploymentState.ROLLED_BACK, t.record.reason


def test_an_update_rerun_after_a_breaker_rollback_does_not_restart_the_image(
    ecs: FakeEcs,
) -> None:
    """The update step ran, its commit was lost, and ECS rolled the broken image back before the
    re-run. Sending UpdateService again would restart it: the re-run adopts the deployment
    from the history instead, and the job ends rolled_back."""
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    updating = run_until(flow, record_for(), Step.UPDATE)
    step(flow, updating)  # UpdateService reached ECS; imagine the record was never committed
    ecs.fail_rollout("demo", "web")
    ecs.complete("demo", "web")
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), updating))
    assert t.next_step is Step.WATCH
    assert ecs.calls.count("UpdateService") == 1
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), _advance(t)))
    assert t.record.state is DeploymentState.ROLLED_BACK, t.record.reason
    assert ecs.calls.count("UpdateService") == 1


def test_an_update_rerun_never_overwrites_a_later_outside_deployment(ecs: FakeEcs) -> None:
    """Our update ran, then someone deployed by hand, then our update step re-ran: it finds its
    own deployment STOPPED in the history and ends failed, leaving their deployment alone."""
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    updating = run_until(flow, record_for(), Step.UPDATE)
    step(flow, updating)
    theirs = _someone_else_deploys(ecs)
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), updating))
    assert t.next_step is Step.WATCH
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), _advance(t)))
    assert t.record.state is DeploymentState.FAILED
    assert "newer deployment" in (t.record.reason or "")
    assert ecs.services[("demo", "web")]["taskDefinition"] == theirs
    assert ecs.calls.count("UpdateService") == 2  # ours once, theirs once


def _other_registrations(ecs: FakeEcs, count: int) -> None:
    from worker.domain.planning import READ_ONLY_KEYS

    base, _ = asyncio.run(ecs.describe_task_definition("web"))
    payload = {k: v for k, v in base.items() if k not in READ_ONLY_KEYS}
    for _ in range(count):
        asyncio.run(ecs.register_task_definition(payload))


def test_register_rerun_finds_its_revision_past_ten_others(ecs: FakeEcs) -> None:
    """Twelve revisions registered by other deployments of the family since ours: a re-run
    still finds ours by its tag (it used to look at the newest ten and register again)."""
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    registering = run_until(flow, record_for(), Step.REGISTER)
    first = step(flow, registering)
    _other_registrations(ecs, 12)
    again = step(flow, registering)
    assert again.record.task_definition_arn == first.record.task_definition_arn
    # Ours once and the twelve others: the re-run registered nothing.
    assert ecs.calls.count("RegisterTaskDefinition") == 1 + 12


class LostRegister:
    """A gateway whose RegisterTaskDefinition reaches ECS but whose answer is lost."""

    def __init__(self, ecs: FakeEcs, others: int) -> None:
        self._ecs = ecs
        self._others = others

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ecs, name)

    async def register_task_definition(self, payload: dict[str, Any]) -> dict[str, Any]:
        from worker.domain.planning import DEPLOYMENT_TAG

        await self._ecs.register_task_definition(payload)
        others = {
            **payload,
            "tags": [t for t in payload.get("tags", []) if t["key"] != DEPLOYMENT_TAG],
        }
        if not others["tags"]:
            del others["tags"]
        for _ in range(self._others):
            await self._ecs.register_task_definition(others)
        raise AwsUnavailableError("connection reset", "ConnectionError")


def test_a_register_whose_answer_was_lost_leaves_one_revision(ecs: FakeEcs) -> None:
    """The register reached ECS, its answer was lost, and other deployments registered more
    revisions before the retry: the retry finds ours, and exactly one revision carries our
    deployment id."""
    import dataclasses

    from worker.domain.planning import DEPLOYMENT_TAG
    from worker.services.update_flow import MemoryNotes

    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    registering = run_until(flow, record_for(), Step.REGISTER)
    # The attempt's notes outlive it (in Redis, in production): the retry plans from the base.
    ctx = dataclasses.replace(_ctx_at(clock), notes=MemoryNotes())
    t = asyncio.run(execute(ctx, _gw(LostRegister(ecs, 11)), registering))  # type: ignore[arg-type]
    assert t.next_step is Step.REGISTER  # retried
    t = asyncio.run(execute(ctx, _gw(ecs), t.record))
    assert t.next_step is Step.UPDATE
    tagged = [
        arn
        for arn, tags in ecs.tags.items()
        if {"key": DEPLOYMENT_TAG, "value": registering.id} in tags
    ]
    assert tagged == [t.record.task_definition_arn]


def test_cancel_of_a_rollout_under_way_asks_ecs_to_roll_back(ecs: FakeEcs) -> None:
    """A cancel while our rollout is in progress uses StopServiceDeployment: ECS itself rolls
    back, and Conveyor follows that rollback to rolled back (then cancelled by run_step)."""
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    watching = run_until(flow, record_for(), Step.WATCH)
    cancelled = watching.model_copy(update={"step": Step.ROLLBACK, "cancel_requested_at": 1.0})
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), cancelled))
    assert t.next_step is Step.WATCH_ROLLBACK
    assert "StopServiceDeployment" in ecs.calls
    assert ecs.calls.count("UpdateService") == 1  # no UpdateService back: ECS rolls back
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), _advance(t)))
    assert t.next_step is Step.WATCH_ROLLBACK
    ecs.complete("demo", "web")
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), t.record))
    assert t.record.state is DeploymentState.ROLLED_BACK, t.record.reason
    assert "StopServiceDeployment" in (t.record.reason or "")
    assert not t.record.rolled_back_by_ecs  # Conveyor's rollback, carried out by ECS
    assert ecs.services[("demo", "web")]["taskDefinition"].endswith("web:1")


def test_without_the_history_api_the_old_verdict_stands(ecs: FakeEcs) -> None:
    """An account whose role may not read the deployment history: the verdict falls back to
    DescribeServices alone (logged), rather than failing the step."""
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    watching = run_until(flow, record_for(), Step.WATCH)
    ecs.history_supported = False
    ecs.fail_rollout("demo", "web")
    ecs.complete("demo", "web")
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), watching))
    assert t.record.state is DeploymentState.FAILED
    assert t.record.error is None


def test_waiting_for_a_rate_limit_token_uses_no_attempts(ecs: FakeEcs) -> None:
    """Deep in a large fleet a register waits minutes for AWS's 1/s bucket. Those waits are a
    place in line, not failures: they use none of the step's attempts and add no step-log
    entries; the step comes back when the token is due."""
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    registering = run_until(flow, record_for(), Step.REGISTER)
    for _ in range(10):  # more than max_step_attempts (3)
        limited = AwsUnavailableError("the bucket is empty for 7.0 s more", "RateLimited")
        limited.retry_after = 7.0
        ecs.inject("RegisterTaskDefinition", limited)
        t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), registering))
        assert t.next_step is Step.REGISTER
        assert 7.0 <= t.countdown <= 8.0
        assert t.record.attempt == 0
        assert t.record.steps == registering.steps
        assert "7.0 s more" in (t.record.progress.latest_event or "")
    t = asyncio.run(execute(_ctx_at(clock), _gw(ecs), registering))
    assert t.next_step is Step.UPDATE


class BookingEcs(FakeEcs):
    """A fake whose register bucket is booked up: the first reserve books a ticket."""

    def __init__(self) -> None:
        super().__init__()
        self.tickets: list[Ticket | None] = []

    async def reserve(self, operation: str, ticket: Ticket | None = None) -> None:
        self.tickets.append(ticket)
        if ticket is None:
            error = AwsUnavailableError("register bucket used up", "RateLimited")
            error.retry_after, error.ticket = 7.5, Ticket(41, 1000, 2007.5)
            raise error


def test_a_register_step_keeps_its_booked_token_while_away() -> None:
    """A register step whose token is due later gives up its slot with no attempt used, comes
    back exactly when the token is due, and shows the ticket instead of queueing again; once
    spent, the ticket is cleared so a later retry queues normally."""
    from worker.services.update_flow import REGISTER_TICKET, MemoryNotes

    ecs = BookingEcs()
    described = json.loads(FIXTURE.read_text())
    ecs.add_service("demo", "web", ecs.add_task_definition(described["taskDefinition"], []))
    notes = MemoryNotes()
    ctx = StepContext(
        store=None,  # type: ignore[arg-type]
        redis=None,  # type: ignore[arg-type]
        sender=None,  # type: ignore[arg-type]
        clock=Clock(),
        poll_interval=5,
        recovery_grace=60,
        step_time_limit=60,
        max_step_attempts=3,
        notes=notes,
    )
    record = record_for().model_copy(update={"step": Step.REGISTER, "family": "web"})
    away = asyncio.run(execute(ctx, _gw(ecs), record))
    assert away.next_step is Step.REGISTER
    assert away.countdown == 7.5  # no jitter: the token is booked for then
    assert away.record.attempt == 0
    assert notes.get("dep-1", REGISTER_TICKET) == "41:1000:2007.5"
    assert ecs.calls == []  # not even the reads before the register

    back = asyncio.run(execute(ctx, _gw(ecs), away.record))
    assert back.next_step is Step.UPDATE
    assert ecs.tickets == [None, Ticket(41, 1000, 2007.5)]
    assert notes.get("dep-1", REGISTER_TICKET) == ""
    assert ecs.calls.count("RegisterTaskDefinition") == 1


def test_a_restart_registers_nothing_and_follows_its_own_deployment(ecs: FakeEcs) -> None:
    """A job with no images and force_new_deployment: resolve goes straight to update, one
    forced UpdateService on the revision the service runs, a verdict on that new deployment;
    a re-run of update adopts it, never the deployment that ran before."""
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    record = record_for(images=[], force_new_deployment=True)
    assert record.job["rollback"] is False  # nothing to roll back to
    resolved = step(flow, record)
    assert resolved.next_step is Step.UPDATE
    assert resolved.record.task_definition_arn == resolved.record.previous_task_definition_arn
    before = resolved.record.previous_deployment_id
    first = step(flow, resolved.record)
    again = step(flow, resolved.record)  # as after a crash between UpdateService and commit
    assert ecs.calls.count("UpdateService") == 1
    assert "RegisterTaskDefinition" not in ecs.calls
    assert first.record.ecs_deployment_id not in (None, before)
    assert again.record.ecs_deployment_id == first.record.ecs_deployment_id
    ecs.complete("demo", "web")
    done = step(flow, first.record)
    done = step(flow, done.record) if done.next_step is not None else done
    assert done.record.state is DeploymentState.SUCCEEDED


def test_a_job_with_nothing_to_do_is_refused() -> None:
    """No images and no force_new_deployment: the error names images and says what to give."""
    from pydantic import ValidationError

    from producers.contract.jobs import describe_validation_error

    with pytest.raises(ValidationError) as info:
        UpdateServiceJob(cluster="demo", service="web", images=())
    (line,) = describe_validation_error(info.value)
    assert line.startswith("images: give at least one container image")
    assert "force_new_deployment for a restart" in line


def test_masked_settings_without_the_full_job_change_nothing(ecs: FakeEcs) -> None:
    """A record whose full job is gone holds "***" for every value: the job fails before any
    AWS call rather than deploy the mask."""
    from producers.contract.jobs import ContainerSettings

    job = UpdateServiceJob(
        cluster="demo",
        service="web",
        images=(),
        settings=(ContainerSettings(container="web", environment={"TOKEN": "v"}),),
    )
    record = record_for().model_copy(update={"job": job.redacted()})
    t = asyncio.run(execute(_ctx(), _gw(ecs), record))
    assert t.record.state is DeploymentState.FAILED
    assert t.record.reason is not None
    assert "enqueue the job again" in t.record.reason
    assert ecs.calls == []
