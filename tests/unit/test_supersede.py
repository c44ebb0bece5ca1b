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


MIGRATE = {"container": "app", "command": ["migrate"], "timeout_seconds": 900}
WITH_MIGRATE = job("app", pre_deploy=MIGRATE)


@pytest.mark.parametrize(
    ("newer", "older", "expected"),
    [
        (job("app"), WITH_MIGRATE, False),  # the migration would never run
        (job("app", pre_deploy={**MIGRATE, "command": ["seed"]}), WITH_MIGRATE, False),
        (job("app", pre_deploy={**MIGRATE, "timeout_seconds": 60}), WITH_MIGRATE, False),
        (WITH_MIGRATE, WITH_MIGRATE, True),
        (job("app", pre_deploy=MIGRATE), job("app"), True),
    ],
)
def test_a_pre_deploy_task_is_carried_only_by_the_same_task(
    newer: dict[str, Any], older: dict[str, Any], expected: bool
) -> None:
    """A queued job with a pre-deploy task (a migration) is superseded only by a newer job that
    runs exactly the same task: otherwise the new image would ship without the migration."""
    assert covers(UPDATE, newer, UPDATE, older) is expected


ROLLBACK = job("app", base_revision="web:41")


@pytest.mark.parametrize(
    ("newer", "older"),
    [
        (ROLLBACK, job("app")),  # a release's rollback must not swallow someone's hotfix
        (ROLLBACK, ROLLBACK),
        (job("app"), ROLLBACK),  # built from another base, the rollback's base is lost
        (job("app", base_revision="web:42"), ROLLBACK),
    ],
)
def test_a_pinned_base_revision_neither_covers_nor_is_covered(
    newer: dict[str, Any], older: dict[str, Any]
) -> None:
    """A job pinned to a base revision (a reviewed plan's, or a release gate's rollback with the
    old images) builds that revision's whole definition: it carries no newer job's change, and no
    job built from another base carries its own."""
    assert not covers(UPDATE, newer, UPDATE, older)
