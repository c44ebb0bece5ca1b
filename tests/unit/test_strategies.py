"""How long a deployment of each ECS strategy takes, and the timeout a job gets from it."""

from __future__ import annotations

from typing import Any

import pytest

from producers.contract.jobs import ImageUpdate, UpdateServiceJob
from producers.contract.records import ProgressInfo
from worker.domain.errors import InvalidJobError
from worker.domain.strategies import (
    deployment_timeout,
    linear_steps,
    staged_progress,
    strategy_times,
)
from worker.domain.verdict import History, HookWait, StagedVerdict


def job(timeout: int | None = None) -> UpdateServiceJob:
    return UpdateServiceJob(
        cluster="c",
        service="web",
        images=(ImageUpdate(container="app", image=":2"),),
        timeout_seconds=timeout,
    )


def pause(stage: str, minutes: int | None = None) -> dict[str, Any]:
    hook: dict[str, Any] = {"targetType": "PAUSE", "lifecycleStages": [stage]}
    if minutes is not None:
        hook["timeoutConfiguration"] = {"timeoutInMinutes": minutes, "action": "ROLLBACK"}
    return hook


@pytest.mark.parametrize(
    "configuration",
    [None, {}, {"strategy": "ROLLING", "bakeTimeInMinutes": 30, "minimumHealthyPercent": 50}],
)
def test_a_rolling_update_keeps_conveyors_own_default(configuration: Any) -> None:
    """No strategy, or ROLLING: 1800 s by default, and any timeout the contract allows."""
    times = strategy_times(configuration)
    assert (times.strategy, times.minimum_seconds, times.default_seconds) == ("ROLLING", 30, 1800)


def test_blue_green_takes_its_bake_time_at_the_least() -> None:
    """BLUE_GREEN with a 60 min bake: at least 3600 s + 30 s; by default 3600 s + 1800 s."""
    times = strategy_times({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 60})
    assert (times.minimum_seconds, times.default_seconds) == (3630, 5400)
    assert "bake time 60 min" in times.parts


def test_canary_adds_its_canary_bake_with_ecs_default_of_ten_minutes() -> None:
    """CANARY: the bake plus the canary bake (10 min when the configuration names none)."""
    default = strategy_times({"strategy": "CANARY", "bakeTimeInMinutes": 5})
    assert default.minimum_seconds == 15 * 60 + 30
    given = strategy_times(
        {
            "strategy": "CANARY",
            "bakeTimeInMinutes": 5,
            "canaryConfiguration": {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 30},
        }
    )
    assert given.minimum_seconds == 35 * 60 + 30
    assert given.default_seconds == 35 * 60 + 1800


@pytest.mark.parametrize(
    ("percent", "steps"), [(10.0, 10), (25.0, 4), (33.3, 4), (3.0, 34), (100.0, 1), (None, 10)]
)
def test_linear_steps_cover_the_whole_traffic(percent: float | None, steps: int) -> None:
    """100 % in stepPercent steps, the last one partial; 10 % when not given."""
    linear = {} if percent is None else {"stepPercent": percent}
    assert linear_steps({"strategy": "LINEAR", "linearConfiguration": linear}) == steps


def test_linear_bakes_after_every_step_but_the_last() -> None:
    """LINEAR 25 % steps of 5 min: 3 step bakes (none after 100 %), plus the bake."""
    times = strategy_times(
        {
            "strategy": "LINEAR",
            "bakeTimeInMinutes": 10,
            "linearConfiguration": {"stepPercent": 25.0, "stepBakeTimeInMinutes": 5},
        }
    )
    assert times.minimum_seconds == (10 + 3 * 5) * 60 + 30


def test_hook_timeouts_count_in_the_default_not_in_the_least() -> None:
    """A hook may answer at once, so it does not raise the least; it may wait its whole timeout
    (1440 min when not given), once per traffic shift step at the shift stages."""
    linear = {
        "strategy": "LINEAR",
        "bakeTimeInMinutes": 0,
        "linearConfiguration": {"stepPercent": 50.0, "stepBakeTimeInMinutes": 1},
        "lifecycleHooks": [pause("PRE_PRODUCTION_TRAFFIC_SHIFT", 30), pause("POST_SCALE_UP")],
    }
    times = strategy_times(linear)
    assert times.minimum_seconds == 1 * 60 + 30
    # Two shift steps of the 30 min hook, one run of the 1440 min default.
    assert times.default_seconds == (1 + 2 * 30 + 1440) * 60 + 1800


