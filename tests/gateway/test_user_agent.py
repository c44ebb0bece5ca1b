"""The worker's AWS calls name Conveyor in their User-Agent, as CloudTrail records it."""

from __future__ import annotations

import pytest

from localaws.testing import control
from worker.aws.boto_pool import USER_AGENT
from worker.aws.gateway import AwsGateway
from worker.domain.errors import ConveyorError
from worker.runtime import Runtime


def test_the_worker_s_calls_are_told_apart_from_other_clients(
    local_aws_url: str, worker_runtime: tuple[Runtime, AwsGateway]
) -> None:
    """An operator reading CloudTrail (or the local AWS's call log) sees which calls were
    Conveyor's: the gateway's requests carry ``conveyor/<version>``."""
    runtime, gateway = worker_runtime
    assert USER_AGENT.startswith("conveyor/")
    control(local_aws_url, "DELETE", "stats")
    with pytest.raises(ConveyorError):
        runtime.run(gateway.describe_task_definition("no-such-family:1"))
    _, log = control(local_aws_url, "GET", "calls")
    assert {(c["op"], c["client"]) for c in log["calls"]} == {
        ("DescribeTaskDefinition", "conveyor")
    }
