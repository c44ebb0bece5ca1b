"""The pure helpers the local AWS is built on: image tags, token buckets, the breaker's
threshold and the checks against botocore's model."""

from __future__ import annotations

import pytest
from botocore.model import ListShape, Shape, StructureShape

from localaws.fidelity import (
    MODELLED,
    RequestRefused,
    answer_errors,
    check_query_request,
    check_request,
    service_model,
)
from localaws.images import image_tag, is_broken_image
from localaws.limits import TokenBuckets
from localaws.rollout_model import breaker_threshold


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ("nginx", None),
        ("nginx:1.27", "1.27"),
        ("registry:5000/team/app", None),
        ("registry:5000/team/app:fail-1", "fail-1"),
        ("repo/app:2@sha256:abcdef", "2"),
        ("repo/app@sha256:abcdef", None),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com/demo/web:1.0.0", "1.0.0"),
    ],
)
def test_image_tag(image: str, tag: str | None) -> None:
    """A tag is what follows the last ':' after the last '/'; digests are ignored."""
    assert image_tag(image) == tag


def test_broken_images() -> None:
    """Only a tag starting with fail- marks an image broken; a registry name does not."""
    assert is_broken_image("repo/app:fail-1.2.3")
    assert not is_broken_image("fail-registry:5000/app")
    assert not is_broken_image("repo/app:1.2.3-fail")


def test_token_bucket_burst_and_refill() -> None:
    """A bucket gives its burst at once, then refills at rate x scale; rows are separate and
    operations outside the table are never limited."""
    now = [0.0]
    buckets = TokenBuckets(scale=2.0, clock=lambda: now[0])

    granted = [buckets.try_acquire("1", "us-east-1", "RegisterTaskDefinition") for _ in range(21)]
    assert granted == [True] * 20 + [False]
    assert buckets.try_acquire("1", "us-east-1", "DeregisterTaskDefinition") is False
    assert buckets.try_acquire("2", "us-east-1", "RegisterTaskDefinition") is True
    assert buckets.try_acquire("1", "eu-west-1", "RegisterTaskDefinition") is True
    assert buckets.try_acquire("1", "us-east-1", "DescribeServices") is True
    assert all(buckets.try_acquire("1", "us-east-1", "CreateCluster") for _ in range(1000))

    now[0] += 0.5  # 1/s x scale 2 = one token
    assert buckets.try_acquire("1", "us-east-1", "RegisterTaskDefinition") is True
    assert buckets.try_acquire("1", "us-east-1", "RegisterTaskDefinition") is False


@pytest.mark.parametrize(
    ("desired", "threshold", "expected"),
    [
        (2, None, 3),
        (100, None, 50),
        (1000, None, 200),
        (10, {"type": "COUNT", "value": 1}, 1),
        (1000, {"type": "COUNT", "value": 500}, 500),
        (10, {"type": "BOUNDED_PERCENT", "value": 20}, 3),
        (10, {"value": 80}, 8),
        (1000, {"type": "UNBOUNDED_PERCENT", "value": 50}, 500),
        (2, {"type": "UNBOUNDED_PERCENT", "value": 10}, 1),
    ],
)
def test_breaker_threshold_follows_the_threshold_configuration(
    desired: int, threshold: dict[str, object] | None, expected: int
) -> None:
    """The breaker's thresholdConfiguration sets the threshold: COUNT as given, percentages of
    the desired count, only BOUNDED_PERCENT (the default, 50) held between 3 and 200."""
    breaker = {"enable": True, "rollback": True}
    if threshold is not None:
        breaker["thresholdConfiguration"] = threshold  # type: ignore[assignment]
    assert breaker_threshold(desired, breaker) == expected


def test_every_modelled_member_is_a_member_of_botocore_input_shape() -> None:
    """Each path in the local AWS's list of modelled members names a member of the operation's
    input shape, so that a typo cannot let a member through unchecked."""
    for service, operations in MODELLED.items():
        for operation, paths in operations.items():
            for path in paths:
                shape: Shape | None = service_model(service).operation_model(operation).input_shape
                for name in path.split("."):
                    assert isinstance(shape, StructureShape), f"{operation}: {path}"
                    assert name in shape.members, f"{operation}: {path}"
                    shape = shape.members[name]
                    if isinstance(shape, ListShape):
                        shape = shape.member


def test_check_request_names_the_first_unmodelled_member() -> None:
    """A request passes with modelled members only; an unmodelled one, at any depth, is named."""
    check_request(
        "ecs",
        "UpdateService",
        {"service": "app", "deploymentConfiguration": {"lifecycleHooks": [{"hookDetails": {}}]}},
    )
    with pytest.raises(RequestRefused, match=r"^UpdateService: gatewayConnectors is not modelled"):
        check_request("ecs", "UpdateService", {"service": "app", "gatewayConnectors": []})
    with pytest.raises(RequestRefused, match=r"lifecycleHooks\[0\].lifecycleStages\[0\]: 'X'"):
        check_request(
            "ecs",
            "UpdateService",
            {
                "service": "app",
                "deploymentConfiguration": {"lifecycleHooks": [{"lifecycleStages": ["X"]}]},
            },
        )
    check_query_request("elbv2", "DescribeTargetGroups", ["Action", "Version", "Names.member.1"])
    with pytest.raises(RequestRefused, match="unknown parameter 'Bogus'"):
        check_query_request("elbv2", "DescribeTargetGroups", ["Bogus.member.1"])


def test_answer_errors_are_strict() -> None:
    """Unknown and missing required members, wrong types and enum values are each reported."""
    shape = service_model("ecs").operation_model("DescribeServiceDeployments").output_shape
    answer = {
        "serviceDeployments": [{"status": "DONE", "extra": 1, "createdAt": "yesterday"}],
        "failures": [{"arn": 7}],
    }
    assert sorted(answer_errors(answer, shape)) == [
        ".failures[0].arn: 7 is not a string",
        ".serviceDeployments[0].createdAt: 'yesterday' is not a number",
        ".serviceDeployments[0].extra: not a member of ServiceDeployment",
        ".serviceDeployments[0].status: 'DONE' is not one of ServiceDeploymentStatus "
        + str(service_model("ecs").shape_for("ServiceDeploymentStatus").enum),  # type: ignore[attr-defined]
    ]
