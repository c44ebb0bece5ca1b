"""Version rules: reading them, choosing a tag, and resolving jobs once per rule."""

from __future__ import annotations

import pytest

from producers.contract.jobs import ImageUpdate, UpdateServiceJob
from producers.contract.versions import (
    ImageTag,
    Version,
    VersionRule,
    VersionRuleError,
    split_rule_image,
)
from producers.resolve import Resolver, ecr_location

TAGS = [
    ImageTag("1.0.0", "sha256:" + "0" * 64, 100),
    ImageTag("v1.4.2", "sha256:" + "1" * 64, 200),
    ImageTag("1.9", "sha256:" + "2" * 64, 300),
    ImageTag("2.0.0", "sha256:" + "3" * 64, 400),
    ImageTag("2.1.0-beta.1", "sha256:" + "4" * 64, 500),
    ImageTag("2.1.0-beta.3", "sha256:" + "5" * 64, 600),
    ImageTag("2.1.0-rc.1", "sha256:" + "6" * 64, 700),
    ImageTag("main", "sha256:" + "7" * 64, 800),
]


@pytest.mark.parametrize(
    ("rule", "tag"),
    [
        (">=1.4 <2", "1.9"),
        (">=1.4,<2", "1.9"),
        ("~=1.4", "1.9"),
        ("==1.4.*", "v1.4.2"),
        (">=2", "2.0.0"),  # a release range never picks a pre-release
        ("channel:beta", "2.1.0-beta.3"),
        ("channel:rc", "2.1.0-rc.1"),
        (r"re:^1\..*", "1.9"),
        ("re:ma.*", "main"),
        ("latest", "2.0.0"),
        ("[1.4,2.0)", "1.9"),
        ("(,2.0]", "2.0.0"),
        ("(,2.0)", "1.9"),
        ("[1.4.2]", "v1.4.2"),
        ("(1.0,1.9]", "1.9"),
        ("1.0", "2.0.0"),  # a bare version is a minimum, as in NuGet and Octopus
        ("[1.0, 1.5)", "v1.4.2"),
    ],
)
def test_each_kind_of_rule_picks_the_best_tag(rule: str, tag: str) -> None:
    """The highest version the rule accepts (latest: the highest release)."""
    assert VersionRule.parse(rule).select(TAGS).tag == tag


def test_a_rule_no_tag_matches_lists_the_nearest_tags() -> None:
    """Named in the error: the five highest versions."""
    with pytest.raises(VersionRuleError) as info:
        VersionRule.parse(">=3").select(TAGS)
    assert "no tag matches '>=3'" in str(info.value)
    assert "2.1.0-rc.1, 2.1.0-beta.3, 2.1.0-beta.1, 2.0.0, 1.9" in str(info.value)


@pytest.mark.parametrize("rule", ["=>1", "channel:", "re:(", "newest"])
def test_a_bad_rule_is_refused_saying_what_a_rule_is(rule: str) -> None:
    """Not a range, channel, expression or latest."""
    with pytest.raises(VersionRuleError):
        VersionRule.parse(rule)


def test_rule_images_in_jobs() -> None:
    """REPOSITORY:{RULE} is a valid image in a job until resolved; a bad rule is refused at
    once; an ordinary image is no rule."""
    repo = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/web"
    update = ImageUpdate(container="web", image=f"{repo}:{{>=1.4 <2}}")
    assert update.unresolved_rule
    assert split_rule_image(f"{repo}:1.4.2") is None
    with pytest.raises(ValueError, match="is not a rule"):
        ImageUpdate(container="web", image=f"{repo}:{{newest}}")
    assert ecr_location(repo) == ("123456789012", "eu-west-1", "team/web")
    with pytest.raises(VersionRuleError, match="need an ECR repository"):
        ecr_location("docker.io/library/nginx")


def test_a_release_resolves_each_rule_once_and_every_service_gets_the_same_tag() -> None:
    """Two jobs with the same rule: one listing of the repository, one choice; the image is
    REPOSITORY:TAG@DIGEST by default (only the tag with pin_digest=False); the rule and the
    digest stay in the job."""
    listed: list[str] = []
    repo = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/web"

    def tags(repository: str) -> list[ImageTag]:
        listed.append(repository)
        return TAGS

    def job(service: str) -> UpdateServiceJob:
        return UpdateServiceJob(
            cluster="c",
            service=service,
            images=(ImageUpdate(container="web", image=f"{repo}:{{~=1.4}}"),),
        )

    resolver = Resolver(tags)
    first, second = resolver.job(job("a")), resolver.job(job("b"))
    assert listed == [repo]
    assert first.images == second.images
    (image,) = first.images
    assert (image.image, image.rule, image.digest) == (
        f"{repo}:1.9@{TAGS[2].digest}",
        "~=1.4",
        TAGS[2].digest,
    )
    (tagged,) = Resolver(tags, pin_digest=False).job(job("a")).images
    assert tagged.image == f"{repo}:1.9"
    with pytest.raises(VersionRuleError, match="container 'web': no tag matches"):
        Resolver(tags).job(
            UpdateServiceJob(
                cluster="c",
                service="s",
                images=(ImageUpdate(container="web", image=f"{repo}:{{>=9}}"),),
            )
        )


