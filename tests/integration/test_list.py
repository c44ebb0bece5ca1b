"""`conveyor list`: recent deployments and releases, filtered, as tables or JSON."""

from __future__ import annotations

import json
import time

import redis

from producers.contract.enums import DeploymentState
from producers.contract.records import DeploymentRecord
from producers.contract.release_store import (
    ACTIVE_RELEASES_KEY,
    RELEASE_KEY,
    RELEASES_KEY,
    ReleaseStore,
)
from producers.contract.releases import ReleaseJob
from producers.contract.store import RecordStore
from tests.integration.conftest import Stack

HOSTILE = "[bold red]evil[/bold red]"


def _seed(stack: Stack) -> dict[str, str]:
    """Deployments in several states and services (one named with rich markup), a release."""
    client = redis.Redis.from_url(stack.redis_url)
    store = RecordStore(client)
    now = time.time()
    made = {}
    rows = [
        ("api-eu", "prod", DeploymentState.SUCCEEDED),
        ("api-us", "prod", DeploymentState.FAILED),
        ("worker", "prod", DeploymentState.RUNNING),
        ("api-eu", "staging", DeploymentState.QUEUED),
        (HOSTILE, "prod", DeploymentState.ROLLED_BACK),
    ]
    for i, (service, cluster, state) in enumerate(rows):
        record = DeploymentRecord(
            id=f"dep-{i}",
            job={},
            cluster=cluster,
            service=service,
            state=state,
            reason="[link=http://x]ECS says no[/link]" if state is DeploymentState.FAILED else None,
            created_at=now - 100 + i,
            updated_at=now - 100 + i,
            finished_at=now - 50 + i if state.value in ("succeeded", "failed") else None,
        )
        store.create(record, due=now + 3600)
        made[service + "@" + cluster] = record.id
    releases = ReleaseStore(client, store, ttl_seconds=3600, recovery_grace=15)
    job = ReleaseJob.model_validate(
        {
            "release": "nightly",
            "cluster": "prod",
            "services": [{"service": "a", "images": {"app": ":2"}}],
        }
    )
    releases.create(job, "rel-test1", now)
    return made


def test_list_shows_newest_first_and_filters(stack: Stack) -> None:
    """--json lists deployments newest first; --service takes patterns, --state and --cluster
    filter, --limit caps; releases come with deployments unless a service filter is given."""
    _seed(stack)
    result = stack.cli("list", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    ids = [d["id"] for d in data["deployments"]]
    # The release's one deployment was made last.
    assert ids == ["rel-test1-0000", "dep-4", "dep-3", "dep-2", "dep-1", "dep-0"]
    assert [r["id"] for r in data["releases"]] == ["rel-test1"]
    assert "jobs" not in data["releases"][0]

    data = json.loads(stack.cli("list", "--json", "--service", "api-*").stdout)
    assert [d["id"] for d in data["deployments"]] == ["dep-3", "dep-1", "dep-0"]
    assert data["releases"] == []
    data = json.loads(stack.cli("list", "--json", "--service", "api-*", "--cluster", "prod").stdout)
    assert [d["id"] for d in data["deployments"]] == ["dep-1", "dep-0"]
    data = json.loads(stack.cli("list", "--json", "--state", "failed", "--state", "queued").stdout)
    assert [d["id"] for d in data["deployments"]] == ["rel-test1-0000", "dep-3", "dep-1"]
    assert data["releases"] == []  # the release is running
    data = json.loads(stack.cli("list", "--json", "--only", "releases").stdout)
    assert data["deployments"] == []
    assert len(data["releases"]) == 1
    data = json.loads(stack.cli("list", "--json", "--limit", "2", "--only", "deployments").stdout)
    assert [d["id"] for d in data["deployments"]] == ["rel-test1-0000", "dep-4"]


def test_list_table_prints_untrusted_text_literally(stack: Stack) -> None:
    """The table shows names and reasons as they are: markup in them is not interpreted."""
    _seed(stack)
    result = stack.cli("list", "--limit", "50")
    assert result.returncode == 0, result.stderr
    assert "[bold red]evil[/bold red]" in result.stdout.replace("\n", "")
    assert "[link=http://x]" in result.stdout
    assert "nightly" in result.stdout
    for state in ("succeeded", "failed", "running", "queued", "rolled_back"):
        assert state in result.stdout


def test_list_rejects_an_unknown_state_and_says_so_without_redis(stack: Stack) -> None:
    """A bad --state is a usage error naming the choices; no Redis is a clear exit 3."""
    bad = stack.cli("list", "--state", "done")
    assert bad.returncode == 2
    assert "--state" in bad.stderr
    assert "succeeded" in bad.stderr
    stack.env["CONVEYOR_REDIS_URL"] = "redis://127.0.0.1:1/0"
    # The default 90 s of retries is test_failover's subject; the answer is the same after 2 s.
    stack.env["CONVEYOR_REDIS_RETRY_SECONDS"] = "2"
    away = stack.cli("list")
    assert away.returncode == 3
    assert "Redis" in away.stderr


GARBAGE_RELEASE = "rel-badbadbadbadbadbadba"


def seed_garbage_release(stack: Stack) -> None:
    """The newest release's record is damaged (edited by hand): it does not validate."""
    client = redis.Redis.from_url(stack.redis_url)
    now = time.time()
    client.set(
        RELEASE_KEY.format(id=GARBAGE_RELEASE), b'{"id": "rel-badbadbadbadbadbadba", "waves": 3'
    )
    client.zadd(RELEASES_KEY, {GARBAGE_RELEASE: now + 1})
    client.zadd(ACTIVE_RELEASES_KEY, {GARBAGE_RELEASE: now + 1})
    client.close()


def test_a_garbage_release_record_breaks_no_list(stack: Stack) -> None:
    """`conveyor list` (table and --json) exits 0 with everything else and names the release
    whose record cannot be read, every time; `conveyor status` of that release is a clean
    exit 3 naming where its record went, never a traceback."""
    _seed(stack)
    seed_garbage_release(stack)
    for _ in range(2):
        table = stack.cli("list")
        assert table.returncode == 0, table.stderr
        assert "rel-test1" in table.stdout
        assert GARBAGE_RELEASE in table.stderr
        assert "Traceback" not in table.stderr
    data = stack.cli("list", "--json")
    assert data.returncode == 0, data.stderr
    listed = json.loads(data.stdout)
    assert [r["id"] for r in listed["releases"]] == ["rel-test1"]
    assert listed["unreadable_releases"] == [GARBAGE_RELEASE]
    assert len(listed["deployments"]) == 6
    status = stack.cli("status", GARBAGE_RELEASE)
    assert status.returncode == 3
    assert f"quarantine:release:{GARBAGE_RELEASE}" in status.stderr
    assert "Traceback" not in status.stderr
