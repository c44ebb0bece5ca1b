"""revisions_to_deregister: keep the newest N and everything a service uses."""

from __future__ import annotations

import pytest

from worker.domain.cleanup import revisions_to_deregister

ARN = "arn:aws:ecs:us-east-1:1:task-definition/web:{}"
ACTIVE = [ARN.format(n) for n in range(8, 0, -1)]  # web:8 … web:1, newest first


@pytest.mark.parametrize(
    ("keep", "in_use", "expected"),
    [
        (2, [], [6, 5, 4, 3, 2, 1]),
        (2, [8], [6, 5, 4, 3, 2, 1]),
        # A service rolled back to web:3, another service of the family still on web:1.
        (2, [3, 1], [6, 5, 4, 2]),
        # A deployment under way on web:5 (ACTIVE beside the PRIMARY on web:8).
        (3, [8, 5], [4, 3, 2, 1]),
        (8, [], []),
        (20, [], []),
    ],
)
def test_the_newest_and_the_used_are_kept(
    keep: int, in_use: list[int], expected: list[int]
) -> None:
    """Everything else past the newest ``keep`` goes, newest first."""
    used = [ARN.format(n) for n in in_use]
    assert revisions_to_deregister(ACTIVE, keep, used) == [ARN.format(n) for n in expected]


def test_keeping_nothing_is_refused() -> None:
    """The newest revision is what a new service would get: never deregistered."""
    with pytest.raises(ValueError, match="at least 1"):
        revisions_to_deregister(ACTIVE, 0, [])
