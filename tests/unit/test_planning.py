"""A new revision is the base revision with only the requested images changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from producers.contract.images import parse_image_spec
from worker.aws.boto_ecs import known_register_fields
from worker.domain.errors import InvalidJobError, UnknownContainerError
from worker.domain.planning import (
    DEPLOYMENT_TAG,
    READ_ONLY_KEYS,
    plan_revision,
    revision_diff,
)

FIXTURE = Path(__file__).parent.parent / "fixtures" / "describe_task_definition_web.json"


@pytest.fixture
def described() -> dict[str, Any]:
    """A real-shaped DescribeTaskDefinition answer with many optional fields."""
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    return data


def test_only_the_named_image_changes(described: dict[str, Any]) -> None:
    """Every field except web's image is carried over exactly, nested ones included."""
    base = described["taskDefinition"]
    plan = plan_revision(
        base,
        described["tags"],
        {"web": parse_image_spec(":1.4.2")},
        "dep-1",
        known_register_fields(),
    )
    after = dict(plan.payload)
    after.pop("tags")
    assert revision_diff(base, after) == ["containerDefinitions[0].image"]
    assert after["containerDefinitions"][0]["image"].endswith("/shop/web:1.4.2")
    for key in ("secrets", "healthCheck", "environmentFiles", "restartPolicy", "ulimits"):
        assert after["containerDefinitions"][0][key] == base["containerDefinitions"][0][key]
    for key in (
        "runtimePlatform",
        "ephemeralStorage",
        "volumes",
        "pidMode",
        "enableFaultInjection",
    ):
        assert after[key] == base[key]
    assert [c.container for c in plan.changes] == ["web"]


def test_read_only_keys_are_stripped(described: dict[str, Any]) -> None:
    """RegisterTaskDefinition rejects describe-only keys; none reach the payload."""
    plan = plan_revision(described["taskDefinition"], [], {"web": parse_image_spec(":2")}, "d")
    assert not set(READ_ONLY_KEYS) & set(plan.payload)


def test_tags_are_copied_and_our_tag_replaces_an_older_one(described: dict[str, Any]) -> None:
    """The owner's tags are kept; the deployment tag of an earlier deployment is replaced."""
    plan = plan_revision(
        described["taskDefinition"], described["tags"], {"web": parse_image_spec(":2")}, "dep-9"
    )
    assert plan.payload["tags"] == [
        {"key": "team", "value": "shop"},
        {"key": DEPLOYMENT_TAG, "value": "dep-9"},
    ]


def test_no_tags_means_only_ours_and_never_an_empty_list(described: dict[str, Any]) -> None:
    """A family with no tags gets only the deployment tag; an empty list is never sent."""
    plan = plan_revision(described["taskDefinition"], [], {"web": parse_image_spec(":2")}, "d")
    assert plan.payload["tags"] == [{"key": DEPLOYMENT_TAG, "value": "d"}]


def test_full_tag_set_is_refused_rather_than_losing_idempotency(
    described: dict[str, Any],
) -> None:
    """With 50 tags there is no room for ours: refuse, naming the fix, rather than register a
    revision a retried step could not find again (or drop one of the owner's tags)."""
    tags = [{"key": f"k{i}", "value": "v"} for i in range(50)]
    with pytest.raises(InvalidJobError, match="Remove a tag"):
        plan_revision(described["taskDefinition"], tags, {"web": parse_image_spec(":2")}, "d")


def test_unknown_container_names_the_known_ones(described: dict[str, Any]) -> None:
    """The error names the bad container, lists those that exist and says how to fix it."""
    with pytest.raises(UnknownContainerError) as info:
        plan_revision(described["taskDefinition"], [], {"wbe": parse_image_spec(":2")}, "d")
    message = str(info.value)
    assert "'wbe'" in message
    assert "web:41" in message
    assert "web, proxy" in message


def test_fields_unknown_to_the_sdk_are_reported_not_silently_dropped(
    described: dict[str, Any],
) -> None:
    """A field the installed SDK cannot send is left out and listed in dropped_fields."""
    base = dict(described["taskDefinition"], brandNewAwsField={"x": 1})
    plan = plan_revision(base, [], {"web": parse_image_spec(":2")}, "d", known_register_fields())
    assert "brandNewAwsField" not in plan.payload
    assert plan.dropped_fields == ("brandNewAwsField",)


def test_without_a_shape_every_unknown_field_passes_through(described: dict[str, Any]) -> None:
    """Pass-through is the default: keys this code has never heard of are kept."""
    base = dict(described["taskDefinition"], brandNewAwsField={"x": 1})
    plan = plan_revision(base, [], {"web": parse_image_spec(":2")}, "d")
    assert plan.payload["brandNewAwsField"] == {"x": 1}


def test_base_is_not_mutated(described: dict[str, Any]) -> None:
    """Planning returns a new payload; the described revision is left as it was."""
    base = described["taskDefinition"]
    snapshot = json.dumps(base, sort_keys=True)
    plan_revision(base, described["tags"], {"web": parse_image_spec(":2")}, "d")
    assert json.dumps(base, sort_keys=True) == snapshot
