"""Flower for Conveyor: authentication is not optional, however Flower is started.

``celery -A worker.app flower`` loads the Celery app before Flower reads its options, and the
app calls :func:`require_auth_for_flower`. That makes this module Flower's default configuration
file (``--conf`` still overrides it) and checks, once Flower has read every option, that basic
or OAuth authentication is configured; without it Flower exits with a message saying what to set,
rather than serve the task API (which shows job payloads) to anyone.

Settings, from the environment:

* ``CONVEYOR_FLOWER_BASIC_AUTH``: ``user:password[,user2:password2]`` (required unless an OAuth
  provider is configured through Flower's own options);
* ``CONVEYOR_FLOWER_ADDRESS`` (default ``127.0.0.1``) and ``CONVEYOR_FLOWER_PORT`` (``5555``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

AUTH_VARIABLE = "CONVEYOR_FLOWER_BASIC_AUTH"
REFUSAL = (
    f"{AUTH_VARIABLE} must be set to user:password[,user2:password2] (or Flower's OAuth options "
    "--auth and --auth_provider given); Conveyor's Flower does not run without authentication"
)


def basic_auth_pairs(raw: str | None) -> list[str] | None:
    """The user:password pairs of ``raw``, or None when it is missing or malformed."""
    if not raw:
        return None
    pairs = raw.split(",")
    if any(":" not in pair or pair.startswith(":") for pair in pairs):
        return None
    return pairs


def config_values(environ: dict[str, str]) -> dict[str, Any]:
    """The Flower options this configuration sets (as Flower reads a configuration file)."""
    values: dict[str, Any] = {
        "address": environ.get("CONVEYOR_FLOWER_ADDRESS", "127.0.0.1"),
        "port": int(environ.get("CONVEYOR_FLOWER_PORT", "5555")),
        "natural_time": True,
        "purge_offline_workers": 300,
    }
    pairs = basic_auth_pairs(environ.get(AUTH_VARIABLE))
    if pairs is not None:
        values["basic_auth"] = pairs
    return values


def has_auth(options: Any) -> bool:
    """Whether Flower's parsed options authenticate every request."""
    basic = getattr(options, "basic_auth", None) or []
    oauth = getattr(options, "auth", "") and getattr(options, "auth_provider", None)
    return bool(basic) or bool(oauth)


def require_auth_for_flower(argv: list[str] | None = None) -> None:
    """When this process is ``celery … flower``, make Flower refuse to run without auth.

    A no-op in any other process (workers, the CLI). Flower's command looks up
    ``apply_options`` in its module when it runs, so the wrapper below sees the options after
    the configuration file and the command line were both applied.
    """
    args = sys.argv if argv is None else argv
    if "flower" not in args[1:]:
        return
    try:
        import flower.command as command
    except ImportError:  # Flower not installed: the celery command will say so itself
        return
    os.environ.setdefault("FLOWER_CONF", os.path.abspath(__file__))
    original = command.apply_options
    if getattr(original, "conveyor_guarded", False):
        return

    def apply_options(prog_name: str, tornado_argv: Any) -> None:
        original(prog_name, tornado_argv)
        if not has_auth(command.options):
            raise SystemExit(REFUSAL)

    apply_options.conveyor_guarded = True  # type: ignore[attr-defined]
    command.apply_options = apply_options


# Read by Flower when it loads this file as its configuration (tornado's parse_config_file).
if __name__ not in ("config.flower",):
    globals().update(config_values(dict(os.environ)))
