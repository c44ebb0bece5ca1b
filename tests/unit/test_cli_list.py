"""`conveyor list`: recent deployments and releases, filtered, as tables or JSON. Records are
written straight into the session's real Redis; the CLI runs through CliRunner."""

from __future__ import annotations

import json
import time

import pytest
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
from tests.unit.cli_support import conveyor, point_at

HOSTILE = "[bold red]evil[/bold red]"


@pytest.fixture
def redis_url(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The session's Redis, emptied, with the CLI pointed at it."""
    point_at(monkeypatch, redis_url)
    return redis_url


def _seed(redis_url: str) -> dict[str, str]:
    """Deployments in several states and services (one named with rich markup), a release."""
    client = redis.Redis.from_url(redis_url)
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


def test_list_shows_newest_first_and_filters(redis_url: str) -> None:
    """--json lists deployments newest first; --service takes patterns, --state and --cluster
    filter, --limit caps; releases come with deployments unless a service filter is given."""
    _seed(redis_url)
    result = conveyor("list", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    ids = [d["id"] for d in data["deployments"]]
    # The release's one deployment was made last.
    assert ids == ["rel-test1-0000", "dep-4", "dep-3", "dep-2", "dep-1", "dep-0"]
    assert [r["id"] for r in data["releases"]] == ["rel-test1"]
    assert "jobs" not in data["releases"][0]

    data = json.loads(conveyor("list", "--json", "--service", "api-*").stdout)
    assert [d["id"] for d in data["deployments"]] == ["dep-3", "dep-1", "dep-0"]
    assert data["releases"] == []
    data = json.loads(conveyor("list", "--json", "--service", "api-*", "--cluster", "prod").stdout)
    assert [d["id"] for d in data["deployments"]] == ["dep-1", "dep-0"]
    data = json.loads(conveyor("list", "--json", "--state", "failed", "--state", "queued").stdout)
    assert [d["id"] for d in data["deployments"]] == ["rel-test1-0000", "dep-3", "dep-1"]
    assert data["releases"] == []  # the release is running
    data = json.loads(conveyor("list", "--json", "--only", "releases").stdout)
    assert data["deployments"] == []
    assert len(data["releases"]) == 1
    data = json.loads(conveyor("list", "--json", "--limit", "2", "--only", "deployments").stdout)
    assert [d["id"] for d in data["deployments"]] == ["rel-test1-0000", "dep-4"]


def test_list_table_prints_untrusted_text_literally(redis_url: str) -> None:
    """The table shows names and reasons as they are: markup in them is not interpreted."""
    _seed(redis_url)
    result = conveyor("list", "--limit", "50")
    assert result.exit_code == 0, result.stderr
    assert "[bold red]evil[/bold red]" in result.stdout.replace("\n", "")
    assert "[link=http://x]" in result.stdout
    assert "nightly" in result.stdout
    for state in ("succeeded", "failed", "running", "queued", "rolled_back"):
        assert state in result.stdout


def test_list_rejects_an_unknown_state_and_says_so_without_redis(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad --state is a usage error naming the choices; no Redis is a clear exit 3."""
    bad = conveyor("list", "--state", "done")
    assert bad.exit_code == 2
    assert "--state" in bad.stderr
    assert "succeeded" in bad.stderr
    monkeypatch.setenv("CONVEYOR_REDIS_URL", "redis://127.0.0.1:1/0")
    away = conveyor("list")
    assert away.exit_code == 3
    assert "Redis" in away.stderr


GARBAGE_RELEASE = "rel-badbadbadbadbadbadba"


def seed_garbage_release(redis_url: str) -> None:
    """The newest release's record is damaged (edited by hand): it does not validate."""
    client = redis.Redis.from_url(redis_url)
    now = time.time()
    client.set(
        RELEASE_KEY.format(id=GARBAGE_RELEASE), b'{"id": "rel-badbadbadbadbadbadba", "waves": 3'
    )
    client.zadd(RELEASES_KEY, {GARBAGE_RELEASE: now + 1})
    client.zadd(ACTIVE_RELEASES_KEY, {GARBAGE_RELEASE: now + 1})
    client.close()


def test_a_garbage_release_record_breaks_no_list(redis_url: str) -> None:
    """`conveyor list` (table and --json) exits 0 with everything else and names the release
    whose record cannot be read, every time; `conveyor status` of that release is a clean
    exit 3 naming where its record went, never a traceback."""
    _seed(redis_url)
    seed_garbage_release(redis_url)
    for _ in range(2):
        table = conveyor("list")
        assert table.exit_code == 0, table.stderr
        assert "rel-test1" in table.stdout
        assert GARBAGE_RELEASE in table.stderr
        assert "Traceback" not in table.stderr
    data = conveyor("list", "--json")
    assert data.exit_code == 0, data.stderr
    listed = json.loads(data.stdout)
    assert [r["id"] for r in listed["releases"]] == ["rel-test1"]
    assert listed["unreadable_releases"] == [GARBAGE_RELEASE]
    assert len(listed["deployments"]) == 6
    status = conveyor("status", GARBAGE_RELEASE)
    assert status.exit_code == 3
    assert f"quarantine:release:{GARBAGE_RELEASE}" in status.stderr
    assert "Traceback" not in status.stderr


def test_list_shows_a_deployment_awaiting_approval(redis_url: str) -> None:
    """A deployment paused at a PAUSE hook says so in its row, not its latest ECS event."""
    from producers.contract.records import ProgressInfo

    store = RecordStore(redis.Redis.from_url(redis_url))
    store.create(
        DeploymentRecord(
            id="dep-paused",
            job={},
            cluster="demo",
            service="web",
            created_at=time.time(),
            updated_at=time.time(),
            state=DeploymentState.RUNNING,
            progress=ProgressInfo(
                strategy="CANARY",
                lifecycle_stage="POST_SCALE_UP",
                awaiting_hook_id="h-1",
                latest_event="(service web) registered 2 targets",
            ),
        ),
        due=time.time() + 3600,
    )
    result = conveyor("list")
    assert result.exit_code == 0, result.stderr
    assert "awaiting approval at POST_SCALE_UP (hook h-1)" in result.stdout
