"""`make bench REPEAT=N` reports each figure's median and spread over the runs."""

from __future__ import annotations

from scripts.bench import Result, bound_seconds, summarize, summary_lines


def _run(run: int, wall: float, throttled: int, small_account_s: float) -> Result:
    return Result(
        system="conveyor-accounts",
        workers=2,
        services=30,
        wall_s=wall,
        succeeded=30,
        failed=0,
        throttled=throttled,
        calls_per_deployment=5.0,
        min_calls_per_deployment=4.1,
        bound_s=20.0,
        accounts=[
            {"account": "1", "services": 20, "last_verdict_s": wall, "bound_s": 20.0},
            {"account": "2", "services": 10, "last_verdict_s": small_account_s, "bound_s": 10.0},
        ],
        run=run,
    )


def test_the_summary_gives_the_median_and_the_spread_of_each_figure() -> None:
    """Three runs: the median is the middle run's figure, the spread the least and the most,
    for the wall time, its ratio to the bound, the throttles and each account's own ratio."""
    runs = [_run(1, 21.0, 0, 10.5), _run(2, 25.0, 3, 12.0), _run(3, 20.0, 1, 10.0)]
    entry = summarize(runs)["conveyor-accounts"]
    assert entry["runs"] == 3
    assert entry["wall_s"] == {"median": 21.0, "min": 20.0, "max": 25.0}
    assert entry["x_bound"] == {"median": 1.05, "min": 1.0, "max": 1.25}
    assert entry["throttled"] == {"median": 1.0, "min": 0.0, "max": 3.0}
    assert entry["accounts_x_own_bound"]["2"] == {"median": 1.05, "min": 1.0, "max": 1.2}
    lines = summary_lines({"conveyor-accounts": entry})
    assert lines[0].startswith("conveyor-accounts: 3 runs, wall 21.0 (20.0-25.0) s")
    assert lines[2] == "  account 2: x own bound 1.050 (1.000-1.200)"


def test_the_bound_that_remains_when_another_client_spends_a_share() -> None:
    """With a fifth of the register budget spent by another client, the refill left to
    Conveyor is 0.8 a second: 200 services after the burst of 20 take 225 s, plus a rollout."""
    assert bound_seconds(200, 5.0) == 185.0
    assert bound_seconds(200, 5.0, share=0.8) == 230.0
