"""`conveyor dashboard`: authentication, the JSON API, and the page in headless Chromium."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
import yaml

from localaws.devstack import ROOT, VENV_BIN, Worker, free_port
from localaws.testing import create_services
from producers.contract.enums import DeploymentState, Step
from producers.contract.records import DeploymentRecord, ProgressInfo, ServiceEvent
from producers.contract.store import RecordStore
from tests.integration.conftest import Stack
from tests.selfsigned import self_signed
from tests.unit.test_cli_list import GARBAGE_RELEASE, seed_garbage_release

if TYPE_CHECKING:
    from worker.release_store import WorkerReleaseStore

AUTH = "viewer:d4sh-board-pass"
ANY = "0.0.0.0"  # noqa: S104 - what the dashboard must refuse, or serve only over TLS
HOSTILE_EVENT = '<img src=x onerror="window.__pwned=1">(service web) has reached a steady state.'
HOSTILE_SERVICE = "<script>window.__pwned=2</script>"


def _get(
    url: str, auth: str | None = AUTH, context: ssl.SSLContext | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url)  # noqa: S310 - loopback URL made by the test
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:  # noqa: S310
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _start(
    stack: Stack, args: list[str], env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(VENV_BIN / "conveyor"), "dashboard", *args],
        cwd=ROOT,
        env={**stack.env, "CONVEYOR_DASHBOARD_BASIC_AUTH": AUTH, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _run(stack: Stack, args: list[str], auth: str = AUTH) -> subprocess.CompletedProcess[str]:
    """`conveyor dashboard ARGS`, expected to refuse to start."""
    return subprocess.run(
        [str(VENV_BIN / "conveyor"), "dashboard", *args],
        cwd=ROOT,
        env={**stack.env, "CONVEYOR_DASHBOARD_BASIC_AUTH": auth},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _wait_until_up(
    proc: subprocess.Popen[bytes], url: str, context: ssl.SSLContext | None = None
) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            _get(url, context=context)
        except OSError:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.2)
        else:
            return


def _stop(proc: subprocess.Popen[bytes]) -> bytes:
    proc.terminate()
    proc.wait(10)
    err = b""
    if proc.stderr is not None:
        err = proc.stderr.read()
        proc.stderr.close()
    return err


@pytest.fixture
def dashboard(stack: Stack) -> Iterator[str]:
    """A running `conveyor dashboard` on a free port; yields its base URL."""
    port = free_port()
    proc = _start(stack, ["--port", str(port)])
    base = f"http://127.0.0.1:{port}"
    _wait_until_up(proc, base + "/api/list")
    yield base
    _stop(proc)


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


@pytest.mark.parametrize(
    ("auth", "problem"),
    [
        ("admin:", "empty password"),
        ("admin:Zq7-xw", "shorter than 12"),
        ("admin:Zq7-xw-9Kp4", "shorter than 12"),  # 11 characters
        ("ops:a-long-enough-pass,admin:", "pair 2 of 2 has an empty password"),
        ("ops:a-long-enough-pass,admin:Zq7-xw", "pair 2 of 2 has a password shorter"),
        ("ops:a-long-enough-pass,:another-long-pass", "pair 2 of 2 is not user:password"),
    ],
    ids=["empty", "short", "eleven", "second-empty", "second-short", "second-no-user"],
)
def test_the_dashboard_refuses_empty_and_short_passwords(
    stack: Stack, auth: str, problem: str
) -> None:
    """Every user:password pair is checked at start: an empty or short password is exit 2,
    naming the setting and the fix, never the password; nothing listens."""
    result = _run(stack, ["--port", str(free_port())], auth)
    assert result.returncode == 2, result.stderr
    assert "CONVEYOR_DASHBOARD_BASIC_AUTH" in result.stderr
    assert problem in result.stderr
    assert "Zq7-xw" not in result.stderr
    assert "long-enough-pass" not in result.stderr
    assert "admin" not in result.stderr


@pytest.mark.parametrize("address", [ANY, "::", ""])
def test_the_dashboard_refuses_plain_http_beyond_loopback(stack: Stack, address: str) -> None:
    """Without TLS on an address other than loopback, exit 2 naming --tls-cert and
    --insecure-http: basic authentication would carry the password in clear."""
    result = _run(stack, ["--address", address, "--port", str(free_port())])
    assert result.returncode == 2, result.stderr
    assert "--tls-cert" in result.stderr
    assert "--insecure-http" in result.stderr


def test_the_dashboard_refuses_half_or_broken_tls(stack: Stack, tmp_path: Path) -> None:
    """A certificate without its key, a missing file, or a key that is not the certificate's:
    exit 2 naming the options."""
    cert, _ = self_signed(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, other_key = self_signed(other)
    port = str(free_port())
    for args in (
        ["--tls-cert", str(cert)],
        ["--tls-cert", str(cert), "--tls-key", str(tmp_path / "missing.pem")],
        ["--tls-cert", str(cert), "--tls-key", str(other_key)],
    ):
        result = _run(stack, ["--port", port, *args])
        assert result.returncode == 2, (args, result.stderr)
        assert "--tls-key" in result.stderr
        assert "PRIVATE KEY" not in result.stderr


def test_the_dashboard_serves_https_and_still_needs_auth(stack: Stack, tmp_path: Path) -> None:
    """With --tls-cert/--tls-key on 0.0.0.0 the dashboard speaks HTTPS only: 401 without or
    with wrong credentials, 200 with them; plain HTTP to its port gets no answer."""
    cert, key = self_signed(tmp_path)
    port = free_port()
    proc = _start(
        stack,
        ["--address", ANY, "--port", str(port), "--tls-cert", str(cert)],
        {"CONVEYOR_DASHBOARD_TLS_KEY": str(key)},  # the setting, as the flag's twin
    )
    trusted = ssl.create_default_context(cafile=str(cert))
    base = f"https://127.0.0.1:{port}"
    try:
        _wait_until_up(proc, base + "/api/list", trusted)
        assert _get(base + "/api/list", auth=None, context=trusted)[0] == 401
        assert _get(base + "/api/list", auth="viewer:wrong-password", context=trusted)[0] == 401
        status, _, body = _get(base + "/api/list", context=trusted)
        assert status == 200
        assert "deployments" in json.loads(body)
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            _get(f"http://127.0.0.1:{port}/api/list")
        # The connection that failed to speak TLS did not stop the server.
        assert _get(base + "/", context=trusted)[0] == 200
    finally:
        err = _stop(proc)
    assert b"https://0.0.0.0:" in err
    assert b"d4sh-board-pass" not in err


def test_insecure_http_is_an_explicit_choice(stack: Stack) -> None:
    """--insecure-http (or CONVEYOR_DASHBOARD_INSECURE_HTTP=true), for a proxy that terminates
    TLS: plain HTTP on 0.0.0.0, still behind auth, with a warning."""
    for args, env in (
        (["--insecure-http"], {}),
        ([], {"CONVEYOR_DASHBOARD_INSECURE_HTTP": "true"}),
    ):
        port = free_port()
        proc = _start(stack, ["--address", ANY, "--port", str(port), *args], env)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(proc, base + "/api/list")
            assert _get(base + "/api/list", auth=None)[0] == 401
            assert _get(base + "/api/list")[0] == 200
        finally:
            err = _stop(proc)
        assert b"warning: plain HTTP" in err


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


def _staged_record(stack: Stack, **progress: Any) -> str:
    """A deployment being watched at a lifecycle stage of ECS's blue/green, linear or canary."""
    now = time.time()
    record = DeploymentRecord(
        id=f"staged-{uuid.uuid4().hex[:6]}",
        job={},
        cluster="demo",
        service="web",
        state=DeploymentState.RUNNING,
        step=Step.WATCH,
        progress=ProgressInfo(desired=2, running=2, **progress),
        created_at=now - 30,
        updated_at=now,
    )
    RecordStore(redis.Redis.from_url(stack.redis_url)).create(record, due=now + 3600)
    return record.id


