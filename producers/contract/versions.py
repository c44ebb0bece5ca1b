"""Version rules: an image given as a repository plus a rule, resolved to one tag. Pure.

In a job an image may be ``REPOSITORY:{RULE}``; a tag never contains braces, so the form is
unambiguous. A rule is one of:

* a version range, in either of two notations; both pick the highest *release* version (no
  pre-release) in range:

  - NuGet's interval notation, as Octopus Deploy uses it: ``[1.4,2.0)`` (1.4 <= v < 2.0),
    ``(,2.0]`` (v <= 2.0), ``(1.4,)`` (v > 1.4), ``[1.4]`` (exactly 1.4), and a bare version
    ``1.4`` meaning 1.4 or higher;
  - PEP 440 specifiers, read by ``packaging``: ``>=1.4 <2``, ``~=1.4``, ``==1.4.*`` (spaces
    or commas between them);

* ``channel:NAME``: the highest pre-release whose label starts with NAME (``2.0.0-beta.3`` is
  in channel ``beta``);
* ``re:REGEX``: the highest version among tags the expression matches in full (or the most
  recently pushed, for tags that are not versions);
* ``latest``: the highest release version, as Octopus picks "the latest" image. It is never
  the most recently pushed tag: a mutable tag named ``latest``, a ``buildcache`` tag or a
  ``1.9.9-hotfix`` pushed after ``2.4.0`` are not releases, and ``2.4.0`` stays the latest.

Tags are read as versions the way Octopus reads Docker tags: an optional ``v`` or ``V``, one
to four numbers (major, minor, patch, revision; a missing one is 0, so ``1.4`` equals
``1.4.0.0``), then an optional pre-release label after ``-``, ``.`` or ``_``, and optional
``+metadata`` (ignored in comparisons). A pre-release sorts below its release; labels compare
part by part as in SemVer (numbers numerically and below words). A tag without a leading
number (``latest``, ``main``, ``buildcache``) is not a version: Octopus reads it as a
pre-release of 0.0.0, so neither a range nor ``latest`` ever picks it, and here it can only be
picked by ``re:``.

Resolution happens when a job is enqueued (:mod:`producers.resolve`), so every service of a
release gets the same version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import total_ordering
from typing import TYPE_CHECKING, Literal

from producers.contract.errors import ProducerError

# Read only when a range rule is parsed: every job imports this module, few name a rule.
if TYPE_CHECKING:
    from packaging.specifiers import SpecifierSet

RULE_IMAGE = re.compile(r"^(?P<repository>[^{}\s]+):\{(?P<rule>[^{}]+)\}$", re.ASCII)

_VERSION = re.compile(
    r"[vV]?(?P<numbers>\d+(?:\.\d+){0,3})"
    r"(?:[-._](?P<pre>[0-9A-Za-z][0-9A-Za-z._-]*))?"
    r"(?:\+(?P<meta>[0-9A-Za-z._-]+))?",
    re.ASCII,
)
# A version inside a NuGet range: numbers only (a bound with a pre-release label would let a
# release range reach into pre-releases, which Conveyor's ranges never pick).
_BOUND = re.compile(r"\d+(?:\.\d+){0,3}", re.ASCII)
_NUGET = re.compile(r"(?P<open>[\[(])(?P<body>[^\[\]()]*)(?P<close>[\])])", re.ASCII)


class VersionRuleError(ProducerError, ValueError):
    """A rule that cannot be read, or that no tag matches; the message says which tags are near."""


@total_ordering
@dataclass(frozen=True, slots=True, eq=False)
class Version:
    """A tag read as a version (see the module docstring for the grammar)."""

    numbers: tuple[int, int, int, int]
    prerelease: str = ""

    @classmethod
    def parse(cls, text: str) -> Version | None:
        """The version a tag names, or None when the tag is not one."""
        match = _VERSION.fullmatch(text)
        if match is None:
            return None
        parts = [int(n) for n in match.group("numbers").split(".")]
        padded = (*parts, 0, 0, 0, 0)[:4]
        return cls((padded[0], padded[1], padded[2], padded[3]), match.group("pre") or "")

    @property
    def channel(self) -> str:
        """The pre-release label up to its first separator (``beta`` of ``beta.3``)."""
        return re.split(r"[._-]", self.prerelease, maxsplit=1)[0]

    def release_text(self) -> str:
        """The numbers as PEP 440 reads them (for the specifier check)."""
        return ".".join(str(n) for n in self.numbers)

    def _key(self) -> tuple[tuple[int, ...], int, tuple[tuple[int, int, str], ...]]:
        # SemVer precedence: a release sorts above its pre-releases; labels compare part by
        # part, numbers numerically and below words, and a longer label above its prefix.
        labels = tuple(
            (0, int(part), "") if part.isdigit() else (1, 0, part)
            for part in re.split(r"[._-]", self.prerelease)
            if self.prerelease
        )
        return (self.numbers, 0 if self.prerelease else 1, labels)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._key() == other._key()

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())


@dataclass(frozen=True, slots=True)
class ImageTag:
    """One tag of a repository, as the registry describes it."""

    tag: str
    digest: str
    pushed_at: float = 0.0

    @property
    def version(self) -> Version | None:
        """The tag as a version, or None when it is not one."""
        return Version.parse(self.tag)


@dataclass(frozen=True, slots=True)
class VersionRule:
    """A parsed rule."""

    kind: Literal["range", "channel", "regex", "latest"]
    text: str

    @classmethod
    def parse(cls, text: str) -> VersionRule:
        """Read a rule; VersionRuleError (naming the problem and the fix) when it is not one."""
        rule = text.strip()
        if rule == "latest":
            return cls("latest", rule)
        if rule.startswith("channel:"):
            name = rule.removeprefix("channel:")
            if not re.fullmatch(r"[0-9A-Za-z]+", name):
                raise VersionRuleError(
                    f"channel {name!r}: give a pre-release label, such as channel:beta"
                )
            return cls("channel", rule)
        if rule.startswith("re:"):
            try:
                re.compile(rule.removeprefix("re:"))
            except re.error as exc:
                raise VersionRuleError(f"{rule!r} is not a regular expression: {exc}") from exc
            return cls("regex", rule)
        _specifiers(rule)
        return cls("range", rule)

    def candidates(self, tags: Iterable[ImageTag]) -> list[ImageTag]:
        """The tags the rule accepts, best first."""
        found = list(tags)
        if self.kind == "regex":
            pattern = re.compile(self.text.removeprefix("re:"))
            matching = [t for t in found if pattern.fullmatch(t.tag)]
            return sorted(matching, key=_best_version_then_newest, reverse=True)
        versioned = [(t, t.version) for t in found]
        if self.kind == "channel":
            channel = self.text.removeprefix("channel:")
            picked = [t for t, v in versioned if v and v.prerelease and v.channel == channel]
        elif self.kind == "latest":
            picked = [t for t, v in versioned if v and not v.prerelease]
        else:
            specifiers = _specifiers(self.text)
            picked = [
                t
                for t, v in versioned
                if v and not v.prerelease and specifiers.contains(v.release_text())
            ]
        return sorted(picked, key=_best_version_then_newest, reverse=True)

    def select(self, tags: Iterable[ImageTag]) -> ImageTag:
        """The tag the rule resolves to; VersionRuleError listing the nearest tags when none."""
        found = list(tags)
        chosen = self.candidates(found)
        if chosen:
            return chosen[0]
        near = sorted(found, key=_best_version_then_newest, reverse=True)[:5]
        listed = ", ".join(t.tag for t in near) or "none: the repository has no tagged image"
        wanted = "no release version" if self.kind == "latest" else f"no tag matches {self.text!r}"
        raise VersionRuleError(f"{wanted}; the newest tags are: {listed}")


_RANGE_HELP = (
    "give a range such as '[1.4,2.0)', '(,2.0]', '[1.4]', '1.4' (1.4 or higher) or "
    "'>=1.4 <2', or 'channel:NAME', 're:REGEX' or 'latest'"
)


def _specifiers(rule: str) -> SpecifierSet:
    """The rule as PEP 440 specifiers; NuGet ranges are translated. VersionRuleError if bad."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    if rule[:1] in "[(" or rule[-1:] in "])":
        return _nuget(rule)
    if _BOUND.fullmatch(rule):
        return SpecifierSet(f">={rule}")  # NuGet and Octopus: a bare version is a minimum
    try:
        return SpecifierSet(",".join(part for part in re.split(r"[\s,]+", rule) if part))
    except InvalidSpecifier as exc:
        raise VersionRuleError(f"{rule!r} is not a rule: {_RANGE_HELP}") from exc


