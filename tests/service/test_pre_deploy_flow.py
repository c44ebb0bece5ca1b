"""The pre-deploy task of an update: run on the new revision, its exit code gates UpdateService."""

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
from worker.domain.errors import AwsUnavailableError
from worker.services.transitions import Transition
from worker.services.update_flow import UpdateFlow
from worker.steps import StepContext, _on_cancel, execute

FIXTURE = Path(__file__).parent.parent / "fixtures" / "describe_task_definition_web.json"
NETWORK = {
    "awsvpcConfiguration": {
        "subnets": ["subnet-1"],
        "securityGroups": ["sg-1"],
        "assignPublicIp": "DISABLED",
    }
}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ecs() -> FakeEcs:
    """A Fargate service demo/web on web:1 (containers web, which logs to /ecs/web, and proxy)."""
    fake = FakeEcs()
    described = json.loads(FIXTURE.read_text())
    arn = fake.add_task_definition(described["taskDefinition"], described["tags"])
    fake.add_service(
        "demo",
        "web",
        arn,
        launchType="FARGATE",
        platformVersion="1.4.0",
        networkConfiguration=NETWORK,
    )
    return fake


def record_for(*, rollout_timeout: int | None = None, **pre_deploy: Any) -> DeploymentRecord:
    """A deployment of web:1.4.2 whose pre-deploy task runs in container web."""
    payload = UpdateServiceJob.model_validate(
        {
            "cluster": "demo",
            "service": "web",
            "images": [{"container": "web", "image": ":1.4.2"}],
            "pre_deploy": {"container": "web", **pre_deploy},
            "timeout_seconds": rollout_timeout,
        },
        strict=False,
    ).model_dump(mode="json")
    return DeploymentRecord(
        id="dep-1", job=payload, cluster="demo", service="web", created_at=1000.0, updated_at=1000.0
    )


def step(flow: UpdateFlow, record: DeploymentRecord) -> Transition:
    """Run one step; the record comes back at the step that runs next."""
    transition = asyncio.run(flow.run(record))
    nxt = transition.next_step or transition.record.step
    return Transition(
        transition.record.model_copy(update={"step": nxt}),
        transition.next_step,
        transition.countdown,
    )


def run_until(flow: UpdateFlow, record: DeploymentRecord, stop: Step) -> DeploymentRecord:
    """Run steps until the record is at ``stop``."""
    while record.step != stop:
        t = step(flow, record)
        assert t.next_step is not None, t.record.reason
        record = t.record
    return record


def _only_task(ecs: FakeEcs) -> str:
    assert len(ecs.task_runs) == 1
    return next(iter(ecs.task_runs))


def test_a_passing_task_runs_on_the_new_revision_then_the_service_updates(ecs: FakeEcs) -> None:
    """RunTask goes out on the new revision, placed as the service is and with the command
    override; only after its container exited 0 does UpdateService follow."""
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    record = run_until(flow, record_for(command=["bin/migrate", "--up"]), Step.WATCH_TASK)
    assert "UpdateService" not in ecs.calls
    request = ecs.run_task_requests[0]
    assert request["taskDefinition"].endswith("web:2")
    assert request["networkConfiguration"] == NETWORK
    assert request["launchType"] == "FARGATE"
    assert request["platformVersion"] == "1.4.0"
    assert request["startedBy"] == "dep-1"
    assert request["overrides"] == {
        "containerOverrides": [{"name": "web", "command": ["bin/migrate", "--up"]}]
    }
    task = _only_task(ecs)
    assert record.pre_deploy is not None
    assert record.pre_deploy.task_arn == task
    t = step(flow, record)
    assert t.next_step is Step.WATCH_TASK
    assert "UpdateService" not in ecs.calls
    ecs.set_task_result("web", 0, ["migrated 3 tables"])
    ecs.start_task_run(task)
    ecs.finish_task(task)
    t = step(flow, t.record)
    assert t.next_step is Step.UPDATE
    assert t.record.pre_deploy is not None
    assert t.record.pre_deploy.exit_code == 0
    assert t.record.pre_deploy.log_tail == ["migrated 3 tables"]
    t = step(flow, t.record)
    assert t.next_step is Step.WATCH
    assert ecs.update_requests[0]["taskDefinition"].endswith("web:2")


