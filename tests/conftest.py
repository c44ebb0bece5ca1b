"""Session-wide fixtures: one real redis-server for the whole run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deploy.devstack import run_redis


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server on a free port, for the whole test session."""
    with run_redis() as url:
        yield url
