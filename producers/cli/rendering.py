"""What ``conveyor`` prints: records, plans, releases and tables as text or JSON, and the live
progress line. Nothing here talks to Redis; rich is imported only when a table or a live line
is drawn."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from producers.contract.records import DeploymentRecord
    from producers.contract.releases import ReleaseRecord
    from producers.contract.workers import WorkerInfo


def retrying_text(waited: float) -> str:
    """The line that says Redis is being asked again."""
    return f"Redis unavailable, retrying ({waited:.0f} s)"


def say_retrying(waited: float) -> None:
    """Tell the person (or the CI log) why nothing moves: on stderr, never in --json output."""
    click.echo(f"conveyor: {retrying_text(waited)}", err=True)


def echo_json(data: Any, *, sort_keys: bool = True) -> None:
    """Print ``data`` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=sort_keys))


def summary(record: DeploymentRecord) -> str:
    """A deployment record for people: its state, then one labelled line per fact."""
    lines = [f"deployment {record.id}: {record.state.value}"]
    lines.append(f"  service   {record.cluster}/{record.service}")
    for container, change in record.images.items():
        lines.append(f"  image     {container}: {change['before']} -> {change['after']}")
    if record.task_definition_arn:
        lines.append(f"  revision  {record.task_definition_arn}")
    if record.previous_task_definition_arn:
        lines.append(f"  previous  {record.previous_task_definition_arn}")
    stage = None if record.terminal else stage_text(record, time.time())
    if stage:
        lines.append(f"  stage     {stage}")
    if record.reason:
        lines.append(f"  reason    {record.reason}")
    if record.error:
        lines.append(f"  error     [{record.error.code}] {record.error.message}")
    if record.stack is not None:
        lines.append(f"  stack     {record.stack.name} ({record.stack.status or 'not started'})")
        for event in [e for e in record.stack.events if e.reason][:3]:
            lines.append(f"  event     {event.logical_id} {event.status}: {event.reason}")
    lines += pre_deploy_lines(record)
    for task in record.stopped_tasks[:3]:
        lines.append(f"  stopped   {task.task_arn.rsplit('/', 1)[-1]}: {task.stopped_reason}")
    lines.extend(bake_gate_lines(record))
    for answer in record.approvals:
        word = "approved" if answer.action == "CONTINUE" else "rejected"
        at = f" at {answer.stage}" if answer.stage else ""
        lines.append(f"  {word:<9} by {answer.by}{at}: {answer.outcome}")
    if record.freeze_override is not None:
        o = record.freeze_override
        lines.append(f"  override  freeze window {o.window!r} by {o.by}: {o.reason}")
    if record.approval_requested is not None:
        asked = record.approval_requested
        word = "approval" if asked.action == "CONTINUE" else "rejection"
        lines.append(f"  asked     {word} by {asked.by}, not yet sent to ECS")
    for warning in record.warnings:
        lines.append(f"  warning   {warning}")
    return "\n".join(lines)


# Measurements of one bake window shown by `status`; `--json` has them all.
_SHOWN_MEASUREMENTS = 10


def bake_gate_lines(record: DeploymentRecord) -> list[str]:
    """The bake gate's windows, each with its verdict and measurements (none: no gate yet)."""
    info = record.bake_gate
    if info is None:
        return []
    lines = [f"  gate      {info.name} ({info.condition}), measured during the bake"]
    for window in info.windows:
        taken = [m for m in info.measurements if m.window == window.number]
        said = [
            f"error: {m.error}"
            if m.error is not None
            else "no data"
            if m.value is None
            else f"{m.value:g}"
            for m in taken[-_SHOWN_MEASUREMENTS:]
        ]
        more = "..., " if len(taken) > len(said) else ""
        lines.append(
            f"  bake      at {window.traffic:g}% of production traffic: {window.outcome}, "
            f"{len(taken)} measurement(s): {more}{', '.join(said) or 'none yet'}"
        )
        if window.reason and window.outcome != "measuring":
            lines.append(f"  verdict   {window.reason}")
    return lines


