"""Property tests: any mutation of a spec file validates, or is refused naming a field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from producers.contract.fargate_spec import FargateServiceJob, SpecError, load_spec
from producers.contract.jobs import describe_validation_error

EXAMPLE = yaml.safe_load(
    (Path(__file__).parents[2] / "deploy" / "examples" / "fargate-demo.yaml").read_text()
)
_FIELDS = sorted(FargateServiceJob.model_fields)
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


_PATHS = _paths(EXAMPLE)


def _set(spec: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = spec
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(_PATHS), value=_values)
def test_any_single_mutation_is_valid_or_refused_by_field(
    path: tuple[Any, ...], value: Any
) -> None:
    """Replacing any value anywhere in the sample spec never crashes validation; errors name
    where they are, with the top-level field first."""
    spec = copy.deepcopy(EXAMPLE)
    _set(spec, path, value)
    try:
        FargateServiceJob.model_validate(spec)
    except ValidationError as exc:
        lines = describe_validation_error(exc)
        assert lines
        for line in lines:
            field = line.split(":", 1)[0].split(".", 1)[0]
            assert field in _FIELDS or field == "job", line


@given(key=st.text(min_size=1, max_size=20).filter(lambda k: k not in _FIELDS), value=_values)
def test_unknown_top_level_keys_are_refused_by_name(key: str, value: Any) -> None:
    """A key the spec does not know is refused, named, never silently ignored."""
    spec = copy.deepcopy(EXAMPLE)
    spec[key] = value
    try:
        FargateServiceJob.model_validate(spec)
    except ValidationError as exc:
        assert any(line.startswith(f"{key}:") for line in describe_validation_error(exc))
    else:
        raise AssertionError(f"unknown key {key!r} was accepted")


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_arbitrary_file_contents_give_a_spec_error_or_a_mapping(text: str, tmp_path: Path) -> None:
    """Whatever a spec file holds, reading it raises SpecError or returns a mapping."""
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    try:
        data = load_spec(path)
    except SpecError as exc:
        assert "spec.yaml" in str(exc)
    else:
        assert isinstance(data, dict)
