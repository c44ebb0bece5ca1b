"""Container image references, parsed the way registries define them.

A reference is ``[registry[:port]/]repository[:tag][@algorithm:digest]``. Splitting on the last
``:`` is wrong as soon as a registry has a port or a reference has a digest, so this module
parses the grammar instead. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from producers.contract.errors import ProducerError

# The component grammar of the distribution spec (docker/distribution reference.go).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*", re.ASCII)
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}", re.ASCII)
_HOST_RE = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?",
    re.ASCII,
)
# Used with fullmatch and ASCII classes: "$" would accept a trailing newline, and "\w" any
# Unicode letter.
MAX_REFERENCE_LENGTH = 255 * 2  # ECS allows 255 for the repository part; be generous overall.


class ImageReferenceError(ProducerError, ValueError):
    """Raised when a string is not a valid image reference; the message says why."""


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A parsed image reference. ``str()`` gives back the canonical text."""

    repository: str
    registry: str | None = None
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}" if self.registry else self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def name(self) -> str:
        """The reference without tag and digest: ``registry/repository``."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    def with_tag(self, tag: str) -> ImageRef:
        """Return this image at another tag; a digest is dropped since it pinned the old one."""
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> ImageRef:
        """Return this image pinned to a digest; the tag is kept for readability."""
        return replace(self, digest=digest)


def parse_image(text: str) -> ImageRef:
    """Parse ``[registry[:port]/]repository[:tag][@digest]`` into an :class:`ImageRef`.

    Raises :class:`ImageReferenceError` naming the part that is wrong.
    """
    if not text or text != text.strip():
        raise ImageReferenceError(f"image reference {text!r} is empty or has surrounding spaces")
    if len(text) > MAX_REFERENCE_LENGTH:
        raise ImageReferenceError(
            f"image reference is longer than {MAX_REFERENCE_LENGTH} characters"
        )
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST_RE.fullmatch(digest):
            raise ImageReferenceError(
                f"digest {digest!r} in {text!r} is not of the form sha256:<64 hex digits>"
            )
    registry = None
    first, sep, remainder = rest.partition("/")
    # Docker's rule: the first component is a registry host when it has a dot or a port,
    # or is "localhost"; otherwise it is part of the repository (e.g. "library/nginx").
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not _HOST_RE.fullmatch(first):
            raise ImageReferenceError(f"registry {first!r} in {text!r} is not a valid host[:port]")
        registry, rest = first, remainder
    tag = None
    # After the registry is removed, a ':' can only introduce the tag.
    if ":" in rest:
        rest, tag = rest.rsplit(":", 1)
        if not _TAG_RE.fullmatch(tag):
            raise ImageReferenceError(
                f"tag {tag!r} in {text!r} is not valid: use letters, digits, '_', '.', '-' "
                "(at most 128, not starting with '.' or '-')"
            )
    if not _REPOSITORY_RE.fullmatch(rest):
        raise ImageReferenceError(
            f"repository {rest!r} in {text!r} is not valid: use lowercase letters, digits and "
            "separators ('.', '_', '-', '/')"
        )
    return ImageRef(repository=rest, registry=registry, tag=tag, digest=digest)


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """What a job asks for one container: a full reference, or only a new tag or digest.

    ``web=:1.4.2`` keeps the container's repository and changes the tag; ``web=@sha256:...``
    pins the current repository to a digest.
    """

    image: ImageRef | None = None
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        if self.image is not None:
            return str(self.image)
        if self.tag is not None:
            return f":{self.tag}"
        return f"@{self.digest}"

    def apply(self, current: str) -> str:
        """Return the image text that results from applying this spec to ``current``."""
        if self.image is not None:
            return str(self.image)
        base = parse_image(current)
        if self.tag is not None:
            return str(base.with_tag(self.tag))
        if self.digest is None:
            raise ImageReferenceError("an image spec needs an image, a tag or a digest")
        return str(base.with_digest(self.digest))


def parse_image_spec(text: str) -> ImageSpec:
    """Parse the image half of ``container=image``: a reference, ``:tag`` or ``@digest``."""
    if text.startswith(":"):
        tag = text[1:]
        if not _TAG_RE.fullmatch(tag):
            raise ImageReferenceError(
                f"tag {tag!r} is not valid: use letters, digits, '_', '.', '-' (at most 128)"
            )
        return ImageSpec(tag=tag)
    if text.startswith("@"):
        digest = text[1:]
        if not _DIGEST_RE.fullmatch(digest):
            raise ImageReferenceError(
                f"digest {digest!r} is not of the form sha256:<64 hex digits>"
            )
        return ImageSpec(digest=digest)
    return ImageSpec(image=parse_image(text))


def image_tag(text: str) -> str | None:
    """Return the tag of an image reference, or None when it has none or does not parse."""
    try:
        return parse_image(text).tag
    except ImageReferenceError:
        return None