def pre_deploy_lines(record: DeploymentRecord) -> list[str]:
    """The pre-deploy task: which task, how it ended (exit code, ECS's reason), its log's tail."""
    task = record.pre_deploy
    if task is None:
        return []
    name = task.task_arn.rsplit("/", 1)[-1] if task.task_arn else "not started"
    if task.exit_code is not None:
        how = f"exited {task.exit_code}"
    else:
        how = (task.last_status or "not started").lower()
    text = f"  task      {name} ({task.container}): {how}"
    if task.stopped_reason and task.exit_code != 0:
        text += f" ({task.stopped_reason})"
    lines = [text]
    if task.log_tail:
        lines.append(f"  log       {task.log_group}  {task.log_stream}")
        lines += [f"    | {line}" for line in task.log_tail]
    return lines


def stage_text(record: DeploymentRecord, now: float) -> str | None:
    """Where a blue/green, linear or canary deployment is in ECS's lifecycle: its stage, the
    traffic split, the bake time left, or the approval a PAUSE hook waits for. None for a
    rolling update without lifecycle hooks."""
    p = record.progress
    if not p.lifecycle_stage:
        return None
    if p.awaiting_hook_id:
        text = f"awaiting approval at {p.lifecycle_stage} (hook {p.awaiting_hook_id}"
        if p.hook_expires_at is not None:
            action = p.hook_timeout_action or "ROLLBACK"
            text += f"; ECS will {action} in {age(max(0.0, p.hook_expires_at - now))}"
        return text + ")"
    text = f"{p.strategy or 'deployment'} at {p.lifecycle_stage}"
    if p.production_traffic is not None:
        new = p.production_traffic
        text += f", production traffic {new:g}% new / {100.0 - new:g}% old"
    if p.bake_ends_at is not None:
        text += f", bake time left {age(max(0.0, p.bake_ends_at - now))}"
    gate = record.bake_gate
    if gate is not None and gate.windows:
        window = gate.windows[-1]
        taken = sum(1 for m in gate.measurements if m.window == window.number)
        text += f", gate {gate.name} {window.outcome} ({taken} measured)"
    return text


def progress_text(record: DeploymentRecord, now: float) -> str:
    """The live progress line: state, step, lifecycle stage, task counts, latest event."""
    p = record.progress
    text = f"{record.state.value} · {record.step.value}"
    stage = None if record.terminal else stage_text(record, now)
    if stage:
        text += f" · {stage}"
    if p.desired:
        text += f" · {p.running}/{p.desired} running"
        if p.failed_tasks:
            text += f" · {p.failed_tasks} failed tasks"
    if p.latest_event:
        text += f" · {p.latest_event}"
    return text


def print_record(record: DeploymentRecord, as_json: bool) -> None:
    """A deployment record as JSON, or as its summary."""
    if as_json:
        echo_json(record.model_dump(mode="json"))
    else:
        click.echo(summary(record))


class Progress:
    """Live progress: a rich status line on terminals, one plain line per change elsewhere.

    ``live=False`` always prints plain lines (several deployments followed at once).
    """

    def __init__(self, enabled: bool, *, live: bool = True) -> None:
        self.enabled = enabled
        self._live: Any = None
        self._last = ""
        if enabled and live and sys.stderr.isatty():
            from rich.console import Console
            from rich.status import Status

            self._live = Status("queued", console=Console(stderr=True))
            self._live.start()

    def __call__(self, record: DeploymentRecord) -> None:
        """Show the record's state, step, stage and task counts if they changed."""
        if not self.enabled:
            return
        text = progress_text(record, time.time())
        if text == self._last:
            return
        self._last = text
        if self._live is not None:
            self._live.update(text)
        else:
            click.echo(f"[{record.id[:8]}] {text}", err=True)

    def retrying(self, waited: float) -> None:
        """Show that Redis cannot be reached and is being asked again."""
        if self._live is not None:
            self._live.update(retrying_text(waited))
            self._last = ""
        else:
            say_retrying(waited)

    def stop(self) -> None:
        """End the live line, if any."""
        if self._live is not None:
            self._live.stop()


