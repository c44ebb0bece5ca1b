"""Measuring a gate with Prometheus: one instant query over its HTTP API (``/api/v1/query``).

The answer must be a scalar or a vector of at most one series: an empty vector is no data, a
second series is an error that names both (the query needs an aggregation such as ``sum``).
Non-200 answers, unreachable servers, timeouts and malformed bodies are errors. Values come as
Prometheus writes them ("NaN", "+Inf"): NaN is inconclusive, ±Inf a value.

The URL is the gate's own or the worker's CONVEYOR_PROMETHEUS_URL; credentials in the latter
(``https://user:password@host``) are sent as basic auth and never appear in a message. HTTP goes
through a :data:`Transport`, a plain function, so tests can answer without a server; the default
is urllib's, run in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

from producers.contract.gates import Gate, redact_url
from worker.domain.gates import Measurement, failed_query, no_data, value

# (url, headers, timeout seconds) -> (HTTP status, body).
Transport = Callable[[str, dict[str, str], float], tuple[int, bytes]]

# Longest part of an answer quoted in an error.
_EXCERPT = 200


def urllib_transport(url: str, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    """GET ``url`` with urllib; an HTTP error status is returned, not raised."""
    request = urllib.request.Request(url, headers=headers, method="GET")  # noqa: S310  # http(s) only: checked by the gate model and PrometheusSource
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310  # as above
            return int(answer.status), bytes(answer.read())
    except urllib.error.HTTPError as error:
        # The error holds the open response: closed here, or its socket leaks.
        with error:
            return int(error.code), bytes(error.read())


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without its user info, and the basic-auth header that carries it instead."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, {}
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return bare, {"Authorization": f"Basic {token}"}


def _excerpt(body: bytes) -> str:
    text = body[:_EXCERPT].decode("utf-8", "replace").strip()
    return text + ("..." if len(body) > _EXCERPT else "")


def _number(sample: Any) -> float:
    """The value of a ``[timestamp, "value"]`` pair; raises ValueError when it is not one."""
    if not isinstance(sample, list) or len(sample) != 2 or not isinstance(sample[1], str):
        raise ValueError(f"not a [time, value] pair: {str(sample)[:_EXCERPT]}")
    return float(sample[1])


def _series_name(series: Any) -> str:
    metric = series.get("metric", {}) if isinstance(series, dict) else {}
    if not isinstance(metric, dict):
        return "?"
    name = str(metric.get("__name__", ""))
    labels = ",".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return (f"{name}{{{labels}}}" if labels or not name else name)[:_EXCERPT]


def measurement_of(status: int, body: bytes) -> Measurement:
    """One measurement from Prometheus's answer to an instant query (status and body)."""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return failed_query(f"HTTP {status}, not a Prometheus answer: {_excerpt(body)}")
    if status != 200 or answer.get("status") != "success":
        error_type = str(answer.get("errorType", "error"))[:_EXCERPT]
        message = str(answer.get("error", ""))[:_EXCERPT]
        return failed_query(f"HTTP {status}, {error_type}: {message}")
    data = answer.get("data")
    if not isinstance(data, dict):
        return failed_query(f"an answer without data: {_excerpt(body)}")
    kind: Any = data.get("resultType")
    result: Any = data.get("result")
    try:
        if kind == "scalar":
            return value(_number(result))
        if kind == "vector" and isinstance(result, list):
            if not result:
                return no_data("the query matched no series")
            if len(result) > 1:
                names = ", ".join(_series_name(s) for s in result[:3])
                return failed_query(
                    f"the query returned {len(result)} series ({names}"
                    f"{', ...' if len(result) > 3 else ''}); aggregate it to one, e.g. with sum()"
                )
            series = result[0]
            return value(_number(series.get("value") if isinstance(series, dict) else None))
    except ValueError as error:
        return failed_query(f"a malformed value: {error}")
    return failed_query(
        f"the query returned a {str(kind)[:40]}, not a scalar or an instant vector; "
        "use an instant query (no [range] at the top)"
    )


class PrometheusMetrics:
    """Measures Prometheus gates (:class:`worker.gates.sources.MetricSource`)."""

    def __init__(self, default_url: str | None = None, transport: Transport | None = None) -> None:
        self._default_url = default_url.rstrip("/") if default_url else None
        self._transport = transport or urllib_transport

    async def measure(self, gate: Gate) -> Measurement:
        """One instant query of ``gate``'s Prometheus source."""
        source = gate.prometheus
        if source is None:
            return failed_query(f"gate {gate.name} has no prometheus source")
        base = source.url or self._default_url
        if base is None:
            return failed_query(
                f"gate {gate.name} names no Prometheus server; set CONVEYOR_PROMETHEUS_URL on "
                "the workers or prometheus.url in the gate"
            )
        bare, headers = split_credentials(base)
        url = f"{bare}/api/v1/query?{urlencode({'query': source.query})}"
        headers["Accept"] = "application/json"
        where = redact_url(base)
        try:
            # The transport's own timeout bounds the call; this one bounds a transport that
            # ignores it (and the thread it runs in).
            async with asyncio.timeout(source.timeout_seconds + 1):
                status, body = await asyncio.to_thread(
                    self._transport, url, headers, source.timeout_seconds
                )
        except TimeoutError:
            return failed_query(f"{where} did not answer within {source.timeout_seconds:g} s")
        except (OSError, urllib.error.URLError) as error:
            reason = getattr(error, "reason", None) or type(error).__name__
            return failed_query(f"could not reach {where}: {str(reason)[:_EXCERPT]}")
        measurement = measurement_of(status, body)
        if measurement.error is not None:
            return failed_query(f"{where}: {measurement.error}")
        if measurement.value is not None and math.isnan(measurement.value):
            return no_data("the query answered NaN")
        return measurement
