"""Metric gates: a check a release runs before it lets a wave stand, as written in its file.

A gate measures one number ``count`` times, ``interval_seconds`` apart, and compares each
measurement with its ``success`` condition::

    gate:
      name: error-rate
      prometheus: {query: 'sum(rate(http_5xx[1m])) / sum(rate(http_total[1m]))'}
      success: "result < 0.01"
      interval_seconds: 30
      count: 5
      failure_limit: 1          # failed measurements tolerated; one more fails the gate
      inconclusive_limit: 2     # measurements without a value tolerated (no data, errors)
      on_inconclusive: pause    # past that: pause (wait for an approval), fail or pass

The number comes from exactly one source: ``prometheus`` (an instant query over Prometheus's
HTTP API, at ``url`` or the worker's CONVEYOR_PROMETHEUS_URL), ``cloudwatch`` (GetMetricData's
MetricDataQueries, exactly one of which returns data, reduced to one number by ``stat`` over
the last ``window_seconds``) or ``alarm`` (a CloudWatch alarm: OK passes, ALARM fails,
INSUFFICIENT_DATA is inconclusive; no ``success`` then).

``success`` is a small condition language, parsed here and never evaluated as code::

    condition  := conjunction ("or" conjunction)*
    conjunction := comparison ("and" comparison)*
    comparison := "result" ("<" | "<=" | ">" | ">=" | "==" | "!=") NUMBER | "(" condition ")"

How measurements become a verdict is :func:`worker.domain.gates.evaluate`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Bounds of a gate's numbers: a gate runs for at most count * interval (about 42 days at the
# extremes, past a release record's life; the release's own timeouts end it sooner).
MIN_INTERVAL_SECONDS = 5
MAX_INTERVAL_SECONDS = 3600
MAX_COUNT = 1000
MAX_INITIAL_DELAY_SECONDS = 3600
MAX_CONDITION_LENGTH = 500
MAX_CONDITION_DEPTH = 8
MAX_QUERY_LENGTH = 4000
# GetMetricData takes at most 500 queries in one call.
MAX_METRIC_DATA_QUERIES = 500

OnInconclusive = Literal["pause", "fail", "pass"]
Stat = Literal["latest", "average", "maximum", "minimum", "sum"]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# A gate's URL as written may hold credentials: errors never echo the input (pydantic takes
# this from the outermost model, so every gate model sets it).
_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True, hide_input_in_errors=True)


def redact_url(url: str) -> str:
    """``url`` with any user name and password replaced by ``***``, for messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, "***@" + host, parts.path, parts.query, parts.fragment))


# -- the condition language ----------------------------------------------------------------------

OPERATORS = ("<=", ">=", "==", "!=", "<", ">")
_TOKEN = re.compile(
    r"\s*(?:(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<op><=|>=|==|!=|<|>)|(?P<word>[A-Za-z_]+)|(?P<paren>[()]))"
)


class ConditionError(ValueError):
    """Raised when a ``success`` condition does not parse; the message says where and why."""


@dataclass(frozen=True)
class Comparison:
    """``result OP number``."""

    operator: str
    number: float

    def holds(self, value: float) -> bool:
        """Whether ``value`` meets this comparison (IEEE rules: NaN meets only ``!=``)."""
        number = self.number
        return {
            "<": value < number,
            "<=": value <= number,
            ">": value > number,
            ">=": value >= number,
            "==": value == number,
            "!=": value != number,
        }[self.operator]

    def __str__(self) -> str:
        return f"result {self.operator} {self.number:g}"


@dataclass(frozen=True)
class Junction:
    """Several conditions joined by ``and`` or ``or``."""

    joiner: Literal["and", "or"]
    parts: tuple[Condition, ...]

    def holds(self, value: float) -> bool:
        """Whether ``value`` meets every part (``and``) or any part (``or``)."""
        results = (part.holds(value) for part in self.parts)
        return all(results) if self.joiner == "and" else any(results)

    def __str__(self) -> str:
        return f" {self.joiner} ".join(
            f"({part})" if isinstance(part, Junction) else str(part) for part in self.parts
        )