def release_progress(release: ReleaseRecord) -> None:
    """One stderr line for a release's progress."""
    counts = ", ".join(f"{n} {state}" for state, n in sorted(release.summary().items()))
    waiting = release.awaiting_wave
    answered = _answered(release)
    if answered is not None:
        paused = f" · {answered}"
    elif waiting is not None:
        paused = (
            f" · awaiting approval {_awaited(release, waiting)} (`conveyor approve {release.id}`)"
        )
    else:
        paused = ""
    run = release.gate_run(release.wave)
    if run is not None and run.state == "measuring" and not release.terminal:
        paused += f" · gate {run.gate} measuring ({len(run.measurements)} taken)"
    if release.rolling_back and not release.terminal:
        paused += f" · rolling wave {release.wave + 1} back"
    if release.held and not release.terminal:
        paused += f" · {release.held}"
    click.echo(
        f"[{release.id[:12]}] {release.state.value} · wave {release.wave + 1}/"
        f"{len(release.waves)} · {counts}{paused}",
        err=True,
    )


def _answered(release: ReleaseRecord) -> str | None:
    """The answer recorded for the approval a release waits for, which no worker has acted on
    yet (None: no answer, or it waits for none). Producers only record an answer; a worker
    moves the release on, at once unless the message asking it to was lost (then at its next
    sweep)."""
    waiting = release.awaiting_wave
    answer = None if waiting is None else release.approval_of(waiting)
    if waiting is None or answer is None:
        return None
    word = "approved" if answer.action == "CONTINUE" else "rejected"
    return f"{word} {_awaited(release, waiting)} by {answer.by}; a worker acts on it"


def _awaited(release: ReleaseRecord, waiting: int) -> str:
    """What a paused release waits to be approved for: an inconclusive gate, or a wave."""
    run = release.gate_run(waiting - 1)
    if run is not None and run.state == "inconclusive":
        return f"after gate {run.gate} of wave {waiting} was inconclusive"
    return f"before wave {waiting + 1}"


def gate_lines(release: ReleaseRecord) -> list[str]:
    """The gates measured after the release's waves, their readings and verdicts, and the
    rollbacks a failed gate started."""
    lines = []
    for run in release.gate_runs:
        readings = ", ".join(m.describe() for m in run.measurements[-5:]) or "none yet"
        lines.append(f"  gate      wave {run.wave + 1} {run.gate}: {run.state} · {readings}")
        if run.reason and run.state != "measuring":
            lines.append(f"            {run.reason}")
    for rollback in release.rollbacks:
        how = {
            "deployment": f"to {(rollback.to or '?').rsplit('/', 1)[-1]} by {rollback.deployment}",
            "cancel": "cancelled while running",
            "none": rollback.note or "nothing to roll back",
        }[rollback.how]
        ended = rollback.outcome or "running"
        lines.append(f"  rollback  {rollback.cluster}/{rollback.service}: {how} · {ended}")
    return lines