def test_a_failing_task_fails_the_deployment_with_its_log_tail_and_no_update(
    ecs: FakeEcs,
) -> None:
    """Exit 1: FAILED with the exit code in the reason and the last 20 log lines in the record;
    UpdateService is never sent, and the new revision is marked discarded."""
    record = record_for()
    lines = [f"line {n}" for n in range(30)]
    ecs.set_task_result("web", 1, lines)
    ctx = _ctx(Clock())
    while record.step is not Step.WATCH_TASK:
        t = asyncio.run(execute(ctx, _gw(ecs), record))
        assert t.next_step is not None, t.record.reason
        record = t.record.model_copy(update={"step": t.next_step})
    ecs.finish_task(_only_task(ecs))
    t = asyncio.run(execute(ctx, _gw(ecs), record))
    assert t.next_step is None
    assert t.record.state is DeploymentState.FAILED
    assert t.record.reason is not None
    assert "pre-deploy task" in t.record.reason
    assert "exited 1" in t.record.reason
    assert "the service was not changed" in t.record.reason
    assert t.record.pre_deploy is not None
    assert t.record.pre_deploy.exit_code == 1
    assert t.record.pre_deploy.log_tail == lines[-20:]
    assert "UpdateService" not in ecs.calls
    assert ecs.services[("demo", "web")]["taskDefinition"].endswith("web:1")
    new = t.record.task_definition_arn
    assert new is not None
    assert any(tag["key"] == "conveyor:discarded" for tag in ecs.tags[new])


def test_a_rerun_adopts_the_task_an_earlier_attempt_started(ecs: FakeEcs) -> None:
    """A run_task step whose answer was lost (the record never got the ARN) finds the task by
    its startedBy mark on its re-run instead of starting a second one."""
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    record = run_until(flow, record_for(), Step.RUN_TASK)
    step(flow, record)  # started, but its record is lost
    t = step(flow, record)
    assert t.next_step is Step.WATCH_TASK
    assert ecs.calls.count("RunTask") == 1
    assert t.record.pre_deploy is not None
    assert t.record.pre_deploy.task_arn == _only_task(ecs)
    assert "earlier attempt" in t.record.steps[-1].detail


def test_a_task_still_running_at_its_timeout_fails_the_deployment(ecs: FakeEcs) -> None:
    """A task not stopped by its timeout ends the deployment FAILED, service unchanged."""
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    record = run_until(flow, record_for(timeout_seconds=60), Step.WATCH_TASK)
    ecs.start_task_run(_only_task(ecs))
    clock.now += 61
    t = step(flow, record)
    assert t.next_step is None
    assert t.record.state is DeploymentState.FAILED
    assert t.record.reason is not None
    assert "timed out after 60 s (RUNNING) and was stopped" in t.record.reason
    assert ecs.task_runs[_only_task(ecs)]["stopCode"] == "UserInitiated"
    assert "UpdateService" not in ecs.calls


def test_a_task_that_never_ran_its_container_fails_with_ecs_reason(ecs: FakeEcs) -> None:
    """A task stopped before its container ran (no exit code) fails with ECS's stop reason."""
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    record = run_until(flow, record_for(), Step.WATCH_TASK)
    ecs.set_task_result("web", None)
    ecs.finish_task(
        _only_task(ecs),
        stop_code="TaskFailedToStart",
        reason="CannotPullContainerError: pull access denied",
    )
    t = step(flow, record)
    assert t.record.state is DeploymentState.FAILED
    assert t.record.reason is not None
    assert "stopped without an exit code" in t.record.reason
    assert "CannotPullContainerError" in t.record.reason
    assert "UpdateService" not in ecs.calls


def test_a_container_not_in_the_revision_fails_before_running_anything(ecs: FakeEcs) -> None:
    """pre_deploy naming a container the new revision lacks fails without RunTask."""
    record = record_for()
    record = record.model_copy(
        update={
            "job": {**record.job, "pre_deploy": {**record.job["pre_deploy"], "container": "db"}}
        }
    )
    ctx = _ctx(Clock())
    while True:
        t = asyncio.run(execute(ctx, _gw(ecs), record))
        if t.next_step is None:
            break
        record = t.record.model_copy(update={"step": t.next_step})
    assert t.record.state is DeploymentState.FAILED
    assert t.record.error is not None
    assert "container 'db' is not in web:2; it has: web, proxy" in t.record.error.message
    assert "RunTask" not in ecs.calls
    assert "UpdateService" not in ecs.calls


