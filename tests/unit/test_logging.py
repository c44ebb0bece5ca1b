"""One handler for every line: the standard library's lines are rendered like structlog's.

In JSON mode each line, whoever logged it (Conveyor through structlog, Conveyor's own
``logging.getLogger`` loggers, Celery, kombu, botocore), is one JSON object with the same keys,
and the redaction that masks a secret in a structlog line masks it in a standard-library line.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from config.logging import configure_logging
from config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-do-not-log"


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Logging configured in JSON mode onto a buffer; the previous configuration restored after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    saved = structlog.get_config()
    out = io.StringIO()
    configure_logging(Settings(log_format="json", log_level="INFO"), stream=out)
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**saved)


def _objects(out: io.StringIO) -> list[dict[str, Any]]:
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def test_a_stdlib_line_is_one_json_object_with_the_keys_of_a_structlog_line(
    json_lines: io.StringIO,
) -> None:
    structlog.get_logger("conveyor.worker").info("from structlog")
    logging.getLogger("conveyor.store").error("quarantined record %s: %s", "d-1", "bad json")

    ours, theirs = _objects(json_lines)
    assert ours["event"] == "from structlog"
    assert theirs["event"] == "quarantined record d-1: bad json"
    assert theirs["level"] == "error"
    assert theirs["logger"] == "conveyor.store"
    assert set(theirs) == set(ours)


def test_a_secret_is_masked_in_a_stdlib_line_as_in_a_structlog_line(
    json_lines: io.StringIO,
) -> None:
    structlog.get_logger("conveyor.worker").info("connecting", token=SECRET)
    logging.getLogger("botocore.credentials").info("connecting", extra={"token": SECRET})

    assert SECRET not in json_lines.getvalue()
    ours, theirs = _objects(json_lines)
    assert ours["token"] == "***"
    assert theirs["token"] == "***"


def test_a_stdlib_exception_stays_inside_its_json_object(json_lines: io.StringIO) -> None:
    try:
        json.loads("{unreadable")
    except ValueError:
        logging.getLogger("kombu").exception("consumer failed")

    (line,) = _objects(json_lines)
    assert line["event"] == "consumer failed"
    assert "JSONDecodeError" in line["exception"]


def test_calling_it_again_replaces_its_handler(json_lines: io.StringIO) -> None:
    again = io.StringIO()
    configure_logging(Settings(log_format="json", log_level="INFO"), stream=again)
    logging.getLogger("conveyor.store").warning("once")

    assert json_lines.getvalue() == ""
    assert [line["event"] for line in _objects(again)] == ["once"]


def test_celery_logging_setup_keeps_the_json_handler() -> None:
    """Celery's own logging setup (as ``celery worker`` runs it) adds no plain-text handler."""
    code = (
        "import logging\n"
        "from celery.utils.log import get_task_logger\n"
        "from worker.app import app\n"
        "app.log.setup(loglevel='INFO')\n"
        "logging.getLogger('celery.worker.consumer.connection').info('Connected to %s', 'x')\n"
        "get_task_logger('conveyor.task').warning('from a task logger')\n"
    )
    env = {**os.environ, "CONVEYOR_LOG_FORMAT": "json", "CONVEYOR_LOG_LEVEL": "INFO"}
    env.pop("CONVEYOR_METRICS_PORT", None)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )

    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert [(line["logger"], line["event"]) for line in lines] == [
        ("celery.worker.consumer.connection", "Connected to x"),
        ("conveyor.task", "from a task logger"),
    ]
