"""Release files: waves, defaults, and a clear error per bad field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from producers.contract.releases import ReleaseJob, is_release_id, new_release_id


def entry(service: str, **more: Any) -> dict[str, Any]:
    return {"service": service, "images": {"app": ":2.0"}, **more}


def test_services_is_one_wave_and_defaults_apply() -> None:
    """``services:`` is one wave; the release's cluster, timeout and rollback are defaults."""
    job = ReleaseJob.model_validate(
        {"cluster": "prod", "timeout_seconds": 600, "services": [entry("a"), entry("b")]}
    )
    assert len(job.waves) == 1
    assert [j.service for j in job.waves[0]] == ["a", "b"]
    assert {j.cluster for j in job.waves[0]} == {"prod"}
    assert {j.timeout_seconds for j in job.waves[0]} == {600}


def test_waves_keep_their_order_and_entries_override_defaults() -> None:
    """Waves run in the file's order; an entry's own cluster beats the default."""
    job = ReleaseJob.model_validate(
        {
            "cluster": "prod",
            "waves": [[entry("api")], [entry("web"), entry("batch", cluster="prod-batch")]],
        }
    )
    assert [[j.service for j in w] for w in job.waves] == [["api"], ["web", "batch"]]
    assert job.waves[1][1].cluster == "prod-batch"
    ids = job.deployment_ids("rel-0123456789abcdef0123")
    assert ids == [
        ["rel-0123456789abcdef0123-0000"],
        ["rel-0123456789abcdef0123-0001", "rel-0123456789abcdef0123-0002"],
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"services": [entry("a")]}, "no cluster"),
        ({"cluster": "c", "services": [entry("a"), entry("a")]}, "in the release twice"),
        ({"cluster": "c", "services": [], "waves": []}, "either services"),
        ({"cluster": "c", "waves": [[]]}, "non-empty list"),
        ({"cluster": "c", "services": [{"service": "a", "images": {}}]}, "images"),
        ({"cluster": "c", "services": [entry("a", colour="red")]}, "colour"),
        ({"cluster": "c", "services": [entry("a\n")]}, "service"),
        ({"cluster": "c", "services": [{"service": "a", "images": {"app": "bad image"}}]}, "image"),
    ],
)
def test_bad_releases_name_the_problem(data: dict[str, Any], message: str) -> None:
    """Every bad release file is refused with the field and the fix."""
    with pytest.raises(ValidationError) as info:
        ReleaseJob.model_validate(data)
    assert message in str(info.value)


def test_release_ids_are_told_from_their_deployments() -> None:
    """A release id and the ids of its deployments are distinguishable."""
    release_id = new_release_id()
    assert is_release_id(release_id)
    assert not is_release_id(f"{release_id}-0000")
    assert not is_release_id("0123456789abcdef0123456789abcdef")


def test_first_steps_go_out_one_account_after_another() -> None:
    """A wave listed account by account is dispatched round robin, so that no account waits
    for the first steps of the accounts listed before it; each keeps its own order."""
    from producers.contract.records import DeploymentRecord
    from producers.contract.release_store import interleave_by_account

    def record(i: int, account: str) -> DeploymentRecord:
        return DeploymentRecord(
            id=f"d{i}", job={}, cluster="c", service=f"s{i}", account=account,
            created_at=0.0, updated_at=0.0,
        )  # fmt: skip

    wave = [record(i, "a") for i in range(4)] + [record(i, "b") for i in range(4, 6)]
    wave += [record(6, "c")]
    ordered = [r.id for r in interleave_by_account(wave)]
    assert ordered == ["d0", "d4", "d6", "d1", "d5", "d2", "d3"]
    assert interleave_by_account([]) == []


def test_a_release_without_a_timeout_leaves_each_entry_to_its_strategys_default() -> None:
    """No release or entry timeout: every job's timeout is None (the worker's default); an
    entry's own timeout is kept."""
    job = ReleaseJob.model_validate(
        {"cluster": "prod", "services": [entry("a"), entry("b", timeout_seconds=900)]}
    )
    assert job.timeout_seconds is None
    assert [j.timeout_seconds for j in job.waves[0]] == [None, 900]
