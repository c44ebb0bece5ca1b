"""Image references as the simulator reads them: which tag an image has, and whether it is "broken".

The local AWS decides a task's fate from its images alone: any container whose image tag starts
with ``fail-`` never becomes healthy. Parsing follows the reference grammar
``[registry[:port]/]repository[:tag][@digest]``: a ``:`` only starts a tag when it comes after the
last ``/`` (a registry port is not a tag), and a digest is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

BROKEN_TAG_PREFIX = "fail-"


def image_tag(image: str) -> str | None:
    """Return the tag of an image reference, or None when it has none.

    >>> image_tag("registry:5000/team/app:1.2.3@sha256:abc")
    '1.2.3'
    >>> image_tag("registry:5000/team/app") is None
    True
    """
    name = image.split("@", 1)[0]
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        return name[colon + 1 :]
    return None


def is_broken_image(image: str) -> bool:
    """Tell whether tasks running this image must fail to start in the simulator."""
    tag = image_tag(image)
    return tag is not None and tag.startswith(BROKEN_TAG_PREFIX)


def broken_containers(container_definitions: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """Names of the containers whose image is broken (see :func:`is_broken_image`)."""
    return tuple(
        str(container.get("name", ""))
        for container in container_definitions
        if is_broken_image(str(container.get("image", "")))
    )