class _NoSender:
    """A task sender that sends nothing: no worker runs in these tests."""

    def send_task(self, *_: Any, **__: Any) -> None:
        pass


def _past_first_wave(stack: Stack, job: dict[str, Any]) -> tuple[WorkerReleaseStore, str]:
    """Release ``job`` with its first wave succeeded and advanced on, as a worker would;
    returns the store and the release's id."""
    from producers.contract.releases import ReleaseJob
    from worker.release_store import WorkerReleaseStore

    client = redis.Redis.from_url(stack.redis_url)
    records = RecordStore(client)
    releases = WorkerReleaseStore(client, records, ttl_seconds=3600, recovery_grace=30)
    release_id = f"rel-{uuid.uuid4().hex[:20]}"
    release = releases.create(ReleaseJob.model_validate(job), release_id, now=time.time())
    records.modify(
        release.waves[0][0], lambda r: r.model_copy(update={"state": DeploymentState.SUCCEEDED})
    )
    releases.advance(release_id, _NoSender(), clock=time.time)
    return releases, release_id


def _gated_release(stack: Stack) -> str:
    """A release whose first wave ended and which waits for approval before its second."""
    _, release_id = _past_first_wave(
        stack,
        {
            "cluster": "demo",
            "waves": [
                [{"service": "gate-a", "images": {"app": ":2"}}],
                {
                    "approve_before": True,
                    "services": [{"service": "gate-b", "images": {"app": ":2"}}],
                },
            ],
        },
    )
    return release_id


