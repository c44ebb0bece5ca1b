"""The traffic split of a BLUE_GREEN, LINEAR or CANARY deployment as DescribeServiceDeployments
shows it: each service revision's requested production and test traffic weights."""

from __future__ import annotations

from tests.localaws.conftest import Aws
from tests.localaws.test_strategies import (
    NEXT,
    configuration,
    describe,
    set_minute,
    start,
    update,
    wait_stage,
    wait_status,
)


def test_a_canary_shows_its_split_on_each_revision_while_it_bakes(aws: Aws) -> None:
    """While the canary holds 10 %, the target revision asks for 10 % of production traffic and
    the one it replaces for the other 90 %; once it succeeded the target has it all."""
    canary = {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 1}
    start(aws, configuration("CANARY", canaryConfiguration=canary))
    set_minute(aws, 5.0)
    _, arn = update(aws, NEXT)

    found = wait_stage(aws, arn, "PRODUCTION_TRAFFIC_SHIFT")

    target = found["targetServiceRevision"]
    (source,) = found["sourceServiceRevisions"]
    assert target["requestedProductionTrafficWeight"] == 10.0
    assert source["requestedProductionTrafficWeight"] == 90.0
    assert target["requestedTestTrafficWeight"] == 100.0
    assert source["requestedTestTrafficWeight"] == 0.0

    set_minute(aws, 0.05)
    done = wait_status(aws, arn, "SUCCESSFUL")
    assert done["targetServiceRevision"]["requestedProductionTrafficWeight"] == 100.0


def test_a_rolling_update_asks_for_no_weights(aws: Aws) -> None:
    """A rolling update shifts no traffic, so neither revision carries a weight."""
    start(aws, {"deploymentCircuitBreaker": {"enable": True, "rollback": True}})
    _, arn = update(aws, NEXT)
    found = describe(aws, arn)
    assert "requestedProductionTrafficWeight" not in found["targetServiceRevision"]
