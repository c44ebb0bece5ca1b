"""Releases: one job that deploys a set of services, in waves, with a record of its own.

A release file (YAML or JSON) names the services, each with its images, optionally in waves::

    release: shop-2.4          # a name for people (optional)
    cluster: prod              # the default cluster of every entry
    fail_fast: true            # a failed wave stops the release (default); false: go on
    max_failures: 2            # or max_failure_percent: 10; a failure budget instead of
                               # fail_fast: failures within it are tolerated, past it no
                               # further wave starts
    move_on_at: production-traffic  # start the next wave once every deployment of this one
                               # reached this lifecycle stage (default: once they all ended)
    timeout_seconds: 1800      # defaults for every entry, as for `conveyor update`
    waves:
      - - service: api
          images: {api: ":2.4.0"}
      - - service: web
          images: {web: ":2.4.0", proxy: ":1.9.1"}
        - service: worker
          cluster: prod-batch
          images: {worker: ":2.4.0"}

A wave may also be a mapping, ``{services: [...], approve_before: true}``: the release then
pauses before that wave until ``conveyor approve REL`` (or ``reject``), for at most
``approval_timeout_minutes`` (default a day; then it fails).

A wave mapping may also take ``gate: {...}``, a metric gate (:mod:`producers.contract.gates`)
measured once the wave has passed and before the next wave starts (after the last wave too:
the release succeeds only once that gate passed); a release-level ``gate:`` applies after every
wave that has none of its own. A failed gate rolls the wave back and fails the release; an
inconclusive one pauses it for ``conveyor approve`` (or fails or passes, as the gate says).

``services:`` instead of ``waves:`` is one wave. Every entry becomes an ordinary update-existing
deployment (with all its guarantees) whose id is the release id and its position, so creating
one twice is a no-op. Waves run one after another; the deployments of a wave run at once.

An entry may have a ``pre_deploy`` task (a migration: ``{container, command,
timeout_seconds}``). A wave with such entries starts them first; its other entries start only
once every one of those tasks exited 0. A task that does not pass fails its deployment (its
service unchanged), the wave's other entries end cancelled unstarted, and the release stops
failed, whatever ``fail_fast`` says: later waves assume the migration ran.

With ``move_on_at`` a wave's blue/green, linear or canary deployments let the next wave start
once ECS took them to that stage (the names `--wait-until` takes); a rolling update still lets
it start at its end. The release's verdict still waits for every deployment's own: it succeeds
only once every change is live, and a deployment that fails after its wave moved on stops the
waves not yet started (with ``fail_fast``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from producers.contract.enums import DeploymentState
from producers.contract.gates import Gate, load_gate
from producers.contract.ids import is_release_id as is_release_id
from producers.contract.ids import new_release_id as new_release_id
from producers.contract.jobs import (
    MAX_TIMEOUT_SECONDS,
    MIN_TIMEOUT_SECONDS,
    ContainerSettings,
    ImageUpdate,
    PreDeployTask,
    UpdateServiceJob,
    describe_validation_error,
)
from producers.contract.records import FreezeOverride
from producers.contract.stages import stage_named
from producers.contract.strategy import STRATEGY_FIELDS, Strategy, ThresholdType

MAX_RELEASE_SERVICES = 1000
# The longest a release waits for an approval before a wave (30 days, the records' life).
MAX_APPROVAL_MINUTES = 30 * 1440


class ReleaseEntry(BaseModel):
    """One service of a release and the images it gets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: str
    cluster: str | None = None
    # Empty with force_new_deployment: a restart.
    images: Annotated[dict[str, str], Field(max_length=100)] = Field(default_factory=dict)
    family: str | None = None
    role_arn: str | None = None
    timeout_seconds: int | None = None
    rollback: bool | None = None
    force_new_deployment: bool | None = None
    desired_count: int | None = None
    minimum_healthy_percent: int | None = None
    maximum_percent: int | None = None
    circuit_breaker: bool | None = None
    # ECS's deployment strategy and its settings (see UpdateServiceJob).
    strategy: str | None = None
    bake_minutes: int | None = None
    canary_percent: float | None = None
    canary_bake_minutes: int | None = None
    linear_step_percent: float | None = None
    linear_step_bake_minutes: int | None = None
    alarms: list[str] | None = None
    circuit_breaker_threshold_type: str | None = None
    circuit_breaker_threshold: int | None = None
    keep_revisions: int | None = None
    # Environment variables and secrets of named containers (see ContainerSettings).
    settings: list[dict[str, Any]] | None = None
    # What the new revision is built from: "family" (default) or "service" (see UpdateServiceJob).
    base: Literal["family", "service"] | None = None
    # A metric gate measured during a canary's or linear step's bake (see UpdateServiceJob).
    bake_gate: dict[str, Any] | None = None
    # A one-off task run on the new revision before the service changes (see PreDeployTask):
    # the other services of its wave start only once every such task of the wave passed.
    pre_deploy: dict[str, Any] | None = None


