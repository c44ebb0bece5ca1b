"""structlog setup: JSON lines when not on a terminal, readable colours when on one.

Every line a step writes carries the deployment id, cluster and service, bound through
context variables when the step starts. The standard library's lines (Celery's, kombu's,
botocore's, Conveyor's own ``logging.getLogger`` ones) are rendered by the same processors,
redaction included.
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


# The root handler :func:`configure_logging` installs, found again by this name to be replaced.
_HANDLER_NAME = "conveyor"


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key in _SECRET_KEYS:
            event_dict[key] = "***"
    return event_dict


def _drop_formatted_copies(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # Another handler's formatter may already have stored its text on the record; ``event``
    # says the same.
    event_dict.pop("message", None)
    event_dict.pop("asctime", None)
    return event_dict


def configure_logging(settings: Settings, *, stream: Any = None) -> None:
    """Send structlog's lines and the standard library's through one handler on ``stream``.

    Celery, kombu, botocore and Conveyor's own ``logging.getLogger`` lines get the same keys,
    the same redaction and the same renderer as structlog's: one JSON object a line in JSON
    mode. Calling it again (in each forked worker process) replaces the handler it installed.
    """
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
    # What structlog's lines gather before they become records; the standard library's
    # records gather the same (and their ``extra`` fields) when they are formatted.
    gather: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*gather, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    # Redaction runs here, after both kinds of line have met: nothing reaches the renderer
    # without passing it.
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*gather, structlog.stdlib.ExtraAdder(), _drop_formatted_copies],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _redact,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # botocore logs request bodies at DEBUG; they can hold secrets of task definitions.
    for noisy in ("botocore", "aiobotocore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(level, logging.INFO))
