"""`python -m scripts.chaos --seed N --minutes M`: one campaign; exit 1 on any violation."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from scripts.chaos.checker import History, check
from scripts.chaos.runner import Campaign, history_json
from scripts.chaos.schedule import draw


def main(argv: list[str] | None = None) -> int:
    """Draw the schedule, print it, run it, print every invariant; 0 only with no violation."""
    parser = argparse.ArgumentParser(prog="make chaos", description=__doc__)
    parser.add_argument("--seed", type=int, default=None, help="the campaign's seed (SEED=N)")
    parser.add_argument("--minutes", type=float, default=5.0, help="its length (MINUTES=M)")
    parser.add_argument("--services", type=int, default=100, help="services, over 2 accounts")
    parser.add_argument("--workers", type=int, default=3, help="Celery workers")
    parser.add_argument("--rate", type=float, default=40.0, help="events per minute")
    parser.add_argument("--print-schedule", action="store_true", help="print it and stop")
    parser.add_argument("--workdir", type=Path, default=None, help="logs and history.json here")
    parser.add_argument(
        "--check", type=Path, default=None, help="check a saved history.json again and stop"
    )
    args = parser.parse_args(argv)
    if args.check is not None:
        try:
            history = History(**json.loads(args.check.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            print(
                f"error: --check {args.check}: not a campaign's history.json ({exc})",
                file=sys.stderr,
            )
            return 2
        results = check(history)
        for result in results:
            print(result.describe())
        return 1 if any(not r.ok for r in results) else 0
    if args.seed is None:
        parser.error("--seed is required (make chaos SEED=N)")
    try:
        schedule = draw(
            args.seed,
            args.minutes,
            services=args.services,
            workers=args.workers,
            events_per_minute=args.rate,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(schedule.describe(), flush=True)
    if args.print_schedule:
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"conveyor-chaos-{args.seed}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"logs and history: {workdir}", flush=True)
    campaign = Campaign(schedule, workdir, log=lambda text: print(text, flush=True))
    history, results = campaign.run()
    (workdir / "history.json").write_text(history_json(history))
    (workdir / "notes.txt").write_text("\n".join(campaign.notes))
    accepted = [e for e in history.enqueues if e["accepted"]]
    print(f"\nfaults and actors: {schedule.counts()}")
    print(
        f"jobs accepted: {len(accepted)} of {len(history.enqueues)}; exit codes: "
        f"{_tally(e['exit_code'] for e in history.enqueues)}"
    )
    calls = history.aws_calls
    print(
        "ECS calls: "
        + ", ".join(
            f"{kind} {sum((calls.get(kind) or {}).values())}"
            for kind in ("calls", "throttled", "server_errors", "client_errors")
        )
    )
    staged = [e for e in history.enqueues if e["kind"] == "staged" and e["accepted"]]
    print(
        f"staged deployments: {len(staged)}, exit codes {_tally(e['exit_code'] for e in staged)}; "
        "--wait-until exits: "
        f"{_tally(e.get('wait_exit') for e in staged if e.get('wait_until'))}; answers: "
        f"{_tally(a['action'] for a in history.answers)}; alarms set off: {len(history.alarms)}"
    )
    print(f"workers that exited by themselves: {campaign.crashes or 'none'}")
    print("\ninvariants:")
    for result in results:
        print(result.describe())
    violations = sum(len(r.violations) for r in results)
    print(
        f"\n{violations} violation(s); replay with: make chaos SEED={args.seed} "
        f"MINUTES={args.minutes:g}"
    )
    return 1 if violations else 0


def _tally(values: object) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:  # type: ignore[attr-defined]
        out[str(value)] = out.get(str(value), 0) + 1
    return dict(sorted(out.items()))


if __name__ == "__main__":
    sys.exit(main())
