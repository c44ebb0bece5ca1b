"""How `conveyor` shows where a blue/green, linear or canary deployment is: pure text."""

from __future__ import annotations

from typing import Any

import pytest

from producers.cli.rendering import progress_text, summary
from producers.contract.records import DeploymentRecord, DeploymentState, ProgressInfo, Step


def record(state: DeploymentState = DeploymentState.RUNNING, **progress: Any) -> DeploymentRecord:
    return DeploymentRecord(
        id="d1",
        job={},
        cluster="demo",
        service="web",
        created_at=1.0,
        updated_at=1.0,
        state=state,
        step=Step.WATCH,
        progress=ProgressInfo(desired=2, running=1, **progress),
    )


def test_a_rolling_update_shows_what_it_always_did() -> None:
    """No lifecycle stage: state, step and counts, as before."""
    assert progress_text(record(), 0.0) == "running · watch · 1/2 running"
    assert "stage" not in summary(record())


def test_the_bake_shows_its_time_left() -> None:
    """BAKE_TIME with its end known: the stage and the time left, never below zero."""
    baking = record(strategy="BLUE_GREEN", lifecycle_stage="BAKE_TIME", bake_ends_at=4600.0)
    assert progress_text(baking, 1000.0) == (
        "running · watch · BLUE_GREEN at BAKE_TIME, bake time left 60 min · 1/2 running"
    )
    assert "bake time left 0 s" in progress_text(baking, 9000.0)
    assert "  stage     BLUE_GREEN at BAKE_TIME" in summary(baking)


def test_a_pause_hook_shows_awaiting_approval_at_its_stage() -> None:
    """AWAITING_ACTION: "awaiting approval at STAGE", the hook and what ECS does when it
    stops waiting."""
    waiting = record(
        strategy="CANARY",
        lifecycle_stage="PRE_PRODUCTION_TRAFFIC_SHIFT",
        awaiting_hook_id="h-1",
        hook_expires_at=1000.0 + 7200,
        hook_timeout_action="CONTINUE",
    )
    assert progress_text(waiting, 1000.0) == (
        "running · watch · awaiting approval at PRE_PRODUCTION_TRAFFIC_SHIFT (hook h-1; ECS "
        "will CONTINUE in 2 h) · 1/2 running"
    )


def test_a_traffic_shift_shows_the_split() -> None:
    """The percent of production traffic ECS asks for the new revision, and the rest."""
    shifting = record(
        strategy="CANARY", lifecycle_stage="PRODUCTION_TRAFFIC_SHIFT", production_traffic=12.5
    )
    assert progress_text(shifting, 0.0) == (
        "running · watch · CANARY at PRODUCTION_TRAFFIC_SHIFT, production traffic 12.5% new / "
        "87.5% old · 1/2 running"
    )


def test_a_finished_deployment_shows_no_stage() -> None:
    """Once ended, the stage it was last seen at is no longer shown."""
    done = record(DeploymentState.SUCCEEDED, strategy="LINEAR", lifecycle_stage="CLEAN_UP")
    assert "CLEAN_UP" not in progress_text(done, 0.0)
    assert "stage" not in summary(done)


def test_a_release_that_moves_on_at_a_stage_says_so_and_marks_who_got_there() -> None:
    """The release's text names its stage, and a running deployment seen there is marked."""
    from producers.cli.rendering import release_text
    from producers.contract.releases import ReleaseRecord

    release = ReleaseRecord(
        id="rel-1",
        move_on_at="BAKE_TIME",
        waves=[["rel-1-0000"], ["rel-1-0001"]],
        jobs={
            "rel-1-0000": {"cluster": "demo", "service": "a"},
            "rel-1-0001": {"cluster": "demo", "service": "b"},
        },
        wave=1,
        reached={"rel-1-0000": 5.0},
        created_at=1.0,
        updated_at=5.0,
    )
    baking = record(strategy="CANARY", lifecycle_stage="BAKE_TIME")
    text = release_text(release, [baking, None])
    assert "moves on  when each deployment of a wave reached BAKE_TIME" in text
    assert "wave 1  demo/a  running (past BAKE_TIME)" in text
    assert "wave 2  demo/b  pending" in text


def test_list_says_which_releases_wait_for_an_approval_or_a_freeze(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`conveyor list`'s release rows name the wave waiting for approval, or the freeze."""
    from producers.cli.rendering import print_list
    from producers.contract.releases import ReleaseRecord

    def release(name: str, **extra: Any) -> ReleaseRecord:
        return ReleaseRecord(
            id=f"rel-{name}",
            name=name,
            waves=[[f"rel-{name}-0000"], [f"rel-{name}-0001"]],
            jobs={},
            created_at=1.0,
            updated_at=1.0,
            **extra,
        )

    print_list(
        [],
        [release("gated", awaiting_approval_since=2.0), release("frozen", held="waiting")],
        [],
        only="releases",
    )
    out = " ".join(capsys.readouterr().out.split())
    assert "awaiting approval before wave 2" in out
    assert "held by a freeze" in out
