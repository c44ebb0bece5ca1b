"""Image references are parsed by grammar, never by splitting on the last ':'."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from producers.contract.images import (
    ImageRef,
    ImageReferenceError,
    image_tag,
    parse_image,
    parse_image_spec,
)

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("nginx", None, "nginx", None, None),
        ("nginx:1.27", None, "nginx", "1.27", None),
        ("library/nginx:latest", None, "library/nginx", "latest", None),
        ("localhost:5000/app", "localhost:5000", "app", None, None),
        ("localhost/app:1", "localhost", "app", "1", None),
        (
            "registry.example.com:5000/team/app:1.2.3",
            "registry.example.com:5000",
            "team/app",
            "1.2.3",
            None,
        ),
        (
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/web:1.4.1",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "shop/web",
            "1.4.1",
            None,
        ),
        (f"app@{DIGEST}", None, "app", None, DIGEST),
        (f"r.io:443/a/b:v2@{DIGEST}", "r.io:443", "a/b", "v2", DIGEST),
    ],
)
def test_parses_registry_port_tag_and_digest(
    text: str, registry: str | None, repository: str, tag: str | None, digest: str | None
) -> None:
    """Registry hosts with ports, tags and digests land in the right fields and round-trip."""
    ref = parse_image(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )
    assert str(ref) == text


def test_port_is_not_mistaken_for_a_tag() -> None:
    """'host:5000/app' has no tag; replacing the tag must not produce 'host:5000/app:5000:x'."""
    ref = parse_image("registry.local:5000/app")
    assert ref.tag is None
    assert str(ref.with_tag("2.0")) == "registry.local:5000/app:2.0"


@pytest.mark.parametrize(
    "text",
    ["", " nginx", "UPPER/case", "app:", "app:-bad", "app@sha256:xyz", "a//b", "app:tag:extra"],
)
def test_rejects_invalid_references_with_a_reason(text: str) -> None:
    """Invalid references raise ImageReferenceError whose message names the bad part."""
    with pytest.raises(ImageReferenceError) as info:
        parse_image(text)
    assert str(info.value)


def test_tag_only_spec_keeps_repository_and_drops_digest() -> None:
    """':1.4.2' changes only the tag; a pinned digest is dropped because it pinned the old tag."""
    spec = parse_image_spec(":1.4.2")
    assert spec.apply(f"r.io:5000/team/web:1.4.1@{DIGEST}") == "r.io:5000/team/web:1.4.2"


def test_digest_only_spec_pins_current_repository() -> None:
    """'@sha256:...' pins the container's current repository to a digest."""
    spec = parse_image_spec("@" + DIGEST)
    assert spec.apply("team/web:1.4.1") == f"team/web:1.4.1@{DIGEST}"


def test_image_tag_of_unparseable_text_is_none() -> None:
    """image_tag never raises."""
    assert image_tag("registry:5000/app:fail-1") == "fail-1"
    assert image_tag("NOT VALID") is None


_component = st.from_regex(r"[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8})?", fullmatch=True)


@given(
    registry=st.one_of(
        st.none(),
        st.from_regex(r"[a-z]{1,8}\.[a-z]{2,4}(?::[1-9][0-9]{1,4})?", fullmatch=True),
    ),
    path=st.lists(_component, min_size=1, max_size=3),
    tag=st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)),
    digest=st.one_of(st.none(), st.from_regex(r"sha256:[0-9a-f]{64}", fullmatch=True)),
)
def test_round_trip_property(
    registry: str | None, path: list[str], tag: str | None, digest: str | None
) -> None:
    """Any valid reference parses into its parts and renders back to the same text.

    Without a registry, a first component with a dot would itself read as a registry host
    (Docker's rule), so such inputs are not references of that shape.
    """
    assume(registry is not None or ("." not in path[0] and path[0] != "localhost"))
    ref = ImageRef(repository="/".join(path), registry=registry, tag=tag, digest=digest)
    assert parse_image(str(ref)) == ref
