"""Which old revisions of a family a cleanup may deregister. Pure.

A family's ACTIVE revisions, newest first, are kept up to ``keep``; of the older ones, every
revision a service still uses is kept too: the one it runs (after a rollback that can be an old
one) and the ones its deployments under way run, in any service of the family.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def revisions_to_deregister(
    active_newest_first: Sequence[str], keep: int, in_use: Iterable[str]
) -> list[str]:
    """The ARNs past the newest ``keep`` that no service uses, newest first."""
    if keep < 1:
        raise ValueError("keep must be at least 1: the newest revision is never deregistered")
    used = set(in_use)
    return [arn for arn in active_newest_first[keep:] if arn not in used]
