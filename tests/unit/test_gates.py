"""Metric gates: the file format, the condition language and the verdict rule (all pure)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from producers.contract.gates import (
    MAX_CONDITION_DEPTH,
    ConditionError,
    Gate,
    load_gate,
    parse_condition,
)
from tests.fakes.gates import ScriptedMetrics
from worker.aws.boto_cloudwatch import CloudWatchMetrics, metric_measurement
from worker.domain.gates import (
    GateOutcome,
    GateVerdict,
    Measurement,
    alarm_measurement,
    evaluate,
    failed_query,
    no_data,
    value,
)
from worker.gates.prometheus import PrometheusMetrics, measurement_of, split_credentials
from worker.gates.sources import MetricSource


def gate(**fields: Any) -> Gate:
    """A Prometheus gate, ``result < 0.01``, five measurements, nothing tolerated by default."""
    data: dict[str, Any] = {
        "name": "error-rate",
        "prometheus": {"query": "sum(rate(http_5xx[1m]))"},
        "success": "result < 0.01",
        "interval_seconds": 30,
        "count": 5,
    }
    data.update(fields)
    return load_gate(data)


def problems(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        load_gate(data)
    return str(caught.value)


# -- the model -----------------------------------------------------------------------------------


def test_the_documented_example_loads() -> None:
    """The example of docs/gates.md is a valid gate, with the defaults it promises."""
    loaded = gate(failure_limit=1, inconclusive_limit=2)
    assert loaded.on_inconclusive == "pause"
    assert loaded.source == "prometheus"
    assert str(loaded.condition) == "result < 0.01"


def test_exactly_one_source() -> None:
    """A gate measures one source: none or two are refused, naming the three."""
    assert "exactly one of prometheus, cloudwatch or alarm (found none)" in problems(
        {"name": "g", "success": "result < 1"}
    )
    assert "found prometheus, alarm" in problems(
        {"name": "g", "prometheus": {"query": "up"}, "alarm": {"name": "a"}, "success": "result<1"}
    )


def test_alarm_gates_take_no_condition_and_others_need_one() -> None:
    """An alarm's state decides an alarm gate; every other gate needs its condition."""
    assert "remove success" in problems(
        {"name": "g", "alarm": {"name": "web-5xx"}, "success": "result < 1"}
    )
    assert "needs a condition" in problems({"name": "g", "prometheus": {"query": "up"}})
    alarm = load_gate({"name": "g", "alarm": {"name": "web-5xx"}})
    assert alarm.source == "alarm"


def test_unknown_fields_and_loose_types_are_refused() -> None:
    """extra=forbid and strict: a typo or a number as a string is an error, not a default."""
    assert "intervall_seconds" in problems({**gate().model_dump(), "intervall_seconds": 3})
    assert "count" in problems({**gate().model_dump(exclude_none=True), "count": "5"})


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("interval_seconds", 1),
        ("interval_seconds", 10**9),
        ("count", 0),
        ("count", 10**6),
        ("failure_limit", -1),
        ("inconclusive_limit", 10**12),
        ("initial_delay_seconds", 10**7),
        ("on_inconclusive", "ignore"),
        ("name", "has spaces"),
        ("name", "x" * 65),
    ],
)
def test_every_number_is_bounded(field: str, bad: Any) -> None:
    """Out-of-range numbers (and unknown choices) are refused under their field's name."""
    assert field in problems({**gate().model_dump(exclude_none=True), field: bad})


def test_limits_leave_room_for_a_good_measurement() -> None:
    """Limits that would let a gate pass without one good measurement are refused."""
    assert "raise count or lower the limits" in problems(
        gate(count=3, failure_limit=1).model_dump(exclude_none=True) | {"inconclusive_limit": 2}
    )


