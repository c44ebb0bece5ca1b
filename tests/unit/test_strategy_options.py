"""Deployment-strategy options on update jobs: AWS's bounds and the rules between the options,
checked when the job is built; the deployment configuration they produce; and what a newer job
must carry to supersede an older one."""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest
from botocore.model import StructureShape
from botocore.validate import ParamValidator
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from producers.contract.jobs import (
    ImageUpdate,
    UpdateServiceJob,
    describe_validation_error,
    load_update_job,
)
from producers.contract.releases import ReleaseJob
from producers.contract.strategy import STRATEGY_FIELDS
from worker.domain.deployment_config import merged_configuration
from worker.domain.errors import InvalidJobError
from worker.domain.supersede import covers_changes
from worker.services.update_flow import _describe_options


def job(**options: Any) -> UpdateServiceJob:
    return UpdateServiceJob(
        cluster="c", service="s", images=(ImageUpdate(container="app", image=":2"),), **options
    )


def problems(**options: Any) -> str:
    """The validation messages of a job with ``options``, one string."""
    with pytest.raises(ValidationError) as info:
        job(**options)
    return "\n".join(describe_validation_error(info.value))


# --- the contract: bounds --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field", "bound"),
    [
        ({"strategy": "blue-green", "bake_minutes": 1441}, "bake_minutes", "0 to 1440 minutes"),
        ({"strategy": "blue-green", "bake_minutes": -1}, "bake_minutes", "0 to 1440 minutes"),
        ({"strategy": "canary", "canary_percent": 0.05}, "canary_percent", "0.1 to 100 percent"),
        ({"strategy": "canary", "canary_percent": 100.1}, "canary_percent", "0.1 to 100 percent"),
        ({"strategy": "canary", "canary_percent": 5.05}, "canary_percent", "multiple of 0.1"),
        ({"strategy": "canary", "canary_bake_minutes": 1441}, "canary_bake_minutes", "1440"),
        ({"strategy": "linear", "linear_step_percent": 2.9}, "linear_step_percent", "3 to 100"),
        (
            {"strategy": "linear", "linear_step_bake_minutes": -5},
            "linear_step_bake_minutes",
            "0 to",
        ),
        (
            {"circuit_breaker": True, "circuit_breaker_threshold": 0},
            "circuit_breaker_threshold",
            "outside 1 to",
        ),
        ({"alarms": ("a,b",)}, "alarms", "comma"),
        ({"alarms": ("x" * 256,)}, "alarms", "at most 255"),
        ({"alarms": ("",)}, "alarms", "empty alarm name"),
        ({"alarms": ("high-5xx", "high-5xx")}, "alarms", "given twice"),
        ({"strategy": "sideways"}, "strategy", "'rolling', 'blue-green', 'linear' or 'canary'"),
        (
            {
                "circuit_breaker": True,
                "circuit_breaker_threshold": 5,
                "circuit_breaker_threshold_type": "percent",
            },
            "circuit_breaker_threshold_type",
            "'count', 'bounded-percent' or 'unbounded-percent'",
        ),
    ],
)
def test_values_outside_aws_bounds_are_refused_naming_field_and_bound(
    options: dict[str, Any], field: str, bound: str
) -> None:
    """Each option is checked against the bound botocore's ECS model documents."""
    found = problems(**options)
    assert found.startswith(f"{field}: "), found
    assert bound in found


@given(tenths=st.integers(min_value=1, max_value=1000))
def test_every_canary_percent_ecs_takes_is_accepted(tenths: int) -> None:
    """Multiples of 0.1 from 0.1 to 100, however the float came out, kept to one decimal."""
    value = tenths * 0.1
    assert job(strategy="canary", canary_percent=value).canary_percent == round(tenths / 10, 1)


@given(tenths=st.integers(min_value=30, max_value=1000))
def test_every_linear_step_ecs_takes_is_accepted(tenths: int) -> None:
    """Multiples of 0.1 from 3 to 100."""
    assert job(strategy="linear", linear_step_percent=tenths / 10).linear_step_percent == round(
        tenths / 10, 1
    )


@given(
    value=st.one_of(
        st.floats(max_value=2.95, allow_nan=False),
        st.floats(min_value=100.05, allow_nan=False),
        st.just(float("nan")),
    )
)
def test_linear_steps_outside_ecs_bounds_are_refused(value: float) -> None:
    """Below 3, above 100, infinite or not a number: refused with the bound."""
    assert "3 to 100 percent" in problems(strategy="linear", linear_step_percent=value)


