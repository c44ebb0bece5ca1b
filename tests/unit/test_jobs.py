"""Jobs are validated strictly, with a message that names the field and the fix."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from producers.contract.jobs import (
    ImageUpdate,
    UpdateServiceJob,
    describe_validation_error,
    load_update_job,
)


def job(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cluster": "demo",
        "service": "web",
        "images": [{"container": "web", "image": "repo/web:1.4.2"}],
    }
    base.update(overrides)
    return base


def errors(payload: Any) -> list[str]:
    with pytest.raises(ValidationError) as info:
        load_update_job(payload)
    return describe_validation_error(info.value)


def test_defaults() -> None:
    """wait and rollback are on by default, the timeout is the worker's to choose from the
    service's strategy (None); JSON round-trips."""
    parsed = load_update_job(job())
    assert (parsed.wait, parsed.timeout_seconds, parsed.rollback) == (True, None, True)
    assert load_update_job(parsed.model_dump(mode="json")) == parsed


def test_a_timeout_given_stays_given_as_in_older_messages() -> None:
    """A message with a timeout (as every older producer wrote one, 1800 included) keeps it
    as given: the worker tells it from the default by None alone."""
    for seconds in (1800, 600):
        parsed = load_update_job(job(timeout_seconds=seconds))
        assert parsed.timeout_seconds == seconds
        assert load_update_job(parsed.model_dump(mode="json")).timeout_seconds == seconds


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"cluster": "bad name"}, "cluster"),
        ({"images": []}, "images"),
        ({"images": [{"container": "web", "image": "UPPER:1"}]}, "images.0.image"),
        ({"images": [{"container": "w e b", "image": "a:1"}]}, "images.0.container"),
        ({"timeout_seconds": 5}, "timeout_seconds"),
        ({"role_arn": "admin"}, "role_arn"),
        ({"surprise": 1}, "surprise"),
        ({"schema_version": 2}, "schema_version"),
    ],
)
def test_invalid_fields_are_named(overrides: dict[str, Any], field: str) -> None:
    """Each bad field is reported under its own name."""
    assert any(line.startswith(field) for line in errors(job(**overrides)))


def test_duplicate_container_is_refused() -> None:
    """One image per container."""
    payload = job(
        images=[{"container": "web", "image": "a:1"}, {"container": "web", "image": "a:2"}]
    )
    assert any("given twice" in line for line in errors(payload))


def test_cli_form_parses_and_tag_only_is_allowed() -> None:
    """CONTAINER=IMAGE, with ':TAG' meaning keep the repository."""
    assert ImageUpdate.parse("web=:1.4.2").spec.tag == "1.4.2"
    with pytest.raises(ValueError, match="CONTAINER=IMAGE"):
        ImageUpdate.parse("web")


def test_job_is_immutable() -> None:
    """A validated job cannot be changed afterwards."""
    parsed = load_update_job(job())
    with pytest.raises(ValidationError):
        parsed.cluster = "other"


@given(
    st.dictionaries(
        st.text(max_size=12),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=3)
                | st.dictionaries(st.text(max_size=5), children, max_size=3)
            ),
            max_leaves=8,
        ),
        max_size=6,
    )
)
def test_arbitrary_payloads_validate_or_raise_validation_error(payload: dict[str, Any]) -> None:
    """Garbage never raises anything but ValidationError, and never yields a job by accident."""
    try:
        parsed = load_update_job(payload)
    except ValidationError as exc:
        assert describe_validation_error(exc)
    else:
        assert isinstance(parsed, UpdateServiceJob)