def test_a_url_with_credentials_is_refused_and_never_echoed() -> None:
    """Credentials belong in the workers' setting; the error names neither them nor the URL's
    password, in any rendering of the error."""
    text = problems(
        {
            "name": "g",
            "prometheus": {"query": "up", "url": "https://alice:s3cr3t@prom.example:9090"},
            "success": "result > 0",
        }
    )
    assert "CONVEYOR_PROMETHEUS_URL" in text
    assert "s3cr3t" not in text
    assert "alice" not in text


def test_a_url_must_be_http() -> None:
    """file:, ftp: and bare hosts are refused: the worker must not read local files."""
    for url in ("file:///etc/passwd", "ftp://h/x", "prometheus:9090"):
        assert "not an http(s) URL" in problems(
            {"name": "g", "prometheus": {"query": "up", "url": url}, "success": "result > 0"}
        )


def test_cloudwatch_queries_need_exactly_one_result() -> None:
    """Of GetMetricData's queries exactly one returns data: the number measured."""
    stat = {"Metric": {"Namespace": "App", "MetricName": "E"}, "Period": 60, "Stat": "Sum"}
    two = [{"Id": "a", "MetricStat": stat}, {"Id": "b", "MetricStat": stat}]
    assert "exactly one query must return data, found 2 (a, b)" in problems(
        {"name": "g", "cloudwatch": {"metric_data_queries": two}, "success": "result < 1"}
    )
    one = [{"Id": "a", "MetricStat": stat, "ReturnData": False}, {"Id": "r", "Expression": "a*2"}]
    loaded = load_gate(
        {"name": "g", "cloudwatch": {"metric_data_queries": one}, "success": "result < 1"}
    )
    assert loaded.cloudwatch is not None
    assert loaded.cloudwatch.result_id == "r"
    assert "needs an Id" in problems(
        {"name": "g", "cloudwatch": {"metric_data_queries": [{"MetricStat": stat}]}, "success": "1"}
    )


# -- the condition language ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        ("result < 0.01", [0.0, -5.0, 0.00999], [0.01, 1.0, math.inf]),
        ("result >= 1 and result <= 2", [1.0, 1.5, 2.0], [0.99, 2.01]),
        ("result == 0 or result > 100", [0.0, 101.0], [50.0, 100.0]),
        ("(result > 1 or result < -1) and result != 5", [2.0, -2.0], [0.0, 5.0]),
        ("result != 3", [2.0], [3.0]),
        ("result<1e3", [999.0], [1000.0]),
    ],
)
def test_conditions_hold_as_written(text: str, inside: list[float], outside: list[float]) -> None:
    """Comparisons, and/or (and binding tighter) and parentheses mean what they say."""
    condition = parse_condition(text)
    assert all(condition.holds(v) for v in inside)
    assert not any(condition.holds(v) for v in outside)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("result", "ends too soon"),
        ("result <", "ends too soon"),
        ("result < x", "expected a number"),
        ("value < 1", "the only name is 'result'"),
        ("__import__('os').system('rm -rf /')", "unexpected"),
        ("__import__ < 1", "the only name is 'result'"),
        ("result < 1; import os", "unexpected ';"),
        ("result < 1 or", "ends too soon"),
        ("result < 1 result > 2", "join comparisons"),
        ("result << 1", "expected a number"),
        ("result < 1e400", "give a finite number"),
        ("result < nan", "expected a number"),
        ("result < inf", "expected a number"),
        ("(result < 1", "'(' is not closed"),
        ("result < 1)", "unexpected ')'"),
        ("(" * (MAX_CONDITION_DEPTH + 2) + "result<1" + ")" * (MAX_CONDITION_DEPTH + 2), "deeper"),
        ("result < 1 and " * 40 + "result < 2", "at most 500 characters"),
        ("result < ${HOME}", "unexpected '$"),
        ("result < 1 \x00", "unexpected"),
    ],
)
def test_hostile_conditions_are_refused_with_a_reason(text: str, says: str) -> None:
    """Anything but the small language is refused by the parser, never evaluated."""
    with pytest.raises(ConditionError) as caught:
        parse_condition(text)
    assert says in str(caught.value)