Condition = Comparison | Junction


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].isspace():
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ConditionError(
                f"unexpected {text[position:].strip()[:20]!r} at character {position + 1}; "
                "write comparisons like 'result < 0.01', joined by and/or"
            )
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def parse_condition(text: str) -> Condition:
    """Parse a ``success`` condition; raises ConditionError naming the problem and the fix."""
    if len(text) > MAX_CONDITION_LENGTH:
        raise ConditionError(f"at most {MAX_CONDITION_LENGTH} characters; shorten it")
    tokens = _tokens(text)
    if not tokens:
        raise ConditionError("empty; write e.g. 'result < 0.01'")
    position = 0

    def peek() -> tuple[str, str] | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal position
        token = peek()
        if token is None:
            raise ConditionError("ends too soon; finish the comparison, e.g. 'result < 0.01'")
        position += 1
        return token

    def junction(joiner: Literal["and", "or"], depth: int) -> Condition:
        def inner() -> Condition:
            return junction("and", depth) if joiner == "or" else term(depth)

        parts = [inner()]
        while (token := peek()) is not None and token == ("word", joiner):
            take()
            parts.append(inner())
        return parts[0] if len(parts) == 1 else Junction(joiner, tuple(parts))

    def term(depth: int) -> Condition:
        if depth > MAX_CONDITION_DEPTH:
            raise ConditionError(f"nested deeper than {MAX_CONDITION_DEPTH} parentheses")
        kind, value = take()
        if (kind, value) == ("paren", "("):
            inside = junction("or", depth + 1)
            if peek() != ("paren", ")"):
                raise ConditionError("a '(' is not closed; add ')'")
            take()
            return inside
        if (kind, value) != ("word", "result"):
            raise ConditionError(
                f"expected 'result' or '(', found {value!r}; the only name is 'result'"
            )
        kind, operator = take()
        if kind != "op":
            raise ConditionError(
                f"expected one of {' '.join(OPERATORS)} after 'result', found {operator!r}"
            )
        kind, literal = take()
        if kind != "number":
            raise ConditionError(f"expected a number after {operator!r}, found {literal!r}")
        number = float(literal)
        if not math.isfinite(number):
            raise ConditionError(f"{literal[:20]} is too large; give a finite number")
        return Comparison(operator, number)

    condition = junction("or", 0)
    if position != len(tokens):
        raise ConditionError(
            f"unexpected {tokens[position][1]!r} after a complete condition; join "
            "comparisons with 'and' or 'or'"
        )
    return condition


# -- the sources of a measurement ----------------------------------------------------------------


class PrometheusSource(BaseModel):
    """An instant query (``/api/v1/query``) whose answer is one series or a scalar."""

    model_config = _STRICT

    query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_LENGTH)]
    # The server; None: the worker's CONVEYOR_PROMETHEUS_URL.
    url: Annotated[str, Field(max_length=2000)] | None = None
    timeout_seconds: Annotated[float, Field(ge=1, le=60)] = 10.0

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"{redact_url(value)!r} is not an http(s) URL; give e.g. http://prometheus:9090"
            )
        if "@" in parts.netloc:
            raise ValueError(
                f"{redact_url(value)!r} holds credentials, and a release file is stored and "
                "shown; set CONVEYOR_PROMETHEUS_URL (with them) on the workers instead"
            )
        return value.rstrip("/")


