"""The pure helpers the local AWS is built on: image tags and token buckets."""

from __future__ import annotations

import pytest

from localaws.images import image_tag, is_broken_image
from localaws.limits import TokenBuckets


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
