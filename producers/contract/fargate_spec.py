"""The create-Fargate job: a Fargate service and its task definition as one CloudFormation stack.

Read from a spec file (YAML or JSON) with :func:`load_spec`. Strict and immutable like every
job: unknown keys are refused, each bad field is reported under its own name with the fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from producers.contract import patterns
from producers.contract.enums import JobKind
from producers.contract.errors import ProducerError
from producers.contract.images import ImageReferenceError, parse_image
from producers.contract.strategy import (
    CLOUDFORMATION_MAX_MINUTES,
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
    cloudformation_minutes,
)
from producers.contract.versions import VersionRuleError, split_rule_image

_NAME = patterns.ECS_NAME
_ARN = patterns.ARN
_ROLE_ARN = patterns.ROLE_ARN
_SECRET_REF = patterns.SECRET_REF
_ENV_NAME = patterns.ENV_NAME
SUBNET_ID = patterns.SUBNET_ID
SECURITY_GROUP_ID = patterns.SECURITY_GROUP_ID
_RESOURCE_NAME = patterns.RESOURCE_NAME
_TARGET_GROUP_NAME = patterns.TARGET_GROUP_NAME

# Fargate's allowed task sizes: cpu units -> allowed memory (MiB).
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}
MAX_LOAD_BALANCERS = 5

# Built on first use: the job-kind table imports this module wherever a job is enqueued, and
# `conveyor update --no-wait` would otherwise build these ten validators on every call.
_STRICT = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def logical_id(name: str) -> str:
    """The CloudFormation logical id part for a container name (letters and digits only).

    ``web-app`` and ``web_app`` both give ``WebApp``: specs whose container names collide this
    way are refused (see :class:`FargateServiceJob`), so no image parameter is shared.
    """
    parts = "".join(c if c.isascii() and c.isalnum() else " " for c in name).split()
    return "".join(part.capitalize() for part in parts) or "Container"


class PortMapping(BaseModel):
    """A container port (awsvpc: the host port is the container port)."""

    model_config = _STRICT
    container_port: Annotated[int, Field(ge=1, le=65535)]
    protocol: Literal["tcp", "udp"] = "tcp"
    name: str | None = None


class HealthCheck(BaseModel):
    """A container health check, as ECS runs it."""

    model_config = _STRICT
    command: Annotated[list[str], Field(min_length=1)]
    interval: Annotated[int, Field(ge=5, le=300)] = 30
    timeout: Annotated[int, Field(ge=2, le=120)] = 5
    retries: Annotated[int, Field(ge=1, le=10)] = 3
    start_period: Annotated[int, Field(ge=0, le=300)] = 0

    @field_validator("command")
    @classmethod
    def _form(cls, value: list[str]) -> list[str]:
        if value[0] not in ("CMD", "CMD-SHELL", "NONE"):
            raise ValueError(
                "must start with CMD or CMD-SHELL, e.g. ['CMD-SHELL', 'curl -f localhost']"
            )
        return value


class LogConfiguration(BaseModel):
    """A log driver with its options (default: awslogs to the stack's log group)."""

    model_config = _STRICT
    log_driver: str
    options: dict[str, str] = Field(default_factory=dict)


class Container(BaseModel):
    """One container of the task."""

    model_config = _STRICT
    name: Annotated[str, Field(min_length=1, max_length=255)]
    # A reference, or 'REPOSITORY:{RULE}' until the version rule is resolved at enqueue.
    image: Annotated[str, Field(min_length=1, max_length=1024)]
    # Kept once a version rule was resolved: the rule, and the digest the tag had then.
    rule: Annotated[str | None, Field(max_length=512)] = None
    digest: Annotated[str | None, Field(max_length=200)] = None
    cpu: Annotated[int, Field(ge=0, le=16384)] = 0
    memory: Annotated[int | None, Field(ge=6)] = None
    memory_reservation: Annotated[int | None, Field(ge=6)] = None
    essential: bool = True
    port_mappings: tuple[PortMapping, ...] = ()
    environment: dict[str, str] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(
        default_factory=dict, description="Variable name -> SSM parameter or Secrets Manager ARN"
    )
    health_check: HealthCheck | None = None
    log_configuration: LogConfiguration | None = None
    command: tuple[str, ...] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid container name: letters, digits, '-', '_'")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        try:
            if split_rule_image(value) is not None:
                return value
            parse_image(value)
        except (ImageReferenceError, VersionRuleError) as exc:
            raise ValueError(str(exc)) from exc
        return value

    @property
    def unresolved_rule(self) -> bool:
        """Whether the image is still a repository plus a version rule."""
        return split_rule_image(self.image) is not None

    @field_validator("environment", "secrets")
    @classmethod
    def _variable_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
        return value

    @field_validator("secrets")
    @classmethod
    def _secret_refs(cls, value: dict[str, str]) -> dict[str, str]:
        for name, ref in value.items():
            if not _SECRET_REF.fullmatch(ref):
                # Do not echo the value: it may be a secret pasted where a reference belongs.
                raise ValueError(
                    f"secret {name!r} must be an SSM parameter or Secrets Manager ARN "
                    "(arn:aws:ssm:REGION:ACCOUNT:parameter/NAME); put the secret itself there"
                )
        return value


class Network(BaseModel):
    """awsvpc networking of the service.

    Subnets are ids (``subnet-...``) or Name tags; security groups are ids (``sg-...``) or group
    names. Names are resolved to ids, and everything checked to exist, before any stack call.
    """

    model_config = _STRICT
    subnets: Annotated[tuple[str, ...], Field(min_length=1, max_length=16)]
    security_groups: Annotated[tuple[str, ...], Field(min_length=1, max_length=5)]
    assign_public_ip: bool = False

    @field_validator("subnets")
    @classmethod
    def _subnets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for subnet in value:
            if not (SUBNET_ID.fullmatch(subnet) or _RESOURCE_NAME.fullmatch(subnet)):
                raise ValueError(
                    f"{subnet!r} is neither a subnet id (subnet-0123abcd...) nor a name"
                )
        return value

    @field_validator("security_groups")
    @classmethod
    def _groups(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for group in value:
            if not (SECURITY_GROUP_ID.fullmatch(group) or _RESOURCE_NAME.fullmatch(group)):
                raise ValueError(f"{group!r} is neither a security group id (sg-...) nor a name")
        return value


class LoadBalancerLink(BaseModel):
    """A link from a container port to an existing target group (ARN or name).

    Blue/green, linear and canary deployments shift traffic between ``target_group`` and an
    alternate target group, through the listener rules given (ECS's ``advancedConfiguration``).
    These are ARNs, put into the template as they are: both target groups must sit on the
    listener rules, or ECS rolls the deployment back.
    """

    model_config = _STRICT
    target_group: Annotated[str, Field(min_length=1)]
    container_name: str
    container_port: Annotated[int, Field(ge=1, le=65535)]
    alternate_target_group: str | None = None
    # A listener rule's ARN (Application Load Balancer) or a listener's (Network Load Balancer).
    production_listener_rule: str | None = None
    test_listener_rule: str | None = None
    # The role ECS assumes to move traffic between the target groups.
    role_arn: str | None = None

    @field_validator("target_group")
    @classmethod
    def _target_group(cls, value: str) -> str:
        if _ARN.fullmatch(value) and ":targetgroup/" in value:
            return value
        if _TARGET_GROUP_NAME.fullmatch(value):
            return value
        raise ValueError(f"{value!r} is neither a target group ARN nor a target group name")

    @field_validator("alternate_target_group")
    @classmethod
    def _alternate(cls, value: str | None) -> str | None:
        if value is None or (_ARN.fullmatch(value) and ":targetgroup/" in value):
            return value
        raise ValueError(
            f"{value!r} is not a target group ARN "
            "(arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID); give its ARN"
        )

    @field_validator("production_listener_rule", "test_listener_rule")
    @classmethod
    def _rule(cls, value: str | None) -> str | None:
        if value is None or (
            _ARN.fullmatch(value) and (":listener-rule/" in value or ":listener/" in value)
        ):
            return value
        raise ValueError(
            f"{value!r} is neither a listener rule ARN nor a listener ARN; give the ARN of the "
            "rule (Application Load Balancer) or listener (Network Load Balancer)"
        )

    @field_validator("role_arn")
    @classmethod
    def _role(cls, value: str | None) -> str | None:
        if value is not None and not _ROLE_ARN.fullmatch(value):
            raise ValueError(f"{value!r} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")
        return value

    @property
    def advanced(self) -> bool:
        """Whether the link gives any blue/green setting."""
        return any(
            v is not None
            for v in (
                self.alternate_target_group,
                self.production_listener_rule,
                self.test_listener_rule,
                self.role_arn,
            )
        )


class CircuitBreaker(BaseModel):
    """ECS's deployment circuit breaker; on with rollback unless the spec says otherwise."""

    model_config = _STRICT
    enable: bool = True
    rollback: bool = True
    # thresholdConfiguration: failed tasks (count) or percent of the desired count (the percent
    # types) at which the breaker trips; ECS's own when None.
    threshold_type: ThresholdType | None = None
    threshold: int | None = None

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, value: int | None) -> int | None:
        return None if value is None else check_threshold(value)

    @model_validator(mode="after")
    def _threshold_with_breaker(self) -> CircuitBreaker:
        if self.threshold_type is not None and self.threshold is None:
            raise ValueError(
                "threshold_type: ECS needs the threshold's value as well; give threshold, or "
                "drop threshold_type"
            )
        if self.threshold is not None and not self.enable:
            raise ValueError(
                "threshold: the breaker is off (enable: false); turn it on, or drop threshold"
            )
        return self


class Deployment(BaseModel):
    """How ECS deploys a new revision: rolling (the default) or ECS-native blue/green, linear
    or canary, with bake times and alarms. AWS's bounds: producers.contract.strategy."""

    model_config = _STRICT
    minimum_healthy_percent: Annotated[int, Field(ge=0, le=100)] = 100
    maximum_percent: Annotated[int, Field(ge=100, le=200)] = 200
    circuit_breaker: CircuitBreaker = Field(default_factory=CircuitBreaker)
    # None: left out of the template (ECS's ROLLING).
    strategy: Strategy | None = None
    bake_minutes: int | None = None
    canary_percent: float | None = None
    canary_bake_minutes: int | None = None
    linear_step_percent: float | None = None
    linear_step_bake_minutes: int | None = None
    # CloudWatch alarms that fail a deployment and roll it back.
    alarms: tuple[str, ...] = ()

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

    @field_validator("alarms")
    @classmethod
    def _alarms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_alarm_names(value)

    @model_validator(mode="after")
    def _together(self) -> Deployment:
        check_together({name: getattr(self, name, None) for name in STRATEGY_FIELDS})
        minutes = cloudformation_minutes(
            self.strategy,
            bake=self.bake_minutes,
            canary_bake=self.canary_bake_minutes,
            step_percent=self.linear_step_percent,
            step_bake=self.linear_step_bake_minutes,
        )
        if minutes is not None and minutes > CLOUDFORMATION_MAX_MINUTES:
            how = (
                "bake_minutes + canary_bake_minutes"
                if self.strategy == "canary"
                else "bake_minutes + linear_step_bake_minutes x steps"
            )
            raise ValueError(
                f"strategy: CloudFormation estimates this {self.strategy} deployment at "
                f"{minutes} minutes ({how}, with its defaults of 15 for bake_minutes, 10 for "
                "canary_bake_minutes, 6 for linear_step_bake_minutes and 10 % per step), and "
                f"refuses more than {CLOUDFORMATION_MAX_MINUTES} (33 hours); shorten the bake "
                "times or take larger steps"
            )
        return self


class RuntimePlatform(BaseModel):
    """CPU architecture and OS family of the task."""

    model_config = _STRICT
    cpu_architecture: Literal["X86_64", "ARM64"] = "X86_64"
    operating_system_family: Literal["LINUX"] = "LINUX"


class FargateServiceJob(BaseModel):
    """Create, or update, a Fargate service and its task definition as one stack."""

    model_config = _STRICT

    kind: Literal[JobKind.CREATE_FARGATE] = JobKind.CREATE_FARGATE
    schema_version: Literal[1] = 1
    cluster: Annotated[str, Field(min_length=1, max_length=255)]
    service: Annotated[str, Field(min_length=1, max_length=255)]
    containers: Annotated[tuple[Container, ...], Field(min_length=1, max_length=10)]
    cpu: int
    memory: int
    execution_role_arn: str | None = None
    task_role_arn: str | None = None
    runtime_platform: RuntimePlatform = Field(default_factory=RuntimePlatform)
    desired_count: Annotated[int, Field(ge=0, le=5000)] = 1
    network: Network
    load_balancers: Annotated[
        tuple[LoadBalancerLink, ...], Field(max_length=MAX_LOAD_BALANCERS)
    ] = ()
    health_check_grace_period_seconds: Annotated[int, Field(ge=0, le=2147483647)] = 60
    deployment: Deployment = Field(default_factory=Deployment)
    tags: dict[str, str] = Field(default_factory=dict)
    wait: bool = True
    timeout_seconds: Annotated[int, Field(ge=60, le=24 * 3600)] = 1800

    @field_validator("cluster", "service")
    @classmethod
    def _names(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid name: letters, digits, '-', '_'")
        return value

    @field_validator("execution_role_arn", "task_role_arn")
    @classmethod
    def _roles(cls, value: str | None) -> str | None:
        if value is not None and not _ROLE_ARN.fullmatch(value):
            raise ValueError(f"{value!r} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 40:
            raise ValueError("at most 40 tags (Conveyor adds its own, AWS allows 50)")
        for key in value:
            if key.startswith(("aws:", "conveyor:")):
                raise ValueError(f"tag key {key!r} uses a reserved prefix (aws:, conveyor:)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FargateServiceJob:
        allowed = FARGATE_SIZES.get(self.cpu)
        if allowed is None:
            raise ValueError(
                f"cpu {self.cpu} is not a Fargate size; use one of {sorted(FARGATE_SIZES)}"
            )
        if self.memory not in allowed:
            raise ValueError(
                f"memory {self.memory} does not fit cpu {self.cpu} on Fargate; allowed: "
                f"{allowed[0]}-{allowed[-1]} MiB ({', '.join(map(str, allowed[:8]))}"
                f"{', ...' if len(allowed) > 8 else ''})"
            )
        names = [c.name for c in self.containers]
        if len(set(names)) != len(names):
            raise ValueError("containers: names must be unique")
        by_logical: dict[str, str] = {}
        for name in names:
            other = by_logical.setdefault(logical_id(name), name)
            if other != name:
                raise ValueError(
                    f"containers: {other!r} and {name!r} map to the same template parameter "
                    f"Image{logical_id(name)} (only letters and digits count); rename one"
                )
        if not any(c.essential for c in self.containers):
            raise ValueError("containers: at least one container must be essential")
        if sum(c.cpu for c in self.containers) > self.cpu:
            raise ValueError(f"containers: their cpu adds up to more than the task's {self.cpu}")
        for c in self.containers:
            if c.memory is not None and c.memory > self.memory:
                raise ValueError(
                    f"container {c.name!r}: memory {c.memory} exceeds the task's {self.memory}"
                )
        ports = {c.name: {p.container_port for p in c.port_mappings} for c in self.containers}
        for i, link in enumerate(self.load_balancers):
            if link.container_name not in ports:
                raise ValueError(
                    f"load_balancers[{i}]: container {link.container_name!r} is not in the spec; "
                    f"containers: {', '.join(names)}"
                )
            if link.container_port not in ports[link.container_name]:
                known = ", ".join(map(str, sorted(ports[link.container_name]))) or "none"
                raise ValueError(
                    f"load_balancers[{i}]: container {link.container_name!r} has no port "
                    f"{link.container_port} in port_mappings (it has: {known}); add it there"
                )
        self._strategy_links()
        if (
            self.containers
            and any(c.secrets or c.log_configuration is None for c in self.containers)
            and self.execution_role_arn is None
        ):
            raise ValueError(
                "execution_role_arn is required: secrets and awslogs need a task execution role"
            )
        return self

    def _strategy_links(self) -> None:
        """Blue/green settings on every link with a traffic-shifting strategy, none without."""
        strategy = self.deployment.strategy
        shifting = strategy in ("blue-green", "linear", "canary")
        for i, link in enumerate(self.load_balancers):
            if link.advanced and not shifting:
                raise ValueError(
                    f"load_balancers[{i}]: an alternate target group, listener rules and role "
                    "are for deployment.strategy blue-green, linear or canary; set the strategy, "
                    "or drop them"
                )
            if shifting and link.alternate_target_group is None:
                raise ValueError(
                    f"load_balancers[{i}]: deployment.strategy {strategy} moves traffic to an "
                    "alternate target group; give alternate_target_group (its ARN) and the "
                    "production_listener_rule that both target groups sit on"
                )
            if link.alternate_target_group == link.target_group:
                raise ValueError(
                    f"load_balancers[{i}]: alternate_target_group is the target group itself; "
                    "give a second target group on the same listener rule"
                )


def redacted(job: FargateServiceJob) -> dict[str, Any]:
    """The job as JSON with environment values and secret references masked, for records."""
    data = job.model_dump(mode="json")
    for container in data["containers"]:
        container["environment"] = dict.fromkeys(container.get("environment", {}), "***")
        container["secrets"] = dict.fromkeys(container.get("secrets", {}), "***")
    return data


class SpecError(ProducerError, ValueError):
    """Raised when a spec file cannot be read or parsed; the message names the file and line."""


def load_spec(path: Path) -> dict[str, Any]:
    """Read a YAML or JSON spec file into a mapping (validation is the model's job)."""
    # Only spec files need a YAML parser; every enqueue imports this module (the kinds table).
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read spec {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError(
            f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the spec must be a mapping of fields, not {type(data).__name__}")
    return data