def _pre_deploy_of(raw: Any, where: str) -> PreDeployTask:
    """An entry's pre_deploy as the strict job takes it (a file's list command is a tuple)."""
    if not isinstance(raw, dict):
        raise ValueError(  # noqa: TRY004 - pydantic reports ValueErrors, not TypeErrors
            f"{where}.pre_deploy: give a mapping (container, command, timeout_seconds)"
        )
    data = dict(raw)
    if isinstance(data.get("command"), list):
        data["command"] = tuple(data["command"])
    try:
        return PreDeployTask.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(describe_validation_error(exc))
        raise ValueError(f"{where}.pre_deploy: {problems}") from None


class ReleaseJob(BaseModel):
    """Deploy a set of services, wave after wave."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["release"] = "release"
    schema_version: Literal[1] = 1
    release: Annotated[str, Field(max_length=200)] = ""
    cluster: str | None = None
    fail_fast: bool = True
    # A failure budget: this many failed deployments (or this share of the release's, in
    # percent) are tolerated; one more and no further wave starts. Instead of fail_fast.
    max_failures: Annotated[int, Field(ge=0, le=MAX_RELEASE_SERVICES)] | None = None
    max_failure_percent: Annotated[float, Field(ge=0, le=100)] | None = None
    # The lifecycle stage at which a wave lets the next one start (None: once it all ended).
    move_on_at: str | None = None
    # Waves (indexes) the release pauses before, until approved or rejected.
    approve_before: list[int] = Field(default_factory=list)
    approval_timeout_minutes: Annotated[int, Field(ge=1, le=MAX_APPROVAL_MINUTES)] = 1440
    # None: each entry gets the default for its service's deployment strategy (see
    # UpdateServiceJob.timeout_seconds).
    timeout_seconds: (
        Annotated[int, Field(ge=MIN_TIMEOUT_SECONDS, le=MAX_TIMEOUT_SECONDS)] | None
    ) = None
    rollback: bool = True
    role_arn: str | None = None
    keep_revisions: Annotated[int | None, Field(ge=1, le=1000)] = None
    base: Literal["family", "service"] | None = None
    # Defaults of every entry's strategy options (see UpdateServiceJob), checked per entry.
    circuit_breaker: bool | None = None
    strategy: Strategy | None = None
    bake_minutes: int | None = None
    canary_percent: float | None = None
    canary_bake_minutes: int | None = None
    linear_step_percent: float | None = None
    linear_step_bake_minutes: int | None = None
    alarms: list[str] | None = None
    circuit_breaker_threshold_type: ThresholdType | None = None
    circuit_breaker_threshold: int | None = None
    # The metric gate measured after every wave without one of its own.
    gate: Gate | None = None
    # The gates of the waves that have their own (``gate:`` in a wave mapping), wave by wave.
    wave_gates: list[Gate | None] = Field(default_factory=list)
    waves: Annotated[list[list[UpdateServiceJob]], Field(min_length=1)]

    def gate_of(self, wave: int) -> Gate | None:
        """The gate measured after ``wave`` (its own, else the release's; None: no gate)."""
        own = self.wave_gates[wave] if wave < len(self.wave_gates) else None
        return own or self.gate

    @model_validator(mode="before")
    @classmethod
    def _expand(cls, data: Any) -> Any:
        """Turn the file's entries (with defaults) into update jobs, one list per wave."""
        if not isinstance(data, dict):
            # pydantic reports a ValueError as a validation error of the field; not a TypeError.
            raise ValueError(  # noqa: TRY004
                "a release is a mapping of fields (release, cluster, waves, ...)"
            )
        data = dict(data)
        if "services" in data:
            if "waves" in data:
                raise ValueError("give either services (one wave) or waves, not both")
            data["waves"] = [data.pop("services")]
        waves = data.get("waves")
        if not isinstance(waves, list) or not waves:
            raise ValueError("waves: give at least one wave of services (or services:)")
        defaults = {
            key: data[key]
            for key in (
                "cluster",
                "timeout_seconds",
                "rollback",
                "role_arn",
                "keep_revisions",
                "base",
                "circuit_breaker",
                *STRATEGY_FIELDS,
            )
            if data.get(key) is not None
        }
        expanded = []
        gated = list(data.get("approve_before") or [])
        wave_gates: list[Gate | None] = [None] * len(waves)
        for w, wave in enumerate(waves):
            if isinstance(wave, dict):
                unknown = sorted(set(wave) - {"services", "approve_before", "gate"})
                if unknown:
                    raise ValueError(
                        f"waves[{w}]: unknown field(s) {', '.join(unknown)}; a wave takes "
                        "services, approve_before and gate"
                    )
                if wave.get("gate") is not None:
                    wave_gates[w] = _wave_gate(w, wave["gate"])
                approve = wave.get("approve_before", False)
                if not isinstance(approve, bool):
                    # A ValueError is pydantic's validation error; a TypeError would escape it.
                    raise ValueError(  # noqa: TRY004
                        f"waves[{w}].approve_before: give true or false"
                    )
                if approve and w == 0:
                    raise ValueError(
                        "waves[0].approve_before: the first wave starts when the release is "
                        "made; enqueue the release once it is approved"
                    )
                if approve and w not in gated:
                    gated.append(w)
                wave = wave.get("services")
            if not isinstance(wave, list) or not wave:
                raise ValueError(f"waves[{w}]: a wave is a non-empty list of services")
            jobs = []
            for i, raw in enumerate(wave):
                if isinstance(raw, UpdateServiceJob):
                    jobs.append(raw)
                    continue
                entry = ReleaseEntry.model_validate(raw)
                fields = {**defaults, **entry.model_dump(exclude_none=True)}
                if "cluster" not in fields:
                    raise ValueError(f"waves[{w}][{i}]: no cluster, and the release has none")
                images = []
                for container, image in fields.pop("images", {}).items():
                    try:
                        images.append(ImageUpdate(container=container, image=image))
                    except ValidationError as exc:
                        # Named by service and container: "image" alone does not say which.
                        problems = "; ".join(
                            line.removeprefix("image: ") for line in describe_validation_error(exc)
                        )
                        raise ValueError(
                            f"waves[{w}][{i}] ({entry.service}).images.{container}: {problems}"
                        ) from None
                if "settings" in fields:
                    try:
                        fields["settings"] = tuple(
                            ContainerSettings.model_validate(s) for s in fields["settings"]
                        )
                    except ValidationError as exc:
                        # Re-raised without the input: it holds environment values.
                        problems = "; ".join(describe_validation_error(exc))
                        raise ValueError(f"waves[{w}][{i}].settings: {problems}") from None
                if "alarms" in fields:
                    # The job is strict: a list from the file becomes the tuple it holds.
                    fields["alarms"] = tuple(fields["alarms"])
                if "pre_deploy" in fields:
                    fields["pre_deploy"] = _pre_deploy_of(fields["pre_deploy"], f"waves[{w}][{i}]")
                fields["wait"] = False
                try:
                    job = UpdateServiceJob.model_validate({**fields, "images": tuple(images)})
                except ValidationError as exc:
                    # Named by the entry: an option the release gives as a default is checked
                    # against each entry's own, so the field alone does not say where.
                    where = f"waves[{w}][{i}] ({entry.service})"
                    raise ValueError(
                        "; ".join(f"{where}.{line}" for line in describe_validation_error(exc))
                    ) from None
                jobs.append(job)
            expanded.append(jobs)
        data["waves"] = expanded
        data["approve_before"] = sorted(gated)
        if any(g is not None for g in wave_gates):
            data["wave_gates"] = wave_gates
        return data

    @model_validator(mode="before")
    @classmethod
    def _one_budget(cls, data: Any) -> Any:
        """A budget replaces fail_fast: both, or two budgets, say two different things."""
        if not isinstance(data, dict):
            return data
        given = [k for k in ("max_failures", "max_failure_percent") if data.get(k) is not None]
        if len(given) > 1:
            raise ValueError("give max_failures or max_failure_percent, not both")
        if given and data.get("fail_fast") is True:
            raise ValueError(
                f"fail_fast stops at the first failure, {given[0]} tolerates some: drop "
                "fail_fast (or --fail-fast), or drop the budget"
            )
        return {**data, "fail_fast": False} if given else data

    @model_validator(mode="after")
    def _gates_are_waves(self) -> ReleaseJob:
        """Each wave paused before is one of the release's, after the first."""
        for index in self.approve_before:
            if not 1 <= index < len(self.waves):
                raise ValueError(
                    f"approve_before: {index} is not a wave after the first (waves 1 to "
                    f"{len(self.waves) - 1}, counted from 0)"
                )
        if self.wave_gates and len(self.wave_gates) != len(self.waves):
            raise ValueError(
                f"wave_gates: {len(self.wave_gates)} given for {len(self.waves)} waves; give a "
                "gate (or null) per wave, or write gate: in the wave mappings"
            )
        return self

    @field_validator("move_on_at")
    @classmethod
    def _a_stage(cls, value: str | None) -> str | None:
        """ECS's name of the stage (a person may give `production-traffic`, `bake`, ...)."""
        return None if value is None else stage_named(value)

    @field_validator("waves")
    @classmethod
    def _bounded_and_distinct(
        cls, waves: list[list[UpdateServiceJob]]
    ) -> list[list[UpdateServiceJob]]:
        seen: set[tuple[str, str]] = set()
        count = 0
        for wave in waves:
            for job in wave:
                key = (job.cluster.rsplit("/", 1)[-1], job.service.rsplit("/", 1)[-1])
                if key in seen:
                    raise ValueError(
                        f"service {key[1]!r} of cluster {key[0]!r} is in the release twice; "
                        "give each service once, with all its images"
                    )
                seen.add(key)
                count += 1
        if count > MAX_RELEASE_SERVICES:
            raise ValueError(f"at most {MAX_RELEASE_SERVICES} services in one release")
        return waves

    def deployment_ids(self, release_id: str) -> list[list[str]]:
        """The ids the release's deployments get, wave by wave."""
        ids: list[list[str]] = []
        n = 0
        for wave in self.waves:
            ids.append([f"{release_id}-{n + i:04d}" for i in range(len(wave))])
            n += len(wave)
        return ids


def _wave_gate(wave: int, raw: Any) -> Gate:
    """The gate of wave ``wave`` as written; a ValueError names each bad field and its fix."""
    if isinstance(raw, Gate):
        return raw
    if not isinstance(raw, dict):
        raise ValueError(  # noqa: TRY004 - pydantic reports a ValueError, not a TypeError
            f"waves[{wave}].gate: give a mapping (name, a source, success, ...)"
        )
    try:
        return load_gate(raw)
    except ValidationError as exc:
        # Without the input: a gate's URL may hold credentials.
        lines = [
            f"waves[{wave}].gate: {line[5:]}"
            if line.startswith("job: ")
            else f"waves[{wave}].gate.{line}"
            for line in describe_validation_error(exc)
        ]
        raise ValueError("; ".join(lines)) from None


class ReleaseState(StrEnum):
    """Where a release is in its life."""

    RUNNING = "running"  # a wave is deploying
    SUCCEEDED = "succeeded"  # every change is live: each deployment (or its carrier) succeeded
    FAILED = "failed"  # a deployment failed or was rolled back
    CANCELLED = "cancelled"  # stopped on request


RELEASE_TERMINAL = frozenset({ReleaseState.SUCCEEDED, ReleaseState.FAILED, ReleaseState.CANCELLED})

# Deployment states that count as done well within a release. A superseded deployment is not
# one of them: it takes the outcome of the newer deployment that carried its change, once that
# one has ended (the worker's advance), since only then is the change known to be live.
RELEASE_OK = frozenset({DeploymentState.SUCCEEDED})

# The release record's schema; a reader leaves records of a higher one to newer Conveyors.
# 2: a release with metric gates, pre-deploy tasks or bake gates. Conveyors that know only 1
# leave such a record alone rather than move it past a gate they cannot measure or a task they
# cannot wait for; a release with none of them stays at 1.
RELEASE_SCHEMA = 2
GATED_RELEASE_SCHEMA = 2


class WaveApproval(BaseModel):
    """A person's answer to a release waiting before a wave."""

    model_config = ConfigDict(extra="ignore")

    wave: int  # the wave (index) it answers for
    action: Literal["CONTINUE", "REJECT"]
    by: str
    at: float


GateState = Literal["measuring", "passed", "failed", "inconclusive"]


class GateReading(BaseModel):
    """One measurement of a wave's gate, as stored: a value, no data, or an error."""

    # +Inf is a value (a ratio over no traffic): kept as "Infinity", not turned into null.
    model_config = ConfigDict(extra="ignore", ser_json_inf_nan="strings")

    index: int  # its place among the gate's measurements (0: the first)
    at: float
    value: float | None = None
    error: str | None = None
    detail: str = ""

    def describe(self) -> str:
        """The reading for people: its value, 'no data' or 'error: ...'."""
        if self.error is not None:
            return f"error: {self.error}"
        if self.value is None:
            return f"no data ({self.detail})" if self.detail else "no data"
        return f"{self.value:g}" + (f" ({self.detail})" if self.detail else "")


class WaveGateRun(BaseModel):
    """A wave's gate being measured, or its verdict."""

    model_config = ConfigDict(extra="ignore")

    wave: int
    gate: str  # the gate's name
    state: GateState = "measuring"
    # Inconclusive: what the gate says to do (its on_inconclusive: pause, fail or pass).
    action: str | None = None
    measurements: list[GateReading] = Field(default_factory=list)
    started_at: float
    # When the next measurement is due (None once decided); the sweeper re-sends a measuring
    # message lost with a worker once this is overdue by the recovery grace.
    next_at: float | None = None
    reason: str | None = None
    decided_at: float | None = None


class GateRollback(BaseModel):
    """How one deployment of a wave whose gate failed (or was rejected) was rolled back."""

    model_config = ConfigDict(extra="ignore")

    of: str  # the wave's deployment
    service: str
    cluster: str
    # "deployment": an update-existing deployment back to ``to``; "cancel": the deployment was
    # still running (move_on_at) and was cancelled, which rolls it back; "none": nothing to do.
    how: Literal["deployment", "cancel", "none"]
    to: str | None = None  # the revision the service ran before the wave
    deployment: str | None = None  # the rollback deployment's id
    outcome: str | None = None  # how it ended (None: still running)
    note: str = ""


class ReleaseRecord(BaseModel):
    """Everything Conveyor knows about one release."""

    model_config = ConfigDict(extra="ignore")

    id: str
    schema_version: int = 1
    name: str = ""
    state: ReleaseState = ReleaseState.RUNNING
    fail_fast: bool = True
    max_failures: int | None = None  # see ReleaseJob.max_failures
    max_failure_percent: float | None = None
    move_on_at: str | None = None  # see ReleaseJob.move_on_at
    approve_before: list[int] = Field(default_factory=list)  # see ReleaseJob.approve_before
    approval_timeout_minutes: int = 1440
    # Since when the release waits for an approval of its next wave (None: it does not).
    awaiting_approval_since: float | None = None
    approvals: list[WaveApproval] = Field(default_factory=list)
    # Enqueued inside a freeze window on purpose: its waves start through freezes too.
    freeze_override: FreezeOverride | None = None
    # Why the next wave waits although the current one has passed (a freeze window), if so.
    held: str | None = None
    waves: list[list[str]]  # deployment ids, wave by wave
    jobs: dict[str, dict[str, Any]]  # deployment id -> its update job (created wave by wave)
    wave: int = 0  # the wave under way (index)
    outcomes: dict[str, str] = Field(default_factory=dict)  # deployment id -> final state
    # Deployments still running that reached ``move_on_at`` -> when the release saw it.
    reached: dict[str, float] = Field(default_factory=dict)
    # Deployments of the current wave not created yet: they wait until every pre-deploy task
    # of the wave passed (the worker's advance); those tasks' deployments -> when seen passed.
    held_back: list[str] = Field(default_factory=list)
    tasks_passed: dict[str, float] = Field(default_factory=dict)
    # Deployments that never started, and why (the pre-deploy task of their wave failed).
    not_started: dict[str, str] = Field(default_factory=dict)
    # The first pre-deploy task that did not pass: the release stops, whatever its fail_fast.
    pre_deploy_failed: str | None = None
    reason: str | None = None
    # The gate measured after each wave (the gate as JSON; None: none), and its runs.
    gates: list[dict[str, Any] | None] = Field(default_factory=list)
    gate_runs: list[WaveGateRun] = Field(default_factory=list)
    # Set (to the gate's reason) while the wave's deployments are rolled back after its gate
    # failed or was rejected; the release fails once every rollback has ended.
    rolling_back: str | None = None
    rollbacks: list[GateRollback] = Field(default_factory=list)
    cancel_requested_at: float | None = None
    created_at: float
    updated_at: float
    finished_at: float | None = None

    @model_validator(mode="after")
    def _wave_exists(self) -> ReleaseRecord:
        """A record whose current wave is not one of its waves cannot move (damaged)."""
        if not 0 <= self.wave < len(self.waves):
            raise ValueError(f"wave {self.wave} is not one of the release's {len(self.waves)}")
        return self

    @property
    def terminal(self) -> bool:
        """True once the release has a final state."""
        return self.state in RELEASE_TERMINAL

    def gate_of(self, wave: int) -> dict[str, Any] | None:
        """The gate (as JSON) measured after ``wave`` (None: none)."""
        return self.gates[wave] if wave < len(self.gates) else None

    def gate_run(self, wave: int) -> WaveGateRun | None:
        """The run of the gate of ``wave`` (None: not started)."""
        return next((run for run in self.gate_runs if run.wave == wave), None)

    def approval_of(self, wave: int) -> WaveApproval | None:
        """The answer given for ``wave`` (None: none yet)."""
        return next((a for a in self.approvals if a.wave == wave), None)

    @property
    def awaiting_wave(self) -> int | None:
        """The wave (index) the release waits to be approved for (None: it does not wait).

        After an inconclusive gate that pauses, the answer is recorded for the wave after the
        gated one (one past the last wave when the last wave's gate paused).
        """
        if self.terminal or self.awaiting_approval_since is None:
            return None
        return self.wave + 1

    def budget_spent(self, failures: int) -> str | None:
        """Why ``failures`` failed deployments spend the release's failure budget (None: they
        do not, or it has none)."""
        total = sum(len(ids) for ids in self.waves)
        if self.max_failures is not None and failures > self.max_failures:
            return f"failure budget spent: {failures} failed, at most {self.max_failures} allowed"
        if self.max_failure_percent is not None and failures * 100 > (
            self.max_failure_percent * total
        ):
            return (
                f"failure budget spent: {failures} of {total} failed, over the "
                f"{self.max_failure_percent:g}% allowed"
            )
        return None

    def summary(self) -> dict[str, int]:
        """How many deployments ended in each state, plus those not started."""
        counts: dict[str, int] = {}
        for ids in self.waves:
            for i in ids:
                state = self.outcomes.get(i, "pending")
                counts[state] = counts.get(state, 0) + 1
        return counts