def _nuget(rule: str) -> SpecifierSet:
    """A NuGet interval (``[1.4,2.0)``, ``(,2.0]``, ``[1.4]``) as PEP 440 specifiers."""
    from packaging.specifiers import SpecifierSet

    match = _NUGET.fullmatch(rule.replace(" ", ""))
    if match is None:
        raise VersionRuleError(
            f"{rule!r} is not a range: open it with '[' (inclusive) or '(' (exclusive) and "
            "close it with ']' or ')', such as '[1.4,2.0)'"
        )
    opened, body, closed = match.group("open"), match.group("body"), match.group("close")
    bounds = body.split(",")
    for bound in bounds:
        if bound and not _BOUND.fullmatch(bound):
            raise VersionRuleError(
                f"{rule!r}: {bound!r} is not a version; a bound is one to four numbers, "
                "such as 1.4 or 2.0.0"
            )
    if len(bounds) == 1:
        if (opened, closed) != ("[", "]") or not body:
            raise VersionRuleError(
                f"{rule!r}: one version in brackets means exactly that version; write it "
                f"as '[{body or '1.4'}]'"
            )
        return SpecifierSet(f"=={body}")
    if len(bounds) != 2:
        raise VersionRuleError(f"{rule!r}: a range has at most two bounds, such as '[1.4,2.0)'")
    low, high = bounds
    if not low and not high:
        raise VersionRuleError(f"{rule!r}: give at least one bound, such as '[1.4,)'")
    parts = []
    if low:
        parts.append(f"{'>=' if opened == '[' else '>'}{low}")
    if high:
        parts.append(f"{'<=' if closed == ']' else '<'}{high}")
    if low and high:
        lower, upper = Version.parse(low), Version.parse(high)
        if lower is not None and upper is not None and lower > upper:
            raise VersionRuleError(
                f"{rule!r}: the lower bound {low} is above the upper bound {high}; "
                f"write it as '{opened}{high},{low}{closed}'"
            )
        if lower == upper and (opened, closed) != ("[", "]"):
            raise VersionRuleError(
                f"{rule!r} contains no version: write '[{low}]' for exactly {low}"
            )
    return SpecifierSet(",".join(parts))


def _best_version_then_newest(tag: ImageTag) -> tuple[int, Version, float]:
    version = tag.version
    if version is None:
        return (0, Version((0, 0, 0, 0)), tag.pushed_at)
    return (1, version, tag.pushed_at)


def split_rule_image(image: str) -> tuple[str, VersionRule] | None:
    """``(repository, rule)`` for ``REPOSITORY:{RULE}``; None for an ordinary image."""
    match = RULE_IMAGE.match(image)
    if match is None:
        return None
    return match.group("repository"), VersionRule.parse(match.group("rule"))
