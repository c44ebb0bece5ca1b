"""The create-Fargate flow's sequencing, against the in-memory fake AWS."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from producers.contract.fargate_spec import FargateServiceJob
from producers.contract.records import DeploymentRecord, DeploymentState, JobKind, Step
from producers.contract.stack_template import stack_name
from tests.fakes.ecs import FakeAws
from worker.services.fargate_flow import FargateFlow
from worker.services.transitions import Transition

EXAMPLE = Path(__file__).parents[2] / "deploy" / "examples" / "fargate-demo.yaml"
STACK = stack_name("demo", "shop")
# What a stack made by Conveyor for demo/shop says about itself.
OURS = [{"Key": "conveyor:cluster", "Value": "demo"}, {"Key": "conveyor:service", "Value": "shop"}]


@pytest.fixture
def aws() -> FakeAws:
    """A fake account with cluster demo, its network and an attached ip target group."""
    fake = FakeAws()
    fake.add_target_group("demo-web")
    return fake


def record_for(**overrides: Any) -> DeploymentRecord:
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec.update(overrides)
    job = FargateServiceJob.model_validate(spec).model_dump(mode="json")
    return DeploymentRecord(
        id="f1",
        kind=JobKind.CREATE_FARGATE,
        step=Step.VALIDATE,
        job=job,
        cluster="demo",
        service="shop",
        created_at=0.0,
        updated_at=0.0,
    )


def step(aws: FakeAws, record: DeploymentRecord) -> Transition:
    t = asyncio.run(FargateFlow(aws, poll_interval=5, clock=lambda: 100.0).run(record))
    nxt = t.next_step or t.record.step
    return Transition(t.record.model_copy(update={"step": nxt}), t.next_step, t.countdown)


def test_validation_resolves_names_before_any_stack_call(aws: FakeAws) -> None:
    """Subnet and group names and the target group name become ids and an ARN."""
    t = step(aws, record_for())
    assert t.next_step is Step.APPLY
    assert t.record.stack is not None
    assert t.record.stack.subnets == ["subnet-0aaa1111", "subnet-0bbb2222"]
    assert t.record.stack.target_group_arns[0].endswith("targetgroup/demo-web/1")
    assert not [c for c in aws.calls if "Stack" in c and not c.startswith("Describe")]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda a: a.add_target_group("demo-web", attached=False), "no load balancer attached"),
        (lambda a: a.add_target_group("demo-web", kind="instance"), "target type 'instance'"),
        (lambda a: a.target_groups.clear(), "does not exist"),
        (lambda a: a.subnets.pop("demo-b"), "no subnet demo-b"),
        (lambda a: a.clusters.clear(), "cluster: 'demo' does not exist"),
    ],
)
def test_bad_references_are_refused_before_any_stack_call(
    aws: FakeAws, setup: Any, message: str
) -> None:
    """Unattached or non-ip target groups, missing network or cluster: refused, no stack call."""
    from worker.domain.errors import ConveyorError

    setup(aws)
    with pytest.raises(ConveyorError, match=message):
        step(aws, record_for())
    assert not [c for c in aws.calls if "Stack" in c]


def test_create_then_watch_stack_then_service(aws: FakeAws) -> None:
    """Create; COMPLETE is not enough: the service must run the stack's revision, COMPLETED."""
    t = step(aws, step(aws, record_for()).record)
    assert t.next_step is Step.WATCH_STACK
    assert aws.stack_requests[0][0] == "create"
    td = aws.add_task_definition({"family": "shop", "containerDefinitions": [{"name": "web"}]})
    aws.add_service("demo", "shop", td)
    aws.set_stack(
        STACK, "CREATE_COMPLETE", Outputs=[{"OutputKey": "TaskDefinitionArn", "OutputValue": td}]
    )
    t = step(aws, t.record)
    assert t.next_step is Step.WATCH_SERVICE
    t = step(aws, t.record)
    assert t.record.state is DeploymentState.SUCCEEDED


def test_complete_stack_whose_service_was_rolled_back_is_a_failure(aws: FakeAws) -> None:
    """A stack COMPLETE while the service runs another revision is not a success."""
    t = step(aws, step(aws, record_for()).record)
    old = aws.add_task_definition({"family": "shop", "containerDefinitions": [{"name": "web"}]})
    new = aws.add_task_definition({"family": "shop", "containerDefinitions": [{"name": "web"}]})
    aws.add_service("demo", "shop", old)
    aws.set_stack(
        STACK, "UPDATE_COMPLETE", Outputs=[{"OutputKey": "TaskDefinitionArn", "OutputValue": new}]
    )
    t = step(aws, step(aws, t.record).record)
    assert t.record.state is DeploymentState.FAILED
    assert "rolled back or changed outside the stack" in (t.record.reason or "")


def test_same_spec_again_is_a_success_that_changes_nothing(aws: FakeAws) -> None:
    """'No updates are to be performed' ends succeeded with no stack operation."""
    validated = step(aws, record_for()).record
    step(aws, validated)
    td = aws.add_task_definition({"family": "shop", "containerDefinitions": [{"name": "web"}]})
    aws.add_service("demo", "shop", td)
    aws.set_stack(
        STACK, "CREATE_COMPLETE", Outputs=[{"OutputKey": "TaskDefinitionArn", "OutputValue": td}]
    )
    t = step(aws, validated)
    assert t.next_step is Step.WATCH_SERVICE  # unchanged stack: the service is still checked
    t = step(aws, t.record)
    assert t.record.state is DeploymentState.SUCCEEDED
    assert "nothing to update" in (t.record.reason or "")


