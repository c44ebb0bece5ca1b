"""The campaign's checker: invariants over a recorded history. Pure: no clock, no I/O.

A history is plain data (what the runner read from Redis, the local AWS and the logs once
the system was quiet); :func:`check` returns one :class:`Result` per invariant, each with its
violations and, for each violation, the events that led to it.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from producers.contract.stages import reached

TERMINAL = {"succeeded", "failed", "rolled_back", "superseded", "cancelled"}
RELEASE_TERMINAL = {"succeeded", "failed", "cancelled"}
# ECS service deployment statuses a failed or rolled-back verdict cannot sit beside.
SUCCESS = "SUCCESSFUL"
STOP_REASON = "StopServiceDeployment"  # ECS's reason on a rollback somebody asked for


@dataclass
class History:
    """What a campaign did and what the system looked like when quiet.

    * ``enqueues``: one per job the campaign submitted: ``id`` (None when refused), ``kind``
      (update, restart, release, plan), ``service`` (a service key) or ``services``, ``at``,
      ``accepted``, ``exit_code``, ``error``; ``wall_from`` and ``wall_to`` (epoch seconds
      around the enqueue call), ``override`` (enqueued with --override-freeze), ``governed``
      (a release with a failure budget or an approval).
    * ``deployments`` / ``releases``: the final records by id (None when Redis has none).
    * ``ecs``: per service key (``account/cluster/service``): ``task_definition`` (what it runs)
      and ``deployments`` (ECS's history: ``arn``, ``status``, ``task_definition``,
      ``status_reason``, ``rollback_reason``).
    * ``asked``: per service key, the revisions someone outside Conveyor asked for (the first
      one included).
    * ``revisions``: per deployment id, the task definitions tagged with it.
    * ``discarded``: the task definitions tagged ``conveyor:discarded``, with the tag's value
      (how the deployment that registered it ended).
    * ``leftovers``: Redis structures of unfinished work, with how many entries each still
      held when quiet; ``untimed``: keys of finished work that have no expiry.
    * ``secret_hits``: where the secret canary value was found (Redis key, log file, metrics).
    * ``aws_calls``: the local AWS's counters of ECS calls (``calls``, ``throttled``,
      ``server_errors``, ``client_errors`` by operation) up to the quiet point.
    * ``aws_log``: the local AWS's log of every ECS call up to the quiet point, oldest first:
      ``at``, ``op``, ``client`` ("conveyor" when Conveyor's User-Agent made it), ``outcome``
      and the fields naming what it acted on (``service``, ``taskDefinition``,
      ``serviceDeploymentArn``, ``hookId``, ``action``, ...); ``aws_log_dropped``: older calls
      the log's bound dropped.
    * ``answers``: each `conveyor approve` / `reject` the campaign gave: ``at``, ``id``,
      ``action`` (CONTINUE or ROLLBACK), ``by``, ``awaiting`` (whether the deployment awaited
      approval when picked), ``error`` (None when recorded).
    * ``freezes``: each freeze window the campaign opened: ``name``, ``start`` and ``end``
      (epoch seconds, wall clock), ``at`` (campaign seconds when it was written).
    * ``release_answers``: each `conveyor approve REL` / `reject REL`: ``at``, ``wall``,
      ``id``, ``action`` (CONTINUE or REJECT), ``awaiting``, ``error``.
    * ``gate_alarms``: each time an outside actor set the gate alarm to ``state`` (ALARM or
      INSUFFICIENT_DATA): ``at``, ``until``.
    * ``alarms``: each time an outside actor set a staged service's CloudWatch alarm to ALARM:
      ``alarm``, ``service`` (key), ``at``, ``until`` (back to OK).

    A staged enqueue (``kind`` "staged") followed with `--wait-until` also holds
    ``wait_until`` (ECS's stage), ``wait_exit`` (what the command exited with),
    ``wait_terminal``, ``wait_state``, ``wait_stage`` (the record's stage when it returned),
    ``wait_arn`` and ``wait_ecs_stages``: the stages the local AWS showed that service
    deployment had entered, read the moment the wait returned (None when it showed none).
    """

    enqueues: list[dict[str, Any]] = field(default_factory=list)
    deployments: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    releases: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    ecs: dict[str, dict[str, Any]] = field(default_factory=dict)
    asked: dict[str, list[str]] = field(default_factory=dict)
    revisions: dict[str, list[str]] = field(default_factory=dict)
    discarded: dict[str, str] = field(default_factory=dict)
    leftovers: dict[str, int] = field(default_factory=dict)
    untimed: list[str] = field(default_factory=list)
    secret_hits: list[str] = field(default_factory=list)
    aws_calls: dict[str, dict[str, int]] = field(default_factory=dict)
    aws_log: list[dict[str, Any]] = field(default_factory=list)
    aws_log_dropped: int = 0
    answers: list[dict[str, Any]] = field(default_factory=list)
    alarms: list[dict[str, Any]] = field(default_factory=list)
    freezes: list[dict[str, Any]] = field(default_factory=list)
    release_answers: list[dict[str, Any]] = field(default_factory=list)
    gate_alarms: list[dict[str, Any]] = field(default_factory=list)
    default_account: str = "123456789012"


@dataclass
class Violation:
    """One breach of an invariant, with the events that led to it."""

    message: str
    events: list[str] = field(default_factory=list)


@dataclass
class Result:
    """An invariant, how many things it looked at, and its violations."""

    name: str
    checked: int
    violations: list[Violation]

    @property
    def ok(self) -> bool:
        """True when nothing broke it."""
        return not self.violations

    def describe(self) -> str:
        """The printed result: a line for the invariant, then each violation with its events."""
        lines = [f"[{'ok' if self.ok else 'VIOLATED'}] {self.name} ({self.checked} checked)"]
        for violation in self.violations:
            lines.append(f"    - {violation.message}")
            lines.extend(f"        {event}" for event in violation.events)
        return "\n".join(lines)


def service_key(record: dict[str, Any], default_account: str) -> str:
    """``account/cluster/service`` of a deployment record, with real account ids."""
    account = record.get("account")
    role = (record.get("job") or {}).get("role_arn")
    if not account and isinstance(role, str) and role.count(":") >= 4:
        account = role.split(":")[4]
    cluster = str(record.get("cluster", "")).rsplit("/", 1)[-1]
    service = str(record.get("service", "")).rsplit("/", 1)[-1]
    return f"{account or default_account}/{cluster}/{service}"


def _steps(record: dict[str, Any]) -> str:
    steps = record.get("steps") or []
    return " ".join(f"{s.get('step')}:{s.get('status')}@{s.get('at', 0):.1f}" for s in steps)


def _about(record: dict[str, Any] | None, deployment_id: str) -> str:
    if record is None:
        return f"deployment {deployment_id}: no record"
    return (
        f"deployment {deployment_id} {record.get('state')} on {record.get('service')} "
        f"td={record.get('task_definition_arn')} ecs={record.get('service_deployment_arn')} "
        f"superseded_by={record.get('superseded_by')} reason={record.get('reason')!r} "
        f"steps=[{_steps(record)}]"
    )


def _enqueue_line(enqueue: dict[str, Any]) -> str:
    return (
        f"enqueue {enqueue.get('kind')} at {enqueue.get('at', 0):.1f}s id={enqueue.get('id')} "
        f"exit={enqueue.get('exit_code')} error={enqueue.get('error')!r}"
    )


def _ecs_line(entry: dict[str, Any]) -> str:
    return (
        f"ECS {entry.get('arn')} {entry.get('status')} td={entry.get('task_definition')} "
        f"reason={entry.get('status_reason')!r} rollback={entry.get('rollback_reason')!r}"
    )


def _accepted(history: History) -> list[dict[str, Any]]:
    return [e for e in history.enqueues if e.get("accepted") and e.get("kind") != "plan"]


def terminal(history: History) -> Result:
    """Every accepted job reached a terminal state."""
    out: list[Violation] = []
    accepted = _accepted(history)
    for enqueue in accepted:
        job_id = str(enqueue["id"])
        if enqueue["kind"] == "release":
            release = history.releases.get(job_id)
            if release is not None and release.get("state") not in RELEASE_TERMINAL:
                out.append(
                    Violation(
                        f"release {job_id} is {release.get('state')}",
                        [_enqueue_line(enqueue), f"release waves={release.get('waves')}"],
                    )
                )
            continue
        record = history.deployments.get(job_id)
        if record is not None and record.get("state") not in TERMINAL:
            out.append(
                Violation(
                    f"deployment {job_id} is {record.get('state')}",
                    [_enqueue_line(enqueue), _about(record, job_id)],
                )
            )
    return Result("every accepted job reached a terminal state", len(accepted), out)


def not_lost(history: History) -> Result:
    """No accepted job was lost: each has its record, and so has every release's deployment."""
    out: list[Violation] = []
    accepted = _accepted(history)
    for enqueue in accepted:
        job_id = str(enqueue["id"])
        store = history.releases if enqueue["kind"] == "release" else history.deployments
        if store.get(job_id) is None:
            out.append(
                Violation(f"{enqueue['kind']} {job_id} has no record", [_enqueue_line(enqueue)])
            )
    for release_id, release in history.releases.items():
        # A release creates its deployments wave by wave: those of waves it never reached
        # (cancelled, or stopped by a failed wave) have ids but no records, by design.
        reached = int((release or {}).get("wave") or 0)
        # Nor have those a wave held back for its pre-deploy tasks and never started.
        never = set((release or {}).get("not_started") or {})
        for wave in ((release or {}).get("waves") or [])[: reached + 1]:
            for deployment_id in wave:
                if deployment_id not in never and history.deployments.get(deployment_id) is None:
                    out.append(
                        Violation(
                            f"deployment {deployment_id} of release {release_id} has no record",
                            [f"release {release_id} {(release or {}).get('state')}"],
                        )
                    )
    return Result("no accepted job was lost", len(accepted), out)


def _ecs_entries(history: History, record: dict[str, Any]) -> list[dict[str, Any]]:
    key = service_key(record, history.default_account)
    return list((history.ecs.get(key) or {}).get("deployments") or [])


def verdicts_agree(history: History) -> Result:
    """Every verdict agrees with ECS's deployment history."""
    out: list[Violation] = []
    checked = 0
    for deployment_id, record in history.deployments.items():
        if record is None or record.get("kind", "update-existing") != "update-existing":
            continue
        state = record.get("state")
        arn = record.get("service_deployment_arn")
        entries = _ecs_entries(history, record)
        ours = [e for e in entries if arn and e.get("arn") == arn]
        checked += 1
        if state == "superseded" and (arn or record.get("ecs_deployment_id")):
            out.append(
                Violation(
                    f"deployment {deployment_id} is superseded (never started) but made an "
                    "ECS deployment",
                    [_about(record, deployment_id), *map(_ecs_line, ours)],
                )
            )
        if state == "succeeded":
            td = record.get("task_definition_arn")
            if arn:
                good = [e for e in ours if e.get("status") == SUCCESS]
            else:
                good = [
                    e
                    for e in entries
                    if e.get("status") == SUCCESS and e.get("task_definition") == td
                ]
            if not good or any(e.get("task_definition") != td for e in good):
                out.append(
                    Violation(
                        f"deployment {deployment_id} reports succeeded, but ECS has no "
                        f"SUCCESSFUL deployment of {td} for it",
                        [_about(record, deployment_id), *map(_ecs_line, ours or entries)],
                    )
                )
        if state in ("failed", "rolled_back") and any(e.get("status") == SUCCESS for e in ours):
            out.append(
                Violation(
                    f"deployment {deployment_id} reports {state}, but ECS says its deployment "
                    "was SUCCESSFUL",
                    [_about(record, deployment_id), *map(_ecs_line, ours)],
                )
            )
    return Result("every verdict agrees with ECS's deployment history", checked, out)


def revisions_asked_for(history: History) -> Result:
    """No service runs a revision that no accepted job or outside actor asked for."""
    asked: dict[str, set[str]] = defaultdict(set)
    for key, arns in history.asked.items():
        asked[key].update(arns)
    for record in history.deployments.values():
        if record is not None:
            key = service_key(record, history.default_account)
            for arn in (record.get("task_definition_arn"), record.get("base_task_definition_arn")):
                if arn:
                    asked[key].add(str(arn))
    out: list[Violation] = []
    for key, service in history.ecs.items():
        running = service.get("task_definition")
        if running and running not in asked[key]:
            out.append(
                Violation(
                    f"{key} runs {running}, which nobody asked for",
                    [f"asked for: {sorted(asked[key])}"],
                )
            )
    return Result("no service runs a revision nobody asked for", len(history.ecs), out)


ACTING_STEPS = {"register", "update", "rollback"}


def _interval(record: dict[str, Any]) -> tuple[float, float] | None:
    steps = record.get("steps") or []
    if not any(s.get("step") in ACTING_STEPS for s in steps):
        return None  # it never acted on the service (superseded, cancelled while queued)
    start = min(float(s.get("at", 0)) for s in steps)
    end = record.get("finished_at")
    return start, float(end) if end is not None else float("inf")


def no_overlap(history: History) -> Result:
    """No two Conveyor deployments overlapped on one service: each that acted on it finished
    before the next one's first step (from the first step, not the update step: an update
    step may have called ECS without committing, as when a cancel fenced it off)."""
    by_service: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for deployment_id, record in history.deployments.items():
        if record is None or record.get("kind", "update-existing") != "update-existing":
            continue
        interval = _interval(record)
        if interval is not None:
            key = service_key(record, history.default_account)
            by_service[key].append((interval[0], interval[1], deployment_id))
    out: list[Violation] = []
    for key, intervals in by_service.items():
        intervals.sort()
        for (start_a, end_a, a), (start_b, _end_b, b) in itertools.pairwise(intervals):
            if start_b < end_a:
                out.append(
                    Violation(
                        f"{key}: deployment {b} updated at {start_b:.2f} while {a} ran "
                        f"({start_a:.2f}..{end_a:.2f})",
                        [
                            _about(history.deployments[a], a),
                            _about(history.deployments[b], b),
                        ],
                    )
                )
    checked = sum(len(v) for v in by_service.values())
    return Result("no two Conveyor deployments overlapped on one service", checked, out)


def one_revision_per_job(history: History) -> Result:
    """No job registered more than one revision."""
    out = [
        Violation(
            f"deployment {job_id} registered {len(arns)} revisions: {sorted(arns)}",
            [_about(history.deployments.get(job_id), job_id)],
        )
        for job_id, arns in history.revisions.items()
        if len(set(arns)) > 1
    ]
    return Result("no job registered more than one revision", len(history.revisions), out)


def _ours(history: History) -> set[str]:
    """What Conveyor made: service deployment ARNs its records hold, and ``"<service key>
    <revision>"`` for each revision a record deployed or a job registered."""
    ours: set[str] = set()
    for record in history.deployments.values():
        if record is None:
            continue
        if record.get("service_deployment_arn"):
            ours.add(str(record["service_deployment_arn"]))
        key = service_key(record, history.default_account)
        if record.get("ecs_deployment_id") and record.get("task_definition_arn"):
            ours.add(f"{key} {record['task_definition_arn']}")
        # A revision the job registered (tagged with its id): a cancel can adopt and stop
        # the ECS deployment of it that an update step made but never committed.
        for arn in history.revisions.get(str(record.get("id")), []):
            ours.add(f"{key} {arn}")
    return ours


def stops_only_own(history: History) -> Result:
    """Conveyor never rolled back or stopped a deployment it did not make. In a campaign only
    Conveyor calls StopServiceDeployment, so every ECS deployment stopped that way must be one
    of Conveyor's: its record holds the service deployment's ARN, or (a record need not hold
    it) a record of that service made an ECS deployment of the stopped one's revision, or
    registered that revision.
    Outside actors always register revisions of their own, so that match cannot excuse a stop
    of theirs, except of one a Conveyor restart also deployed."""
    ours = _ours(history)
    out: list[Violation] = []
    checked = 0
    for key, service in history.ecs.items():
        for entry in service.get("deployments") or []:
            if STOP_REASON in str(entry.get("rollback_reason") or ""):
                checked += 1
                made = f"{key} {entry.get('task_definition')}"
                if entry.get("arn") not in ours and made not in ours:
                    out.append(
                        Violation(
                            f"ECS deployment {entry.get('arn')} was stopped, and no Conveyor "
                            "deployment made it",
                            [_ecs_line(entry)],
                        )
                    )
    return Result("Conveyor never stopped a deployment it did not make", checked, out)


def _call_line(call: dict[str, Any]) -> str:
    named = " ".join(
        f"{name}={call[name]}"
        for name in ("cluster", "service", "taskDefinition", "serviceDeploymentArn", "stopType")
        if name in call
    )
    who = f"AWS call #{call.get('seq')} {call.get('op')} by {call.get('client')}"
    return f"{who} {named} -> {call.get('outcome')}"


def stop_calls_own(history: History) -> Result:
    """Every StopServiceDeployment Conveyor sent named a deployment of its own, as the local
    AWS's call log shows (by Conveyor's User-Agent). Unlike ECS's history, the log also holds
    the calls ECS refused or never acted on (the deployment had ended, the call was
    throttled): a stop aimed at someone else's deployment is wrong even when it came too late."""
    ours = _ours(history)
    where: dict[str, str] = {}
    for key, service in history.ecs.items():
        for entry in service.get("deployments") or []:
            where[str(entry.get("arn"))] = f"{key} {entry.get('task_definition')}"
    out: list[Violation] = []
    checked = 0
    for call in history.aws_log:
        if call.get("op") != "StopServiceDeployment" or call.get("client") != "conveyor":
            continue
        checked += 1
        arn = str(call.get("serviceDeploymentArn"))
        if arn in ours or where.get(arn) in ours:
            continue
        out.append(
            Violation(
                f"Conveyor asked ECS to stop {arn}, which no Conveyor deployment made",
                [_call_line(call)],
            )
        )
    return Result("every stop Conveyor sent named its own deployment", checked, out)


def _carrier(history: History, deployment_id: str) -> tuple[str, dict[str, Any] | None]:
    seen: set[str] = set()
    record = history.deployments.get(deployment_id)
    while record is not None and record.get("state") == "superseded":
        nxt = record.get("superseded_by")
        if not nxt or nxt in seen:
            break
        seen.add(nxt)
        deployment_id, record = nxt, history.deployments.get(nxt)
    return deployment_id, record


def releases_live(history: History) -> Result:
    """A release that reports succeeded has every change live: each of its deployments
    succeeded, or was superseded by a chain of deployments whose last one succeeded."""
    out: list[Violation] = []
    checked = 0
    for release_id, release in history.releases.items():
        if release is None or release.get("state") != "succeeded":
            continue
        checked += 1
        for wave in release.get("waves") or []:
            for deployment_id in wave:
                carrier_id, carrier = _carrier(history, deployment_id)
                if carrier is None or carrier.get("state") != "succeeded":
                    events = [_about(history.deployments.get(deployment_id), deployment_id)]
                    if carrier_id != deployment_id:
                        events.append(_about(carrier, carrier_id))
                    out.append(
                        Violation(
                            f"release {release_id} reports succeeded, but its change in "
                            f"deployment {deployment_id} ended "
                            f"{(carrier or {}).get('state')} (carried by {carrier_id})",
                            events,
                        )
                    )
    return Result("a succeeded release has every change live", checked, out)


def cancelled_releases_stopped(history: History) -> Result:
    """A cancelled release started nothing after the cancel: no deployment of it was created
    after the cancel was recorded."""
    out: list[Violation] = []
    checked = 0
    for release_id, release in history.releases.items():
        if release is None or release.get("cancel_requested_at") is None:
            continue
        checked += 1
        cancel_at = float(release["cancel_requested_at"])
        for wave in release.get("waves") or []:
            for deployment_id in wave:
                record = history.deployments.get(deployment_id)
                if record is not None and float(record.get("created_at", 0)) > cancel_at:
                    out.append(
                        Violation(
                            f"release {release_id} was cancelled at {cancel_at:.2f}, and "
                            f"deployment {deployment_id} was created after, at "
                            f"{float(record.get('created_at', 0)):.2f}",
                            [_about(record, deployment_id)],
                        )
                    )
    return Result("a cancelled release started nothing after the cancel", checked, out)


def _chose_base_at(record: dict[str, Any]) -> float:
    """When a deployment chose its base: its first register step, else its creation."""
    for step in record.get("steps") or []:
        if step.get("step") == "register":
            return float(step.get("at", 0.0))
    return float(record.get("created_at", 0.0))


def no_discarded_base(history: History) -> Result:
    """No deployment built its revision on one a failed deployment had discarded.

    A deployment that did not succeed tags its revision ``conveyor:discarded`` before its
    verdict is committed; any deployment choosing its base after that verdict must step over
    it. Not a violation: a base chosen before the verdict, and ``base: service`` on a service
    that ran that revision (the operator asked for exactly what runs).
    """
    registered_by: dict[str, str] = {}
    for deployment_id, arns in history.revisions.items():
        for arn in arns:
            registered_by[arn] = deployment_id
    for deployment_id, record in history.deployments.items():
        if record and record.get("task_definition_arn"):
            registered_by.setdefault(str(record["task_definition_arn"]), deployment_id)
    out: list[Violation] = []
    checked = 0
    for deployment_id, record in sorted(history.deployments.items()):
        base = (record or {}).get("base_task_definition_arn")
        if record is None or not base:
            continue
        checked += 1
        if base not in history.discarded:
            continue
        job = record.get("job") or {}
        if job.get("base") == "service" and record.get("previous_task_definition_arn") == base:
            continue
        owner = registered_by.get(base)
        owner_record = history.deployments.get(owner) if owner else None
        ended = (owner_record or {}).get("finished_at")
        if ended is not None and _chose_base_at(record) < float(ended):
            continue  # chosen while the revision's own deployment still ran
        name = base.rsplit("/", 1)[-1]
        out.append(
            Violation(
                f"deployment {deployment_id} built {record.get('task_definition_arn')} on "
                f"{name}, discarded ({history.discarded[base]}) by "
                f"{owner or 'a deployment with no record'} that ended at {ended}",
                [_about(record, deployment_id), _about(owner_record, owner or "?")],
            )
        )
    return Result("no deployment built on a discarded revision", checked, out)


def bounded_keys(history: History) -> Result:
    """No key grows without bound: when quiet, the structures of unfinished work are empty,
    and every key of finished work expires."""
    out = [
        Violation(f"{name} still holds {count} entries when quiet")
        for name, count in sorted(history.leftovers.items())
        if count
    ]
    out += [Violation(f"{key} never expires") for key in history.untimed]
    checked = len(history.leftovers) + len(history.deployments) + len(history.releases)
    return Result("no key grows without bound", checked, out)


def no_secrets(history: History) -> Result:
    """No secret value appears in Redis, the logs or the metrics."""
    out = [Violation(f"the secret value appears in {where}") for where in history.secret_hits]
    return Result("no secret value appears in Redis, the logs or the metrics", 1, out)


STAGED = {"BLUE_GREEN", "LINEAR", "CANARY"}
# ECS's terminal service deployment statuses, and the verdicts each allows for a staged
# deployment (docs/strategies.md, "What Conveyor reports"). ``cancelled`` is allowed beside a
# rollback or a stop only when a cancel was asked for; ``failed`` beside a rollback only when
# Conveyor's deadline passed (its reason then says "timed out").
STAGED_VERDICTS = {
    "SUCCESSFUL": {"succeeded"},
    "ROLLBACK_SUCCESSFUL": {"rolled_back"},
    "ROLLBACK_FAILED": {"failed"},
    "STOPPED": {"failed"},
}
ALARM_REASON = "ECS deployment alarms"  # ECS's reason when an alarm rolled a deployment back


def _staged_records(history: History) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Each staged deployment with a service deployment, its record and ECS's entry of it."""
    out = []
    for deployment_id, record in sorted(history.deployments.items()):
        if record is None or (record.get("progress") or {}).get("strategy") not in STAGED:
            continue
        arn = record.get("service_deployment_arn")
        for entry in _ecs_entries(history, record):
            if arn and entry.get("arn") == arn:
                out.append((deployment_id, record, entry))
    return out


def staged_verdicts(history: History) -> Result:
    """A staged (blue/green, linear, canary) deployment's verdict is ECS's: SUCCESSFUL
    succeeded, ROLLBACK_SUCCESSFUL rolled back, ROLLBACK_FAILED and STOPPED failed; cancelled
    only beside a rollback or stop after a cancel was asked for. (The general verdict
    invariant only keeps failures from sitting beside SUCCESSFUL.)"""
    out: list[Violation] = []
    checked = 0
    for deployment_id, record, entry in _staged_records(history):
        status = str(entry.get("status"))
        if status not in STAGED_VERDICTS:
            continue
        checked += 1
        state = record.get("state")
        allowed = set(STAGED_VERDICTS[status])
        if status != "SUCCESSFUL" and record.get("cancel_requested_at") is not None:
            allowed.add("cancelled")
        if status == "ROLLBACK_SUCCESSFUL" and str(record.get("reason") or "").startswith(
            "timed out"
        ):
            allowed.add("failed")
        if state not in allowed:
            out.append(
                Violation(
                    f"deployment {deployment_id} reports {state}, but ECS's service deployment "
                    f"ended {status} (allowed: {', '.join(sorted(allowed))})",
                    [_about(record, deployment_id), _ecs_line(entry)],
                )
            )
    return Result("a staged deployment's verdict is ECS's", checked, out)


def alarm_rollbacks(history: History) -> Result:
    """A deployment ECS rolled back because an alarm went off during its traffic shift or bake
    is reported rolled back (cancelled when a cancel was asked for), never succeeded, and its
    reason names the alarms."""
    out: list[Violation] = []
    checked = 0
    for deployment_id, record, entry in _staged_records(history):
        said = f"{entry.get('status_reason') or ''} {entry.get('rollback_reason') or ''}"
        if ALARM_REASON not in said:
            continue
        checked += 1
        state = record.get("state")
        allowed = {"rolled_back"}
        if record.get("cancel_requested_at") is not None:
            allowed.add("cancelled")
        names = said.split("alarm(s)", 1)[-1].split(" in ALARM", 1)[0]
        missing = [
            n.strip()
            for n in names.split(",")
            if n.strip() and n.strip() not in str(record.get("reason") or "")
        ]
        if state not in allowed or (state == "rolled_back" and missing):
            problem = f"reports {state}" if state not in allowed else f"does not name {missing}"
            out.append(
                Violation(
                    f"deployment {deployment_id} was rolled back by an alarm, and {problem}",
                    [_about(record, deployment_id), _ecs_line(entry)],
                )
            )
    return Result("an alarm's rollback is reported rolled back, naming it", checked, out)


def continues_asked_for(history: History) -> Result:
    """Every ContinueServiceDeployment Conveyor sent (the local AWS's call log, by Conveyor's
    User-Agent) answers an approve or reject asked for that deployment, on a service deployment
    one of its records holds, with the action asked (CONTINUE for approve, ROLLBACK for reject)."""
    by_arn = {
        str(r["service_deployment_arn"]): i
        for i, r in history.deployments.items()
        if r is not None and r.get("service_deployment_arn")
    }
    asked: dict[str, set[str]] = defaultdict(set)
    for answer in history.answers:
        if answer.get("error") is None:
            asked[str(answer.get("id"))].add(str(answer.get("action")))
    out: list[Violation] = []
    checked = 0
    for call in history.aws_log:
        if call.get("op") != "ContinueServiceDeployment" or call.get("client") != "conveyor":
            continue
        checked += 1
        arn = str(call.get("serviceDeploymentArn"))
        action = str(call.get("action") or "CONTINUE")  # ECS's default
        owner = by_arn.get(arn)
        line = f"{_call_line(call)} hookId={call.get('hookId')} action={action}"
        if owner is None:
            out.append(
                Violation(f"Conveyor answered a hook of {arn}, which no record made", [line])
            )
        elif action not in asked[owner]:
            out.append(
                Violation(
                    f"Conveyor sent {action} for deployment {owner}, but what was asked for it "
                    f"was {sorted(asked[owner]) or 'nothing'}",
                    [line, _about(history.deployments[owner], owner)],
                )
            )
    return Result("every answer Conveyor sent to a hook was asked for", checked, out)


def approvals_sent(history: History) -> Result:
    """Every answer a record reports "sent to ECS" was: the call log holds a
    ContinueServiceDeployment ECS took, for that service deployment, hook and action."""
    taken = {
        (
            str(c.get("serviceDeploymentArn")),
            str(c.get("hookId")),
            str(c.get("action") or "CONTINUE"),
        )
        for c in history.aws_log
        if c.get("op") == "ContinueServiceDeployment" and c.get("outcome") == "ok"
    }
    out: list[Violation] = []
    checked = 0
    for deployment_id, record in sorted(history.deployments.items()):
        for answer in (record or {}).get("approvals") or []:
            if not str(answer.get("outcome") or "").startswith("sent to ECS"):
                continue
            checked += 1
            key = (
                str((record or {}).get("service_deployment_arn")),
                str(answer.get("hook_id")),
                str(answer.get("action")),
            )
            if key not in taken and not history.aws_log_dropped:
                out.append(
                    Violation(
                        f"deployment {deployment_id} reports {answer.get('action')} sent to ECS "
                        f"for hook {answer.get('hook_id')}, and ECS took no such call",
                        [_about(record, deployment_id), f"answer {answer}"],
                    )
                )
    return Result("every answer reported sent reached ECS", checked, out)


def waits_reached(history: History) -> Result:
    """A `--wait-until STAGE` that exited 0 before the verdict had its service deployment at
    STAGE or past it in ECS's own account of the stages it entered (read as the wait returned);
    one that exited 0 at a verdict had succeeded."""
    out: list[Violation] = []
    checked = 0
    for enqueue in history.enqueues:
        if enqueue.get("wait_until") is None or enqueue.get("wait_exit") != 0:
            continue
        checked += 1
        wanted = str(enqueue["wait_until"])
        line = (
            f"{_enqueue_line(enqueue)} wait_until={wanted} state={enqueue.get('wait_state')} "
            f"stage={enqueue.get('wait_stage')} arn={enqueue.get('wait_arn')} "
            f"ECS stages={enqueue.get('wait_ecs_stages')}"
        )
        if enqueue.get("wait_terminal"):
            if enqueue.get("wait_state") != "succeeded":
                out.append(
                    Violation(
                        f"deployment {enqueue.get('id')} ended {enqueue.get('wait_state')} and "
                        "the wait exited 0",
                        [line],
                    )
                )
            continue
        stages = enqueue.get("wait_ecs_stages")
        if not stages or not any(reached(str(s), wanted) for s in stages):
            out.append(
                Violation(
                    f"the wait for deployment {enqueue.get('id')} exited 0 at {wanted}, but "
                    f"ECS shows its service deployment only at {stages}",
                    [line],
                )
            )
    return Result("a --wait-until that exited 0 had its stage reached in ECS", checked, out)


def _window_covering(history: History, start: float, end: float) -> dict[str, Any] | None:
    """A freeze window that covers the whole of [start, end] (None: none does)."""
    for window in history.freezes:
        if float(window["start"]) <= start and end < float(window["end"]):
            return window
    return None


def _wave_started(history: History, wave: list[str]) -> float | None:
    """When a release started ``wave``: its records' creation (None: it never started)."""
    created = [
        float(record["created_at"])
        for deployment_id in wave
        if (record := history.deployments.get(deployment_id)) is not None
    ]
    return min(created) if created else None


def freeze_respected(history: History) -> Result:
    """Nothing starts inside a freeze window without an override: no enqueue made wholly
    inside a window was accepted unless it overrode the freeze; no refusal named a freeze when
    no window was open; no release without an override started a wave inside a window."""
    out: list[Violation] = []
    checked = 0
    for enqueue in history.enqueues:
        if "wall_from" not in enqueue:
            continue
        checked += 1
        start, end = float(enqueue["wall_from"]), float(enqueue["wall_to"])
        window = _window_covering(history, start, end)
        if enqueue["accepted"] and window is not None and not enqueue.get("override"):
            out.append(
                Violation(
                    f"{enqueue['kind']} {enqueue['id']} was accepted without an override "
                    f"inside freeze window {window['name']}",
                    [_enqueue_line(enqueue)],
                )
            )
        refused_frozen = enqueue.get("exit_code") == 2 and "refused: inside" in str(
            enqueue.get("error")
        )
        if refused_frozen and not any(
            float(w["start"]) <= end and start < float(w["end"]) for w in history.freezes
        ):
            out.append(
                Violation(
                    f"{enqueue['kind']} was refused for a freeze, but no window was open",
                    [_enqueue_line(enqueue)],
                )
            )
    for release_id, release in history.releases.items():
        if release is None or release.get("freeze_override"):
            continue
        for number, wave in enumerate(release.get("waves") or []):
            if number == 0:
                continue  # the enqueue's own check covers the first wave
            started = _wave_started(history, wave)
            if started is None:
                continue
            checked += 1
            window = _window_covering(history, started, started)
            if window is not None:
                out.append(
                    Violation(
                        f"release {release_id} started wave {number + 1} at {started:.2f}, "
                        f"inside freeze window {window['name']}",
                        [_about(history.deployments.get(wave[0]), wave[0])],
                    )
                )
    return Result("nothing starts inside a freeze window without an override", checked, out)


def budget_held(history: History) -> Result:
    """No wave of a release starts once its failure budget is spent: when a wave started,
    the failed deployments of the waves before it (all ended by then) were within budget."""
    out: list[Violation] = []
    checked = 0
    for release_id, release in history.releases.items():
        if release is None or (
            release.get("max_failures") is None and release.get("max_failure_percent") is None
        ):
            continue
        outcomes = release.get("outcomes") or {}
        waves = release.get("waves") or []
        total = sum(len(w) for w in waves)
        for number, wave in enumerate(waves):
            if number == 0 or _wave_started(history, wave) is None:
                continue
            checked += 1
            failed = [
                i for w in waves[:number] for i in w if outcomes.get(i, "succeeded") != "succeeded"
            ]
            limit = release.get("max_failures")
            percent = release.get("max_failure_percent")
            spent = (limit is not None and len(failed) > int(limit)) or (
                percent is not None and len(failed) * 100 > float(percent) * total
            )
            if spent:
                out.append(
                    Violation(
                        f"release {release_id} started wave {number + 1} with its budget spent: "
                        f"{len(failed)} failed before it (at most {limit}, {percent} %)",
                        [_about(history.deployments.get(i), i) for i in failed[:5]],
                    )
                )
    return Result("no wave starts past a spent failure budget", checked, out)


def approvals_respected(history: History) -> Result:
    """A wave to be approved starts only after an approval recorded before it; a rejected
    wave never starts, and its release ends cancelled."""
    out: list[Violation] = []
    checked = 0
    for release_id, release in history.releases.items():
        if release is None or not release.get("approve_before"):
            continue
        waves = release.get("waves") or []
        answers = {int(a["wave"]): a for a in release.get("approvals") or []}
        for number in release["approve_before"]:
            checked += 1
            started = _wave_started(history, waves[number]) if number < len(waves) else None
            answer = answers.get(int(number))
            if started is not None and (
                answer is None
                or answer.get("action") != "CONTINUE"
                or float(answer.get("at", 0)) > started
            ):
                out.append(
                    Violation(
                        f"release {release_id} started wave {number + 1} at {started:.2f} "
                        f"without an approval before it (answer: {answer})",
                        [_about(history.deployments.get(waves[number][0]), waves[number][0])],
                    )
                )
            if (
                answer is not None
                and answer.get("action") == "REJECT"
                and release.get("state") != "cancelled"
            ):
                out.append(
                    Violation(
                        f"release {release_id} was rejected before wave {number + 1} and ended "
                        f"{release.get('state')}, not cancelled",
                        [],
                    )
                )
    return Result("a wave to approve starts only once approved", checked, out)


def _gate_lets_through(release: dict[str, Any], run: dict[str, Any] | None) -> float | None:
    """When a wave's gate run let the next wave start (None: it did not): passed, or
    inconclusive with on_inconclusive pass, or inconclusive, paused and approved."""
    if run is None or run.get("decided_at") is None:
        return None
    decided = float(run["decided_at"])
    if run.get("state") == "passed":
        return decided
    if run.get("state") == "inconclusive" and run.get("action") == "pass":
        return decided
    if run.get("state") == "inconclusive" and run.get("action") == "pause":
        for answer in release.get("approvals") or []:
            if int(answer["wave"]) == int(run["wave"]) + 1 and answer.get("action") == "CONTINUE":
                return max(decided, float(answer["at"]))
    return None


def gates_respected(history: History) -> Result:
    """No wave starts past a failed gate: a wave after a gated one starts only once that gate
    passed (or, inconclusive, passed by its rule or an approval); after a gate that failed (or
    was rejected) no later wave starts, and the release does not succeed."""
    out: list[Violation] = []
    checked = 0
    for release_id, release in history.releases.items():
        if release is None or not any(release.get("gates") or []):
            continue
        waves = release.get("waves") or []
        gates = release.get("gates") or []
        runs = {int(r["wave"]): r for r in release.get("gate_runs") or []}
        for number, wave in enumerate(waves):
            gated = number - 1 < len(gates) and gates[number - 1] is not None
            if number == 0 or not gated:
                continue
            started = _wave_started(history, wave)
            if started is None:
                continue
            checked += 1
            through = _gate_lets_through(release, runs.get(number - 1))
            if through is None or through > started:
                out.append(
                    Violation(
                        f"release {release_id} started wave {number + 1} at {started:.2f}, but "
                        f"the gate of wave {number} had not let it through "
                        f"({runs.get(number - 1)})",
                        [_about(history.deployments.get(wave[0]), wave[0])],
                    )
                )
        last = len(waves) - 1
        if release.get("state") == "succeeded" and last < len(gates) and gates[last] is not None:
            checked += 1
            if _gate_lets_through(release, runs.get(last)) is None:
                out.append(
                    Violation(
                        f"release {release_id} succeeded, but the gate of its last wave did not "
                        f"pass ({runs.get(last)})",
                        [],
                    )
                )
    return Result("no wave starts past a failed gate", checked, out)


def _changed_service(record: dict[str, Any]) -> bool:
    """Whether a deployment got as far as changing its service (an update step)."""
    return any(step.get("step") == "update" for step in record.get("steps") or [])


def tasks_first(history: History) -> Result:
    """A wave's pre-deploy tasks run before any of its other services changes: those start
    only after every task of the wave passed; a deployment whose task did not pass never
    changed its service, and after it no later wave started and the release did not succeed."""
    out: list[Violation] = []
    checked = 0
    for release_id, release in history.releases.items():
        if release is None:
            continue
        jobs = release.get("jobs") or {}
        passed = release.get("tasks_passed") or {}
        waves = release.get("waves") or []
        for number, wave in enumerate(waves):
            tasks = [i for i in wave if (jobs.get(i) or {}).get("pre_deploy")]
            if not tasks:
                continue
            checked += 1
            for other in (i for i in wave if i not in tasks):
                record = history.deployments.get(other)
                if record is None:
                    continue
                created = float(record.get("created_at", 0))
                early = [t for t in tasks if t not in passed or float(passed[t]) > created]
                if early:
                    out.append(
                        Violation(
                            f"release {release_id}: {other} of wave {number + 1} started at "
                            f"{created:.2f}, before the pre-deploy task of {early[0]} passed",
                            [
                                _about(record, other),
                                _about(history.deployments.get(early[0]), early[0]),
                            ],
                        )
                    )
            for task in tasks:
                record = history.deployments.get(task)
                info = (record or {}).get("pre_deploy") or {}
                if record is None or task in passed or info.get("exit_code") == 0:
                    continue
                if record.get("state") not in ("failed", "cancelled", "superseded", "rolled_back"):
                    continue
                if _changed_service(record):
                    out.append(
                        Violation(
                            f"release {release_id}: {task}'s pre-deploy task did not pass, yet "
                            "its service was changed",
                            [_about(record, task)],
                        )
                    )
                later = [
                    w for w in range(number + 1, len(waves)) if _wave_started(history, waves[w])
                ]
                if later or release.get("state") == "succeeded":
                    out.append(
                        Violation(
                            f"release {release_id}: the pre-deploy task of {task} in wave "
                            f"{number + 1} did not pass, yet the release went on (waves "
                            f"{[w + 1 for w in later]} started, state {release.get('state')})",
                            [_about(record, task)],
                        )
                    )
    return Result("a wave's services change only after its pre-deploy tasks passed", checked, out)


INVARIANTS: tuple[Callable[[History], Result], ...] = (
    terminal,
    not_lost,
    verdicts_agree,
    revisions_asked_for,
    no_overlap,
    one_revision_per_job,
    stops_only_own,
    stop_calls_own,
    releases_live,
    cancelled_releases_stopped,
    no_discarded_base,
    bounded_keys,
    no_secrets,
    staged_verdicts,
    alarm_rollbacks,
    continues_asked_for,
    approvals_sent,
    waits_reached,
    freeze_respected,
    budget_held,
    approvals_respected,
    gates_respected,
    tasks_first,
)


def check(history: History) -> list[Result]:
    """Every invariant's result on ``history``, in a fixed order."""
    return [invariant(history) for invariant in INVARIANTS]
