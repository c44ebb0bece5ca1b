"""CloudWatch metric gates and alarm gates, measured through the aiobotocore gateway against the
local AWS: datapoints put with PutMetricData, alarms made with PutMetricAlarm and set with
SetAlarmState, exactly as a release's gates will read them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from localaws.devstack import free_port
from producers.contract.gates import Gate, load_gate
from tests.localaws.conftest import REGION, client
from worker.aws.boto_cloudwatch import BotoCloudWatchGateway, CloudWatchMetrics
from worker.domain.gates import GateOutcome, Measurement, evaluate

T = TypeVar("T")
NOW = datetime.now(UTC).replace(microsecond=0)
DIMENSIONS = [{"Name": "service", "Value": "web"}]


def measure_with(url: str, gates: list[Gate]) -> list[Measurement]:
    """Measure each gate once through a real aiobotocore CloudWatch client."""

    async def run() -> list[Measurement]:
        session = get_session()
        async with session.create_client(
            "cloudwatch",
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ) as cloudwatch:
            metrics = CloudWatchMetrics(BotoCloudWatchGateway(cloudwatch), clock=lambda: NOW)
            return [await metrics.measure(g) for g in gates]

    return _run(run)


def _run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(factory())


def metric_gate(metric: str, stat: str, success: str, **fields: Any) -> Gate:
    """A gate on ``App/<metric>`` of the web service, one-minute sums."""
    query = {
        "Id": "m",
        "MetricStat": {
            "Metric": {"Namespace": "App", "MetricName": metric, "Dimensions": DIMENSIONS},
            "Period": 60,
            "Stat": "Sum",
        },
    }
    return load_gate(
        {
            "name": metric.lower(),
            "cloudwatch": {"metric_data_queries": [query], "stat": stat, "window_seconds": 600},
            "success": success,
            **fields,
        }
    )


def put(url: str, metric: str, points: list[tuple[int, float]]) -> None:
    """Datapoints ``(minutes ago, value)`` of App/<metric> for the web service."""
    client(url, "cloudwatch").put_metric_data(
        Namespace="App",
        MetricData=[
            {
                "MetricName": metric,
                "Dimensions": DIMENSIONS,
                "Timestamp": NOW - timedelta(minutes=ago),
                "Value": number,
            }
            for ago, number in points
        ],
    )


def test_metric_gates_read_get_metric_data(local_aws_url: str) -> None:
    """The newest datapoint (latest) or all of the window (maximum) is the measurement, and the
    evaluator passes or fails the gate on it; a metric without datapoints is no data."""
    put(local_aws_url, "Errors", [(8, 40.0), (1, 2.0)])
    latest = metric_gate("Errors", "latest", "result < 5", count=1)
    worst = metric_gate("Errors", "maximum", "result < 5", count=1)
    silent = metric_gate("Quiet", "latest", "result < 5", count=1)
    first, second, third = measure_with(local_aws_url, [latest, worst, silent])
    assert first.value == 2.0
    assert evaluate(latest, [first]).outcome is GateOutcome.PASSED
    assert second.value == 40.0
    failed = evaluate(worst, [second])
    assert failed.outcome is GateOutcome.FAILED
    assert "did not meet result < 5" in failed.reason
    assert "40 (maximum of 2)" in failed.reason
    assert third.value is None
    assert third.error is None
    assert evaluate(silent, [third]).outcome is GateOutcome.INCONCLUSIVE


def test_metric_math_is_refused_by_the_local_aws(local_aws_url: str) -> None:
    """A gate on an expression passes the model (its inputs ReturnData false); the local AWS,
    which cannot compute it, refuses it, and the gate is inconclusive rather than passed."""
    put(local_aws_url, "Requests", [(1, 100.0)])
    put(local_aws_url, "Failures", [(1, 3.0)])

    def stat(metric: str) -> dict[str, Any]:
        return {
            "Metric": {"Namespace": "App", "MetricName": metric, "Dimensions": DIMENSIONS},
            "Period": 60,
            "Stat": "Sum",
        }

    g = load_gate(
        {
            "name": "ratio",
            "cloudwatch": {
                "metric_data_queries": [
                    {"Id": "f", "MetricStat": stat("Failures"), "ReturnData": False},
                    {"Id": "r", "MetricStat": stat("Requests"), "ReturnData": False},
                    {"Id": "ratio", "Expression": "f / r"},
                ],
            },
            "success": "result < 0.01",
            "count": 1,
        }
    )
    (measured,) = measure_with(local_aws_url, [g])
    # moto computes no metric math, so the local AWS refuses an Expression by name (see
    # docs/localaws-fidelity.md): an error measurement, inconclusive, never a pass.
    assert measured.error is not None
    assert measured.error.startswith(
        "GetMetricData failed with InvalidParameterValue: GetMetricData: "
        "MetricDataQueries.Expression is not modelled by the local AWS"
    )
    assert evaluate(g, [measured]).outcome is GateOutcome.INCONCLUSIVE


def test_alarm_gates_follow_the_alarm_state(local_aws_url: str) -> None:
    """OK passes, ALARM fails, INSUFFICIENT_DATA is inconclusive; a missing alarm is an error
    measurement that names it."""
    cloudwatch = client(local_aws_url, "cloudwatch")
    for name in ("web-ok", "web-firing", "web-unknown"):
        cloudwatch.put_metric_alarm(
            AlarmName=name,
            Namespace="App",
            MetricName="Errors",
            Dimensions=DIMENSIONS,
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=10,
            ComparisonOperator="GreaterThanThreshold",
        )
    cloudwatch.set_alarm_state(AlarmName="web-ok", StateValue="OK", StateReason="test")
    cloudwatch.set_alarm_state(AlarmName="web-firing", StateValue="ALARM", StateReason="test")
    cloudwatch.set_alarm_state(
        AlarmName="web-unknown", StateValue="INSUFFICIENT_DATA", StateReason="test"
    )
    gates = [
        load_gate({"name": name, "alarm": {"name": name}, "count": 1})
        for name in ("web-ok", "web-firing", "web-unknown", "web-gone")
    ]
    measured = measure_with(local_aws_url, gates)
    outcomes = [evaluate(g, [m]).outcome for g, m in zip(gates, measured, strict=True)]
    assert outcomes == [
        GateOutcome.PASSED,
        GateOutcome.FAILED,
        GateOutcome.INCONCLUSIVE,
        GateOutcome.INCONCLUSIVE,
    ]
    assert evaluate(gates[1], [measured[1]]).reason == (
        "gate web-firing: 1 measurement(s) did not meet alarm web-firing OK (tolerated: 0): "
        "1 (ALARM)"
    )
    assert measured[3].error == "alarm web-gone does not exist in this account and region"


def test_an_unreachable_cloudwatch_is_an_error_measurement() -> None:
    """A CloudWatch that cannot be reached is an error measurement (inconclusive), not a
    failure of the gate and not an exception."""
    g = metric_gate("Errors", "latest", "result < 5", count=2)

    async def run() -> Measurement:
        async with get_session().create_client(
            "cloudwatch",
            endpoint_url=f"http://127.0.0.1:{free_port()}",
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=AioConfig(retries={"max_attempts": 0}),
        ) as cloudwatch:
            return await CloudWatchMetrics(BotoCloudWatchGateway(cloudwatch)).measure(g)

    measured = _run(run)
    assert measured.error == "GetMetricData could not reach AWS: EndpointConnectionError"
    assert evaluate(g, [measured]).outcome is GateOutcome.INCONCLUSIVE
