"""Session-wide fixtures (one real redis-server for the whole run) and the test tiers.

Every test is marked with its directory (``unit``, ``service``, ``store``, ``gateway``,
``localaws``, ``integration``) and with its tier, which the Makefile selects:

* ``fast``: no process beyond one session ``redis-server`` (unit, service, store, and the fake
  half of the gateway suite), the everyday loop of ``make test-fast``;
* ``aws``: against the local AWS (tests/localaws, and the boto half of the gateway suite);
* ``e2e``: real Celery workers, the real CLI, Redis and the local AWS (tests/integration).

``slow`` is set by hand on the long suites; each tier runs without them, and ``make test-slow``
runs them all.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from pathlib import Path

import pytest

from localaws.devstack import run_redis

TESTS = Path(__file__).resolve().parent

# The tier of each directory; the gateway suite is split by the gateway a case runs on.
TIERS = {
    "unit": "fast",
    "service": "fast",
    "store": "fast",
    "gateway": "aws",
    "localaws": "aws",
    "integration": "e2e",
}


def tier_of(item: pytest.Item) -> tuple[str, str]:
    """The directory and the tier of a collected test."""
    parts = item.path.resolve().relative_to(TESTS).parts
    directory = parts[0] if len(parts) > 1 else ""
    if directory not in TIERS:
        raise pytest.UsageError(
            f"{item.nodeid}: a test outside the tier directories; move it under tests/"
            f"{{{','.join(TIERS)}}}, or add its directory to TIERS in tests/conftest.py"
        )
    tier = TIERS[directory]
    callspec = getattr(item, "callspec", None)
    if directory == "gateway" and callspec is not None and callspec.params.get("world") == "fake":
        tier = "fast"
    return directory, tier


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its directory and its tier, before ``-m`` selects; the longest
    tests go first, so that pytest-xdist does not start one when the others are nearly done."""
    for item in items:
        directory, tier = tier_of(item)
        item.add_marker(directory)
        item.add_marker(tier)
    items.sort(key=lambda item: item.get_closest_marker("longest") is None)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server on a free port, for the whole test session."""
    with run_redis() as url:
        yield url


@pytest.fixture(scope="session")
def figures() -> Iterator[dict[str, object]]:
    """Measurements tests report (never assert) for docs/reliability.md: .run/figures.json."""
    import json

    collected: dict[str, object] = {}
    yield collected
    if collected:
        out = TESTS.parent / ".run" / "figures.json"
        out.parent.mkdir(exist_ok=True)
        # Parallel test processes (pytest-xdist) each merge their own figures into the file.
        with (out.parent / "figures.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            previous = json.loads(out.read_text()) if out.exists() else {}
            out.write_text(json.dumps({**previous, **collected}, indent=2, sort_keys=True))