def test_a_rolling_update_with_hooks_waits_for_them_by_default() -> None:
    """ECS runs a ROLLING deployment's hooks at PRE_SCALE_UP and POST_SCALE_UP: their timeouts
    count in its default (hooks at stages a rolling update has not do not), not in the least."""
    rolling = {
        "strategy": "ROLLING",
        "lifecycleHooks": [
            pause("PRE_SCALE_UP", 30),
            pause("POST_SCALE_UP"),
            pause("PRE_PRODUCTION_TRAFFIC_SHIFT", 60),
        ],
    }
    times = strategy_times(rolling)
    assert (times.strategy, times.minimum_seconds) == ("ROLLING", 30)
    assert times.default_seconds == (30 + 1440) * 60 + 1800
    assert times.parts == ("2 lifecycle hook runs of up to 1470 min",)


def test_a_job_without_a_timeout_gets_the_strategys_default() -> None:
    """timeout_seconds None: the default of the strategy; given and long enough: as given."""
    times = strategy_times({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 60})
    assert deployment_timeout(job(), times) == 5400
    assert deployment_timeout(job(3630), times) == 3630
    assert deployment_timeout(job(), strategy_times(None)) == 1800


def test_a_timeout_shorter_than_the_strategy_is_refused_naming_the_least_and_the_fix() -> None:
    """An explicit timeout that would roll back every healthy deployment is refused."""
    times = strategy_times({"strategy": "CANARY", "bakeTimeInMinutes": 10})
    with pytest.raises(InvalidJobError) as info:
        deployment_timeout(job(600), times)
    message = info.value.message
    assert message.startswith("timeout_seconds: 600 s is shorter than a CANARY deployment")
    assert "1230 s" in message
    assert "give --timeout 1230 or more" in message
    assert "leave it out for the strategy's default (3000 s)" in message
    assert "nothing was changed" in message


def test_a_strategy_longer_than_any_timeout_asks_for_the_default() -> None:
    """When the least is beyond the contract's largest timeout, the fix is the default."""
    times = strategy_times({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 1440})
    with pytest.raises(InvalidJobError) as info:
        deployment_timeout(job(86400), times)
    assert "give --timeout" not in info.value.message
    assert "leave it out" in info.value.message


def _staged(stage: str | None, **kw: Any) -> StagedVerdict:
    return StagedVerdict(History.IN_PROGRESS, "", "IN_PROGRESS", stage=stage, **kw)


def test_the_bake_time_left_counts_from_when_the_stage_was_first_seen() -> None:
    """BAKE_TIME seen at 100 with a 30 min bake ends at 1900, and still at a later poll."""
    first = staged_progress(
        ProgressInfo(),
        ProgressInfo(),
        _staged("BAKE_TIME"),
        strategy="BLUE_GREEN",
        bake_minutes=30,
        now=100.0,
    )
    assert (first.lifecycle_stage, first.stage_seen_at, first.bake_ends_at) == (
        "BAKE_TIME",
        100.0,
        1900.0,
    )
    later = staged_progress(
        ProgressInfo(),
        first,
        _staged("BAKE_TIME", bake_minutes=30),
        strategy="BLUE_GREEN",
        bake_minutes=None,
        now=700.0,
    )
    assert (later.stage_seen_at, later.bake_ends_at) == (100.0, 1900.0)
    cleanup = staged_progress(
        ProgressInfo(),
        later,
        _staged("CLEAN_UP"),
        strategy="BLUE_GREEN",
        bake_minutes=30,
        now=2000.0,
    )
    assert (cleanup.stage_seen_at, cleanup.bake_ends_at) == (2000.0, None)


def test_the_traffic_split_is_in_the_progress() -> None:
    """The new revision's share of production traffic, as ECS last said it."""
    progress = staged_progress(
        ProgressInfo(),
        ProgressInfo(),
        _staged("PRODUCTION_TRAFFIC_SHIFT", production_traffic=10.0),
        strategy="CANARY",
        bake_minutes=None,
        now=1.0,
    )
    assert progress.production_traffic == 10.0


def test_a_hook_awaiting_approval_is_in_the_progress() -> None:
    """A PAUSE hook waiting: its id, expiry and timeout action."""
    waiting = HookWait(hook_id="h-1", expires_at=5000.0, timeout_action="ROLLBACK")
    progress = staged_progress(
        ProgressInfo(),
        ProgressInfo(),
        _staged("PRE_PRODUCTION_TRAFFIC_SHIFT", waiting=waiting),
        strategy="CANARY",
        bake_minutes=None,
        now=1.0,
    )
    assert progress.strategy == "CANARY"
    assert (progress.awaiting_hook_id, progress.hook_expires_at, progress.hook_timeout_action) == (
        "h-1",
        5000.0,
        "ROLLBACK",
    )
