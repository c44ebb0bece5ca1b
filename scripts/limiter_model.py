"""A model of the register bucket shared with another client, to choose how the limiter learns.

AWS's bucket (burst 20, refilled at 1 a second) serves another client taking a token every
1/share seconds and Conveyor's line of ``--fleet`` registers, all booked at once as tickets
(places in line) in Conveyor's own bucket. A throttle drains Conveyor's bucket, cuts its rate to
``--decrease`` of what it was (once per ``--cooldown`` s) and the rate then climbs back by
``--recovery`` of the documented rate a second; the throttled register books a new place at the
end of the line. Prints the time to the last register against the bound that remains, and the
throttled calls of each client, for the constants given and without learning.

    python -m scripts.limiter_model [--fleet 500] [--share 0.2]
"""

from __future__ import annotations

import argparse
from collections import deque
from dataclasses import dataclass

BURST, RATE = 20.0, 1.0
STEP = 0.01  # seconds per tick


@dataclass
class Outcome:
    """One modelled run."""

    seconds: float
    x_bound: float
    conveyor_throttled: int
    other_throttled: int
    registers: int


def run(fleet: int, share: float, decrease: float, recovery: float, cooldown: float) -> Outcome:
    """Model one fleet's registers; ``decrease`` 1 and ``recovery`` 0: no learning."""
    now, aws, tokens, issued = 0.0, BURST, BURST, 0
    cut: float | None = None
    cut_at = 0.0
    line: deque[int] = deque()
    for _ in range(fleet):
        tokens -= 1
        issued += 1
        line.append(issued)

    def rate() -> float:
        return RATE if cut is None else min(RATE, cut + (now - cut_at) * RATE * recovery)

    done = throttled = other_throttled = registers = 0
    next_other = 0.0
    while done < fleet:
        tokens = min(BURST, tokens + rate() * STEP)
        aws = min(BURST, aws + RATE * STEP)
        if share > 0 and now >= next_other:
            next_other += 1 / (RATE * share)
            if aws >= 1:
                aws -= 1
            else:
                other_throttled += 1
        while line and issued + tokens >= line[0]:
            line.popleft()
            registers += 1
            if aws >= 1:
                aws -= 1
                done += 1
                continue
            throttled += 1
            tokens = min(tokens, 0.0)
            if cut is None or now - cut_at > cooldown:
                cut, cut_at = max(0.1 * RATE, rate() * decrease), now
            tokens -= 1
            issued += 1
            line.append(issued)
        now += STEP
    bound = max(0, fleet - BURST) / (RATE * (1 - share))
    return Outcome(round(now, 1), round(now / bound, 3), throttled, other_throttled, registers)


def main() -> None:
    """Print the modelled runs."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--fleet", type=int, default=500)
    parser.add_argument("--share", type=float, default=0.2)
    parser.add_argument("--decrease", type=float, default=0.8)
    parser.add_argument("--recovery", type=float, default=0.002)
    parser.add_argument("--cooldown", type=float, default=5.0)
    args = parser.parse_args()
    learning = run(args.fleet, args.share, args.decrease, args.recovery, args.cooldown)
    fixed = run(args.fleet, args.share, 1.0, 0.0, args.cooldown)
    print(f"learning:    {learning}")
    print(f"no learning: {fixed}")


if __name__ == "__main__":
    main()
