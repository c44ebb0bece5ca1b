"""Release ids: made and recognised without the release models.

``conveyor status ID`` tells a release from a deployment by its id before it reads anything,
so this stays a module of the standard library only (producers.contract.releases re-exports
both functions).
"""

from __future__ import annotations

import re
import uuid

_RELEASE_ID = re.compile(r"rel-[0-9a-f]{20}", re.ASCII)


def new_release_id() -> str:
    """A fresh release id: ``rel-`` and 20 hex digits (its deployments add ``-NNNN``)."""
    return f"rel-{uuid.uuid4().hex[:20]}"


def is_release_id(text: str) -> bool:
    """True for a release's id (not one of its deployments')."""
    return _RELEASE_ID.fullmatch(text) is not None
