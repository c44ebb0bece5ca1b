"""A Fargate spec's alternate target group is checked like its target group, before any stack
call: it must exist, take ip targets and share a load balancer with the other."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from producers.contract.fargate_spec import FargateServiceJob
from producers.contract.records import DeploymentRecord, JobKind, Step
from tests.fakes.ecs import FakeAws
from worker.domain.errors import ConveyorError
from worker.services.fargate_flow import FargateFlow

EXAMPLE = Path(__file__).parents[2] / "deploy" / "examples" / "fargate-demo.yaml"
RULE = (
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/shop/"
    "0123456789abcdef/0123456789abcdef/0123456789abcdef"
)


@pytest.fixture
def aws() -> FakeAws:
    """A fake account with cluster demo, its network and two ip target groups on one load
    balancer."""
    fake = FakeAws()
    fake.add_target_group("demo-web")
    fake.add_target_group("demo-web-green")
    return fake


def record_for(aws: FakeAws) -> DeploymentRecord:
    """A canary spec whose link shifts traffic from demo-web to demo-web-green."""
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec["deployment"] = {"strategy": "canary", "canary_percent": 10}
    spec["load_balancers"][0].update(
        alternate_target_group=aws.target_groups["demo-web-green"]["TargetGroupArn"],
        production_listener_rule=RULE,
    )
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


def validate(aws: FakeAws, record: DeploymentRecord) -> Any:
    return asyncio.run(FargateFlow(aws, poll_interval=5, clock=lambda: 100.0).run(record))


def test_a_usable_alternate_target_group_passes_validation(aws: FakeAws) -> None:
    """Both groups are described; the stack's inputs stay the primary group's ARN."""
    t = validate(aws, record_for(aws))
    assert t.next_step is Step.APPLY
    assert t.record.stack.target_group_arns[0].endswith("targetgroup/demo-web/1")
    assert aws.calls.count("DescribeTargetGroups") == 2


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (
            lambda a: a.target_groups.pop("demo-web-green"),
            "load_balancers[0].alternate_target_group 'arn:aws:elasticloadbalancing:us-east-1:"
            "123456789012:targetgroup/demo-web-green/1' does not exist",
        ),
        (
            lambda a: a.target_groups["demo-web-green"].update(TargetType="instance"),
            "has target type 'instance'",
        ),
        (
            lambda a: a.target_groups["demo-web-green"].update(LoadBalancerArns=[]),
            "has no load balancer attached",
        ),
        (
            lambda a: a.target_groups["demo-web-green"].update(
                LoadBalancerArns=["arn:aws:elasticloadbalancing:lb/app/other/2"]
            ),
            "share no load balancer; put both on the production listener rule",
        ),
    ],
)
def test_an_unusable_alternate_target_group_is_refused_before_any_stack_call(
    aws: FakeAws, setup: Any, message: str
) -> None:
    """Missing, not ip, unattached, or behind another load balancer: refused, no stack call."""
    record = record_for(aws)
    setup(aws)
    with pytest.raises(ConveyorError) as info:
        validate(aws, record)
    assert message in info.value.message
    assert not [c for c in aws.calls if "Stack" in c]
