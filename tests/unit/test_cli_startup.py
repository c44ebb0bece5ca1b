"""`conveyor` at shell speed: loading the command and parsing its arguments imports only click.

A shell loop of `conveyor update --no-wait` pays for every import at each call. These tests
pin what is loaded (never how long it takes): pydantic, redis-py, rich and the contract models
are imported by the commands that use them, not by `conveyor --help` or a bad flag; and
`conveyor status` and `conveyor update --no-wait` load only what reading a record or enqueueing
one job needs (docs/development.md, "CLI start time", has the figures).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from producers.cli import options, tracking
from producers.contract import jobs
from producers.contract.enums import DeploymentState
from producers.contract.records import DeploymentRecord
from producers.contract.store import RecordStore
from producers.contract.workers import WorkerInfo, publish

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pydantic", "pydantic_settings", "redis", "rich", "yaml", "packaging")


def _loaded_after(argv: list[str]) -> list[str]:
    """The heavy top-level modules and the producer modules loaded by running `conveyor argv`."""
    code = (
        "import sys\n"
        "from producers.cli import main\n"
        "try:\n"
        f"    main({argv!r}, prog_name='conveyor')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"heavy = {HEAVY!r}\n"
        "found = sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in heavy})\n"
        "found += sorted(m for m in sys.modules if m.startswith(('producers.contract',"
        " 'producers.client', 'config.')))\n"
        "print(found, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    last = result.stderr.strip().splitlines()[-1]
    return list(eval(last))  # noqa: S307 -- our own child's repr of a list of names


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["update", "--help"],
        ["status", "--help"],
        ["wait", "--help"],
        ["list", "--help"],
        ["update", "--cluster", "c"],  # a missing option: exit 2 from click alone
    ],
)
def test_help_and_argument_errors_load_only_click(argv: list[str]) -> None:
    """Nothing heavy is imported before a command body runs."""
    assert _loaded_after(argv) == []


def test_the_help_limits_are_the_contracts() -> None:
    """options.py spells the timeout bounds and default out (to stay light); they must equal
    the model's."""
    assert (
        options.MIN_TIMEOUT_SECONDS,
        options.MAX_TIMEOUT_SECONDS,
        options.DEFAULT_TIMEOUT_SECONDS,
    ) == (jobs.MIN_TIMEOUT_SECONDS, jobs.MAX_TIMEOUT_SECONDS, jobs.DEFAULT_TIMEOUT_SECONDS)


def test_list_offers_every_state() -> None:
    """`conveyor list --state` accepts each deployment state (and the release-only running)."""
    assert sorted({*(s.value for s in DeploymentState), "running"}) == tracking.LIST_STATES


