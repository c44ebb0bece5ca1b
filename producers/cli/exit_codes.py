"""The ``conveyor`` command's exit codes, and which of several outcomes is the worst.

README.md's table of exit codes is rendered from :class:`ExitCode` (``render_table``), and
``tests/unit/test_cli_exit_codes.py`` fails when the two differ. Refresh the README with
``python -m scripts.readme_exit_codes``.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum


class ExitCode(IntEnum):
    """What a ``conveyor`` command's exit status means; scripts branch on these numbers."""

    OK = 0
    FAILED = 1
    USAGE = 2
    UNAVAILABLE = 3
    SUPERSEDED = 4
    CANCELLED = 5
    PENDING = 6
    INTERRUPTED = 130


MEANING: dict[ExitCode, str] = {
    ExitCode.OK: "succeeded (with `--no-wait`: enqueued)",
    ExitCode.FAILED: "failed or rolled back",
    ExitCode.USAGE: (
        "invalid input: refused before anything changed (this includes an unknown container, "
        "an unusable target group, or a blue/green strategy with no bake time, found by the "
        "worker before it changes anything)"
    ),
    ExitCode.UNAVAILABLE: (
        "Redis or the workers cannot be reached (a Redis outage is ridden out for "
        "`CONVEYOR_REDIS_RETRY_SECONDS`, 90 s, first; an enqueue retried then still makes one "
        "deployment: see docs/operations.md), or the deployment's record is gone or unreadable"
    ),
    ExitCode.SUPERSEDED: "superseded by a newer job for the same service before it started",
    ExitCode.CANCELLED: "cancelled",
    ExitCode.PENDING: "not finished yet (`conveyor status` of a queued or running deployment)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C) while waiting; the deployment goes on",
}
"""One line per code, as README.md's table shows it."""


# `conveyor wait ID ID ...` exits with the worst of its outcomes, worst first. An outcome that
# cannot be known (unavailable) outranks any known one; then what needs a person's attention
# (failed, then refused input), then what ended without deploying (cancelled, superseded), and
# last what has not ended or succeeded. Interrupted never competes: Ctrl-C exits at once.
WORST_FIRST: tuple[ExitCode, ...] = (
    ExitCode.UNAVAILABLE,
    ExitCode.FAILED,
    ExitCode.USAGE,
    ExitCode.CANCELLED,
    ExitCode.SUPERSEDED,
    ExitCode.PENDING,
    ExitCode.OK,
)


def worst(codes: Iterable[ExitCode]) -> ExitCode:
    """The worst of several outcomes by :data:`WORST_FIRST` (``OK`` when there are none)."""
    found = set(codes)
    return next((code for code in WORST_FIRST if code in found), ExitCode.OK)


_START = "<!-- exit-codes: generated from producers/cli/exit_codes.py -->"
_END = "<!-- end of exit-codes -->"


def render_table() -> str:
    """The Markdown table of exit codes, as README.md shows it (between its markers)."""
    rows = ["| Code | Meaning |", "| ---: | --- |"]
    for code in ExitCode:
        rows.append(f"| `{code.value}` | {MEANING[code]} |")
    order = ", ".join(f"`{code.value}`" for code in WORST_FIRST)
    rows += [
        "",
        f"`conveyor wait ID ID ...` exits with the worst of its outcomes, worst first: {order}.",
    ]
    return "\n".join([_START, *rows, _END])


def readme_block(readme: str) -> str | None:
    """The generated block as it stands in ``readme`` (None when its markers are missing)."""
    start, end = readme.find(_START), readme.find(_END)
    if start < 0 or end < start:
        return None
    return readme[start : end + len(_END)]
