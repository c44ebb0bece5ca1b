"""Measuring gates with CloudWatch: GetMetricData for metric gates, DescribeAlarms for alarm gates.

:class:`BotoCloudWatchGateway` is the AWS side (one aiobotocore CloudWatch client, every call
through :func:`worker.aws.boto_calls.aws_call`); :class:`CloudWatchMetrics` turns its answers
into measurements (:class:`worker.gates.sources.MetricSource`) through the pure
:func:`metric_measurement` and :func:`worker.domain.gates.alarm_measurement`.

Rate limits: each call takes a token from the shared limiter, from buckets sized as AWS
documents CloudWatch's quotas (``config.ecs_limits.CLOUDWATCH_RATE_LIMITS``: GetMetricData 50
and DescribeAlarms 9 calls a second per account and region). A throttle that still happens is
retried by botocore and, past that, measured as an error (inconclusive), never a failure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from producers.contract.gates import CloudWatchSource, Gate
from worker.aws.boto_calls import aws_call
from worker.aws.ratelimit import RateLimiter
from worker.domain.errors import ConveyorError
from worker.domain.gates import Measurement, alarm_measurement, failed_query, no_data, value

# GetMetricData pages followed for one measurement: a window of at most a day at one-minute
# periods is 1440 datapoints, well inside one page; more pages mean a query far too wide.
MAX_PAGES = 5


class CloudWatchGateway(Protocol):
    """The two CloudWatch calls gates make."""

    async def get_metric_data(
        self, queries: list[dict[str, Any]], start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        """Every MetricDataResult of ``queries`` between ``start`` and ``end``, newest first."""
        ...

    async def alarm_state(self, name: str) -> str | None:
        """The state of the metric or composite alarm ``name`` (None: no such alarm)."""
        ...


class BotoCloudWatchGateway:
    """CloudWatchGateway over one long-lived aiobotocore CloudWatch client."""

    def __init__(
        self, client: Any, call_timeout: float = 20.0, limiter: RateLimiter | None = None
    ) -> None:
        # No type stubs of the CloudWatch client are installed: ``Any``.
        self._cloudwatch = client
        self.call_timeout = call_timeout
        self.limiter = limiter

    @aws_call("GetMetricData")
    async def get_metric_data(
        self, queries: list[dict[str, Any]], start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        """See CloudWatchGateway; pages are merged per query Id (at most MAX_PAGES)."""
        merged: dict[str, dict[str, Any]] = {}
        token: str | None = None
        for _ in range(MAX_PAGES):
            kwargs: dict[str, Any] = {
                "MetricDataQueries": queries,
                "StartTime": start,
                "EndTime": end,
                "ScanBy": "TimestampDescending",
            }
            if token:
                kwargs["NextToken"] = token
            answer = await self._cloudwatch.get_metric_data(**kwargs)
            for result in answer.get("MetricDataResults", []):
                entry = merged.setdefault(
                    str(result.get("Id")), {**result, "Timestamps": [], "Values": []}
                )
                entry["Timestamps"] += list(result.get("Timestamps", []))
                entry["Values"] += list(result.get("Values", []))
                entry["StatusCode"] = result.get("StatusCode", entry.get("StatusCode"))
            token = answer.get("NextToken")
            if not token:
                break
        return list(merged.values())

    @aws_call("DescribeAlarms")
    async def alarm_state(self, name: str) -> str | None:
        """See CloudWatchGateway."""
        answer = await self._cloudwatch.describe_alarms(
            AlarmNames=[name], AlarmTypes=["MetricAlarm", "CompositeAlarm"]
        )
        for alarm in [*answer.get("MetricAlarms", []), *answer.get("CompositeAlarms", [])]:
            if alarm.get("AlarmName") == name:
                return str(alarm.get("StateValue"))
        return None


def _reduce(stat: str, values: list[float], timestamps: list[datetime]) -> float:
    if stat == "latest":
        # Newest first as asked (ScanBy), but merged pages need not be: take the newest.
        return max(zip(timestamps, values, strict=True), key=lambda pair: pair[0])[1]
    if stat == "average":
        return math.fsum(values) / len(values)
    if stat == "maximum":
        return max(values)
    if stat == "minimum":
        return min(values)
    return math.fsum(values)


def metric_measurement(source: CloudWatchSource, results: list[dict[str, Any]]) -> Measurement:
    """The measurement of a metric gate from GetMetricData's results (pure)."""
    wanted = source.result_id
    result = next((r for r in results if str(r.get("Id")) == wanted), None)
    if result is None:
        return failed_query(f"GetMetricData returned no result for query {wanted}")
    status = str(result.get("StatusCode", "Complete"))
    if status in ("InternalError", "Forbidden"):
        messages = "; ".join(str(m.get("Value", ""))[:200] for m in result.get("Messages", []))
        return failed_query(f"GetMetricData {status} for query {wanted}: {messages}".rstrip(": "))
    values = [float(v) for v in result.get("Values", [])]
    timestamps = list(result.get("Timestamps", []))
    if not values:
        return no_data(f"no datapoints for query {wanted} in the last {source.window_seconds} s")
    if len(timestamps) != len(values):
        return failed_query(f"GetMetricData returned {len(values)} values, {len(timestamps)} times")
    found = _reduce(source.stat, values, timestamps)
    if math.isnan(found):
        return no_data(f"query {wanted} answered NaN")
    return value(found, f"{source.stat} of {len(values)}" if source.stat != "latest" else "")


class CloudWatchMetrics:
    """Measures CloudWatch metric and alarm gates (:class:`worker.gates.sources.MetricSource`)."""

    def __init__(
        self,
        gateway: CloudWatchGateway,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._gateway = gateway
        self._clock = clock

    async def measure(self, gate: Gate) -> Measurement:
        """One GetMetricData (metric gates) or DescribeAlarms (alarm gates) call."""
        try:
            if gate.alarm is not None:
                state = await self._gateway.alarm_state(gate.alarm.name)
                if state is None:
                    return failed_query(
                        f"alarm {gate.alarm.name} does not exist in this account and region"
                    )
                return alarm_measurement(state)
            if gate.cloudwatch is not None:
                now = self._clock()
                start = now - timedelta(seconds=gate.cloudwatch.window_seconds)
                results = await self._gateway.get_metric_data(
                    gate.cloudwatch.metric_data_queries, start, now
                )
                return metric_measurement(gate.cloudwatch, results)
        except ConveyorError as error:
            return failed_query(str(error))
        return failed_query(f"gate {gate.name} has no cloudwatch or alarm source")
