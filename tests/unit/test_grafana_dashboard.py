"""deploy/grafana/conveyor-dashboard.json only queries metrics the workers export."""

from __future__ import annotations

import json
import re
from pathlib import Path

from worker.observe import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "conveyor-dashboard.json"


def exported() -> set[str]:
    """Every sample name the workers' metrics can produce, and the scrape-time gauges of the
    queues and of the deployments awaiting approval."""
    names = {"conveyor_queue_depth", "conveyor_deployments_awaiting_approval"}
    for collector in (
        metrics.DEPLOYMENTS,
        metrics.STEP_DURATION,
        metrics.TIME_TO_VERDICT,
        metrics.AWS_CALLS,
        metrics.RATELIMIT_WAIT,
        metrics.RATELIMIT_DEFERRED,
        metrics.REDISPATCHED,
    ):
        for family in collector.describe():
            base = family.name
            kind = family.type
            if kind == "counter":
                names.add(base + "_total")
            elif kind == "histogram":
                names.update({base + "_bucket", base + "_count", base + "_sum"})
    return names


def test_every_query_names_an_exported_metric() -> None:
    """Each panel's expressions reference only metrics that exist, and each metric is shown."""
    dashboard = json.loads(DASHBOARD.read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bconveyor_[a-z_]+", target["expr"])
    }
    known = exported()
    assert used <= known, used - known
    shown = {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in used}
    assert shown == {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in known}
