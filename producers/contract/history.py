"""The audit trail: who enqueued what, the answers people gave, and how each ended.

An append-only Redis stream per fleet (``Keys.history``), kept for ``history_retention_days``
(older entries are trimmed as new ones are added), which outlives both the records (30 days)
and ECS's own deployment history (90 days); ``conveyor history --json`` exports it as JSON
lines for longer storage. Each entry is one JSON object: ``event``, ``at`` (epoch seconds),
``id`` and what the event is about. Nothing in it is a secret: jobs appear only as their
cluster, service and images, never their environment or secret references.

Each event is written once, however often its writer runs: a marker key (``history_once``,
living as long as the trail) is set in the same script that appends the entry. Writers that
change a record or a release in a transaction append in that transaction, so a verdict is in
the trail exactly when it is in the record.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from producers.contract.names import Keys

# Entries older than the retention (by Redis's clock, which also stamps their ids) are
# trimmed as each new one is added.
_NOTE = """
if redis.call('SET', KEYS[2], '1', 'EX', ARGV[2], 'NX') then
  local t = redis.call('TIME')
  local oldest = (tonumber(t[1]) - tonumber(ARGV[2])) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('XADD', KEYS[1], 'MINID', string.format('%d', oldest), '*', 'e', ARGV[1])
  -- A trail with no entry for a whole retention holds only entries older than it.
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

DEFAULT_RETENTION_DAYS = 400
# Entries `conveyor history` reads per round trip.
_PAGE = 500


class History:
    """Appends to, and reads, one fleet's audit trail."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        retention_seconds: int | None = None,
    ) -> None:
        self._r = client
        self._k = keys
        self._retention = retention_seconds or retention_days * 86400
        self._note = client.register_script(_NOTE)

    def note(self, event: dict[str, Any], *, once: str, now: float, pipe: Any = None) -> None:
        """Append ``event`` (its ``event`` field names the kind) unless the event ``once`` names
        was written before; on ``pipe`` (a transaction under way) it happens with the rest."""
        entry = {"at": round(now, 3), **{k: v for k, v in event.items() if v not in (None, "")}}
        self._note(
            keys=[self._k.history, self._k.history_once.format(event=once)],
            args=[json.dumps(entry, sort_keys=True, default=str), self._retention],
            client=pipe,
        )

    def read(
        self, *, since: float | None = None, service: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Entries oldest first, from ``since`` (epoch seconds, as Redis stamped the entries),
        about ``service`` (by name) if given, at most ``limit``. An entry that does not parse
        is skipped."""
        start = f"{int(since * 1000)}-0" if since is not None else "-"
        found: list[dict[str, Any]] = []
        wanted = service.rsplit("/", 1)[-1] if service else None
        while len(found) < limit:
            page = self._r.xrange(self._k.history, min=start, max="+", count=_PAGE)
            if not page:
                break
            for _, fields in page:
                raw = (fields or {}).get(b"e") or (fields or {}).get("e")
                try:
                    event = json.loads(raw) if raw is not None else None
                except ValueError:
                    event = None
                if not isinstance(event, dict):
                    continue
                if wanted is not None and str(event.get("service", "")).rsplit("/", 1)[-1] != (
                    wanted
                ):
                    continue
                found.append(event)
                if len(found) >= limit:
                    break
            last = page[-1][0]
            last = last.decode() if isinstance(last, bytes) else str(last)
            start = f"({last}"
            if len(page) < _PAGE:
                break
        return found


def deployment_enqueued(record: Any, by: str) -> dict[str, Any]:
    """The event of a deployment enqueued by ``by`` (a person or a pipeline)."""
    job = record.job
    images = {
        str(i.get("container")): str(i.get("image"))
        for i in job.get("images") or []
        if isinstance(i, dict)
    }
    return {
        "event": "enqueued",
        "id": record.id,
        "kind": record.kind.value,
        "cluster": record.cluster,
        "service": record.service,
        "release_id": record.release_id,
        "by": by,
        "images": images or None,
    }


def deployment_ended(record: Any) -> dict[str, Any]:
    """The event of a deployment's verdict, with what ECS knows it by."""
    images = {c: change.get("after") for c, change in record.images.items() if change.get("after")}
    return {
        "event": "verdict",
        "id": record.id,
        "kind": record.kind.value,
        "cluster": record.cluster,
        "service": record.service,
        "release_id": record.release_id,
        "state": record.state.value,
        "reason": (record.reason or "")[:500],
        "task_definition_arn": record.task_definition_arn,
        "service_deployment_arn": record.service_deployment_arn,
        "service_revision_arn": record.service_revision_arn,
        "images": images or None,
        "bake_gate": _bake_gate(record),
    }


def _bake_gate(record: Any) -> dict[str, Any] | None:
    """A bake gate's verdict per window, for the trail (its measurements stay on the record)."""
    info = getattr(record, "bake_gate", None)
    if info is None:
        return None
    windows = [
        {"traffic": w.traffic, "outcome": w.outcome, "reason": (w.reason or "")[:500]}
        for w in info.windows
    ]
    return {"name": info.name, "condition": info.condition, "windows": windows}


def release_enqueued(release: Any, by: str) -> dict[str, Any]:
    """The event of a release enqueued by ``by``: its waves' services."""
    services = [
        f"{job.get('cluster')}/{job.get('service')}"
        for wave in release.waves
        for job in (release.jobs.get(i) or {} for i in wave)
    ]
    return {
        "event": "release enqueued",
        "id": release.id,
        "name": release.name,
        "by": by,
        "waves": len(release.waves),
        "services": services,
    }


def release_ended(release: Any) -> dict[str, Any]:
    """The event of a release's verdict."""
    return {
        "event": "release verdict",
        "id": release.id,
        "name": release.name,
        "state": release.state.value,
        "reason": (release.reason or "")[:500],
        "outcomes": release.summary(),
    }


def gate_decided(release: Any, wave: int) -> dict[str, Any]:
    """The event of a wave's metric gate reaching its verdict (passed, failed, inconclusive)."""
    run = release.gate_run(wave)
    return {
        "event": f"gate {run.state}",
        "id": release.id,
        "name": release.name,
        "wave": wave + 1,
        "gate": run.gate,
        "reason": (run.reason or "")[:500],
        "values": [m.describe() for m in run.measurements[-10:]],
    }
