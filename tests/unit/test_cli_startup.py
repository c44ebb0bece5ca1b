"""`conveyor` at shell speed: loading the command and parsing its arguments imports only click.

A shell loop of `conveyor update --no-wait` pays for every import at each call. These tests
pin what is loaded (never how long it takes): pydantic, redis-py, rich and the contract models
are imported by the commands that use them, not by `conveyor --help` or a bad flag.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from producers.cli import options, tracking
from producers.contract import jobs
from producers.contract.enums import DeploymentState

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
    """options.py spells the timeout bounds out (to stay light); they must equal the model's."""
    assert (options.MIN_TIMEOUT_SECONDS, options.MAX_TIMEOUT_SECONDS) == (
        jobs.MIN_TIMEOUT_SECONDS,
        jobs.MAX_TIMEOUT_SECONDS,
    )


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
