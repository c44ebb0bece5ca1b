"""Version rules: an image given as a repository plus a rule, resolved to one tag. Pure.

In a job an image may be ``REPOSITORY:{RULE}``; a tag never contains braces, so the form is
unambiguous. A rule is one of:

* a version range, such as ``>=1.4 <2`` or ``~=1.4`` (PEP 440 specifiers, read by ``packaging``;
  spaces or commas between them): the highest release (no pre-release) version in range;
* ``channel:NAME``: the highest pre-release whose label is NAME (``2.0.0-beta.3`` is in
  channel ``beta``);
* ``re:REGEX``: the highest version among tags the expression matches in full (or the most
  recently pushed, for tags that are not versions);
* ``latest``: the most recently pushed tagged image.

Tags are read as semantic versions with ``semver`` (a leading ``v`` and a missing minor or
patch allowed). Resolution happens when a job is enqueued (:mod:`producers.resolve`), so every
service of a release gets the same version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import semver
from packaging.specifiers import InvalidSpecifier, SpecifierSet

RULE_IMAGE = re.compile(r"^(?P<repository>[^{}\s]+):\{(?P<rule>[^{}]+)\}$", re.ASCII)


class VersionRuleError(ValueError):
    """A rule that cannot be read, or that no tag matches; the message says which tags are near."""


@dataclass(frozen=True, slots=True)
class ImageTag:
    """One tag of a repository, as the registry describes it."""

    tag: str
    digest: str
    pushed_at: float = 0.0

    @property
    def version(self) -> semver.Version | None:
        """The tag as a semantic version, or None when it is not one."""
        try:
            return semver.Version.parse(self.tag.removeprefix("v"), optional_minor_and_patch=True)
        except (ValueError, TypeError):
            return None


@dataclass(frozen=True, slots=True)
class VersionRule:
    """A parsed rule."""

    kind: Literal["range", "channel", "regex", "latest"]
    text: str

    @classmethod
    def parse(cls, text: str) -> VersionRule:
        """Read a rule; VersionRuleError (naming the problem) when it is not one."""
        rule = text.strip()
        if rule == "latest":
            return cls("latest", rule)
        if rule.startswith("channel:"):
            name = rule.removeprefix("channel:")
            if not re.fullmatch(r"[0-9A-Za-z-]+", name):
                raise VersionRuleError(f"channel {name!r}: a pre-release label, such as beta")
            return cls("channel", rule)
        if rule.startswith("re:"):
            try:
                re.compile(rule.removeprefix("re:"))
            except re.error as exc:
                raise VersionRuleError(f"{rule!r} is not a regular expression: {exc}") from exc
            return cls("regex", rule)
        try:
            _specifiers(rule)
        except InvalidSpecifier as exc:
            raise VersionRuleError(
                f"{rule!r} is not a rule: give a version range such as '>=1.4 <2', "
                "'channel:NAME', 're:REGEX' or 'latest'"
            ) from exc
        return cls("range", rule)

    def candidates(self, tags: Iterable[ImageTag]) -> list[ImageTag]:
        """The tags the rule accepts, best first."""
        found = list(tags)
        if self.kind == "latest":
            return sorted(found, key=lambda t: t.pushed_at, reverse=True)
        if self.kind == "regex":
            pattern = re.compile(self.text.removeprefix("re:"))
            matching = [t for t in found if pattern.fullmatch(t.tag)]
            return sorted(matching, key=_best_version_then_newest, reverse=True)
        versioned = [(t, t.version) for t in found]
        if self.kind == "channel":
            channel = self.text.removeprefix("channel:")
            picked = [
                t
                for t, v in versioned
                if v and v.prerelease and v.prerelease.split(".")[0] == channel
            ]
        else:
            specifiers = _specifiers(self.text)
            picked = [
                t for t, v in versioned if v and not v.prerelease and specifiers.contains(str(v))
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
        raise VersionRuleError(f"no tag matches {self.text!r}; the newest tags are: {listed}")


def _specifiers(rule: str) -> SpecifierSet:
    return SpecifierSet(",".join(part for part in re.split(r"[\s,]+", rule) if part))


def _best_version_then_newest(tag: ImageTag) -> tuple[int, semver.Version, float]:
    version = tag.version
    if version is None:
        return (0, semver.Version(0), tag.pushed_at)
    return (1, version, tag.pushed_at)


def split_rule_image(image: str) -> tuple[str, VersionRule] | None:
    """``(repository, rule)`` for ``REPOSITORY:{RULE}``; None for an ordinary image."""
    match = RULE_IMAGE.match(image)
    if match is None:
        return None
    return match.group("repository"), VersionRule.parse(match.group("rule"))
