"""The typed job contract between release tooling and Conveyor's workers.

Importable with pydantic alone, so producers need neither Celery nor AWS SDKs. Jobs are strict,
immutable and JSON-only; the worker validates every payload again before it acts on it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from producers.contract import patterns
from producers.contract.enums import JobKind
from producers.contract.gates import Gate
from producers.contract.images import ImageReferenceError, ImageSpec, parse_image_spec
from producers.contract.strategy import (
    MIN_CANARY_PERCENT,
    MIN_LINEAR_STEP_PERCENT,
    STRATEGY_FIELDS,
    Strategy,
    ThresholdType,
    check_alarm_names,
    check_minutes,
    check_percent,
    check_threshold,
    check_together,
)
from producers.contract.versions import VersionRuleError, split_rule_image

SCHEMA_VERSION = 1
# ECS names: up to 255 letters, digits, hyphens and underscores.
_ECS_NAME = patterns.ECS_NAME
_ARN = patterns.ARN
_ROLE_ARN = patterns.ROLE_ARN
MIN_TIMEOUT_SECONDS = 30
MAX_TIMEOUT_SECONDS = 24 * 3600
# The timeout of a job that gives none, for a rolling update. A service that ECS deploys
# blue/green, linear or canary gets its bake times and lifecycle hooks on top (the worker
# reads them from the service: worker.domain.strategies).
DEFAULT_TIMEOUT_SECONDS = 1800
# The strategies whose deployments bake with production traffic partly shifted: the canary's
# bake after its first shift, each linear step's bake. A bake gate is measured there only.
BAKE_GATE_STRATEGIES: tuple[Strategy, ...] = ("canary", "linear")


def _check_ecs_name(value: str, what: str) -> str:
    if _ECS_NAME.fullmatch(value) or _ARN.fullmatch(value):
        return value
    raise ValueError(
        f"{what} {value!r} is not a valid name: use 1-255 letters, digits, '-' or '_', or an ARN"
    )


def _check_container_name(value: str) -> str:
    if not _ECS_NAME.fullmatch(value):
        raise ValueError(f"container name {value!r} is not valid: use letters, digits, '-' or '_'")
    return value


class ImageUpdate(BaseModel):
    """One container and the image it should run."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    container: Annotated[str, Field(min_length=1, max_length=255)]
    # A reference, ':TAG', '@DIGEST', or 'REPOSITORY:{RULE}' until the rule is resolved.
    image: Annotated[str, Field(min_length=1, max_length=1024)]
    # Kept once a version rule was resolved: the rule, and the digest the tag had then.
    rule: Annotated[str | None, Field(max_length=512)] = None
    digest: Annotated[str | None, Field(max_length=200)] = None

    @property
    def unresolved_rule(self) -> bool:
        """Whether the image is still a repository plus a version rule."""
        return split_rule_image(self.image) is not None

    @field_validator("container")
    @classmethod
    def _container_name(cls, value: str) -> str:
        return _check_container_name(value)

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        try:
            if split_rule_image(value) is not None:
                return value
            parse_image_spec(value)
        except (ImageReferenceError, VersionRuleError) as exc:
            raise ValueError(str(exc)) from exc
        return value

    @property
    def spec(self) -> ImageSpec:
        """The parsed image spec (full reference, ``:tag`` or ``@digest``)."""
        return parse_image_spec(self.image)

    @classmethod
    def parse(cls, text: str) -> ImageUpdate:
        """Parse ``CONTAINER=IMAGE`` as given on the command line."""
        container, sep, image = text.partition("=")
        if not sep or not container or not image:
            raise ValueError(
                f"{text!r} is not CONTAINER=IMAGE; e.g. web=repo/web:1.4.2 or web=:1.4.2"
            )
        return cls(container=container.strip(), image=image.strip())


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
MASK = "***"