@given(minutes=st.integers(min_value=0, max_value=1440))
def test_every_bake_time_ecs_takes_is_accepted(minutes: int) -> None:
    """0 to 1440 minutes, for every bake time."""
    built = job(
        strategy="canary",
        bake_minutes=minutes,
        canary_bake_minutes=minutes,
    )
    assert (built.bake_minutes, built.canary_bake_minutes) == (minutes, minutes)


@given(minutes=st.one_of(st.integers(max_value=-1), st.integers(min_value=1441)))
def test_bake_times_outside_ecs_bounds_are_refused(minutes: int) -> None:
    """Below 0 or above a day."""
    assert "0 to 1440 minutes" in problems(strategy="linear", linear_step_bake_minutes=minutes)


# --- the contract: options together ---------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"canary_percent": 5},
            "canary_percent: is for strategy canary only (none is given); "
            "set strategy canary, or drop canary_percent",
        ),
        (
            {"strategy": "linear", "canary_bake_minutes": 5},
            "canary_bake_minutes: is for strategy canary only (it is linear)",
        ),
        (
            {"strategy": "canary", "linear_step_percent": 10},
            "linear_step_percent: is for strategy linear only (it is canary)",
        ),
        ({"linear_step_bake_minutes": 1}, "linear_step_bake_minutes: is for strategy linear"),
        (
            {"circuit_breaker_threshold": 5},
            "circuit_breaker_threshold: the threshold is the "
            "circuit breaker's; turn circuit_breaker on as well",
        ),
        (
            {"circuit_breaker": True, "circuit_breaker_threshold_type": "count"},
            "circuit_breaker_threshold_type: ECS needs the threshold's value as well; give "
            "circuit_breaker_threshold",
        ),
    ],
)
def test_options_of_another_strategy_are_refused_with_the_fix(
    options: dict[str, Any], message: str
) -> None:
    """A strategy's settings only with that strategy; a threshold only with the breaker."""
    assert message in problems(**options)


def test_a_bake_time_goes_with_any_strategy() -> None:
    """ECS bakes rolling deployments too (CloudFormation's schema: no bake time by default for
    rolling, one may be given), so bake_minutes needs no strategy."""
    assert job(bake_minutes=5).bake_minutes == 5
    assert job(strategy="rolling", bake_minutes=0).bake_minutes == 0


def test_old_messages_stay_valid() -> None:
    """A job written before the strategy options validates, with none of them set."""
    old = {
        "kind": "update-existing",
        "schema_version": 1,
        "cluster": "c",
        "service": "s",
        "images": [{"container": "app", "image": ":2"}],
        "circuit_breaker": True,
    }
    loaded = load_update_job(old)
    assert all(getattr(loaded, name) in (None, ()) for name in STRATEGY_FIELDS)
    assert loaded.service_options() == {"circuit_breaker": True}


def test_the_options_survive_the_json_round_trip() -> None:
    """JSON numbers (an integer percent too) and an alarm list come back as the same job."""
    built = job(
        strategy="canary",
        bake_minutes=30,
        canary_percent=12.5,
        canary_bake_minutes=15,
        alarms=("high-5xx", "p99-latency"),
        circuit_breaker=True,
        circuit_breaker_threshold=4,
        circuit_breaker_threshold_type="count",
    )
    assert load_update_job(built.model_dump(mode="json")) == built
    loaded = load_update_job(
        {
            "cluster": "c",
            "service": "s",
            "images": [{"container": "app", "image": ":2"}],
            "strategy": "linear",
            "linear_step_percent": 20,
            "alarms": ["a"],
        }
    )
    assert loaded.linear_step_percent == 20.0
    assert loaded.alarms == ("a",)
    # The job is strict in Python too: an integer percent is still a number.
    assert job(strategy="linear", linear_step_percent=20).linear_step_percent == 20.0


def test_service_options_and_the_step_log_name_the_strategy_options() -> None:
    """The update step's log line says what the job changed about the deployment."""
    built = job(
        strategy="canary",
        canary_percent=12.5,
        alarms=("high-5xx", "p99"),
        circuit_breaker=True,
        circuit_breaker_threshold=4,
    )
    assert built.service_options() == {
        "circuit_breaker": True,
        "strategy": "canary",
        "canary_percent": 12.5,
        "alarms": ("high-5xx", "p99"),
        "circuit_breaker_threshold": 4,
    }
    assert _describe_options(built) == (
        " (circuit breaker on, strategy canary, canary 12.5 %, alarms high-5xx, p99, "
        "breaker threshold 4)"
    )


