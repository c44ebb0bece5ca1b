"""Version rules: reading them, choosing a tag, and resolving jobs once per rule."""

from __future__ import annotations

import pytest

from producers.contract.jobs import ImageUpdate, UpdateServiceJob
from producers.contract.versions import ImageTag, VersionRule, VersionRuleError, split_rule_image
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
        ("latest", "main"),
    ],
)
def test_each_kind_of_rule_picks_the_best_tag(rule: str, tag: str) -> None:
    """The highest version the rule accepts (latest: the newest pushed)."""
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
    """Two jobs with the same rule: one listing of the repository, one choice; pin_digest
    writes the digest; the rule and the digest stay in the job."""
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
    assert (image.image, image.rule, image.digest) == (f"{repo}:1.9", "~=1.4", TAGS[2].digest)
    (pinned,) = Resolver(tags, pin_digest=True).job(job("a")).images
    assert pinned.image == f"{repo}@{TAGS[2].digest}"
    with pytest.raises(VersionRuleError, match="container 'web': no tag matches"):
        Resolver(tags).job(
            UpdateServiceJob(
                cluster="c",
                service="s",
                images=(ImageUpdate(container="web", image=f"{repo}:{{>=9}}"),),
            )
        )
