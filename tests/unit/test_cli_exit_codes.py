"""Exit codes are one IntEnum: README's table is generated from it, and `conveyor wait` with
several ids exits with the worst outcome in a documented order."""

from __future__ import annotations

from pathlib import Path

import pytest

from producers.cli.exit_codes import WORST_FIRST, ExitCode, readme_block, render_table, worst

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_numbers_scripts_branch_on_never_change() -> None:
    """The codes are the ones the CLI has always used; renumbering would break scripts."""
    assert {code.name: code.value for code in ExitCode} == {
        "OK": 0,
        "FAILED": 1,
        "USAGE": 2,
        "UNAVAILABLE": 3,
        "SUPERSEDED": 4,
        "CANCELLED": 5,
        "PENDING": 6,
        "INTERRUPTED": 130,
    }


def test_the_readme_table_is_the_one_rendered_from_the_enum() -> None:
    """README.md shows exactly render_table(); refresh it with
    `python -m scripts.readme_exit_codes`."""
    block = readme_block(README.read_text())
    assert block is not None, "README.md lost its exit-code markers"
    assert block == render_table(), "run: python -m scripts.readme_exit_codes"


def test_the_table_has_a_row_per_code_and_the_worst_order() -> None:
    """Every member gets a row, so a new code cannot be left out of the README."""
    table = render_table()
    for code in ExitCode:
        assert f"| `{code.value}` |" in table
    assert "worst first: `3`, `1`, `2`, `5`, `4`, `6`, `0`." in table


def test_a_stale_readme_is_caught() -> None:
    """The check compares the whole block: an edited meaning is a difference."""
    stale = README.read_text().replace("| `5` | cancelled |", "| `5` | stopped |")
    assert readme_block(stale) != render_table()


def test_every_outcome_but_interrupted_has_a_rank() -> None:
    """Ctrl-C exits at once and never competes; every other code is ranked exactly once."""
    assert sorted(WORST_FIRST) == sorted(set(ExitCode) - {ExitCode.INTERRUPTED})


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ([ExitCode.OK, ExitCode.FAILED, ExitCode.UNAVAILABLE], ExitCode.UNAVAILABLE),
        ([ExitCode.OK, ExitCode.CANCELLED, ExitCode.FAILED], ExitCode.FAILED),
        ([ExitCode.USAGE, ExitCode.FAILED], ExitCode.FAILED),
        ([ExitCode.SUPERSEDED, ExitCode.USAGE], ExitCode.USAGE),
        ([ExitCode.SUPERSEDED, ExitCode.CANCELLED, ExitCode.OK], ExitCode.CANCELLED),
        ([ExitCode.OK, ExitCode.SUPERSEDED], ExitCode.SUPERSEDED),
        ([ExitCode.OK, ExitCode.OK], ExitCode.OK),
        ([], ExitCode.OK),
    ],
)
def test_worst_picks_by_the_documented_order(codes: list[ExitCode], expected: ExitCode) -> None:
    """Unknown (3) > failed (1) > refused input (2) > cancelled (5) > superseded (4) > ok (0),
    whatever the numbers and the order given."""
    assert worst(codes) is expected
    assert worst(reversed(codes)) is expected