# --- release files ---------------------------------------------------------------------------


def test_release_entries_and_defaults_take_the_options() -> None:
    """Release-level values are defaults; an entry's own win; lists from YAML are accepted."""
    release = ReleaseJob.model_validate(
        {
            "cluster": "c",
            "strategy": "canary",
            "canary_percent": 10,
            "alarms": ["high-5xx"],
            "services": [
                {"service": "a", "images": {"app": ":2"}},
                {
                    "service": "b",
                    "images": {"app": ":2"},
                    "canary_percent": 2.5,
                    "canary_bake_minutes": 30,
                    "alarms": ["b-errors"],
                    "circuit_breaker": True,
                    "circuit_breaker_threshold": 3,
                    "circuit_breaker_threshold_type": "count",
                },
            ],
        }
    )
    a, b = release.waves[0]
    assert (a.strategy, a.canary_percent, a.alarms) == ("canary", 10.0, ("high-5xx",))
    assert (b.strategy, b.canary_percent, b.canary_bake_minutes) == ("canary", 2.5, 30)
    assert b.alarms == ("b-errors",)
    assert (b.circuit_breaker_threshold, b.circuit_breaker_threshold_type) == (3, "count")


def test_a_bad_option_in_a_release_names_the_entry_and_the_field() -> None:
    """Out of bounds in an entry, or a default that does not fit an entry's strategy."""
    with pytest.raises(ValidationError) as info:
        ReleaseJob.model_validate(
            {
                "cluster": "c",
                "services": [
                    {
                        "service": "a",
                        "images": {"app": ":2"},
                        "strategy": "linear",
                        "linear_step_percent": 1,
                    },
                ],
            }
        )
    assert "waves[0][0] (a).linear_step_percent: " in str(info.value)
    assert "3 to 100 percent" in str(info.value)
    with pytest.raises(ValidationError) as info:
        ReleaseJob.model_validate(
            {
                "cluster": "c",
                "canary_percent": 10,
                "services": [{"service": "a", "images": {"app": ":2"}, "strategy": "linear"}],
            }
        )
    assert "waves[0][0] (a).canary_percent: is for strategy canary only (it is linear)" in str(
        info.value
    )


# --- the deployment configuration sent -------------------------------------------------------

HOOKS = [
    {
        "hookTargetArn": "arn:aws:lambda:us-east-1:123456789012:function:check",
        "roleArn": "arn:aws:iam::123456789012:role/hooks",
        "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
    }
]
OWN: dict[str, Any] = {
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
    "deploymentCircuitBreaker": {"enable": True, "rollback": True, "resetOnHealthyTask": False},
    "alarms": {"alarmNames": ["high-5xx"], "enable": False, "rollback": False},
    "strategy": "LINEAR",
    "bakeTimeInMinutes": 20,
    "linearConfiguration": {"stepPercent": 10.0, "stepBakeTimeInMinutes": 6},
    "lifecycleHooks": HOOKS,
}


@pytest.mark.parametrize(
    ("options", "changed"),
    [
        ({}, {}),
        (
            {"strategy": "linear", "linear_step_percent": 25},
            {"linearConfiguration": {"stepPercent": 25.0, "stepBakeTimeInMinutes": 6}},
        ),
        ({"strategy": "linear", "bake_minutes": 0}, {"bakeTimeInMinutes": 0}),
        ({"strategy": "blue-green"}, {"strategy": "BLUE_GREEN", "linearConfiguration": None}),
        (
            {"strategy": "canary", "canary_bake_minutes": 15},
            {
                "strategy": "CANARY",
                "linearConfiguration": None,
                "canaryConfiguration": {"canaryBakeTimeInMinutes": 15},
            },
        ),
        ({"strategy": "rolling"}, {"strategy": "ROLLING", "linearConfiguration": None}),
        (
            {"alarms": ("p99", "high-5xx")},
            {"alarms": {"alarmNames": ["high-5xx", "p99"], "enable": True, "rollback": True}},
        ),
        (
            {"circuit_breaker": True, "circuit_breaker_threshold": 10},
            {
                "deploymentCircuitBreaker": {
                    "enable": True,
                    "rollback": True,
                    "resetOnHealthyTask": False,
                    "thresholdConfiguration": {"type": "BOUNDED_PERCENT", "value": 10},
                }
            },
        ),
    ],
)
def test_only_what_the_job_names_changes(options: dict[str, Any], changed: dict[str, Any]) -> None:
    """Lifecycle hooks, the breaker's own settings, alarms and everything else the job does not
    name stay as the service has them (None: the member is dropped)."""
    expected = {**OWN, **changed}
    expected = {key: value for key, value in expected.items() if value is not None}
    assert merged_configuration(OWN, job(**options)) == expected