def test_failed_create_is_deleted_and_created_again(aws: FakeAws) -> None:
    """A stack in ROLLBACK_COMPLETE is deleted, waited for, and created anew."""
    aws.set_stack(STACK, "ROLLBACK_COMPLETE", Tags=OURS)
    t = step(aws, step(aws, record_for()).record)
    assert t.next_step is Step.DELETE_STALE
    assert "DeleteStack" in aws.calls
    aws.stacks.pop(STACK)
    t = step(aws, t.record)
    assert t.next_step is Step.APPLY
    t = step(aws, t.record)
    assert aws.stack_requests[-1][0] == "create"


def test_rolled_back_update_reports_the_failed_resource(aws: FakeAws) -> None:
    """UPDATE_ROLLBACK_COMPLETE ends rolled_back, with the failing resource's reason."""
    aws.set_stack(STACK, "CREATE_COMPLETE", Tags=OURS)
    t = step(aws, step(aws, record_for()).record)
    assert aws.stack_requests[-1][0] == "update"
    aws.add_stack_event(
        STACK,
        "Service",
        "UPDATE_FAILED",
        "ECS Deployment Circuit Breaker was triggered",
        "conveyor-apply-f1",
    )
    aws.add_stack_event(STACK, "Other", "UPDATE_FAILED", "someone else's", "other-token")
    aws.set_stack(STACK, "UPDATE_ROLLBACK_COMPLETE", Tags=OURS)
    t = step(aws, t.record)
    assert t.record.state is DeploymentState.ROLLED_BACK
    assert "Circuit Breaker" in (t.record.reason or "")
    assert t.record.stack is not None
    assert [e.logical_id for e in t.record.stack.events] == ["Service"]


def test_other_operation_in_progress_is_waited_for(aws: FakeAws) -> None:
    """A stack busy with someone else's operation is a transient condition, retried later;
    one carrying this deployment's request token is adopted and watched."""
    from worker.domain.errors import TransientError

    aws.set_stack(STACK, "UPDATE_IN_PROGRESS", Tags=OURS)
    aws.add_stack_event(STACK, "Service", "UPDATE_IN_PROGRESS", None, "someone-else")
    validated = step(aws, record_for()).record
    with pytest.raises(TransientError):
        step(aws, validated)
    aws.add_stack_event(STACK, "Service", "UPDATE_IN_PROGRESS", None, "conveyor-apply-f1")
    assert step(aws, validated).next_step is Step.WATCH_STACK


def test_a_stack_of_another_service_under_our_name_is_never_touched(aws: FakeAws) -> None:
    """Before any UpdateStack or DeleteStack the stack's own tags must name this cluster and
    service: otherwise the job is refused as invalid input and the stack is left alone."""
    from worker.domain.errors import InvalidJobError

    theirs = [
        {"Key": "conveyor:cluster", "Value": "prod"},
        {"Key": "conveyor:service", "Value": "eu-api"},
    ]
    aws.set_stack(STACK, "ROLLBACK_COMPLETE", Tags=theirs)
    applying = step(aws, record_for()).record
    with pytest.raises(InvalidJobError, match="belongs to cluster 'prod', service 'eu-api'"):
        step(aws, applying)
    assert not [c for c in aws.calls if c in ("UpdateStack", "DeleteStack", "CreateStack")]


def test_a_stack_from_before_identity_tags_is_adopted_by_its_outputs(aws: FakeAws) -> None:
    """A stack named the old way is this service's only if its ServiceArn output says so."""
    from producers.contract.stack_template import legacy_stack_name

    legacy = legacy_stack_name("demo", "shop")
    arn = "arn:aws:ecs:us-east-1:123456789012:service/demo/shop"
    aws.set_stack(
        legacy, "CREATE_COMPLETE", Outputs=[{"OutputKey": "ServiceArn", "OutputValue": arn}]
    )
    t = step(aws, record_for())
    assert t.record.stack is not None
    assert t.record.stack.name == legacy
    other = "arn:aws:ecs:us-east-1:123456789012:service/demo-shop/x"
    aws.set_stack(
        legacy, "CREATE_COMPLETE", Outputs=[{"OutputKey": "ServiceArn", "OutputValue": other}]
    )
    t = step(aws, record_for())
    assert t.record.stack is not None
    assert t.record.stack.name == STACK


def test_a_preview_writes_nothing_and_refuses_what_apply_would_refuse(aws: FakeAws) -> None:
    """preview: a create lists every resource to add, with change-set calls and the deletion
    of the stack that held the change set only; a stack busy
    with an operation is reported; another service's stack under our name is refused."""
    from worker.domain.errors import InvalidJobError

    job = FargateServiceJob.model_validate(record_for().job)
    flow = FargateFlow(aws, poll_interval=5, clock=lambda: 100.0)
    preview = asyncio.run(flow.preview(job))
    assert preview["operation"] == "create"
    assert {c["type"] for c in preview["changes"]} >= {
        "AWS::ECS::Service",
        "AWS::ECS::TaskDefinition",
    }
    assert not {"CreateStack", "UpdateStack"} & set(aws.calls)
    # The one DeleteStack is of the stack CloudFormation made to hold the change set.
    assert aws.calls.count("DeleteStack") == 1
    assert aws.stacks[STACK]["StackStatus"] == "DELETE_IN_PROGRESS"
    aws.set_stack(STACK, "UPDATE_IN_PROGRESS", Tags=OURS)
    assert "UPDATE_IN_PROGRESS" in asyncio.run(flow.preview(job))["error"]
    aws.set_stack(STACK, "UPDATE_COMPLETE", Tags=[{"Key": "conveyor:cluster", "Value": "prod"}])
    with pytest.raises(InvalidJobError):
        asyncio.run(flow.preview(job))
