"""Session-wide fixtures: one real redis-server for the whole run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localaws.devstack import run_redis


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server on a free port, for the whole test session."""
    with run_redis() as url:
        yield url


@pytest.fixture(scope="session")
def figures() -> Iterator[dict[str, object]]:
    """Measurements tests report (never assert) for docs/reliability.md: .run/figures.json."""
    import json
    from pathlib import Path

    collected: dict[str, object] = {}
    yield collected
    if collected:
        out = Path(__file__).resolve().parent.parent / ".run" / "figures.json"
        out.parent.mkdir(exist_ok=True)
        previous = json.loads(out.read_text()) if out.exists() else {}
        out.write_text(json.dumps({**previous, **collected}, indent=2, sort_keys=True))
