"""Input that used to slip through: trailing newlines, Unicode letters, colliding parameters.

Each spelling that passed would have made a second queue key for one service, or let one image
silently win over another.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from config.settings import Settings
from producers.contract.fargate_spec import FargateServiceJob
from producers.contract.images import ImageReferenceError, parse_image, parse_image_spec
from producers.contract.jobs import load_update_job


def job(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cluster": "demo",
        "service": "web",
        "images": [{"container": "web", "image": "repo/web:1.4.2"}],
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    "overrides",
    [
        {"service": "web\n"},
        {"cluster": "demo\n"},
        {"service": "wéb"},
        {"service": "web\u0661"},  # an Arabic-Indic digit: \d and \w match it without ASCII
        {"family": "web\n"},
        {"images": [{"container": "web\n", "image": ":1"}]},
        {"images": [{"container": "wéb", "image": ":1"}]},
        {"images": [{"container": "web", "image": ":1.0\n"}]},
        {"images": [{"container": "web", "image": ":1.0é"}]},
        {"role_arn": "arn:aws:iam::123456789012:role/deployé"},
        {"role_arn": "arn:aws:iam::123456789012:role/deploy\n"},
        {"service": "arn:aws:ecs:us-east-1:123456789012:service/demo/web\n"},
        {"service": "arn:aws:ecs:us-east-1:123456789012:service/demo/w eb"},
    ],
)
def test_update_jobs_refuse_newlines_and_non_ascii(overrides: dict[str, Any]) -> None:
    """Names, tags and ARNs are ASCII and match whole: a trailing newline is refused."""
    with pytest.raises(ValidationError):
        load_update_job(job(**overrides))


@pytest.mark.parametrize(
    "text",
    [
        "repo/web:1.0\n",
        "repo/wéb:1",
        "registry.local\n:5000/web:1",
        "repo/web:1@sha256:" + "a" * 63 + "\n",
    ],
)
def test_image_references_refuse_newlines_and_non_ascii(text: str) -> None:
    """The image grammar matches whole strings of ASCII only."""
    with pytest.raises(ImageReferenceError):
        parse_image(text)


def test_tag_only_spec_refuses_a_trailing_newline() -> None:
    """``:TAG`` given on a command line with a stray newline is refused, not trimmed."""
    with pytest.raises(ImageReferenceError):
        parse_image_spec(":1.4.2\n")


def spec(*names: str) -> dict[str, Any]:
    return {
        "cluster": "demo",
        "service": "shop",
        "cpu": 256,
        "memory": 512,
        "execution_role_arn": "arn:aws:iam::123456789012:role/exec",
        "network": {"subnets": ["subnet-0123abcd"], "security_groups": ["sg-0123abcd"]},
        "containers": [
            {"name": n, "image": f"repo/{n.lower().replace('_', '-')}:1"} for n in names
        ],
    }


def test_container_names_that_share_a_template_parameter_are_refused() -> None:
    """``web-app`` and ``web_app`` would both be ImageWebApp: the spec is refused, naming both."""
    with pytest.raises(ValidationError) as info:
        FargateServiceJob.model_validate(spec("web-app", "web_app"))
    text = str(info.value)
    assert "'web-app' and 'web_app'" in text
    assert "ImageWebApp" in text


def test_distinct_container_names_are_accepted() -> None:
    """Names whose letters and digits differ keep their own parameters."""
    FargateServiceJob.model_validate(spec("web", "web2", "proxy"))


def test_queue_setting_is_a_plain_name() -> None:
    """CONVEYOR_QUEUE is checked like any setting; a newline in it is refused."""
    assert Settings(queue="deploys-eu").queue == "deploys-eu"
    with pytest.raises(ValidationError):
        Settings(queue="deploys\n")
