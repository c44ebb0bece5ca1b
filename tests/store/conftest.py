"""What the store tests share: a clean Redis database, and a sender that keeps its messages."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis


class Sender:
    """Collects sent task messages instead of publishing them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any]]] = []

    def send_task(self, name: str, args: Any = None, **_: Any) -> None:
        self.sent.append((name, list(args or [])))


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A clean Redis database."""
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    yield r
    r.close()
