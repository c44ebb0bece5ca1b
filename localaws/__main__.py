"""``python -m localaws``: run the local AWS until SIGINT/SIGTERM.

Prints ``conveyor local-aws ready at http://HOST:PORT`` (the port actually bound) once it listens
and, with ``--seed``, once the seeded world is steady.
"""

from __future__ import annotations

import argparse
import logging
import sys

from localaws.rollout import DEFAULT_MINUTE_SECONDS
from localaws.server import SEEDS, serve


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m localaws",
        description="A local AWS endpoint (moto) whose ECS deployments roll like ECS's.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    parser.add_argument(
        "--rollout-seconds",
        type=float,
        default=10.0,
        help="how long a healthy ECS rollout takes (default 10)",
    )
    parser.add_argument(
        "--minute-seconds",
        type=float,
        default=DEFAULT_MINUTE_SECONDS,
        help=(
            "seconds of simulated time per minute of a blue/green, linear or canary bake or "
            f"hook timeout (default {DEFAULT_MINUTE_SECONDS})"
        ),
    )
    parser.add_argument("--seed", choices=SEEDS, help="create a ready-made world before serving")
    parser.add_argument("--verbose", action="store_true", help="log every HTTP request to stderr")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    # werkzeug logs one line per request at INFO: useful when debugging, noise otherwise.
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.verbose else logging.WARNING)
    serve(
        host=args.host,
        port=args.port,
        rollout_seconds=args.rollout_seconds,
        seed=args.seed,
        minute_seconds=args.minute_seconds,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