class CloudWatchSource(BaseModel):
    """GetMetricData's queries (AWS's MetricDataQueries, passed through as written)."""

    model_config = _STRICT

    metric_data_queries: Annotated[
        list[dict[str, Any]], Field(min_length=1, max_length=MAX_METRIC_DATA_QUERIES)
    ]
    # How far back each measurement looks, and how the datapoints found become one number.
    window_seconds: Annotated[int, Field(ge=60, le=86400)] = 300
    stat: Stat = "latest"

    @field_validator("metric_data_queries")
    @classmethod
    def _one_result(cls, queries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        returned = []
        for i, query in enumerate(queries):
            if not isinstance(query.get("Id"), str) or not query["Id"]:
                raise ValueError(f"[{i}]: every query needs an Id (a string), as GetMetricData")
            if "MetricStat" not in query and "Expression" not in query:
                raise ValueError(f"[{i}] ({query['Id']}): give a MetricStat or an Expression")
            if query.get("ReturnData", True) is not False:
                returned.append(query["Id"])
        if len(returned) != 1:
            raise ValueError(
                f"exactly one query must return data, found {len(returned)} "
                f"({', '.join(returned) or 'none'}); set ReturnData: false on the others"
            )
        return queries

    @property
    def result_id(self) -> str:
        """The Id of the query whose values are measured."""
        return next(
            str(q["Id"]) for q in self.metric_data_queries if q.get("ReturnData", True) is not False
        )


class AlarmSource(BaseModel):
    """A CloudWatch alarm's state: OK passes, ALARM fails, INSUFFICIENT_DATA is inconclusive."""

    model_config = _STRICT

    name: Annotated[str, Field(min_length=1, max_length=255)]


# -- the gate ------------------------------------------------------------------------------------

# An alarm gate's condition: the alarm client measures OK as 0 and ALARM as 1.
ALARM_OK = 0.0
ALARM_FIRING = 1.0
ALARM_CONDITION = f"result == {ALARM_OK:g}"


class Gate(BaseModel):
    """A metric gate as written in a release file."""

    model_config = _STRICT

    name: Annotated[str, Field(pattern=_NAME)]
    prometheus: PrometheusSource | None = None
    cloudwatch: CloudWatchSource | None = None
    alarm: AlarmSource | None = None
    # Required unless the source is an alarm.
    success: Annotated[str, Field(max_length=MAX_CONDITION_LENGTH)] | None = None
    interval_seconds: Annotated[int, Field(ge=MIN_INTERVAL_SECONDS, le=MAX_INTERVAL_SECONDS)] = 60
    # Before the first measurement (metrics of a fresh deployment take a while to exist).
    initial_delay_seconds: Annotated[int, Field(ge=0, le=MAX_INITIAL_DELAY_SECONDS)] = 0
    count: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 5
    failure_limit: Annotated[int, Field(ge=0, le=MAX_COUNT)] = 0
    inconclusive_limit: Annotated[int, Field(ge=0, le=MAX_COUNT)] = 0
    on_inconclusive: OnInconclusive = "pause"

    @field_validator("success")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value is not None:
            parse_condition(value)  # ConditionError is a ValueError: pydantic reports it
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Gate:
        sources = [s for s in ("prometheus", "cloudwatch", "alarm") if getattr(self, s)]
        if len(sources) != 1:
            raise ValueError(
                f"gate {self.name}: give exactly one of prometheus, cloudwatch or alarm "
                f"(found {', '.join(sources) or 'none'})"
            )
        if self.alarm is not None and self.success is not None:
            raise ValueError(
                f"success: gate {self.name} watches an alarm (OK passes, ALARM fails); "
                "remove success"
            )
        if self.alarm is None and self.success is None:
            raise ValueError(f"success: gate {self.name} needs a condition, e.g. 'result < 0.01'")
        if self.failure_limit + self.inconclusive_limit >= self.count:
            raise ValueError(
                f"count: gate {self.name} takes {self.count} measurement(s) but tolerates "
                f"{self.failure_limit} failed and {self.inconclusive_limit} inconclusive: it "
                "could pass without one good measurement; raise count or lower the limits"
            )
        return self

    @property
    def condition(self) -> Condition:
        """The parsed success condition (an alarm's: its state is OK)."""
        return parse_condition(self.success if self.success is not None else ALARM_CONDITION)

    @property
    def source(self) -> Literal["prometheus", "cloudwatch", "alarm"]:
        """Which source the gate measures."""
        if self.prometheus is not None:
            return "prometheus"
        return "cloudwatch" if self.cloudwatch is not None else "alarm"


def load_gate(payload: Any) -> Gate:
    """Validate a gate as written in a file (YAML or JSON: a mapping); raises ValidationError."""
    return Gate.model_validate(payload)