def test_latest_is_the_highest_release_not_the_newest_push() -> None:
    """Octopus's "latest": the mutable tag ``latest``, a ``buildcache`` tag and a
    ``1.9.9-hotfix`` pushed after 2.4.0 are not releases; 2.4.0 stays the latest."""
    tags = [
        ImageTag("2.3.0", "sha256:" + "a" * 64, 100),
        ImageTag("2.4.0", "sha256:" + "b" * 64, 200),
        ImageTag("1.9.9-hotfix", "sha256:" + "c" * 64, 300),
        ImageTag("buildcache", "sha256:" + "d" * 64, 400),
        ImageTag("latest", "sha256:" + "e" * 64, 500),
        ImageTag("2.5.0-rc.1", "sha256:" + "f" * 64, 600),
    ]
    assert VersionRule.parse("latest").select(tags).tag == "2.4.0"
    with pytest.raises(VersionRuleError, match="no release version"):
        VersionRule.parse("latest").select(tags[2:])


@pytest.mark.parametrize(
    ("tag", "numbers", "prerelease"),
    [
        ("v1.4.2", (1, 4, 2, 0), ""),
        ("V2", (2, 0, 0, 0), ""),
        ("1.2.3.4", (1, 2, 3, 4), ""),
        ("1.2.3-beta.3", (1, 2, 3, 0), "beta.3"),
        ("1.2.3_beta", (1, 2, 3, 0), "beta"),
        ("1.2.3+build.5", (1, 2, 3, 0), ""),
    ],
)
def test_tags_are_read_as_octopus_reads_them(
    tag: str, numbers: tuple[int, int, int, int], prerelease: str
) -> None:
    """An optional v, up to four numbers, a pre-release after '-', '.' or '_', metadata
    ignored."""
    version = ImageTag(tag, "sha256:" + "0" * 64).version
    assert version is not None
    assert (version.numbers, version.prerelease) == (numbers, prerelease)


@pytest.mark.parametrize("tag", ["latest", "main", "buildcache", "", "v", "-1"])
def test_tags_that_are_not_versions(tag: str) -> None:
    """No leading number: not a version, never picked by a range
    or by latest."""
    assert Version.parse(tag) is None


def test_four_part_versions_and_prereleases_order_as_octopus_orders_them() -> None:
    """1.2.3.10 > 1.2.3.9 > 1.2.3 (= 1.2.3.0); a release above its pre-releases; numeric
    labels compare as numbers; 1.4 equals 1.4.0."""
    order = ["1.2.3-alpha", "1.2.3-beta.2", "1.2.3-beta.10", "1.2.3-rc.1", "1.2.3", "1.2.3.9"]
    order.append("1.2.3.10")
    versions = [Version.parse(t) for t in order]
    assert all(v is not None for v in versions)
    assert sorted(versions, key=lambda v: v) == versions  # type: ignore[arg-type, return-value]
    assert Version.parse("1.4") == Version.parse("v1.4.0.0")
    tags = [ImageTag(t, "sha256:" + "0" * 64) for t in ["1.2.3.9", "1.2.3.10", "1.2.4-rc.1"]]
    assert VersionRule.parse("latest").select(tags).tag == "1.2.3.10"
    assert VersionRule.parse("[1.2.3,1.2.3.10)").select(tags).tag == "1.2.3.9"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("[1.4,2.0", "open it with '[' (inclusive) or '(' (exclusive)"),
        ("1.4,2.0)", "open it with '['"),
        ("(1.4)", "write it as '[1.4]'"),
        ("[]", "write it as '[1.4]'"),
        ("(,)", "give at least one bound"),
        ("[2.0,1.4]", "the lower bound 2.0 is above the upper bound 1.4; write it as '[1.4,2.0]'"),
        ("(1.4,1.4)", "write '[1.4]' for exactly 1.4"),
        ("[1.x,2.0)", "'1.x' is not a version"),
        ("[1.0-beta,2.0)", "'1.0-beta' is not a version"),
        ("[1,2,3]", "at most two bounds"),
        ("=>1", "give a range such as '[1.4,2.0)'"),
    ],
)
def test_a_bad_range_is_refused_saying_how_to_write_it(rule: str, message: str) -> None:
    """Each malformed range names the problem and the fix."""
    with pytest.raises(VersionRuleError) as info:
        VersionRule.parse(rule)
    assert message in str(info.value)


def test_a_bad_range_in_a_release_names_the_field() -> None:
    """In a release the refusal names the wave entry, its service and container, and the fix."""
    from pydantic import ValidationError

    from producers.contract.jobs import describe_validation_error
    from producers.contract.releases import ReleaseJob

    repo = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/web"
    with pytest.raises(ValidationError) as info:
        ReleaseJob.model_validate(
            {"cluster": "c", "waves": [[{"service": "s", "images": {"web": f"{repo}:{{[2,1]}}"}}]]}
        )
    (line,) = describe_validation_error(info.value)
    assert line.startswith("waves[0][0] (s).images.web: '[2,1]': the lower bound 2 is above")
    assert "write it as '[1,2]'" in line