def test_pre_deploy_is_validated_strictly() -> None:
    """Unknown keys, an empty command and a restart with a task are refused."""
    base = {"cluster": "demo", "service": "web", "images": [{"container": "web", "image": ":2"}]}
    for bad in (
        {"container": "web", "cmd": ["x"]},
        {"container": "web", "command": []},
        {"container": "web", "timeout_seconds": 5},
        {"container": "bad name"},
    ):
        with pytest.raises(ValueError, match="pre_deploy"):
            UpdateServiceJob.model_validate({**base, "pre_deploy": bad}, strict=False)
    with pytest.raises(ValueError, match="a restart registers no new revision"):
        UpdateServiceJob.model_validate(
            {
                "cluster": "demo",
                "service": "web",
                "images": [],
                "force_new_deployment": True,
                "pre_deploy": {"container": "web"},
            },
            strict=False,
        )
    job = UpdateServiceJob.model_validate(
        {**base, "pre_deploy": {"container": "web"}}, strict=False
    )
    assert job.pre_deploy is not None
    assert job.pre_deploy.timeout_seconds == 600


def _throttled() -> AwsUnavailableError:
    return AwsUnavailableError("DescribeTasks was throttled", "ThrottlingException")


def _execute(ecs: FakeEcs, ctx: StepContext, record: DeploymentRecord) -> Transition:
    """Run one step through the error policy; the record comes back at its next step."""
    t = asyncio.run(execute(ctx, _gw(ecs), record))
    nxt = t.next_step or t.record.step
    return Transition(t.record.model_copy(update={"step": nxt}), t.next_step, t.countdown)


def _watching(ecs: FakeEcs, ctx: StepContext, record: DeploymentRecord) -> DeploymentRecord:
    while record.step is not Step.WATCH_TASK:
        t = _execute(ecs, ctx, record)
        assert t.next_step is not None, t.record.reason
        record = t.record
    ecs.start_task_run(_only_task(ecs))
    return record


def test_a_task_longer_than_the_rollout_timeout_survives_a_throttle(ecs: FakeEcs) -> None:
    """Past the rollout's deadline but inside the task's own timeout, a throttled DescribeTasks
    is retried: the task's own deadline counts while it runs, and the rollout keeps its budget."""
    clock = Clock()
    ctx = _ctx(clock)
    record = _watching(ecs, ctx, record_for(rollout_timeout=300, timeout_seconds=900))
    clock.now += 400
    ecs.inject("DescribeTasks", _throttled())
    t = _execute(ecs, ctx, record)
    assert t.next_step is Step.WATCH_TASK, t.record.reason
    ecs.finish_task(_only_task(ecs))
    clock.now += 200
    t = _execute(ecs, ctx, t.record)
    assert t.next_step is Step.UPDATE, t.record.reason
    assert t.record.deadline is not None
    assert t.record.deadline > clock.now + 250


def test_running_out_of_attempts_while_the_task_runs_keeps_watching(ecs: FakeEcs) -> None:
    """DescribeTasks failing more often than the step's attempts, inside the task's timeout:
    the deployment goes on watching (its service queue stays held) instead of ending failed
    with the task left running."""
    clock = Clock()
    ctx = _ctx(clock)
    record = _watching(ecs, ctx, record_for(timeout_seconds=900))
    ecs.inject("DescribeTasks", *[_throttled()] * 4)
    for _ in range(4):
        clock.now += 10
        t = _execute(ecs, ctx, record)
        assert t.next_step is Step.WATCH_TASK, t.record.reason
        record = t.record
    ecs.finish_task(_only_task(ecs))
    t = _execute(ecs, ctx, record)
    assert t.next_step is Step.UPDATE, t.record.reason


def test_a_task_that_cannot_be_followed_past_its_timeout_is_stopped(ecs: FakeEcs) -> None:
    """DescribeTasks failing past the task's own timeout: the watch gives up, stops the task
    (StopTask) and ends failed saying so; the service is not changed."""
    clock = Clock()
    ctx = _ctx(clock)
    record = _watching(ecs, ctx, record_for(timeout_seconds=60))
    ecs.inject("DescribeTasks", *[_throttled()] * 100)
    for _ in range(20):
        clock.now += 30
        t = _execute(ecs, ctx, record)
        record = t.record
        if t.next_step is None:
            break
    assert record.state is DeploymentState.FAILED
    assert record.reason is not None
    assert "could not be followed" in record.reason
    assert "was stopped" in record.reason
    assert ecs.task_runs[_only_task(ecs)]["stopCode"] == "UserInitiated"
    assert "UpdateService" not in ecs.calls