def _gate_paused_release(stack: Stack) -> str:
    """A release whose first wave's metric gate found no data and which waits for approval."""
    from producers.contract.releases import GateReading

    gate = {"name": "errors", "prometheus": {"query": "x"}, "success": "result < 1", "count": 1}
    releases, release_id = _past_first_wave(
        stack,
        {
            "cluster": "demo",
            "waves": [
                {"services": [{"service": "gate-c", "images": {"app": ":2"}}], "gate": gate},
                [{"service": "gate-d", "images": {"app": ":2"}}],
            ],
        },
    )
    releases.record_gate_measurement(
        release_id,
        0,
        GateReading(index=0, at=time.time()),
        lambda _: ("inconclusive", "gate errors: no data", None, "pause"),
    )
    releases.advance(release_id, _NoSender(), clock=time.time)
    return release_id


def _answer(stack: Stack, release_id: str, by: str) -> None:
    """Approve the wave ``release_id`` waits before, as a producer does: the answer is recorded
    and no worker has acted on it yet (none runs here)."""
    from producers.contract.release_store import ReleaseStore

    client = redis.Redis.from_url(stack.redis_url)
    releases = ReleaseStore(client, RecordStore(client), ttl_seconds=3600, recovery_grace=30)
    assert releases.answer_wave(release_id, "CONTINUE", by, time.time()) is not None


def test_the_page_shows_a_deployment_awaiting_approval_and_a_traffic_split(
    stack: Stack, dashboard: str
) -> None:
    """In headless Chromium: a deployment paused at a PAUSE hook reads "awaiting approval at
    STAGE", one shifting traffic shows its stage and the new revision's share, a release
    paused by an inconclusive metric gate names the gate, and one approved but not yet moved on
    says who approved it."""
    from playwright.sync_api import expect, sync_playwright

    waiting = _staged_record(
        stack,
        strategy="CANARY",
        lifecycle_stage="POST_TEST_TRAFFIC_SHIFT",
        awaiting_hook_id="h-1",
        hook_expires_at=time.time() + 7200,
        hook_timeout_action="ROLLBACK",
    )
    shifting = _staged_record(
        stack,
        strategy="LINEAR",
        lifecycle_stage="PRODUCTION_TRAFFIC_SHIFT",
        production_traffic=40.0,
    )
    gated = _gated_release(stack)
    paused = _gate_paused_release(stack)
    answered = _gated_release(stack)
    _answer(stack, answered, by="alice")
    user, _, password = AUTH.partition(":")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        try:
            context = browser.new_context(http_credentials={"username": user, "password": password})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(dashboard + "/")
            stage = page.locator(f'#deployments tr[data-id="{waiting}"] td.stage')
            expect(stage).to_contain_text(
                "awaiting approval at POST_TEST_TRAFFIC_SHIFT (ECS will ROLLBACK in 2 h)",
                timeout=15_000,
            )
            expect(page.locator(f'#releases tr[data-id="{gated}"] td.wave')).to_have_text(
                "1/2 · awaiting approval before wave 2"
            )
            expect(page.locator(f'#releases tr[data-id="{paused}"] td.wave')).to_have_text(
                "1/2 · awaiting approval after gate errors was inconclusive"
            )
            # Approved, and no worker has moved it on yet: it no longer waits for a person.
            expect(page.locator(f'#releases tr[data-id="{answered}"] td.wave')).to_have_text(
                "1/2 · approved before wave 2 by alice; a worker acts on it"
            )
            expect(page.locator(f'#deployments tr[data-id="{shifting}"] td.stage')).to_have_text(
                "LINEAR at PRODUCTION_TRAFFIC_SHIFT, production traffic 40% new"
            )
            assert errors == []
        finally:
            browser.close()


def test_a_garbage_release_record_breaks_no_dashboard_list(stack: Stack, dashboard: str) -> None:
    """/api/list answers 200 with the readable records and names the unreadable release, as
    `conveyor list --json` does; /api/releases/ID of that release is a 410, not a dropped
    connection."""
    hostile = _hostile_record(stack)
    seed_garbage_release(stack.redis_url)
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
