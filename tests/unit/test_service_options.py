"""Service options on update jobs: validation, the merged deployment configuration, and what
a newer job must carry to supersede an older one."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from producers.contract.jobs import ImageUpdate, UpdateServiceJob, describe_validation_error
from producers.contract.releases import ReleaseJob
from worker.kinds import covers
from worker.services.update_flow import deployment_configuration


def job(**options: Any) -> UpdateServiceJob:
    return UpdateServiceJob(
        cluster="c", service="s", images=(ImageUpdate(container="app", image=":2"),), **options
    )


OWN = {
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
    "deploymentCircuitBreaker": {"enable": False, "rollback": False},
    "alarms": {"alarmNames": ["high-5xx"], "enable": True, "rollback": True},
}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, OWN),
        (
            {"minimum_healthy_percent": 50, "maximum_percent": 150},
            {**OWN, "minimumHealthyPercent": 50, "maximumPercent": 150},
        ),
        (
            {"circuit_breaker": True},
            {**OWN, "deploymentCircuitBreaker": {"enable": True, "rollback": True}},
        ),
    ],
)
def test_only_the_named_options_change_the_services_configuration(
    options: dict[str, Any], expected: dict[str, Any]
) -> None:
    """Everything else (alarms included) is kept as the service has it."""
    assert deployment_configuration({"deploymentConfiguration": OWN}, job(**options)) == expected


def test_a_breaker_that_is_on_keeps_its_own_rollback_setting() -> None:
    """circuit_breaker only turns a breaker on; one already on is left as it is."""
    own = {"deploymentCircuitBreaker": {"enable": True, "rollback": False}}
    merged = deployment_configuration({"deploymentConfiguration": own}, job(circuit_breaker=True))
    assert merged == own


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"desired_count": -1}, "desired_count"),
        ({"minimum_healthy_percent": 101}, "minimum_healthy_percent"),
        ({"maximum_percent": 99}, "maximum_percent"),
        (
            {"minimum_healthy_percent": 100, "maximum_percent": 100},
            "maximum_percent (100) must be above",
        ),
    ],
)
def test_bad_options_are_refused_naming_the_field(options: dict[str, Any], field: str) -> None:
    """Out of range, or a maximum that leaves ECS no room to start a task."""
    with pytest.raises(ValidationError) as info:
        job(**options)
    assert field in " ".join(describe_validation_error(info.value))


def test_release_entries_take_the_options() -> None:
    """A release file entry sets them for its service."""
    release = ReleaseJob.model_validate(
        {
            "cluster": "c",
            "services": [
                {
                    "service": "a",
                    "images": {"app": ":2"},
                    "desired_count": 4,
                    "circuit_breaker": True,
                }
            ],
        }
    )
    (entry,) = release.waves[0]
    assert entry.service_options() == {"desired_count": 4, "circuit_breaker": True}


def test_a_newer_job_supersedes_only_when_it_sets_the_same_options() -> None:
    """Without the older job's desired count (or breaker), the newer one would lose it."""
    kind = "update-existing"
    older = job(desired_count=4).model_dump(mode="json")
    assert not covers(kind, job().model_dump(mode="json"), kind, older)
    assert not covers(kind, job(desired_count=5).model_dump(mode="json"), kind, older)
    assert covers(kind, job(desired_count=4).model_dump(mode="json"), kind, older)
    breaker = job(circuit_breaker=True).model_dump(mode="json")
    assert not covers(kind, job().model_dump(mode="json"), kind, breaker)
    assert covers(kind, job().model_dump(mode="json"), kind, job().model_dump(mode="json"))
