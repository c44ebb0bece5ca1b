"""ListTaskDefinitions orders and pages as AWS does (moto ignores sort and maxResults)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.localaws.conftest import Aws

BIG = 5000


def seed(aws: Aws, family: str, count: int, **extra: Any) -> dict[str, Any]:
    """Register ``count`` revisions at once through the control API."""
    status, answer = aws.control(
        "POST", "task-definitions", {"family": family, "count": count, **extra}
    )
    assert status == 200, answer
    result: dict[str, Any] = answer
    return result


def revisions(arns: list[str]) -> list[tuple[str, int]]:
    """(family, revision) of each task definition ARN."""
    pairs = [arn.rsplit("/", 1)[-1].rsplit(":", 1) for arn in arns]
    return [(family, int(revision)) for family, revision in pairs]


def flat(pages: Any) -> list[str]:
    """The ARNs of several pages, in order."""
    return [arn for page in pages for arn in page]


def every_page(aws: Aws, **params: Any) -> list[list[str]]:
    """Follow nextToken to the end; the ARNs of each page."""
    pages: list[list[str]] = []
    token: str | None = None
    while True:
        answer = aws.ecs.list_task_definitions(**params, **({"nextToken": token} if token else {}))
        pages.append(answer["taskDefinitionArns"])
        token = answer.get("nextToken")
        if not token:
            return pages


def test_newest_revision_of_a_big_family_in_one_call(aws: Aws) -> None:
    """With 5,000 revisions, sort=DESC and a small maxResults give the newest revisions first in
    one call, and the next page continues right after them; without sort, ASC starts at 1 and a
    page holds 100 by default."""
    assert seed(aws, "big", BIG) == {
        "family": "big",
        "account": "123456789012",
        "region": "us-east-1",
        "first_revision": 1,
        "last_revision": BIG,
    }

    newest = aws.ecs.list_task_definitions(familyPrefix="big", sort="DESC", maxResults=5)
    following = aws.ecs.list_task_definitions(
        familyPrefix="big", sort="DESC", maxResults=5, nextToken=newest["nextToken"]
    )
    oldest = aws.ecs.list_task_definitions(familyPrefix="big")

    assert revisions(newest["taskDefinitionArns"]) == [("big", BIG - i) for i in range(5)]
    assert revisions(following["taskDefinitionArns"]) == [("big", BIG - i) for i in range(5, 10)]
    assert revisions(oldest["taskDefinitionArns"]) == [("big", i) for i in range(1, 101)]
    assert "nextToken" in oldest
    described = aws.ecs.describe_task_definition(taskDefinition=newest["taskDefinitionArns"][0])
    assert described["taskDefinition"]["revision"] == BIG
    assert "registeredAt" in described["taskDefinition"]


def test_whole_family_pages_in_order_without_repeats(aws: Aws) -> None:
    """Following nextToken lists every revision exactly once, ascending (ASC) or descending
    (DESC), in pages of maxResults; the SDK paginator works the same way."""
    seed(aws, "app", 250)

    ascending = every_page(aws, familyPrefix="app", maxResults=100)
    descending = every_page(aws, familyPrefix="app", sort="DESC", maxResults=100)

    assert [len(page) for page in ascending] == [100, 100, 50]
    assert revisions(flat(ascending)) == [("app", i) for i in range(1, 251)]
    assert revisions(flat(descending)) == [("app", i) for i in range(250, 0, -1)]
    paginator = aws.ecs.get_paginator("list_task_definitions")
    pages = paginator.paginate(familyPrefix="app", sort="DESC", PaginationConfig={"PageSize": 40})
    assert flat(page["taskDefinitionArns"] for page in pages) == flat(descending)


def test_families_sort_lexicographically_and_prefix_is_the_whole_family(aws: Aws) -> None:
    """Without familyPrefix, ASC lists families lexicographically with revisions ascending and
    DESC reverses both; familyPrefix matches the whole family name only."""
    for family, count in (("web", 2), ("api", 3), ("api-worker", 1), ("ap", 1)):
        seed(aws, family, count)

    ascending = aws.ecs.list_task_definitions()["taskDefinitionArns"]
    descending = aws.ecs.list_task_definitions(sort="DESC")["taskDefinitionArns"]

    expected = [
        ("ap", 1),
        ("api", 1),
        ("api", 2),
        ("api", 3),
        ("api-worker", 1),
        ("web", 1),
        ("web", 2),
    ]
    assert revisions(ascending) == expected
    assert revisions(descending) == expected[::-1]
    only_api = aws.ecs.list_task_definitions(familyPrefix="api", sort="DESC")
    assert revisions(only_api["taskDefinitionArns"]) == [("api", 3), ("api", 2), ("api", 1)]
    assert aws.ecs.list_task_definitions(familyPrefix="a")["taskDefinitionArns"] == []


def test_status_filter_and_registrations_between_pages(aws: Aws) -> None:
    """status selects ACTIVE (the default) or INACTIVE revisions, so the newest ACTIVE revision is
    one DESC call even when newer ones are deregistered; a revision registered between pages is
    neither repeated nor makes a page skip one."""
    seed(aws, "app", 30)
    for revision in (29, 30):
        aws.ecs.deregister_task_definition(taskDefinition=f"app:{revision}")

    newest_active = aws.ecs.list_task_definitions(familyPrefix="app", sort="DESC", maxResults=1)
    inactive = aws.ecs.list_task_definitions(familyPrefix="app", status="INACTIVE")

    assert revisions(newest_active["taskDefinitionArns"]) == [("app", 28)]
    assert revisions(inactive["taskDefinitionArns"]) == [("app", 29), ("app", 30)]

    first = aws.ecs.list_task_definitions(familyPrefix="app", sort="DESC", maxResults=10)
    aws.task_definition("app", "repo/app:31")
    rest = every_page(aws, familyPrefix="app", sort="DESC", maxResults=10)
    continued = aws.ecs.list_task_definitions(
        familyPrefix="app", sort="DESC", maxResults=10, nextToken=first["nextToken"]
    )
    assert revisions(first["taskDefinitionArns"]) == [("app", i) for i in range(28, 18, -1)]
    assert revisions(continued["taskDefinitionArns"]) == [("app", i) for i in range(18, 8, -1)]
    assert revisions(rest[0])[0] == ("app", 31)


@pytest.mark.parametrize(
    "params",
    [
        {"maxResults": 0},
        {"maxResults": 101},
        {"nextToken": "not-a-token"},
        {"sort": "SIDEWAYS"},
        {"status": "GONE"},
    ],
)
def test_bad_parameters_are_refused(aws: Aws, params: dict[str, Any]) -> None:
    """maxResults outside 1-100, a token this server did not give, an unknown sort or status are
    InvalidParameterException."""
    with pytest.raises(ClientError) as caught:
        aws.ecs.list_task_definitions(**params)

    assert caught.value.response["Error"]["Code"] == "InvalidParameterException"


def test_bulk_seeding_validates_its_payload(aws: Aws) -> None:
    """POST /_localaws/task-definitions refuses a missing family, a count outside 1-10000 and
    unknown fields with HTTP 400 naming the field; it can seed another account."""
    assert aws.control("POST", "task-definitions", {"count": 3})[0] == 400
    status, answer = aws.control("POST", "task-definitions", {"family": "x", "count": 0})
    assert (status, "count" in answer["message"]) == (400, True)
    status, answer = aws.control("POST", "task-definitions", {"family": "x", "count": 1, "n": 1})
    assert (status, "n" in answer["message"]) == (400, True)

    seed(aws, "elsewhere", 2, account="111111111111", image="repo/x:1")

    assert aws.ecs.list_task_definitions(familyPrefix="elsewhere")["taskDefinitionArns"] == []