def test_a_breaker_turned_on_gets_the_threshold_and_keeps_its_other_settings() -> None:
    """Off -> on with rollback; a count threshold is sent as ECS's COUNT."""
    own = {
        "deploymentCircuitBreaker": {"enable": False, "rollback": False, "resetOnHealthyTask": True}
    }
    merged = merged_configuration(
        own,
        job(
            circuit_breaker=True,
            circuit_breaker_threshold=3,
            circuit_breaker_threshold_type="unbounded-percent",
        ),
    )
    assert merged == {
        "deploymentCircuitBreaker": {
            "enable": True,
            "rollback": True,
            "resetOnHealthyTask": True,
            "thresholdConfiguration": {"type": "UNBOUNDED_PERCENT", "value": 3},
        }
    }


def test_blue_green_without_a_bake_time_is_refused_before_update_service() -> None:
    """The model says ECS requires bakeTimeInMinutes with BLUE_GREEN: the service's own serves,
    else the job must give one."""
    with pytest.raises(InvalidJobError) as info:
        merged_configuration({"strategy": "ROLLING"}, job(strategy="blue-green"))
    assert "bake_minutes: strategy blue-green needs a bake time" in info.value.message
    assert info.value.code == "InvalidJob"
    kept = merged_configuration({"bakeTimeInMinutes": 5}, job(strategy="blue-green"))
    assert kept == {"bakeTimeInMinutes": 5, "strategy": "BLUE_GREEN"}
    given_ = merged_configuration({}, job(strategy="blue-green", bake_minutes=0))
    assert given_ == {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 0}


def test_every_option_at_once_makes_a_request_botocore_accepts() -> None:
    """The installed SDK validates the UpdateService that carries every option (names, types,
    nesting), as the boto gateway would send it."""
    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("UpdateService").input_shape
    assert isinstance(shape, StructureShape)
    for strategy, options in (
        ("canary", {"canary_percent": 0.1, "canary_bake_minutes": 1440}),
        ("linear", {"linear_step_percent": 3, "linear_step_bake_minutes": 0}),
    ):
        configuration = merged_configuration(
            OWN,
            job(
                strategy=strategy,
                bake_minutes=60,
                alarms=("p99",),
                circuit_breaker=True,
                circuit_breaker_threshold=5,
                circuit_breaker_threshold_type="count",
                minimum_healthy_percent=50,
                maximum_percent=150,
                **options,
            ),
        )
        request = {
            "cluster": "c",
            "service": "s",
            "taskDefinition": "app:2",
            "forceNewDeployment": False,
            "deploymentConfiguration": configuration,
        }
        report = ParamValidator().validate(request, shape)
        assert not report.has_errors(), report.generate_report()


# --- superseding ------------------------------------------------------------------------------


def test_a_newer_job_supersedes_only_when_it_carries_the_strategy_options() -> None:
    """Without the older job's strategy, settings or alarms, the newer one would lose them."""
    older = job(strategy="canary", canary_percent=5, alarms=("a",)).model_dump(mode="json")
    assert not covers_changes(job().model_dump(mode="json"), older)
    assert not covers_changes(job(strategy="canary").model_dump(mode="json"), older)
    assert not covers_changes(
        job(strategy="canary", canary_percent=10, alarms=("a",)).model_dump(mode="json"), older
    )
    same = job(strategy="canary", canary_percent=5, alarms=("a", "b")).model_dump(mode="json")
    assert covers_changes(same, older)
    breaker = job(circuit_breaker=True, circuit_breaker_threshold=3).model_dump(mode="json")
    assert not covers_changes(job(circuit_breaker=True).model_dump(mode="json"), breaker)
