"""Fargate specs are validated field by field; the rendered template passes cfn-lint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.api import lint_all
from pydantic import ValidationError

from producers.contract.fargate_spec import FargateServiceJob, SpecError, load_spec
from producers.contract.jobs import describe_validation_error
from producers.contract.stack_template import (
    MANAGED_BY_TAG,
    render_template,
    stack_name,
    template_parameters,
)

EXAMPLE = Path(__file__).parents[2] / "deploy" / "examples" / "fargate-demo.yaml"


def spec(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    data.update(overrides)
    return data


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        FargateServiceJob.model_validate(data)
    return describe_validation_error(info.value)


def test_example_spec_is_valid_and_breaker_is_on_by_default() -> None:
    """The shipped sample validates; the circuit breaker with rollback is on unless disabled."""
    job = FargateServiceJob.model_validate(spec(deployment={}))
    assert job.deployment.circuit_breaker.enable
    assert job.deployment.circuit_breaker.rollback


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"cpu": 300}, "cpu 300 is not a Fargate size"),
        ({"cpu": 256, "memory": 4096}, "memory 4096 does not fit cpu 256"),
        (
            {
                "load_balancers": [
                    {"target_group": "demo-web", "container_name": "api", "container_port": 8080}
                ]
            },
            "container 'api' is not in the spec",
        ),
        (
            {
                "load_balancers": [
                    {"target_group": "demo-web", "container_name": "web", "container_port": 9999}
                ]
            },
            "has no port 9999",
        ),
        (
            {
                "load_balancers": [
                    {"target_group": "tg", "container_name": "web", "container_port": 8080}
                ]
                * 6
            },
            "load_balancers",
        ),
        ({"execution_role_arn": None}, "execution_role_arn is required"),
        ({"tags": {"aws:x": "1"}}, "reserved prefix"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_bad_fields_are_named_with_the_fix(overrides: dict[str, Any], expected: str) -> None:
    """One clear message per bad field."""
    assert any(expected in line for line in problems(spec(**overrides))), problems(
        spec(**overrides)
    )


def test_secret_values_are_not_echoed() -> None:
    """A secret pasted where a reference belongs is refused without repeating it."""
    data = spec()
    data["containers"][0]["secrets"] = {"DB_PASSWORD": "hunter2-plaintext"}
    lines = problems(data)
    assert any("DB_PASSWORD" in line for line in lines)
    assert not any("hunter2" in line for line in lines)


def test_stack_names_are_valid_and_bounded() -> None:
    """Names derive from cluster and service, stay within 128 characters and do not collide."""
    assert stack_name("demo", "shop").startswith("conveyor-demo-shop-")
    long_a = stack_name("c" * 200, "a_b")
    long_b = stack_name("c" * 200, "a-b")
    assert len(long_a) <= 128
    assert long_a != long_b
    assert all(ch.isalnum() or ch == "-" for ch in long_a)


def test_rendered_template_passes_cfn_lint() -> None:
    """The template for the sample spec lints clean with cfn-lint (errors and warnings)."""
    template = render_template(FargateServiceJob.model_validate(spec()))
    matches = lint_all(json.dumps(template))
    # Informational suggestions (I*) are advice on metadata, not defects.
    assert [str(m) for m in matches if m.rule.id[0] in "EW"] == []


def test_template_links_breaker_grace_period_and_tags() -> None:
    """Breaker, grace period, the target group link and the managed-by tag are in the template."""
    job = FargateServiceJob.model_validate(spec())
    service = render_template(job)["Resources"]["Service"]["Properties"]
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {
        "Enable": True,
        "Rollback": True,
    }
    assert service["HealthCheckGracePeriodSeconds"] == 60
    assert service["LoadBalancers"][0]["ContainerPort"] == 8080
    assert {"Key": MANAGED_BY_TAG, "Value": "conveyor"} in service["Tags"]
    params = template_parameters(
        job,
        subnets=["subnet-1", "subnet-2"],
        security_groups=["sg-1"],
        target_group_arns=["arn:tg"],
    )
    assert params["ImageWeb"].endswith("demo/web:1.0.0")
    assert params["Subnets"] == "subnet-1,subnet-2"


def test_unreadable_and_malformed_spec_files(tmp_path: Path) -> None:
    """Spec files that are missing, not YAML, or not a mapping give a SpecError naming the file."""
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster: [unclosed")
    with pytest.raises(SpecError, match=r"bad\.yaml is not valid YAML"):
        load_spec(bad)
    listy = tmp_path / "list.json"
    listy.write_text("[1, 2]")
    with pytest.raises(SpecError, match="must be a mapping"):
        load_spec(listy)


def test_stack_names_and_families_are_unique_per_cluster_and_service() -> None:
    """``prod-eu`` + ``api`` and ``prod`` + ``eu-api`` used to share one stack (and the second
    apply replaced the first team's service) and one family: no longer."""
    from producers.contract.stack_template import task_family

    assert stack_name("prod-eu", "api") != stack_name("prod", "eu-api")
    assert task_family("prod-eu", "api") != task_family("prod", "eu-api")
    assert task_family("a", "web") != task_family("b", "web")
    assert len(task_family("c" * 255, "s" * 255)) <= 255
