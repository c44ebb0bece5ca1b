"""`conveyor dashboard`: authentication, the JSON API, and the page in headless Chromium."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import yaml

from localaws.devstack import ROOT, VENV_BIN, Worker, free_port
from localaws.testing import create_services
from producers.contract.enums import DeploymentState
from producers.contract.records import DeploymentRecord, ServiceEvent
from producers.contract.store import RecordStore
from tests.integration.conftest import Stack
from tests.integration.test_list import GARBAGE_RELEASE, seed_garbage_release

AUTH = "viewer:d4sh-pass"
HOSTILE_EVENT = '<img src=x onerror="window.__pwned=1">(service web) has reached a steady state.'
HOSTILE_SERVICE = "<script>window.__pwned=2</script>"


def _get(url: str, auth: str | None = AUTH) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url)  # noqa: S310 - loopback URL made by the test
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def dashboard(stack: Stack) -> Iterator[str]:
    """A running `conveyor dashboard` on a free port; yields its base URL."""
    port = free_port()
    env = {**stack.env, "CONVEYOR_DASHBOARD_BASIC_AUTH": AUTH}
    proc = subprocess.Popen(
        [str(VENV_BIN / "conveyor"), "dashboard", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            _get(base + "/api/list")
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.2)
    yield base
    proc.terminate()
    proc.wait(10)
    if proc.stderr is not None:
        proc.stderr.close()


def _hostile_record(stack: Stack) -> str:
    """A finished deployment whose service name and ECS event carry markup and script."""
    now = time.time()
    record = DeploymentRecord(
        id=f"hostile-{uuid.uuid4().hex[:6]}",
        job={},
        cluster="demo",
        service=HOSTILE_SERVICE,
        state=DeploymentState.SUCCEEDED,
        reason=HOSTILE_EVENT,
        events=[
            ServiceEvent(id="e1", created_at="2026-01-01T00:00:00+00:00", message=HOSTILE_EVENT)
        ],
        created_at=now - 30,
        updated_at=now,
        finished_at=now,
    )
    RecordStore(redis.Redis.from_url(stack.redis_url)).create(record, due=now + 3600)
    return record.id


def test_the_dashboard_does_not_start_without_auth(stack: Stack) -> None:
    """No CONVEYOR_DASHBOARD_BASIC_AUTH: exit 2, naming the variable."""
    result = stack.cli("dashboard", "--port", str(free_port()), timeout=30)
    assert result.returncode == 2
    assert "CONVEYOR_DASHBOARD_BASIC_AUTH" in result.stderr


def test_the_api_needs_auth_and_answers_what_json_output_answers(
    stack: Stack, dashboard: str
) -> None:
    """401 without or with wrong credentials; with them, /api/list is `conveyor list --json`,
    /api/deployments/ID is `conveyor status ID --json`; bad input is a 400 naming it; every
    answer carries the security headers."""
    hostile = _hostile_record(stack)
    assert _get(dashboard + "/api/list", auth=None)[0] == 401
    assert _get(dashboard + "/", auth="viewer:wrong")[0] == 401
    status, headers, body = _get(dashboard + "/api/list?limit=50")
    assert status == 200
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    cli = json.loads(stack.cli("list", "--json", "--limit", "50").stdout)
    assert json.loads(body) == cli
    status, _, body = _get(f"{dashboard}/api/deployments/{hostile}")
    assert status == 200
    assert json.loads(body) == json.loads(stack.cli("status", hostile, "--json").stdout)
    assert _get(dashboard + "/api/deployments/nope")[0] == 404
    status, _, body = _get(dashboard + "/api/list?limit=0")
    assert status == 400
    assert b"limit" in body
    assert _get(dashboard + "/api/list?colour=red")[0] == 400
    assert _get(dashboard + "/api/deployments/..%2F..%2Fetc")[0] == 400
    status, headers, page = _get(dashboard + "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b'<script src="/app.js"' in page


def test_the_page_follows_a_release_live_and_shows_untrusted_text_as_text(
    stack: Stack, dashboard: str, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """In headless Chromium: the page, opened before a release starts, shows it running and
    then succeeded without a reload; hostile names and events appear as literal text and run
    nothing; a click shows a deployment's full record."""
    from playwright.sync_api import expect, sync_playwright

    hostile = _hostile_record(stack)
    names = create_services(stack.endpoint, [f"dash-{uuid.uuid4().hex[:6]}-{i}" for i in range(2)])
    start_worker("w1")
    release_file = tmp_path / "release.yaml"
    release_file.write_text(
        yaml.safe_dump(
            {
                "release": "dashboard-demo",
                "cluster": "demo",
                "services": [{"service": n, "images": {"app": ":3.0.0"}} for n in names],
            }
        )
    )
    user, _, password = AUTH.partition(":")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        try:
            context = browser.new_context(
                http_credentials={"username": user, "password": password},
                viewport={"width": 1400, "height": 900},
            )
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(dashboard + "/")
            expect(page.locator("#status")).to_contain_text("updated", timeout=15_000)

            out = stack.cli("release", "-f", str(release_file), "--no-wait")
            assert out.returncode == 0, out.stderr
            release_id = out.stdout.strip()
            row = page.locator(f'#releases tr[data-id="{release_id}"]')
            expect(row).to_contain_text("dashboard-demo", timeout=15_000)
            expect(row.locator("td.state")).to_have_text("succeeded", timeout=120_000)
            expect(row).to_contain_text("2/2")
            for name in names:
                line = page.locator("#deployments tr", has_text=f"demo/{name}")
                expect(line.locator("td.state")).to_have_text("succeeded")

            hostile_row = page.locator(f'#deployments tr[data-id="{hostile}"]')
            expect(hostile_row).to_contain_text(HOSTILE_SERVICE)
            expect(hostile_row).to_contain_text(HOSTILE_EVENT)
            assert page.evaluate("window.__pwned") is None
            assert page.locator("main img, main script").count() == 0

            page.locator(f'#deployments tr[data-id="{hostile}"] td').first.click()
            expect(page.locator("#detail-body")).to_contain_text(f'"id": "{hostile}"')
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            (ROOT / ".run").mkdir(exist_ok=True)
            (ROOT / ".run" / "dashboard.png").write_bytes(shot.read_bytes())
            assert errors == []
        finally:
            browser.close()


def test_a_garbage_release_record_breaks_no_dashboard_list(stack: Stack, dashboard: str) -> None:
    """/api/list answers 200 with the readable records and names the unreadable release, as
    `conveyor list --json` does; /api/releases/ID of that release is a 410, not a dropped
    connection."""
    hostile = _hostile_record(stack)
    seed_garbage_release(stack)
    status, _, body = _get(dashboard + "/api/list?limit=50")
    assert status == 200, body
    listed = json.loads(body)
    assert [d["id"] for d in listed["deployments"]] == [hostile]
    assert listed["releases"] == []
    assert listed["unreadable_releases"] == [GARBAGE_RELEASE]
    assert listed == json.loads(stack.cli("list", "--json", "--limit", "50").stdout)
    status, _, body = _get(f"{dashboard}/api/releases/{GARBAGE_RELEASE}")
    assert status == 410
    assert b"unreadable" in body
