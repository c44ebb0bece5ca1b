"""Plan files: what they hold, what they never hold, and when a plan is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from producers.contract.releases import ReleaseJob
from producers.planfile import PlanFileError, load_plan, moved, plan_file, with_settings

REPO = "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo/web"
DIGEST = "sha256:" + "ab" * 32
SECRET_VALUE = "s3cr3t-env-value"
SECRET_REF = "arn:aws:ssm:us-east-1:123456789012:parameter/very-secret"


def release(image: str = f"{REPO}:1.1.0@{DIGEST}", **entry: Any) -> ReleaseJob:
    return ReleaseJob.model_validate(
        {
            "cluster": "demo",
            "waves": [
                [
                    {
                        "service": "web",
                        "images": {"web": image},
                        "settings": [
                            {
                                "container": "web",
                                "environment": {"TOKEN": SECRET_VALUE},
                                "secrets": {"DB": SECRET_REF},
                            }
                        ],
                        **entry,
                    }
                ],
                [{"service": "api", "images": {"api": ":2.0.0"}}],
            ],
        }
    )


PLANS: list[dict[str, Any]] = [
    {"cluster": "demo", "service": "web", "current_task_definition": "web:3",
     "task_definition": {"family": "web", "base": "web:4", "fields": []}},
    {"cluster": "demo", "service": "api", "current_task_definition": "api:7",
     "task_definition": {"family": "api", "base": "api:7", "fields": []}},
]  # fmt: skip


def written() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(plan_file(release(), PLANS, "r.yaml")))
    return data


def test_a_plan_file_holds_digests_and_bases_and_no_secret_value() -> None:
    """Per service: the images as resolved, the revision it runs and the base; settings by
    name only."""
    data = written()
    text = json.dumps(data)
    assert SECRET_VALUE not in text
    assert SECRET_REF not in text
    assert data["services"][0] == {
        "cluster": "demo", "service": "web", "current_task_definition": "web:3",
        "base": "web:4", "images": {"web": f"{REPO}:1.1.0@{DIGEST}"},
    }  # fmt: skip
    planned, services = load_plan(data, "plan.json")
    assert planned.waves[0][0].images[0].image == f"{REPO}:1.1.0@{DIGEST}"
    assert services[1]["base"] == "api:7"


def test_masked_settings_are_never_deployed_without_the_release_file() -> None:
    """A planned job that sets environment or secrets is refused alone, naming the service
    and the fix; with the release file, the values come from it."""
    planned, _ = load_plan(written(), "plan.json")
    with pytest.raises(PlanFileError) as info:
        with_settings(planned, None, "plan.json")
    assert "demo/web set environment variables or secrets" in str(info.value)
    assert "conveyor release --plan plan.json -f RELEASE.yaml" in str(info.value)
    merged = with_settings(planned, release(f"{REPO}:{{>=1.1 <1.2}}"), "plan.json", "r.yaml")
    (web,) = merged.waves[0]
    assert web.images[0].image == f"{REPO}:1.1.0@{DIGEST}"  # the plan's image, not re-resolved
    assert web.settings[0].environment == {"TOKEN": SECRET_VALUE}
    assert web.settings[0].secrets == {"DB": SECRET_REF}


@pytest.mark.parametrize(
    ("changed", "named"),
    [
        ({"desired_count": 5}, "desired_count"),
        ({"image": f"{REPO}:9.9.9"}, "images.web"),
    ],
)
def test_a_release_file_that_no_longer_matches_the_plan_is_refused(
    changed: dict[str, Any], named: str
) -> None:
    """Another option or another fixed image in the release file: refused, naming the field."""
    planned, _ = load_plan(written(), "plan.json")
    image = changed.pop("image", f"{REPO}:{{latest}}")
    with pytest.raises(PlanFileError, match=f"demo/web differs from the plan.*{named}"):
        with_settings(planned, release(image, **changed), "plan.json", "r.yaml")


def test_what_moved_since_the_plan_is_named_per_service() -> None:
    """The current revision or the base moved: one line each; a version rule cannot move
    anything, since the plan file holds digests."""
    _, services = load_plan(written(), "plan.json")
    assert moved(services, PLANS) == []
    fresh = json.loads(json.dumps(PLANS))
    fresh[0]["current_task_definition"] = "web:5"
    fresh[1]["task_definition"]["base"] = "api:8"
    assert moved(services, fresh) == [
        "demo/web: runs web:5 now, web:3 when planned",
        "demo/api: its new revision would be built from api:8 now, from api:7 when planned",
    ]
    gone = [{"cluster": "demo", "service": "web", "error": "service 'web' not found"}, PLANS[1]]
    assert moved(services, gone) == ["demo/web: cannot be planned now: service 'web' not found"]


def test_no_plan_file_for_a_plan_with_errors_and_damaged_files_are_refused() -> None:
    """A plan that found an error writes no file; a file that is not a plan file says how to
    write one."""
    bad = [PLANS[0], {"cluster": "demo", "service": "api", "error": "container 'x' is not in"}]
    with pytest.raises(PlanFileError, match="no plan file written: demo/api"):
        plan_file(release(), bad, "r.yaml")
    with pytest.raises(PlanFileError, match="conveyor plan -f RELEASE --out FILE"):
        load_plan({"release": {}}, "x.json")
    damaged = written()
    del damaged["services"]
    with pytest.raises(PlanFileError, match="damaged"):
        load_plan(damaged, "x.json")
    swapped = written()
    swapped["services"].reverse()
    with pytest.raises(PlanFileError, match="do not match"):
        load_plan(swapped, "x.json")


def test_a_release_from_a_plan_is_pinned_to_the_planned_bases() -> None:
    """Every job that builds a new revision from the family gets the plan's base; a restart
    and a job with base service keep theirs."""
    from producers.planfile import pin_bases

    release = ReleaseJob.model_validate(
        {
            "cluster": "c",
            "waves": [
                [
                    {"service": "a", "images": {"app": ":2"}},
                    {"service": "b", "force_new_deployment": True},
                ],
                [{"service": "d", "images": {"app": ":2"}, "base": "service"}],
            ],
        }
    )
    services: list[dict[str, Any]] = [{"base": "a:4"}, {"base": None}, {"base": "d:9"}]
    pinned = pin_bases(release, services)
    jobs = [job for wave in pinned.waves for job in wave]
    assert [job.base_revision for job in jobs] == ["a:4", None, None]