@settings(max_examples=300)
@given(st.text(max_size=120))
def test_any_text_parses_or_raises_condition_error(text: str) -> None:
    """The parser never raises anything but ConditionError (no crash, no recursion error)."""
    with contextlib.suppress(ConditionError):
        parse_condition(text)


@given(
    st.sampled_from(["<", "<=", ">", ">=", "==", "!="]),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.floats(allow_nan=True, allow_infinity=True),
)
def test_a_comparison_agrees_with_python(op: str, number: float, result: float) -> None:
    """``result OP n`` holds exactly when Python's comparison does (IEEE rules for NaN/Inf)."""
    expected = {
        "<": result < number,
        "<=": result <= number,
        ">": result > number,
        ">=": result >= number,
        "==": result == number,
        "!=": result != number,
    }[op]
    assert parse_condition(f"result {op} {number!r}").holds(result) is expected


# -- the verdict ---------------------------------------------------------------------------------


def test_measuring_until_count_then_passed() -> None:
    """Good measurements: measure every interval (after the initial delay), then pass."""
    g = gate(initial_delay_seconds=60)
    first = evaluate(g, [])
    assert (first.outcome, first.next_in_seconds) == (GateOutcome.MEASURING, 60.0)
    middle = evaluate(g, [value(0.001)] * 4)
    assert (middle.outcome, middle.next_in_seconds) == (GateOutcome.MEASURING, 30.0)
    done = evaluate(g, [value(0.001)] * 5)
    assert done.outcome is GateOutcome.PASSED
    assert (
        done.reason
        == "gate error-rate: 5 of 5 measurement(s) met result < 0.01 (0 failed, 0 inconclusive)"
    )


def test_one_failure_past_the_limit_fails_at_once_naming_values() -> None:
    """failure_limit failures are tolerated; one more fails the gate without waiting for count,
    and the reason names the gate, the values and the condition."""
    g = gate(failure_limit=1)
    assert evaluate(g, [value(0.5), value(0.0)]).outcome is GateOutcome.MEASURING
    verdict = evaluate(g, [value(0.5), value(0.0), value(0.25)])
    assert verdict.outcome is GateOutcome.FAILED
    assert verdict.reason == (
        "gate error-rate: 2 measurement(s) did not meet result < 0.01 (tolerated: 1): 0.5, 0.25"
    )


@pytest.mark.parametrize("action", ["pause", "fail", "pass"])
def test_inconclusive_past_the_limit_carries_the_action(action: str) -> None:
    """No data, errors and NaN count as inconclusive; past the limit the verdict carries the
    gate's on_inconclusive."""
    g = gate(inconclusive_limit=2, on_inconclusive=action)
    taken = [no_data(), failed_query("HTTP 503, unavailable: down"), value(math.nan)]
    verdict = evaluate(g, taken)
    assert verdict.outcome is GateOutcome.INCONCLUSIVE
    assert verdict.action == action
    assert "error: HTTP 503" in verdict.reason
    assert f"on_inconclusive: {action}" in verdict.reason


def test_infinity_is_a_value_not_no_data() -> None:
    """+Inf (a ratio over no traffic) is compared: it fails ``result < 0.01``."""
    assert evaluate(gate(), [value(math.inf)]).outcome is GateOutcome.FAILED


def test_measurements_past_count_are_ignored() -> None:
    """A verdict reached at count stands: later measurements (a repeated step) change nothing."""
    g = gate()
    assert evaluate(g, [value(0.0)] * 5 + [value(9.0)] * 3).outcome is GateOutcome.PASSED