def test_python_dash_m_is_the_conveyor_command() -> None:
    """`python -m producers.cli` runs the same command as the console script."""
    result = subprocess.run(
        [sys.executable, "-m", "producers.cli", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: conveyor ")
    assert "wait" in result.stdout


# What neither `status` nor `update --no-wait` (without a freeze file) needs: the settings
# reader of pydantic-settings (the command reads the same variables with config.fields), YAML
# (Fargate spec files), PEP 440 ranges (version rules), and what only workers, ECR look-ups,
# tables or templates use.
NOT_ON_THE_SHELL_PATH = (
    "pydantic_settings",
    "dotenv",
    "yaml",
    "packaging",
    "celery",
    "kombu",
    "boto3",
    "botocore",
    "rich",
    "jinja2",
    # Freeze windows (recurrence rules, time zones), read only when a freeze file is set.
    "producers.contract.freeze",
    "dateutil",
)
# The contract modules of releases, plans and Fargate specs; `status` of a deployment needs
# none of them, nor the job models.
NOT_FOR_STATUS = (
    "producers.contract.releases",
    "producers.contract.release_store",
    "producers.contract.fargate_spec",
    "producers.contract.jobs",
    "producers.contract.kinds",
    "producers.resolve",
    "config.settings",
)
# An update of one service without version rules: no release, no resolver.
NOT_FOR_UPDATE = (
    "producers.contract.releases",
    "producers.contract.release_store",
    "producers.resolve",
    "config.settings",
)


def _run_loading(argv: list[str], redis_url: str) -> tuple[int, str, set[str], set[str]]:
    """Run `conveyor argv` in a fresh interpreter on ``redis_url``: its exit code, its
    stdout, every module it had loaded when it ended, and the contract models whose
    validators it had built (``module.Model``)."""
    code = (
        "import sys\n"
        "from producers.cli import main\n"
        "code = 0\n"
        "try:\n"
        f"    main({argv!r}, prog_name='conveyor')\n"
        "except SystemExit as exc:\n"
        "    code = int(exc.code or 0)\n"
        "from pydantic import BaseModel\n"
        "built = sorted(f'{m.__name__}.{c.__name__}' for m in list(sys.modules.values())\n"
        "    if m.__name__.startswith('producers.contract.') for c in vars(m).values()\n"
        "    if isinstance(c, type) and issubclass(c, BaseModel) and c.__module__ == m.__name__\n"
        "    and c.__pydantic_complete__)\n"
        "print(repr((code, sorted(sys.modules), built)), file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "AWS_"))}
    env.update(CONVEYOR_REDIS_URL=redis_url, CONVEYOR_REDIS_RETRY_SECONDS="1")
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    exit_code, modules, built = eval(result.stderr.strip().splitlines()[-1])  # noqa: S307 -- our child's repr
    return exit_code, result.stdout, set(modules), set(built)


def _loaded_of(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """The names of ``names`` that ``modules`` holds, a package counting with its modules."""
    return sorted(n for n in names if any(m == n or m.startswith(n + ".") for m in modules))


@pytest.fixture
def fleet(redis_url: str) -> redis.Redis:
    """A clean Redis with one live worker on the default queue (its heartbeat, as a worker
    publishes it) and one finished deployment, ``dep-started``."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    now = time.time()
    worker = WorkerInfo(
        name="celery@shell-speed", pid=1, queues=["conveyor"], concurrency=1,
        started_at=now, seen_at=now,
    )  # fmt: skip
    publish(client, worker, ttl=600)
    RecordStore(client).create(
        DeploymentRecord(
            id="dep-started", job={}, cluster="demo", service="web",
            created_at=now, updated_at=now, state=DeploymentState.SUCCEEDED,
        ),
        due=now + 3600,
    )  # fmt: skip
    return client


def test_status_loads_no_release_spec_or_settings_library(
    fleet: redis.Redis, redis_url: str
) -> None:
    """`conveyor status ID` reads the record with redis-py and the record model alone."""
    code, out, modules, built = _run_loading(["status", "dep-started"], redis_url)
    assert (code, out.split("\n")[0]) == (0, "deployment dep-started: succeeded")
    assert _loaded_of(modules, NOT_ON_THE_SHELL_PATH + NOT_FOR_STATUS) == []
    assert {name.rsplit(".", 1)[0] for name in built} == {"producers.contract.records"}


def test_update_no_wait_loads_no_release_spec_or_settings_library(
    fleet: redis.Redis, redis_url: str
) -> None:
    """`conveyor update --no-wait` validates and enqueues one job without the release models,
    the version-rule resolver, YAML or pydantic-settings."""
    argv = [
        "update",
        "--cluster",
        "demo",
        "--service",
        "web",
        "--image",
        "web=r/web:2",
        "--no-wait",
    ]
    code, out, modules, built = _run_loading(argv, redis_url)
    assert code == 0
    assert RecordStore(fleet).get(out.strip()) is not None  # it did enqueue
    assert _loaded_of(modules, NOT_ON_THE_SHELL_PATH + NOT_FOR_UPDATE) == []
    # The job-kind table names the Fargate job's model, so its module is loaded; its models
    # are built on first use (defer_build), which an update never makes.
    assert [name for name in built if name.startswith("producers.contract.fargate_spec.")] == []
