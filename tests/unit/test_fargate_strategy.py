"""Fargate specs declare ECS's deployment strategy: its settings are checked against AWS's
bounds and CloudFormation's 33-hour estimate, and the rendered template lints clean."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.api import lint_all
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from producers.contract.fargate_spec import FargateServiceJob
from producers.contract.jobs import describe_validation_error
from producers.contract.stack_template import render_template
from producers.contract.strategy import linear_steps

EXAMPLE = Path(__file__).parents[2] / "deploy" / "examples" / "fargate-demo.yaml"
TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/shop-green/0123456789abcdef"
RULE = (
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/shop/"
    "0123456789abcdef/0123456789abcdef/0123456789abcdef"
)
TEST_RULE = RULE[:-1] + "0"
ROLE = "arn:aws:iam::123456789012:role/ecs-traffic-shift"
LINK = {
    "target_group": "demo-web",
    "container_name": "web",
    "container_port": 8080,
    "alternate_target_group": TG,
    "production_listener_rule": RULE,
    "test_listener_rule": TEST_RULE,
    "role_arn": ROLE,
}


def spec(deployment: dict[str, Any], link: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sample spec with this deployment section and load balancer link."""
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    data["deployment"] = deployment
    data["load_balancers"] = [link if link is not None else LINK]
    return data


def problems(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        FargateServiceJob.model_validate(data)
    return "\n".join(describe_validation_error(info.value))


def lint(job: FargateServiceJob) -> list[str]:
    """cfn-lint's errors and warnings about the job's template."""
    return [str(m) for m in lint_all(json.dumps(render_template(job))) if m.rule.id[0] in "EW"]


def test_a_canary_spec_renders_every_setting_and_lints_clean() -> None:
    """Strategy, bake times, canary settings, alarms, breaker threshold and the blue/green
    settings of the link all reach the AWS::ECS::Service."""
    job = FargateServiceJob.model_validate(
        spec(
            {
                "strategy": "canary",
                "bake_minutes": 30,
                "canary_percent": 10,
                "canary_bake_minutes": 20,
                "alarms": ["shop-5xx"],
                "circuit_breaker": {"threshold": 3, "threshold_type": "count"},
            }
        )
    )
    service = render_template(job)["Resources"]["Service"]["Properties"]
    assert service["DeploymentConfiguration"] == {
        "MinimumHealthyPercent": 100,
        "MaximumPercent": 200,
        "DeploymentCircuitBreaker": {
            "Enable": True,
            "Rollback": True,
            "ThresholdConfiguration": {"Type": "COUNT", "Value": 3},
        },
        "Strategy": "CANARY",
        "BakeTimeInMinutes": 30,
        "CanaryConfiguration": {"CanaryPercent": 10.0, "CanaryBakeTimeInMinutes": 20},
        "Alarms": {"AlarmNames": ["shop-5xx"], "Enable": True, "Rollback": True},
    }
    assert service["LoadBalancers"][0]["AdvancedConfiguration"] == {
        "AlternateTargetGroupArn": TG,
        "ProductionListenerRule": RULE,
        "TestListenerRule": TEST_RULE,
        "RoleArn": ROLE,
    }
    assert lint(job) == []


def test_linear_and_blue_green_specs_lint_clean() -> None:
    """The other traffic-shifting strategies render templates cfn-lint accepts."""
    for deployment in (
        {"strategy": "linear", "linear_step_percent": 20, "linear_step_bake_minutes": 5},
        {"strategy": "blue-green", "bake_minutes": 0},
    ):
        assert lint(FargateServiceJob.model_validate(spec(deployment))) == []


def test_a_spec_without_a_strategy_renders_as_before() -> None:
    """No strategy keys appear unless the spec names them: existing stacks see no change."""
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    configuration = render_template(FargateServiceJob.model_validate(data))["Resources"]["Service"][
        "Properties"
    ]["DeploymentConfiguration"]
    assert configuration == {
        "MinimumHealthyPercent": 100,
        "MaximumPercent": 200,
        "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True},
    }


@pytest.mark.parametrize(
    ("deployment", "link", "message"),
    [
        (
            {"strategy": "canary", "bake_minutes": 1440, "canary_bake_minutes": 541},
            None,
            "CloudFormation estimates this canary deployment at 1981 minutes",
        ),
        ({"strategy": "canary", "canary_bake_minutes": 1441}, None, "0 to 1440 minutes"),
        (
            {"strategy": "linear", "linear_step_percent": 3, "linear_step_bake_minutes": 60},
            None,
            "CloudFormation estimates this linear deployment at 1995 minutes",
        ),
        (
            {"canary_percent": 5},
            {**LINK, "alternate_target_group": None},
            "canary_percent: is for strategy canary only",
        ),
        (
            {},
            None,
            "load_balancers[0]: an alternate target group, listener rules and role are "
            "for deployment.strategy blue-green, linear or canary",
        ),
        (
            {"strategy": "blue-green"},
            {"target_group": "demo-web", "container_name": "web", "container_port": 8080},
            "give alternate_target_group (its ARN)",
        ),
        (
            {"strategy": "linear"},
            {**LINK, "alternate_target_group": "shop-green"},
            "is not a target group ARN",
        ),
        (
            {"strategy": "linear"},
            {**LINK, "production_listener_rule": "rule-1"},
            "neither a listener rule ARN nor a listener ARN",
        ),
        ({"strategy": "linear"}, {**LINK, "target_group": TG}, "is the target group itself"),
        (
            {"circuit_breaker": {"enable": False, "threshold": 3}},
            {
                **LINK,
                "alternate_target_group": None,
                "production_listener_rule": None,
                "test_listener_rule": None,
                "role_arn": None,
            },
            "the breaker is off",
        ),
        ({"strategy": "canary", "alarms": ["a,b"]}, None, "holds a comma"),
    ],
)
def test_bad_strategy_settings_are_refused_with_the_fix(
    deployment: dict[str, Any], link: dict[str, Any] | None, message: str
) -> None:
    """AWS's bounds, CloudFormation's limit, and settings that need one another."""
    assert message in problems(spec(deployment, link))


@settings(max_examples=60, deadline=None)
@given(
    bake=st.integers(min_value=0, max_value=1440),
    canary_bake=st.integers(min_value=0, max_value=1440),
)
def test_canaries_within_33_hours_are_accepted_and_longer_ones_refused(
    bake: int, canary_bake: int
) -> None:
    """CloudFormation's estimate of a canary is bake + canary bake minutes."""
    data = spec({"strategy": "canary", "bake_minutes": bake, "canary_bake_minutes": canary_bake})
    if bake + canary_bake <= 33 * 60:
        assert FargateServiceJob.model_validate(data).deployment.strategy == "canary"
    else:
        assert f"at {bake + canary_bake} minutes" in problems(data)


@pytest.mark.parametrize(
    ("step", "steps"), [(10, 9), (50, 1), (100, 0), (11, 9), (3, 33), (12.5, 7), (33.3, 3)]
)
def test_linear_steps_are_counted_as_cloudformation_counts_them(step: float, steps: int) -> None:
    """No step bake after the last shift: 100/step - 1 when the step divides 100, else the
    floor of 100/step."""
    assert linear_steps(step) == steps