def test_alarm_states() -> None:
    """OK passes, ALARM fails, INSUFFICIENT_DATA is inconclusive; the reason names the alarm."""
    g = load_gate({"name": "alarm", "alarm": {"name": "web-5xx"}, "count": 1})
    assert evaluate(g, [alarm_measurement("OK")]).outcome is GateOutcome.PASSED
    failed = evaluate(g, [alarm_measurement("ALARM")])
    assert failed.outcome is GateOutcome.FAILED
    assert "alarm web-5xx OK" in failed.reason
    assert "1 (ALARM)" in failed.reason
    unknown = evaluate(g, [alarm_measurement("INSUFFICIENT_DATA")])
    assert unknown.outcome is GateOutcome.INCONCLUSIVE
    assert "no data (INSUFFICIENT_DATA)" in unknown.reason


_measurements = st.lists(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(value),
        st.just(no_data()),
        st.text(max_size=10).map(failed_query),
    ),
    max_size=30,
)


@st.composite
def _gates(draw: st.DrawFn) -> Gate:
    count = draw(st.integers(1, 12))
    failures = draw(st.integers(0, count - 1))
    inconclusive = draw(st.integers(0, count - 1 - failures))
    return gate(count=count, failure_limit=failures, inconclusive_limit=inconclusive)


@settings(max_examples=400)
@given(_gates(), _measurements)
def test_the_verdict_rule(g: Gate, taken: list[Measurement]) -> None:
    """The counts add up; FAILED and INCONCLUSIVE exactly past their limits; PASSED only at count
    with at least one success; MEASURING only before count; a terminal verdict never changes
    when more measurements come."""
    verdict = evaluate(g, taken)
    judged = verdict.successes + verdict.failures + verdict.inconclusive
    assert judged <= min(len(taken), g.count)
    if verdict.outcome is GateOutcome.FAILED:
        assert verdict.failures == g.failure_limit + 1
        assert verdict.inconclusive <= g.inconclusive_limit
    elif verdict.outcome is GateOutcome.INCONCLUSIVE:
        assert verdict.inconclusive == g.inconclusive_limit + 1
        assert verdict.failures <= g.failure_limit
        assert verdict.action == g.on_inconclusive
    elif verdict.outcome is GateOutcome.PASSED:
        assert judged == g.count
        assert verdict.successes >= 1
    else:
        assert judged == len(taken) < g.count
        assert verdict.next_in_seconds is not None
    if verdict.outcome is not GateOutcome.MEASURING:
        assert evaluate(g, [*taken, value(0.0), no_data(), value(5.0)]) == verdict


# -- Prometheus answers --------------------------------------------------------------------------


def answer(result_type: str, result: Any, status: int = 200) -> tuple[int, bytes]:
    body = {"status": "success", "data": {"resultType": result_type, "result": result}}
    return status, json.dumps(body).encode()


@pytest.mark.parametrize(
    ("status_body", "expected"),
    [
        (answer("vector", [{"metric": {}, "value": [1.0, "0.25"]}]), value(0.25)),
        (answer("scalar", [1.0, "3"]), value(3.0)),
        (answer("vector", [{"metric": {}, "value": [1.0, "+Inf"]}]), value(math.inf)),
        (answer("vector", []), no_data("the query matched no series")),
    ],
)
def test_prometheus_values(status_body: tuple[int, bytes], expected: Measurement) -> None:
    """A one-series vector or a scalar is a value (+Inf included); an empty vector no data."""
    assert measurement_of(*status_body) == expected


def test_prometheus_answers_that_are_errors() -> None:
    """Several series, a range vector, a refused query and garbage are errors saying why."""
    two = [
        {"metric": {"__name__": "up", "job": "a"}, "value": [1, "1"]},
        {"metric": {"__name__": "up", "job": "b"}, "value": [1, "1"]},
    ]
    error = measurement_of(*answer("vector", two)).error
    assert error is not None
    assert 'up{job="a"}, up{job="b"}' in error
    assert "sum()" in error
    matrix = measurement_of(*answer("matrix", [{"metric": {}, "values": [[1, "1"]]}])).error
    assert matrix is not None
    assert "matrix" in matrix
    refused = json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"})
    assert measurement_of(400, refused.encode()).error == "HTTP 400, bad_data: parse error"
    garbage = measurement_of(502, b"<html>" + b"x" * 5000).error
    assert garbage is not None
    assert garbage.startswith("HTTP 502, not a Prometheus answer")
    assert len(garbage) < 300
    odd = measurement_of(*answer("vector", [{"metric": {}, "value": [1, 2]}])).error
    assert odd is not None
    assert "malformed" in odd


