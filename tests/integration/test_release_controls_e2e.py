"""A release's failure budget and its approvals between waves, end to end: the real CLI and a
worker, the local AWS."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from localaws.devstack import Worker
from tests.integration.conftest import Stack
from tests.integration.test_releases_e2e import image_of, services, write

pytestmark = pytest.mark.integration


def test_a_spent_failure_budget_stops_a_continue_on_failure_release(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """`--continue-on-failure` with max_failures 1: the first broken wave is tolerated, the
    second spends the budget, and the third wave's service is never touched (exit 1)."""
    start_worker("w1")
    a, b, c = services(stack, 3)
    path = write(
        tmp_path,
        {
            "cluster": "demo",
            "max_failures": 1,
            "waves": [
                [{"service": a, "images": {"app": ":fail-4.0.0"}}],
                [{"service": b, "images": {"app": ":fail-4.0.0"}}],
                [{"service": c, "images": {"app": ":4.0.0"}}],
            ],
        },
    )
    result = stack.cli("release", "-f", str(path), "--continue-on-failure", "--json")
    assert result.returncode == 1, result.stderr + result.stdout
    release = json.loads(result.stdout)
    assert release["state"] == "failed"
    assert [d["state"] for d in release["deployments"]] == ["rolled_back", "rolled_back", "pending"]
    assert "failure budget spent: 2 failed, at most 1 allowed" in release["reason"]
    assert image_of(stack, c).endswith(":1.0.0")

    refused = stack.cli("release", "-f", str(path), "--fail-fast")
    assert refused.returncode == 2
    assert "drop fail_fast (or --fail-fast)" in refused.stderr


def test_a_release_waits_before_a_gated_wave_until_approved(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """The second wave has approve_before: the release pauses after the first (its service
    untouched, `status` saying what to do), `conveyor approve REL` starts it, and the record
    notes who approved."""
    start_worker("w1")
    a, b = services(stack, 2)
    path = write(
        tmp_path,
        {
            "cluster": "demo",
            "waves": [
                [{"service": a, "images": {"app": ":4.0.0"}}],
                {"approve_before": True, "services": [{"service": b, "images": {"app": ":4.0.0"}}]},
            ],
        },
    )
    started = stack.cli("release", "-f", str(path), "--no-wait")
    assert started.returncode == 0, started.stderr
    release_id = started.stdout.strip()
    deadline = time.monotonic() + 120
    while (
        "awaiting  approval before wave 2" not in (shown := stack.cli("status", release_id)).stdout
    ):
        assert time.monotonic() < deadline, shown.stdout + shown.stderr
        time.sleep(0.5)
    assert shown.returncode == 6  # not finished
    assert image_of(stack, b).endswith(":1.0.0")

    approved = stack.cli("approve", release_id, "--by", "release-manager", "--json")

    assert approved.returncode == 0, approved.stderr + approved.stdout
    release = json.loads(approved.stdout)
    assert release["state"] == "succeeded"
    assert [(x["wave"], x["action"], x["by"]) for x in release["approvals"]] == [
        (1, "CONTINUE", "release-manager")
    ]
    assert image_of(stack, b).endswith(":4.0.0")

    trail = stack.cli("history", "--json")
    assert trail.returncode == 0, trail.stderr
    events = [json.loads(line) for line in trail.stdout.splitlines()]
    mine = [(e["event"], e["id"]) for e in events if str(e.get("id", "")).startswith(release_id)]
    first, second = release["waves"][0][0], release["waves"][1][0]
    assert mine[0] == ("release enqueued", release_id)
    assert set(mine) == {
        ("release enqueued", release_id),
        ("verdict", first),
        ("approved", release_id),
        ("verdict", second),
        ("release verdict", release_id),
    }
    assert len(mine) == 5
    (approved,) = [e for e in events if e["event"] == "approved" and e["id"] == release_id]
    assert (approved["by"], approved["wave"]) == ("release-manager", 2)
    text = stack.cli("history", "--service", b)
    assert f"verdict             {second} demo/{b} succeeded" in text.stdout


def test_a_freeze_window_refuses_an_update_then_an_override_deploys_it(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """Inside a freeze window `conveyor update` exits 2 naming the window and changes
    nothing; with --override-freeze --reason it deploys, and the record and the audit trail
    say who overrode it and why."""
    from tests.store.test_freeze_store import _freeze

    freeze = _freeze(tmp_path / "freeze.yaml", active=True)
    stack.env.update(CONVEYOR_FREEZE_FILE=str(freeze), CONVEYOR_ACTOR="pipeline:shop#7")
    start_worker("w1")
    (name,) = services(stack, 1)
    args = ("update", "--cluster", "demo", "--service", name, "--image", "app=:5.0.0")

    refused = stack.cli(*args)
    assert refused.returncode == 2, refused.stderr
    assert "refused: inside freeze window 'change-freeze'" in refused.stderr
    assert image_of(stack, name).endswith(":1.0.0")
    lone = stack.cli(*args, "--override-freeze")
    assert lone.returncode == 2
    assert "--override-freeze needs --reason TEXT" in lone.stderr

    done = stack.cli(*args, "--override-freeze", "--reason", "hotfix INC-42", "--json")

    assert done.returncode == 0, done.stderr + done.stdout
    record = json.loads(done.stdout)
    assert record["freeze_override"]["reason"] == "hotfix INC-42"
    assert record["freeze_override"]["by"] == "pipeline:shop#7"
    assert image_of(stack, name).endswith(":5.0.0")
    trail = stack.cli("history", "--service", name, "--json")
    kinds = [json.loads(line)["event"] for line in trail.stdout.splitlines()]
    assert kinds == ["enqueued", "freeze override", "verdict"]