def release_text(release: ReleaseRecord, records: list[DeploymentRecord | None]) -> str:
    """A release for people: its verdict and wave, then one line per deployment."""
    ids = [i for wave in release.waves for i in wave]
    waves = {i: n for n, wave in enumerate(release.waves, start=1) for i in wave}
    title = f"release {release.id}" + (f" ({release.name})" if release.name else "")
    lines = [f"{title}: {release.state.value} · wave {release.wave + 1}/{len(release.waves)}"]
    counts = ", ".join(f"{n} {state}" for state, n in sorted(release.summary().items()))
    lines.append(f"  summary   {counts}")
    if release.move_on_at:
        lines.append(f"  moves on  when each deployment of a wave reached {release.move_on_at}")
    waiting = release.awaiting_wave
    answered = _answered(release)
    if answered is not None:
        lines.append(f"  answered  {answered}")
    elif waiting is not None and release.awaiting_approval_since is not None:
        expires = release.awaiting_approval_since + release.approval_timeout_minutes * 60
        lines.append(
            f"  awaiting  approval {_awaited(release, waiting)} (`conveyor approve "
            f"{release.id}` or `reject`; fails in {age(max(0.0, expires - time.time()))})"
        )
    lines += gate_lines(release)
    for answer in release.approvals:
        word = "approved" if answer.action == "CONTINUE" else "rejected"
        lines.append(f"  {word:<9} wave {answer.wave + 1} by {answer.by}")
    if release.held and not release.terminal:
        lines.append(f"  held      wave {release.wave + 2}: {release.held}")
    if release.freeze_override is not None:
        o = release.freeze_override
        lines.append(f"  override  freeze window {o.window!r} by {o.by}: {o.reason}")
    if release.reason:
        lines.append(f"  reason    {release.reason}")
    for deployment_id, record in zip(ids, records, strict=True):
        job = release.jobs[deployment_id]
        state = record.state.value if record else "pending"
        line = f"  wave {waves[deployment_id]}  {job['cluster']}/{job['service']}  {state}"
        if state == "running" and deployment_id in release.reached:
            line += f" (past {release.move_on_at})"
        line += f"  {deployment_id}"
        if record is not None and record.reason and state not in ("succeeded", "running"):
            line += f"  ({record.reason[:120]})"
        elif record is None and deployment_id in release.not_started:
            line = line.replace("  pending  ", "  cancelled  ", 1)
            line += f"  ({release.not_started[deployment_id]})"
        elif record is None and deployment_id in release.held_back:
            line += "  (waits for the wave's pre-deploy tasks)"
        lines.append(line)
    return "\n".join(lines)


def plan_text(plan: dict[str, Any]) -> str:
    """A plan for people: one block per service."""
    head = f"{plan['cluster']}/{plan['service']}"
    if "error" in plan:
        return f"{head}: cannot plan: {plan['error']}"
    if "stack" in plan:
        lines = [f"{head}: {plan['operation']} stack {plan['stack']}"]
        for change in plan.get("changes", []):
            replace = " (replacement)" if change.get("replacement") == "True" else ""
            lines.append(f"  {change['action']} {change['logical_id']} {change['type']}{replace}")
        if not plan.get("changes"):
            lines.append(f"  no change ({plan.get('reason') or 'nothing to do'})")
        lines += _version_lines(plan)
        return "\n".join(lines)
    lines = [f"{head} (runs {plan.get('current_task_definition')})"]
    revision = plan.get("task_definition")
    if revision is None:
        lines.append("  task definition: unchanged (a restart)")
    else:
        lines.append(
            f"  task definition: new revision of {revision['family']} from {revision['base']}"
        )
        if revision.get("base_reason"):
            lines.append(f"    base: {revision['base_reason']}")
        for field in revision["fields"]:
            if "before" in field:
                lines.append(f"    {field['field']}: {field['before']} -> {field['after']}")
            else:
                lines.append(f"    {field['field']}: changed (value not shown)")
        for change in revision["settings"]:
            lines.append(f"    {change}")
        for dropped in revision["dropped_fields"]:
            lines.append(f"    {dropped}: not copied (unknown to this SDK)")
    for change in plan.get("service_changes", []):
        lines.append(f"  service {change['field']}: {change['before']} -> {change['after']}")
    lines += _version_lines(plan)
    return "\n".join(lines)


def _version_lines(plan: dict[str, Any]) -> list[str]:
    # A pinned image already ends with its digest: print it once.
    return [
        f"  version {v['container']}: {{{v['rule']}}} -> {v['image']}"
        + ("" if str(v["image"]).endswith(f"@{v['digest']}") else f" ({v['digest']})")
        for v in plan.get("versions", [])
    ]


def print_plans(plans: list[dict[str, Any]], as_json: bool) -> None:
    """Plans as JSON, or one text block each."""
    if as_json:
        echo_json(plans)
    else:
        for one in plans:
            click.echo(plan_text(one))


STATE_STYLE = {
    "succeeded": "green",
    "running": "cyan",
    "queued": "blue",
    "failed": "bold red",
    "rolled_back": "red",
    "cancelled": "yellow",
    "superseded": "dim",
}


