"""Supersede never drops a requested change: the coverage rule, as a table."""

from __future__ import annotations

from typing import Any

import pytest

from worker.kinds import covers

UPDATE = "update-existing"
FARGATE = "create-fargate"


def job(*containers: str, **options: Any) -> dict[str, Any]:
    return {"images": [{"container": c, "image": ":1"} for c in containers], **options}


@pytest.mark.parametrize(
    ("newer", "older", "expected"),
    [
        (job("app"), job("app"), True),
        (job("app", "sidecar"), job("app"), True),
        (job("sidecar"), job("app"), False),  # app=:2.0 would be lost
        (job("app"), job("app", "sidecar"), False),
        (job("app", family="web"), job("app"), False),
        (job("app"), job("app", family="web"), False),
        (job("app", family="web"), job("app", family="web"), True),
        (job("app", role_arn="arn:aws:iam::1:role/a"), job("app"), False),
        (job("app"), job("app", force_new_deployment=True), False),
        (job("app", force_new_deployment=True), job("app"), True),
        (job("app", rollback=False), job("app"), False),
        (job("app"), job("app", rollback=False), True),
    ],
)
def test_update_jobs(newer: dict[str, Any], older: dict[str, Any], expected: bool) -> None:
    """A newer update job covers an older one only if it changes every container the older one
    changes, through the same family and role, with options at least as strong."""
    assert covers(UPDATE, newer, UPDATE, older) is expected


def test_a_newer_spec_covers_an_older_spec() -> None:
    """A Fargate spec is the whole desired state: the newer one always carries the older."""
    assert covers(FARGATE, {"containers": []}, FARGATE, {"containers": [{"name": "x"}]})


def test_different_kinds_never_cover_each_other() -> None:
    """An update job and a stack apply are different changes."""
    assert not covers(FARGATE, {}, UPDATE, job("app"))
    assert not covers(UPDATE, job("app"), FARGATE, {})
