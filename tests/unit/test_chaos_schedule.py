"""The chaos campaign's schedule is drawn from the seed alone."""

from __future__ import annotations

import subprocess
import sys

import pytest

from localaws.devstack import ROOT
from scripts.chaos.schedule import STAGED_SERVICES, WAIT_STAGES, WEIGHTS, draw


def test_the_same_seed_gives_the_same_schedule() -> None:
    assert draw(7, 2, services=20).describe() == draw(7, 2, services=20).describe()
    assert draw(7, 2, services=20) == draw(7, 2, services=20)


def test_another_seed_gives_another_schedule() -> None:
    assert draw(7, 2, services=20).events != draw(8, 2, services=20).events


def test_a_schedule_uses_every_actor_and_fault_within_its_span() -> None:
    schedule = draw(3, 8, services=100, workers=3)
    assert set(schedule.counts()) == set(WEIGHTS)
    assert all(0 <= e.at <= 8 * 60 * 0.85 for e in schedule.events)
    assert [e.at for e in schedule.events] == sorted(e.at for e in schedule.events)
    services = {tuple(e.args["service"]) for e in schedule.events if "service" in e.args}
    assert {account for account, _ in services} == {0, 1}
    assert all(0 <= e.args["worker"] < 3 for e in schedule.events if e.kind == "kill_worker")


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="services must be at least accounts"):
        draw(1, 1, services=1, accounts=2)


def test_the_command_prints_the_same_schedule_twice() -> None:
    """What `make chaos` prints first: a failing seed's schedule can be read again."""

    def printed() -> str:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "scripts.chaos",
                "--seed",
                "5",
                "--minutes",
                "1",
                "--services",
                "10",
                "--print-schedule",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    first = printed()
    assert first.startswith("chaos seed=5 minutes=1 services=10")
    assert first == printed()


def test_the_deployment_after_failure_actors_are_drawn_from_the_seed() -> None:
    """Cleanups (keep_revisions), builds from the service's revision (base: service), some of
    them broken, and releases deployed from a plan file after a review."""
    schedule = draw(3, 8, services=100, workers=3)
    counts = schedule.counts()
    for kind in ("update_cleanup", "update_base_service", "release_plan"):
        assert counts.get(kind, 0) > 0, kind
    by_kind: dict[str, list[dict[str, object]]] = {}
    for event in schedule.events:
        by_kind.setdefault(event.kind, []).append(event.args)
    assert all(1 <= int(a["keep"]) <= 4 for a in by_kind["update_cleanup"])  # type: ignore[call-overload]
    assert {a["broken"] for a in by_kind["update_base_service"]} == {True, False}
    for args in by_kind["release_plan"]:
        assert 0 <= float(args["review"]) <= 6  # type: ignore[arg-type]
        assert args["waves"]
    assert draw(3, 8, services=100, workers=3).describe() == schedule.describe()


def test_the_staged_actors_are_drawn_from_the_seed() -> None:
    """Staged updates (some followed --wait-until a stage), approvals, rejections and alarms,
    each on one of the staged services; a strategy's own options only with that strategy."""
    schedule = draw(3, 8, services=100, workers=3)
    counts = schedule.counts()
    for kind in ("staged", "staged_wait", "approve", "reject", "alarm"):
        assert counts.get(kind, 0) > 0, kind
    for event in schedule.events:
        args = event.args
        if event.kind in ("staged", "staged_wait", "alarm"):
            assert 0 <= args["staged"] < len(STAGED_SERVICES)
            assert "service" not in args  # the rolling actors' services are another pool
        if event.kind == "staged_wait":
            assert args["wait_until"] in WAIT_STAGES
        if event.kind in ("staged", "staged_wait"):
            assert ("canary_percent" in args) == (args["strategy"] == "canary")
            assert ("linear_step_percent" in args) == (args["strategy"] == "linear")
        if event.kind in ("approve", "reject"):
            assert 0 <= args["pick"] <= 1
    strategies = {e.args["strategy"] for e in schedule.events if e.kind == "staged"}
    assert strategies == {None, "blue-green", "linear", "canary"}


def test_the_governance_actors_are_drawn_from_the_seed() -> None:
    """Governed releases (a budget, an approval, broken entries), the answers to them, freeze
    windows and the overrides that go through them."""
    schedule = draw(3, 8, services=100, workers=3)
    counts = schedule.counts()
    for kind in (
        "release_governed",
        "release_answer",
        "freeze",
        "override",
        "release_gate",
        "release_task",
    ):
        assert counts.get(kind, 0) > 0, kind
    governed = [e.args for e in schedule.events if e.kind == "release_governed"]
    assert len({a["budget"] for a in governed}) > 1
    assert any(a["approve"] is not None for a in governed)
    for args in governed:
        entries = sum(len(w) for w in args["waves"])
        assert all(0 <= b < entries for b in args["broken"])
        assert args["approve"] is None or 1 <= args["approve"] < len(args["waves"])
    assert all(3 <= e.args["seconds"] <= 15 for e in schedule.events if e.kind == "freeze")
