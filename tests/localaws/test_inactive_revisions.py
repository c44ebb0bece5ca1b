"""Nothing starts from an INACTIVE revision: ECS refuses it, and so does the local AWS.

ECS answers UpdateService, CreateService and RunTask naming a deregistered revision with
ClientException "TaskDefinition is inactive". moto accepted them, which hid a cleanup that
deregistered a revision a deployment was about to use.
"""

from __future__ import annotations

import botocore.exceptions
import pytest

from tests.localaws.conftest import Aws


def _inactive(aws: Aws) -> tuple[str, str]:
    """app:1 (deregistered) and app:2 (ACTIVE)."""
    old = aws.task_definition("app", "repo/app:1")
    new = aws.task_definition("app", "repo/app:2")
    aws.ecs.deregister_task_definition(taskDefinition=old)
    return old, new


def _refused(error: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> None:
    assert error.value.response["Error"]["Code"] == "ClientException"
    assert error.value.response["Error"]["Message"] == "TaskDefinition is inactive"


def test_update_service_to_an_inactive_revision_is_refused(aws: Aws) -> None:
    """UpdateService to a deregistered revision (by ARN or family:revision) fails with ECS's
    ClientException, and the service stays where it was."""
    old, new = _inactive(aws)
    aws.service("web", new, desiredCount=1)
    for reference in (old, "app:1"):
        with pytest.raises(botocore.exceptions.ClientError) as error:
            aws.ecs.update_service(cluster="test", service="web", taskDefinition=reference)
        _refused(error)
    assert aws.describe("web")["taskDefinition"] == new


def test_create_service_on_an_inactive_revision_is_refused(aws: Aws) -> None:
    """CreateService naming a deregistered revision fails, and no service is made."""
    old, _ = _inactive(aws)
    with pytest.raises(botocore.exceptions.ClientError) as error:
        aws.service("web", old)
    _refused(error)
    assert aws.ecs.list_services(cluster="test")["serviceArns"] == []


def test_run_task_of_an_inactive_revision_is_refused(aws: Aws) -> None:
    """RunTask of a deregistered revision fails before any task is placed."""
    old, _ = _inactive(aws)
    with pytest.raises(botocore.exceptions.ClientError) as error:
        aws.ecs.run_task(cluster="test", taskDefinition=old)
    _refused(error)


def test_a_family_alone_means_its_latest_active_revision(aws: Aws) -> None:
    """With its newest revision deregistered, a family name still starts a service, on the
    newest ACTIVE revision, as on ECS."""
    first = aws.task_definition("app", "repo/app:1")
    newest = aws.task_definition("app", "repo/app:2")
    aws.ecs.deregister_task_definition(taskDefinition=newest)
    service = aws.service("web", "app", desiredCount=1)
    assert service["taskDefinition"] == first
