"""Flower for Conveyor: authentication is not optional, however Flower is started.

``celery -A worker.app flower`` loads the Celery app before Flower reads its options, and the
app calls :func:`require_auth_for_flower`. That makes this module Flower's default configuration
file (``--conf`` still overrides it) and checks, once Flower has read every option, that basic
or OAuth authentication is configured, that every basic password is at least 12 characters
(``config/basic_auth.py`` says why), and that the password never crosses the network in clear;
otherwise Flower exits with a message saying what to set, rather than serve the task API (which
shows job payloads) to anyone.

Settings, from the environment:

* ``CONVEYOR_FLOWER_BASIC_AUTH``: ``user:password[,user2:password2]`` (required unless an OAuth
  provider is configured through Flower's own options);
* ``CONVEYOR_FLOWER_ADDRESS`` (default ``127.0.0.1``) and ``CONVEYOR_FLOWER_PORT`` (``5555``);
* ``CONVEYOR_FLOWER_TLS_CERT`` and ``CONVEYOR_FLOWER_TLS_KEY``: PEM files, for HTTPS (Flower's
  ``certfile`` and ``keyfile``);
* ``CONVEYOR_FLOWER_INSECURE_HTTP=true``: serve plain HTTP on an address other than loopback,
  for a proxy in front that terminates TLS. Without it or TLS such an address is refused.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import Any

from config.basic_auth import BasicAuthError, check_pairs

AUTH_VARIABLE = "CONVEYOR_FLOWER_BASIC_AUTH"
REFUSAL = (
    f"{AUTH_VARIABLE} must be set to user:password[,user2:password2] (or Flower's OAuth options "
    "--auth and --auth_provider given); Conveyor's Flower does not run without authentication"
)


INSECURE_VARIABLE = "CONVEYOR_FLOWER_INSECURE_HTTP"


def basic_auth_pairs(raw: str | None) -> list[str] | None:
    """The comma-separated entries of ``raw``, unchecked; None when it is unset or empty.

    They are checked with every other option (:func:`refusal`), wherever they came from.
    """
    if not raw:
        return None
    return raw.split(",")


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
    if environ.get("CONVEYOR_FLOWER_TLS_CERT"):
        values["certfile"] = environ["CONVEYOR_FLOWER_TLS_CERT"]
    if environ.get("CONVEYOR_FLOWER_TLS_KEY"):
        values["keyfile"] = environ["CONVEYOR_FLOWER_TLS_KEY"]
    return values


def has_auth(options: Any) -> bool:
    """Whether Flower's parsed options authenticate every request."""
    basic = getattr(options, "basic_auth", None) or []
    oauth = getattr(options, "auth", "") and getattr(options, "auth_provider", None)
    return bool(basic) or bool(oauth)


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a host name, or "" (Flower's default: every interface)
        return False


def refusal(options: Any, environ: dict[str, str]) -> str | None:
    """Why Flower must not start with these parsed options, or None when it may.

    Never names a credential: only the setting, the pair's position and the fix.
    """
    if not has_auth(options):
        return REFUSAL
    basic = list(getattr(options, "basic_auth", None) or [])
    if basic:
        try:
            check_pairs(f"{AUTH_VARIABLE} (or Flower's --basic_auth)", basic)
        except BasicAuthError as exc:
            return str(exc)
    tls = bool(getattr(options, "certfile", None) and getattr(options, "keyfile", None))
    address = str(getattr(options, "address", "") or "")
    insecure = environ.get(INSECURE_VARIABLE, "").strip().lower() in ("1", "true", "yes")
    if not (tls or insecure or _is_loopback(address)):
        return (
            f"Flower on {address or 'every interface'} without TLS would send its password in "
            "clear: set CONVEYOR_FLOWER_TLS_CERT and CONVEYOR_FLOWER_TLS_KEY (Flower's --certfile "
            f"and --keyfile), listen on 127.0.0.1, or set {INSECURE_VARIABLE}=true when a proxy "
            "in front terminates TLS"
        )
    return None


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
        problem = refusal(command.options, dict(os.environ))
        if problem is not None:
            print(f"flower: error: {problem}", file=sys.stderr)
            raise SystemExit(2)  # as the conveyor command's usage errors

    apply_options.conveyor_guarded = True  # type: ignore[attr-defined]
    command.apply_options = apply_options


# Read by Flower when it loads this file as its configuration (tornado's parse_config_file).
if __name__ not in ("config.flower",):
    globals().update(config_values(dict(os.environ)))