class ContainerSettings(BaseModel):
    """Environment variables and secrets of one container, set with a new revision.

    ``append`` (the default) merges by name into what the container has; ``replace`` applies
    to each kind given: a non-empty ``environment`` becomes the container's whole environment,
    non-empty ``secrets`` its whole secret list, and a kind not given is left as it is. Values
    are secrets as far as Conveyor is concerned: records, logs, plans and errors show names only.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    container: Annotated[str, Field(min_length=1, max_length=255)]
    mode: Literal["append", "replace"] = "append"
    environment: Annotated[dict[str, str], Field(max_length=1000)] = Field(default_factory=dict)
    # Secret name -> valueFrom (a Secrets Manager ARN or an SSM parameter name or ARN).
    secrets: Annotated[dict[str, str], Field(max_length=1000)] = Field(default_factory=dict)

    @field_validator("container")
    @classmethod
    def _container_name(cls, value: str) -> str:
        return _check_container_name(value)

    @field_validator("environment", "secrets")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(name for name in value if not _ENV_NAME.fullmatch(name))
        if bad:
            # Names only: a value could be a secret.
            raise ValueError(
                f"{', '.join(repr(b) for b in bad[:5])}: a name is letters, digits and '_', "
                "not starting with a digit"
            )
        if any(len(v) > 32_768 for v in value.values()):
            raise ValueError("a value is longer than 32768 characters")
        return value

    @model_validator(mode="after")
    def _replace_has_something(self) -> ContainerSettings:
        if self.mode == "replace" and not self.environment and not self.secrets:
            # Replace leaves a kind that is not given as it is, so this would change nothing;
            # an empty environment file under --replace-env is the likely cause.
            raise ValueError(
                f"settings: container {self.container!r}: mode replace with no environment "
                "variables or secrets changes nothing (replace applies to each kind given); "
                "give the variables to keep, or use mode append"
            )
        return self

    @model_validator(mode="after")
    def _secret_references(self) -> ContainerSettings:
        empty = sorted(name for name, ref in self.secrets.items() if not ref.strip())
        if empty:
            raise ValueError(
                f"secrets: {', '.join(empty)}: give a Secrets Manager or SSM reference"
            )
        return self


# A pre-deploy task's command: at most this many arguments of at most this many characters
# (ECS's container override is bounded by RunTask's 8 KiB of overrides in all).
MAX_COMMAND_ARGS = 100
MAX_COMMAND_CHARS = 8192
DEFAULT_PRE_DEPLOY_TIMEOUT_SECONDS = 600
MAX_PRE_DEPLOY_TIMEOUT_SECONDS = 6 * 3600


class PreDeployTask(BaseModel):
    """A one-off task (a database migration, say) run on the new revision before the service
    changes: the deployment goes on only when ``container`` exits 0.

    ``command`` overrides the container's command for this task (None: the revision's own).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    container: Annotated[str, Field(min_length=1, max_length=255)]
    command: Annotated[tuple[str, ...] | None, Field(min_length=1, max_length=MAX_COMMAND_ARGS)] = (
        None
    )
    timeout_seconds: Annotated[
        int, Field(ge=MIN_TIMEOUT_SECONDS, le=MAX_PRE_DEPLOY_TIMEOUT_SECONDS)
    ] = DEFAULT_PRE_DEPLOY_TIMEOUT_SECONDS

    @field_validator("container")
    @classmethod
    def _container_name(cls, value: str) -> str:
        return _check_container_name(value)

    @field_validator("command")
    @classmethod
    def _command(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and sum(len(a) for a in value) > MAX_COMMAND_CHARS:
            raise ValueError(
                f"the command is longer than {MAX_COMMAND_CHARS} characters in all: run a script "
                "that the image holds instead"
            )
        if value is not None and not value[0].strip():
            raise ValueError("the command's first argument (the program) is empty")
        return value


class UpdateServiceJob(BaseModel):
    """Put new images into named containers of an existing ECS service.

    The worker registers a new revision of ``family`` (default: the family of the service's
    current task definition), based on the family's latest ACTIVE revision with only these
    images changed, points the service at it, and follows the rollout to a verdict.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    kind: Literal[JobKind.UPDATE_EXISTING] = JobKind.UPDATE_EXISTING
    schema_version: Literal[1] = 1
    cluster: Annotated[str, Field(min_length=1, max_length=2048)]
    service: Annotated[str, Field(min_length=1, max_length=2048)]
    # No images with force_new_deployment: a restart (new tasks on the revision the service
    # runs, no new revision).
    images: Annotated[tuple[ImageUpdate, ...], Field(max_length=100)]
    family: Annotated[str | None, Field(max_length=255)] = None
    wait: bool = True
    # None: the default for the service's deployment strategy (DEFAULT_TIMEOUT_SECONDS for a
    # rolling update). A timeout given is kept as given, and a worker refuses it before changing
    # anything when it is shorter than the service's strategy takes at the least.
    timeout_seconds: (
        Annotated[int, Field(ge=MIN_TIMEOUT_SECONDS, le=MAX_TIMEOUT_SECONDS)] | None
    ) = None
    rollback: bool = True
    force_new_deployment: bool = False
    role_arn: str | None = None
    # Service options, sent with the same UpdateService (None: leave the service's own).
    desired_count: Annotated[int | None, Field(ge=0, le=10_000)] = None
    minimum_healthy_percent: Annotated[int | None, Field(ge=0, le=100)] = None
    maximum_percent: Annotated[int | None, Field(ge=100, le=200)] = None
    # Turn ECS's deployment circuit breaker (with rollback) on for this and later rollouts,
    # when the service has it off; Conveyor's own timeout and rollback stay the fallback.
    circuit_breaker: bool = False
    # ECS's deployment strategy and its settings, sent with the same UpdateService on top of
    # the service's own configuration (None or empty: the service's own). AWS's bounds and the
    # rules between them: producers.contract.strategy.
    strategy: Strategy | None = None
    # bakeTimeInMinutes: how long ECS keeps the old revision after the new one took everything.
    bake_minutes: int | None = None
    canary_percent: float | None = None
    canary_bake_minutes: int | None = None
    linear_step_percent: float | None = None
    linear_step_bake_minutes: int | None = None
    # CloudWatch alarms that fail the deployment and roll it back, added to the service's own.
    alarms: tuple[str, ...] = ()
    # The breaker's thresholdConfiguration (needs circuit_breaker); the type defaults to ECS's.
    circuit_breaker_threshold_type: ThresholdType | None = None
    circuit_breaker_threshold: int | None = None
    # After the deployment, deregister the family's ACTIVE revisions past the newest N that no
    # service uses (off when None).
    keep_revisions: Annotated[int | None, Field(ge=1, le=1000)] = None
    # Environment variables and secrets of named containers, set in the new revision.
    settings: Annotated[tuple[ContainerSettings, ...], Field(max_length=100)] = ()
    # What the new revision is built from: "family", the family's latest ACTIVE revision that
    # no failed Conveyor deployment discarded; "service", the revision the service runs.
    base: Literal["family", "service"] = "family"
    # Build from exactly this revision (``family:revision`` or its ARN), as a plan file that
    # was reviewed names it (`conveyor release --plan`); None: choose by ``base``.
    base_revision: Annotated[
        str | None, Field(max_length=1600, pattern=r"^[A-Za-z0-9_:/.\-]+:[0-9]{1,9}$")
    ] = None
    # A metric gate measured while a CANARY or LINEAR deployment bakes with production traffic
    # partly shifted; failed: ECS is asked to stop and roll back (docs/gates.md, "Bake gates").
    bake_gate: Gate | None = None
    # A one-off task run on the new revision before UpdateService; its container's exit code
    # gates the deployment (None: none).
    pre_deploy: PreDeployTask | None = None

    def service_options(self) -> dict[str, Any]:
        """The options this job sets on the service, by their job field name (empty: none)."""
        names = ("desired_count", "minimum_healthy_percent", "maximum_percent")
        options: dict[str, Any] = {
            n: getattr(self, n) for n in names if getattr(self, n) is not None
        }
        if self.circuit_breaker:
            options["circuit_breaker"] = True
        for name in STRATEGY_FIELDS:
            value = getattr(self, name)
            if value is not None and value != ():
                options[name] = value
        return options

    @property
    def restart(self) -> bool:
        """A restart: new tasks on the revision the service runs, no new revision."""
        return not self.images and not self.settings

    def containers(self) -> list[str]:
        """Every container the job changes (images or settings), in order, once."""
        names = [i.container for i in self.images] + [s.container for s in self.settings]
        return list(dict.fromkeys(names))

    def redacted(self) -> dict[str, Any]:
        """The job as JSON with environment values and secret references masked, for records."""
        data = self.model_dump(mode="json")
        for entry in data.get("settings", []):
            entry["environment"] = dict.fromkeys(entry.get("environment", {}), MASK)
            entry["secrets"] = dict.fromkeys(entry.get("secrets", {}), MASK)
        return data

    @model_validator(mode="before")
    @classmethod
    def _restart_has_nothing_to_roll_back_to(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and not data.get("images")
            and not data.get("settings")
            and data.get("force_new_deployment")
        ):
            # The previous revision is the one restarted: rolling back would restart it again.
            return {**data, "rollback": False}
        return data

    @model_validator(mode="after")
    def _something_to_do(self) -> UpdateServiceJob:
        if not self.images and not self.settings and not self.force_new_deployment:
            raise ValueError(
                "images: give at least one container image (or environment/secrets to set), or "
                "force_new_deployment for a restart (`conveyor restart`)"
            )
        if self.restart and self.family is not None:
            raise ValueError("family: a restart keeps the revision the service runs; drop family")
        if self.restart and self.pre_deploy is not None:
            raise ValueError(
                "pre_deploy: a restart registers no new revision to run the task on; give the "
                "images (or settings) of the new revision too"
            )
        if self.base_revision is not None and (self.base == "service" or self.restart):
            raise ValueError(
                "base_revision: a pinned base revision is for new revisions built from the "
                "family; drop it, or drop base 'service' (a restart registers nothing)"
            )
        if self.base == "service" and self.family is not None:
            raise ValueError(
                "family: base 'service' builds from the revision the service runs, which names "
                "its own family; drop family or use base 'family'"
            )
        seen = [s.container for s in self.settings]
        twice = sorted({c for c in seen if seen.count(c) > 1})
        if twice:
            raise ValueError(
                f"settings: container {twice[0]!r} is given twice; merge its environment and "
                "secrets into one entry"
            )
        return self

    @field_validator("bake_minutes", "canary_bake_minutes", "linear_step_bake_minutes")
    @classmethod
    def _minutes(cls, value: int | None) -> int | None:
        return None if value is None else check_minutes(value)

    @field_validator("canary_percent")
    @classmethod
    def _canary_percent(cls, value: float | None) -> float | None:
        return None if value is None else check_percent(value, MIN_CANARY_PERCENT)

    @field_validator("linear_step_percent")
    @classmethod
    def _linear_step_percent(cls, value: float | None) -> float | None:
        return None if value is None else check_percent(value, MIN_LINEAR_STEP_PERCENT)

    @field_validator("circuit_breaker_threshold")
    @classmethod
    def _threshold(cls, value: int | None) -> int | None:
        return None if value is None else check_threshold(value)

    @field_validator("alarms")
    @classmethod
    def _alarms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_alarm_names(value)

    @model_validator(mode="after")
    def _strategy_options(self) -> UpdateServiceJob:
        """Options of a strategy only with that strategy, a threshold only with the breaker."""
        names = (*STRATEGY_FIELDS, "circuit_breaker")
        check_together({name: getattr(self, name) for name in names})
        return self

    @model_validator(mode="after")
    def _bake_gate(self) -> UpdateServiceJob:
        """A bake gate only where ECS bakes with traffic partly shifted, and never pausing."""
        gate = self.bake_gate
        if gate is None:
            return self
        if gate.on_inconclusive == "pause":
            # ECS ends a bake when its time is up: nothing Conveyor does holds it, so a pause
            # would be a promise the deployment cannot keep.
            raise ValueError(
                f"bake_gate: gate {gate.name} has on_inconclusive: pause (the default), but "
                "ECS ends the bake when its time is up and nothing can hold it there; write "
                "on_inconclusive: fail (roll back) or pass (let ECS go on)"
            )
        if self.strategy is not None and self.strategy not in BAKE_GATE_STRATEGIES:
            raise ValueError(
                f"bake_gate: a bake gate is measured while a canary or linear deployment bakes "
                f"with production traffic partly shifted, and a {self.strategy} deployment "
                "has no such bake; give strategy canary or linear, or drop bake_gate"
            )
        return self

    @model_validator(mode="after")
    def _percents(self) -> UpdateServiceJob:
        low, high = self.minimum_healthy_percent, self.maximum_percent
        if low is not None and high is not None and high <= low:
            raise ValueError(
                f"maximum_percent ({high}) must be above minimum_healthy_percent ({low}), or "
                "ECS can start no new task during the rollout"
            )
        return self

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, value: str) -> str:
        return _check_ecs_name(value, "cluster")

    @field_validator("service")
    @classmethod
    def _service(cls, value: str) -> str:
        return _check_ecs_name(value, "service")

    @field_validator("family")
    @classmethod
    def _family(cls, value: str | None) -> str | None:
        if value is not None and not _ECS_NAME.fullmatch(value):
            raise ValueError(
                f"family {value!r} is not valid: use 1-255 letters, digits, '-' or '_'"
            )
        return value

    @field_validator("role_arn")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        if value is not None and not _ROLE_ARN.fullmatch(value):
            raise ValueError(
                f"role_arn {value!r} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
            )
        return value

    @model_validator(mode="after")
    def _unique_containers(self) -> UpdateServiceJob:
        seen: set[str] = set()
        for update in self.images:
            if update.container in seen:
                raise ValueError(
                    f"container {update.container!r} is given twice; give one image per container"
                )
            seen.add(update.container)
        return self

    def image_specs(self) -> dict[str, ImageSpec]:
        """Container name to parsed image spec."""
        return {u.container: u.spec for u in self.images}


def describe_validation_error(error: ValidationError) -> list[str]:
    """Turn a pydantic ValidationError into one line per bad field: ``field: problem``."""
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in item["loc"]) or "job"
        message = str(item["msg"]).removeprefix("Value error, ")
        # A check across fields names the field it is about first ("images: ..."): report it
        # under that field rather than under the whole job.
        named = _NAMED_FIELD.match(message) if where == "job" else None
        if named:
            where, message = named.group(1), named.group(2)
        lines.append(f"{where}: {message}")
    return lines


# "images: ...", or a release entry named with its service: "waves[0][1] (web).images.app: ...".
_NAMED_FIELD = re.compile(
    r"^([a-z_]+|[a-z_]+(?:\[\d+\])+ \([^()\s]+\)(?:\.[\w-]+)*): (.+)$", re.DOTALL
)


def load_update_job(payload: Any) -> UpdateServiceJob:
    """Validate a JSON payload (a dict) as an UpdateServiceJob; raises ValidationError."""
    return UpdateServiceJob.model_validate(payload, strict=False)