def age(seconds: float) -> str:
    """A short human duration: 42 s, 7 min, 3 h, 2 d."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def print_workers(found: list[WorkerInfo]) -> None:
    """The live workers as a table."""
    from rich.console import Console
    from rich.table import Table

    table = Table("worker", "queues", "concurrency", "pid", "up", "last seen")
    now = time.time()
    for w in found:
        table.add_row(
            w.name,
            ", ".join(w.queues),
            str(w.concurrency),
            str(w.pid),
            f"{now - w.started_at:.0f} s",
            f"{now - w.seen_at:.0f} s ago",
        )
    Console().print(table)


def print_list(
    deployments: list[DeploymentRecord],
    releases: list[ReleaseRecord],
    unreadable_releases: list[str],
    *,
    only: str | None,
) -> None:
    """`conveyor list` as tables: deployments, then releases, newest first."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Piped output is read by people with grep: wide rows rather than wrapped cells.
    console = Console(width=None if sys.stdout.isatty() else 240)
    now = time.time()
    if only != "releases":
        table = Table("deployment", "service", "state", "step", "age", "took", "latest", title=None)
        for r in deployments:
            took = (r.finished_at or now) - r.created_at
            stage = None if r.terminal else stage_text(r, now)
            latest = r.reason if r.terminal and r.reason else stage or r.progress.latest_event or ""
            # Names and ECS events are untrusted text: Text() keeps rich from reading markup.
            table.add_row(
                Text(r.id),
                Text(f"{r.cluster}/{r.service}"),
                Text(r.state.value, style=STATE_STYLE.get(r.state.value, "")),
                Text("" if r.terminal else r.step.value),
                age(now - r.created_at),
                age(took),
                Text(latest[:80]),
            )
        if deployments:
            console.print(table)
        else:
            click.echo("no deployments match", err=True)
    for release_id in unreadable_releases:
        click.echo(
            f"release {release_id}: its record cannot be read (moved aside, or written by a "
            f"newer Conveyor); see `conveyor status {release_id}`",
            err=True,
        )
    if releases:
        table = Table("release", "name", "state", "wave", "deployments", "age")
        for rel in releases:
            counts = ", ".join(f"{n} {state}" for state, n in sorted(rel.summary().items()))
            state = rel.state.value
            answered = _answered(rel)
            if answered is not None:
                state += f" · {answered}"
            elif rel.awaiting_wave is not None:
                state += f" · awaiting approval {_awaited(rel, rel.awaiting_wave)}"
            elif rel.held and not rel.terminal:
                state += " · held by a freeze"
            table.add_row(
                Text(rel.id),
                Text(rel.name),
                Text(state, style=STATE_STYLE.get(rel.state.value, "")),
                f"{rel.wave + 1}/{len(rel.waves)}",
                Text(counts),
                age(now - rel.created_at),
            )
        console.print(table)


def history_line(event: dict[str, Any]) -> str:
    """One event of the audit trail for people: when, what, about what, by whom, how."""
    import datetime

    at = datetime.datetime.fromtimestamp(float(event.get("at", 0)), tz=datetime.UTC)
    what = str(event.get("event", "?"))
    about = str(event.get("id", ""))
    if event.get("service"):
        about += f" {event.get('cluster')}/{event.get('service')}"
    elif event.get("name"):
        about += f" ({event.get('name')})"
    line = f"{at:%Y-%m-%d %H:%M:%S}Z  {what:<19} {about}"
    if event.get("wave"):
        line += f" wave {event['wave']}"
    if event.get("state"):
        line += f" {event['state']}"
    if event.get("by"):
        line += f" by {event['by']}"
    images = event.get("images")
    if isinstance(images, dict) and images:
        line += " " + ", ".join(f"{c}={i}" for c, i in images.items())
    if event.get("service_deployment_arn"):
        line += f" ({str(event['service_deployment_arn']).rsplit('/', 1)[-1]})"
    return line
