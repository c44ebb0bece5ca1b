"""Running `conveyor` in-process through click's CliRunner, against the session's real Redis.

A fresh interpreter per call costs about half a second; the tests here exercise argument
parsing, validation and output, which the runner drives the same way the console script does.
"""

from __future__ import annotations

import os

import pytest
import redis
from click.testing import CliRunner, Result

from producers.cli import main

# A producer rides out a Redis outage for CONVEYOR_REDIS_RETRY_SECONDS (90 s by default); the
# tests that point at a dead Redis only need the give-up, so they wait one second for it.
RETRY_SECONDS = "1"


def point_at(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    """Make the CLI's settings those of a clean test environment on ``redis_url``."""
    for name in list(os.environ):
        if name.startswith(("CONVEYOR_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CONVEYOR_REDIS_URL", redis_url)
    monkeypatch.setenv("CONVEYOR_REDIS_RETRY_SECONDS", RETRY_SECONDS)
    flushed = redis.Redis.from_url(redis_url)
    flushed.flushdb()
    flushed.close()


def conveyor(*args: str) -> Result:
    """Run `conveyor ARGS...` in this process; exit code, stdout and stderr apart."""
    return CliRunner().invoke(main, list(args), prog_name="conveyor")
