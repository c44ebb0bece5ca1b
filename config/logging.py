"""structlog setup: JSON lines when not on a terminal, readable colours when on one.

Every line a step writes carries the deployment id, cluster and service, bound through
context variables when the step starts.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from config.settings import Settings

# Keys whose values must never reach a log line, whatever logged them.
_SECRET_KEYS = frozenset(
    {
        "password",
        "secret",
        "secrets",
        "token",
        "credentials",
        "aws_secret_access_key",
        "aws_session_token",
        "redis_url",
        "environment",
        "valueFrom",
        "value_from",
    }
)


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key in _SECRET_KEYS:
            event_dict[key] = "***"
    return event_dict


def configure_logging(settings: Settings, *, stream: Any = None) -> None:
    """Configure structlog and the standard library's root logger from ``settings``."""
    out = stream or sys.stderr
    as_json = settings.log_format == "json" or (
        settings.log_format == "auto" and not getattr(out, "isatty", lambda: False)()
    )
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=getattr(out, "isatty", lambda: False)())
    )
    level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=level, stream=out, format="%(levelname)s %(name)s: %(message)s")
    # botocore logs request bodies at DEBUG; they can hold secrets of task definitions.
    for noisy in ("botocore", "aiobotocore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(level, logging.INFO))