def test_a_cancel_while_the_task_runs_waits_for_it_then_ends_without_update(
    ecs: FakeEcs,
) -> None:
    """A cancel during WATCH_TASK does not end the deployment (its queue stays held) while the
    migration runs; once the task stops the deployment ends cancelled, UpdateService unsent."""
    clock = Clock()
    flow = UpdateFlow(ecs, poll_interval=5, clock=clock)
    record = run_until(flow, record_for(), Step.WATCH_TASK)
    ecs.start_task_run(_only_task(ecs))
    record = record.model_copy(update={"cancel_requested_at": clock.now})
    assert _on_cancel(_ctx(clock), record) is None
    t = step(flow, record)
    assert t.next_step is Step.WATCH_TASK
    ecs.finish_task(_only_task(ecs))
    t = step(flow, t.record)
    assert t.next_step is None
    assert t.record.state is DeploymentState.CANCELLED
    assert t.record.reason is not None
    assert "exited 0" in t.record.reason
    assert "the service was not changed" in t.record.reason
    assert "UpdateService" not in ecs.calls
    assert ecs.task_runs[_only_task(ecs)].get("stopCode") != "UserInitiated"


def test_log_tail_lines_are_cut_and_cleaned(ecs: FakeEcs) -> None:
    """A long log line is cut with a marker; control characters and escape sequences are
    replaced, tabs kept as spaces: the tail is safe to print and small to store."""
    flow = UpdateFlow(ecs, poll_interval=5, clock=Clock())
    record = run_until(flow, record_for(), Step.WATCH_TASK)
    ecs.set_task_result("web", 0, ["x" * 300_000, "\x1b[31mred\x1b[0m\tok\r\x07done"])
    ecs.finish_task(_only_task(ecs))
    t = step(flow, record)
    assert t.record.pre_deploy is not None
    long, coloured = t.record.pre_deploy.log_tail
    assert len(long) < 600
    assert long.startswith("x" * 400)
    assert "cut" in long
    assert "\x1b" not in coloured
    assert "\x07" not in coloured
    assert "\r" not in coloured
    assert "red" in coloured
    assert " ok" in coloured
    assert "done" in coloured


def _ctx(clock: Clock) -> StepContext:
    return StepContext(
        store=None,  # type: ignore[arg-type]
        redis=None,  # type: ignore[arg-type]
        sender=None,  # type: ignore[arg-type]
        clock=clock,
        poll_interval=5,
        recovery_grace=60,
        step_time_limit=60,
        max_step_attempts=3,
    )


def _gw(ecs: FakeEcs) -> Any:
    async def gateway(_: DeploymentRecord) -> EcsGateway:
        return ecs

    return gateway


def test_a_watch_with_no_task_in_its_record_fails_instead_of_watching_on(ecs: FakeEcs) -> None:
    """A record at WATCH_TASK that names no task (edited by hand, damaged) cannot be watched:
    it ends failed rather than being retried without end."""
    clock = Clock()
    ctx = _ctx(clock)
    record = _watching(ecs, ctx, record_for()).model_copy(update={"pre_deploy": None})
    t = _execute(ecs, ctx, record)
    assert t.next_step is None
    assert t.record.state is DeploymentState.FAILED


def test_a_watch_that_gives_up_past_the_timeout_is_handed_a_run_that_stops_the_task(
    ecs: FakeEcs,
) -> None:
    """No gateway past the task's timeout (credentials failing, say): the give-up hands the
    watch one more run, which stops the task before anything else; one that cannot run even
    then ends failed naming the task that may still run."""
    clock = Clock()
    ctx = _ctx(clock)
    record = _watching(ecs, ctx, record_for(timeout_seconds=60))
    failures = {"left": 1}

    async def gateway(_: DeploymentRecord) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise _throttled()
        return ecs

    clock.now += 60 + 121
    t = asyncio.run(execute(ctx, gateway, record))
    assert t.next_step is Step.WATCH_TASK
    assert t.record.error is not None
    handed = t.record.model_copy(update={"step": Step.WATCH_TASK})
    t = asyncio.run(execute(ctx, gateway, handed))
    assert t.record.state is DeploymentState.FAILED
    assert "could not be followed past its timeout" in (t.record.reason or "")
    assert "was stopped" in (t.record.reason or "")
    assert ecs.task_runs[_only_task(ecs)]["stopCode"] == "UserInitiated"
    assert "DescribeTasks" not in ecs.calls[ecs.calls.index("StopTask") :]

    # Still no gateway a slack later: the deployment ends, naming the task.
    failures["left"] = 1
    clock.now += 121
    t = asyncio.run(execute(ctx, gateway, handed))
    assert t.record.state is DeploymentState.FAILED
    assert "may still be running" in (t.record.reason or "")