def test_prometheus_source_sends_credentials_as_basic_auth_only() -> None:
    """The setting's user info leaves the URL for an Authorization header, and an error names
    the server without it."""
    seen: dict[str, Any] = {}

    def transport(url: str, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
        seen.update(url=url, headers=headers, timeout=timeout)
        raise OSError("connection refused")

    metrics = PrometheusMetrics("https://alice:s3cr3t@prom.example:9090/", transport)
    measured = asyncio.run(metrics.measure(gate()))
    assert measured.error == "could not reach https://***@prom.example:9090: OSError"
    assert seen["url"].startswith("https://prom.example:9090/api/v1/query?query=sum%28rate")
    assert seen["headers"]["Authorization"] == "Basic YWxpY2U6czNjcjN0"
    assert split_credentials("http://h:1") == ("http://h:1", {})


def test_prometheus_source_needs_a_server_and_maps_nan_to_no_data() -> None:
    """Without a URL the measurement is an error naming the setting; NaN is no data."""
    none = asyncio.run(PrometheusMetrics(None).measure(gate()))
    assert none.error is not None
    assert "CONVEYOR_PROMETHEUS_URL" in none.error

    def nan(url: str, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
        return answer("vector", [{"metric": {}, "value": [1.0, "NaN"]}])

    assert asyncio.run(PrometheusMetrics("http://p:9090", nan).measure(gate())) == no_data(
        "the query answered NaN"
    )


# -- CloudWatch answers --------------------------------------------------------------------------

_AT = datetime(2026, 1, 1, tzinfo=UTC)


def cw_gate(stat: str = "latest") -> Gate:
    query = {"Id": "e", "MetricStat": {"Metric": {"Namespace": "A", "MetricName": "E"}}}
    return load_gate(
        {
            "name": "cw",
            "cloudwatch": {"metric_data_queries": [query], "stat": stat},
            "success": "result < 5",
        }
    )


@pytest.mark.parametrize(
    ("stat", "expected"),
    [("latest", 7.0), ("average", 4.0), ("maximum", 7.0), ("minimum", 1.0), ("sum", 12.0)],
)
def test_cloudwatch_datapoints_reduce_by_stat(stat: str, expected: float) -> None:
    """The window's datapoints become one number by the gate's stat (latest: the newest)."""
    source = cw_gate(stat).cloudwatch
    assert source is not None
    result = {
        "Id": "e",
        "Values": [4.0, 7.0, 1.0],
        "Timestamps": [_AT, _AT + timedelta(minutes=2), _AT + timedelta(minutes=1)],
        "StatusCode": "Complete",
    }
    assert metric_measurement(source, [result]).value == expected


def test_cloudwatch_no_datapoints_and_errors() -> None:
    """No datapoints is no data; a result in error or missing is an error."""
    source = cw_gate().cloudwatch
    assert source is not None
    empty = metric_measurement(source, [{"Id": "e", "Values": [], "Timestamps": []}])
    assert empty.value is None
    assert empty.error is None
    broken = metric_measurement(
        source, [{"Id": "e", "StatusCode": "Forbidden", "Messages": [{"Value": "denied"}]}]
    )
    assert broken.error == "GetMetricData Forbidden for query e: denied"
    assert metric_measurement(source, []).error == "GetMetricData returned no result for query e"


class _FailingGateway:
    async def get_metric_data(
        self, queries: list[dict[str, Any]], start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        from worker.domain.errors import AwsUnavailableError

        raise AwsUnavailableError("GetMetricData timed out", "RequestTimeout")

    async def alarm_state(self, name: str) -> str | None:
        return None


def test_cloudwatch_call_errors_are_measurements() -> None:
    """A failed call or a missing alarm is an error measurement, not an exception."""
    metrics = CloudWatchMetrics(_FailingGateway())
    assert asyncio.run(metrics.measure(cw_gate())).error == "GetMetricData timed out"
    alarm = load_gate({"name": "a", "alarm": {"name": "gone"}})
    assert asyncio.run(metrics.measure(alarm)).error == (
        "alarm gone does not exist in this account and region"
    )


def test_the_examples_in_the_docs_are_valid_gates() -> None:
    """Every ``gate:`` example of docs/gates.md loads as written."""
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[2] / "docs" / "gates.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL) if "gate:" in b]
    assert len(blocks) == 4  # three wave gates, one bake gate
    for block in blocks:
        indent = len(block) - len(block.lstrip(" "))
        loaded = yaml.safe_load("\n".join(line[indent:] for line in block.splitlines()))
        load_gate(loaded["gate"])


def test_cloudwatch_calls_take_tokens_from_documented_buckets() -> None:
    """GetMetricData and DescribeAlarms have buckets sized as AWS documents their quotas, and
    the gateway takes a token from the shared limiter before each call."""
    from worker.aws.boto_cloudwatch import BotoCloudWatchGateway
    from worker.aws.ratelimit import Bucket, default_buckets

    buckets = default_buckets()
    assert buckets["GetMetricData"] == Bucket(50, 50.0)
    assert buckets["DescribeAlarms"] == Bucket(9, 9.0)

    taken: list[str] = []

    class Limiter:
        async def acquire(self, operation: str) -> float:
            taken.append(operation)
            return 0.0

    class Client:
        async def get_metric_data(self, **_: Any) -> dict[str, Any]:
            return {"MetricDataResults": []}

        async def describe_alarms(self, **_: Any) -> dict[str, Any]:
            return {"MetricAlarms": [{"AlarmName": "a", "StateValue": "OK"}]}

    gateway = BotoCloudWatchGateway(Client(), limiter=Limiter())  # type: ignore[arg-type]  # a stand-in with acquire() only

    async def calls() -> str | None:
        await gateway.get_metric_data([], _AT, _AT + timedelta(minutes=5))
        return await gateway.alarm_state("a")

    assert asyncio.run(calls()) == "OK"
    assert taken == ["GetMetricData", "DescribeAlarms"]


async def _run_gate(g: Gate, source: MetricSource) -> tuple[GateVerdict, list[float]]:
    """Measure and judge until the verdict is terminal, as the release flow will (without
    sleeping: the waits it would take are returned instead)."""
    taken: list[Measurement] = []
    waits: list[float] = []
    while (verdict := evaluate(g, taken)).outcome is GateOutcome.MEASURING:
        assert verdict.next_in_seconds is not None
        waits.append(verdict.next_in_seconds)
        taken.append(await source.measure(g))
    return verdict, waits


def test_a_flow_measures_until_the_verdict_with_a_fake_source() -> None:
    """A scripted source drives a gate to each verdict; the waits are the initial delay then
    the interval, and measuring stops at the verdict."""
    g = gate(count=3, failure_limit=1, inconclusive_limit=1, initial_delay_seconds=10)
    source = ScriptedMetrics({"error-rate": [value(0.0), value(0.5), value(0.0)]})
    verdict, waits = asyncio.run(_run_gate(g, source))
    assert verdict.outcome is GateOutcome.PASSED
    assert waits == [10.0, 30.0, 30.0]
    assert source.calls == ["error-rate"] * 3

    source.script("error-rate", value(0.5), value(0.7))
    verdict, _ = asyncio.run(_run_gate(g, source))
    assert verdict.outcome is GateOutcome.FAILED

    verdict, _ = asyncio.run(_run_gate(g, source))  # the script ran out: no data
    assert (verdict.outcome, verdict.action) == (GateOutcome.INCONCLUSIVE, "pause")
