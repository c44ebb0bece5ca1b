"""Resolve version rules against ECR when a job is enqueued.

One DescribeImages listing (paginated) per repository, and one choice per (repository, rule):
every service of a release that names the same rule gets the same tag. The job that goes on
the queue names ``REPOSITORY:TAG@DIGEST`` (ECS runs the digest; the tag is there for people),
so every task of the deployment, including one started weeks later by a scale-out, runs the
image that was resolved even when the tag is pushed again. ``pin_digest=False`` (``--tag-only``)
writes only the tag. The job keeps the rule and the digest for the record.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from producers.contract.fargate_spec import FargateServiceJob
from producers.contract.jobs import ImageUpdate, UpdateServiceJob
from producers.contract.versions import ImageTag, VersionRuleError, split_rule_image

_ECR = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(.+)$")


def ecr_location(repository: str) -> tuple[str, str, str]:
    """``(registry id, region, repository name)`` of an ECR repository reference."""
    match = _ECR.match(repository)
    if match is None:
        raise VersionRuleError(
            f"{repository!r}: version rules need an ECR repository "
            "(ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME)"
        )
    return match.group(1), match.group(2), match.group(3)


def ecr_tags(client_for: Callable[[str], Any]) -> Callable[[str], list[ImageTag]]:
    """A tag lister over ECR's DescribeImages; ``client_for(region)`` makes an ECR client."""

    def tags(repository: str) -> list[ImageTag]:
        registry, region, name = ecr_location(repository)
        found: list[ImageTag] = []
        pages = (
            client_for(region)
            .get_paginator("describe_images")
            .paginate(registryId=registry, repositoryName=name, filter={"tagStatus": "TAGGED"})
        )
        try:
            for page in pages:
                for image in page.get("imageDetails", []):
                    pushed = image.get("imagePushedAt")
                    at = pushed.timestamp() if hasattr(pushed, "timestamp") else 0.0
                    for tag in image.get("imageTags", []):
                        found.append(ImageTag(str(tag), str(image["imageDigest"]), at))
        except Exception as exc:  # botocore's errors: the message says what AWS said
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            raise VersionRuleError(f"{repository}: cannot list its tags in ECR ({code})") from exc
        return found

    return tags


class Resolver:
    """Resolves the rules of one or many jobs, choosing once per (repository, rule)."""

    def __init__(self, tags: Callable[[str], list[ImageTag]], *, pin_digest: bool = True) -> None:
        self._tags = tags
        self._pin = pin_digest
        self._listed: dict[str, list[ImageTag]] = {}
        self._chosen: dict[tuple[str, str], ImageTag] = {}

    def image(self, update: ImageUpdate) -> ImageUpdate:
        """The update with its rule resolved (unchanged when it has none)."""
        found = split_rule_image(update.image)
        if found is None:
            return update
        repository, rule = found
        key = (repository, rule.text)
        if key not in self._chosen:
            if repository not in self._listed:
                self._listed[repository] = self._tags(repository)
            try:
                self._chosen[key] = rule.select(self._listed[repository])
            except VersionRuleError as exc:
                raise VersionRuleError(f"container {update.container!r}: {exc}") from None
        chosen = self._chosen[key]
        image = f"{repository}:{chosen.tag}"
        if self._pin:
            image += f"@{chosen.digest}"
        return update.model_copy(
            update={"image": image, "rule": rule.text, "digest": chosen.digest}
        )

    def job(self, job: UpdateServiceJob) -> UpdateServiceJob:
        """The job with every image rule resolved."""
        if not any(i.unresolved_rule for i in job.images):
            return job
        return job.model_copy(update={"images": tuple(self.image(i) for i in job.images)})

    def fargate(self, job: FargateServiceJob) -> FargateServiceJob:
        """The spec with every container's image rule resolved."""
        if not any(c.unresolved_rule for c in job.containers):
            return job
        containers = []
        for container in job.containers:
            update = self.image(ImageUpdate(container=container.name, image=container.image))
            containers.append(
                container.model_copy(
                    update={"image": update.image, "rule": update.rule, "digest": update.digest}
                )
            )
        return job.model_copy(update={"containers": tuple(containers)})
