"""A model of the register bucket shared with another client, to choose how the limiter learns.

AWS's bucket (burst 20, refilled at 1 a second) serves another client and Conveyor's line of
``--fleet`` registers, all booked at once as tickets (places in line) in Conveyor's own bucket.
Conveyor's bucket keeps ``--margin`` tokens behind AWS's, and each of its calls reaches AWS
some latency after its grant. The other client calls once every 1/share seconds, evenly
spaced from a given phase, or at random (Poisson) times. A throttle of Conveyor's drains its
bucket, cuts its rate to ``--decrease`` of what it was (once per ``--cooldown`` s), and the rate
then climbs back by ``--recovery`` of the documented rate a second; the throttled register books
a new place at the end of the line. Prints the time to the last register against the bound
that remains, and the throttled calls of each client, over several phases or seeds.

    python -m scripts.limiter_model [--fleet 170] [--share 0.2] [--margin 0.75]
"""

from __future__ import annotations

import argparse
import random
from collections import deque
from dataclasses import dataclass

from worker.aws.ratelimit import COOLDOWN_MS, DECREASE, MARGIN, MARGIN_SPREAD, RECOVERY

BURST, RATE = 20.0, 1.0
STEP = 0.01  # seconds per tick
LATENCY = 0.15  # seconds from a grant to the call's arrival at AWS, on average


@dataclass(frozen=True)
class Learning:
    """How the limiter learns (its defaults are the constants of worker/aws/ratelimit.py)."""

    margin: float = MARGIN
    decrease: float = DECREASE
    recovery: float = RECOVERY
    cooldown: float = COOLDOWN_MS / 1000
    spread: float = MARGIN_SPREAD


@dataclass
class Outcome:
    """One modelled run."""

    seconds: float
    x_bound: float
    conveyor_throttled: int
    other_calls: int
    other_throttled: int


def run(
    fleet: int, share: float, learning: Learning, *, phase: float = 0.0, seed: int | None = None
) -> Outcome:
    """Model one fleet's registers. The other client's calls are evenly spaced from ``phase``
    seconds, or at random times from ``seed`` when given."""
    rnd = random.Random(0 if seed is None else seed)
    now, aws, tokens, issued = 0.0, BURST, BURST, 0
    cut: float | None = None  # the limiter's FLOOR is a tenth of the rate, as below
    cut_at = 0.0
    line: deque[int] = deque()
    for _ in range(fleet):
        tokens -= 1
        issued += 1
        line.append(issued)

    def rate() -> float:
        return RATE if cut is None else min(RATE, cut + (now - cut_at) * RATE * learning.recovery)

    def next_call(after: float) -> float:
        if share <= 0:
            return float("inf")
        if seed is not None:
            return after + rnd.expovariate(RATE * share)
        return after + 1 / (RATE * share)

    in_flight: list[float] = []
    done = throttled = other_calls = other_throttled = 0
    other_at = phase if seed is None else next_call(0.0)
    spare = learning.margin * rnd.uniform(1 - learning.spread, 1 + learning.spread)
    while done < fleet and now < 100 * fleet:
        tokens = min(BURST, tokens + rate() * STEP)
        aws = min(BURST, aws + RATE * STEP)
        if now >= other_at:
            other_at = next_call(now)
            other_calls += 1
            if aws >= 1:
                aws -= 1
            else:
                other_throttled += 1
        while line and issued + tokens >= line[0] + spare:
            line.popleft()
            spare = learning.margin * rnd.uniform(1 - learning.spread, 1 + learning.spread)
            in_flight.append(now + LATENCY * (0.5 + rnd.random()))
        waiting = []
        for arrival in sorted(in_flight):
            if arrival > now:
                waiting.append(arrival)
            elif aws >= 1:
                aws -= 1
                done += 1
            else:
                throttled += 1
                tokens = min(tokens, 0.0)
                if learning.decrease < 1 and (cut is None or now - cut_at > learning.cooldown):
                    cut, cut_at = max(0.1 * RATE, rate() * learning.decrease), now
                tokens -= 1
                issued += 1
                line.append(issued)
        in_flight = waiting
        now += STEP
    bound = max(0, fleet - BURST) / (RATE * (1 - share))
    return Outcome(round(now, 1), round(now / bound, 3), throttled, other_calls, other_throttled)


def main() -> None:
    """Print the modelled runs: each phase of an evenly spaced client, then random clients."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--fleet", type=int, default=170)
    parser.add_argument("--share", type=float, default=0.2)
    parser.add_argument("--margin", type=float, default=Learning.margin)
    parser.add_argument("--decrease", type=float, default=Learning.decrease)
    parser.add_argument("--recovery", type=float, default=Learning.recovery)
    parser.add_argument("--spread", type=float, default=Learning.spread)
    args = parser.parse_args()
    learning = Learning(args.margin, args.decrease, args.recovery, spread=args.spread)
    for i in range(10):
        phase = 1 + i / 10
        outcome = run(args.fleet, args.share, learning, phase=phase)
        print(f"evenly spaced from {phase:.1f} s: {outcome}")
    for seed in range(4):
        print(f"random, seed {seed}:        {run(args.fleet, args.share, learning, seed=seed)}")
    print(
        f"no learning:               {run(args.fleet, args.share, Learning(args.margin, 1.0, 0.0))}"
    )


if __name__ == "__main__":
    main()
