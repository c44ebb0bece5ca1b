"""Every setting Conveyor has, as a plain pydantic model, and a reader of them for the CLI.

:class:`config.settings.Settings` reads these fields from the environment with
pydantic-settings, which costs more to import than a short command takes to run. The
``conveyor`` command (and the client it builds) reads them with :func:`from_environ` instead,
the same way for these flat, scalar fields: ``CONVEYOR_`` plus the field's name in any case,
or the field's own variables (``AWS_REGION``), first match wins. tests/unit/test_settings_reader.py
keeps the two readers equal.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

ENV_PREFIX = "CONVEYOR_"


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


class SettingsFields(BaseModel):
    """Every setting Conveyor has, validated; see docs/configuration.md."""

    # As pydantic-settings configures Settings: unknown variables ignored, defaults validated.
    model_config = ConfigDict(extra="ignore", validate_default=True)

    redis_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        description="Broker and deployment records. `redis://:PASSWORD@host:port/db`, "
        "`rediss://` for TLS (certificates verified), or Redis Sentinel: "
        "`sentinel://:PASSWORD@host1:26379/db;sentinel://host2:26379` (the password is the "
        "primary's; see CONVEYOR_REDIS_SENTINEL_MASTER). A secret: printed only with the "
        "password masked.",
    )
    redis_sentinel_master: str = Field(
        default="mymaster",
        description="With sentinel:// URLs: the name the sentinels monitor the primary under.",
    )
    redis_ca_file: str | None = Field(
        default=None,
        description="CA bundle that signs the Redis server's certificate, for rediss:// URLs "
        "(default: the system's trust store).",
    )
    queue: str = Field(
        default="conveyor",
        pattern=r"^[A-Za-z0-9_.:-]{1,200}$",
        description="The Celery queue that producers send to and workers consume; every "
        "producer and worker of one fleet must use the same one.",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Serve Prometheus metrics on this port from each worker's main process "
        "(off when unset).",
    )
    metrics_address: str = Field(
        default="127.0.0.1",
        description="Address the metrics endpoint listens on (0.0.0.0 in a container).",
    )
    metrics_dir: str | None = Field(
        default=None,
        description="Directory for the pool's metric samples; emptied when the worker starts "
        "(default: a new temporary directory).",
    )
    dashboard_basic_auth: SecretStr | None = Field(
        default=None,
        description="`user:password[,user2:password2]` for `conveyor dashboard` (required; "
        "every password at least 12 characters, see docs/operations.md). A secret: never printed.",
    )
    dashboard_tls_cert: str | None = Field(
        default=None,
        description="PEM certificate (chain) file: `conveyor dashboard` serves HTTPS with it "
        "and CONVEYOR_DASHBOARD_TLS_KEY (as --tls-cert).",
    )
    dashboard_tls_key: str | None = Field(
        default=None,
        description="PEM private key file of CONVEYOR_DASHBOARD_TLS_CERT (as --tls-key).",
    )
    dashboard_insecure_http: bool = Field(
        default=False,
        description="Let `conveyor dashboard` serve plain HTTP on an address other than "
        "loopback (as --insecure-http): only behind a proxy that terminates TLS, since basic "
        "authentication sends the password with every request.",
    )
    poll_interval: float = Field(
        default=10.0, gt=0, description="Seconds between rollout polls (one DescribeServices each)."
    )
    recovery_interval: float = Field(
        default=10.0,
        gt=0,
        description="Seconds between recovery sweeps in each worker's main process.",
    )
    recovery_grace: float = Field(
        default=45.0,
        gt=0,
        description="Seconds a dispatched step may take to start and finish before it is "
        "presumed lost with its worker and dispatched again. Must exceed step_time_limit.",
    )
    step_time_limit: float = Field(
        default=30.0,
        gt=0,
        description="Soft time limit of one step (hard limit 15 s later). Steps are short; "
        "rollouts are waited for by rescheduling, not by sleeping.",
    )
    aws_call_timeout: float = Field(
        default=20.0, gt=0, description="Bound on one AWS call, botocore retries included."
    )
    aws_max_attempts: int = Field(
        default=8, ge=1, description="botocore attempts per call (standard mode, with jitter)."
    )
    max_step_attempts: int = Field(
        default=20,
        ge=1,
        description="Transient failures of one step in a row (after botocore's own retries) "
        "before the step gives up; a rollback starts with a budget of its own.",
    )
    record_ttl_days: int = Field(
        default=30,
        ge=1,
        description="Days deployment records (and the index of them) are kept in Redis.",
    )
    history_retention_days: int = Field(
        default=400,
        ge=1,
        le=3660,
        description="Days the audit trail (`conveyor history`: who enqueued what, approvals, "
        "cancels, verdicts) is kept in Redis; older entries are trimmed as new ones come.",
    )
    freeze_file: str | None = Field(
        default=None,
        description="A file of freeze windows (YAML or JSON; see docs/releases.md): an update, "
        "restart, release or Fargate apply enqueued inside one is refused (exit 2) unless it "
        "overrides the freeze with a reason, and a release's next wave waits for the window "
        "to end. Producers and workers read the same file.",
    )
    actor: str | None = Field(
        default=None,
        max_length=200,
        description="Who enqueues, cancels or answers, as the audit trail notes it (a pipeline "
        "sets its own name); default user@host.",
    )
    supersede: bool = Field(
        default=True,
        description="A queued deployment ends `superseded` when a newer one queued behind it for "
        "the same service carries every change it asked for (every container, the same family "
        "and role, options at least as strong). Off: strict FIFO.",
    )
    allow_evicting_redis: bool = Field(
        default=False,
        description="Workers refuse to start on a Redis whose maxmemory-policy may evict keys "
        "(anything but noeviction): an evicted record lets the next job start on top of a "
        "running rollout. Set true only for a Redis that never reaches maxmemory.",
    )
    redis_socket_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a Redis command may take before the client gives up; a Redis "
        "that hangs then fails a step (retried) instead of hanging a worker.",
    )
    redis_retry_seconds: float = Field(
        default=90.0,
        ge=0,
        description="How long a producer (the `conveyor` command, ConveyorClient) keeps retrying "
        "while Redis cannot be reached (a Sentinel failover, a restart) before it gives up with "
        "exit 3. An enqueue retried this way still makes one deployment. 0: give up at once.",
    )
    rate_limit: bool = Field(
        default=True,
        description="Every worker takes a token from a bucket in Redis (per account, region and "
        "ECS API bucket, sized as AWS documents them) before each AWS call, so that all workers "
        "together stay under AWS's limits.",
    )
    rate_limit_scale: float = Field(
        default=1.0,
        gt=0,
        description="Multiplies every bucket's refill rate (for an account whose limits AWS "
        "raised, or a local AWS that emulates them scaled).",
    )
    rate_limit_max_wait: float = Field(
        default=2.0,
        gt=0,
        description="Longest a step waits for a token inside its worker slot; past it the step "
        "is retried when the token is due, freeing the slot meanwhile (a register step keeps "
        "its place in line: its token is booked up to 10 minutes ahead).",
    )
    prometheus_url: SecretStr | None = Field(
        default=None,
        description="The Prometheus server that metric gates query when a gate names none "
        "(`http://prometheus:9090`; `https://USER:PASSWORD@host` for basic auth). A secret: "
        "printed only with the password masked.",
    )
    aws_region: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"),
        description="The SDK's own variables; botocore alone reads only AWS_DEFAULT_REGION.",
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="`json`, `console`, or `auto` (JSON when not on a terminal)."
    )
    log_level: str = Field(default="INFO", description="The level of Conveyor's own logs.")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        schemes = {urlsplit(part).scheme for part in raw.split(";")}
        if schemes == {"sentinel"}:
            for part in raw.split(";"):
                if not urlsplit(part).hostname:
                    raise ValueError("CONVEYOR_REDIS_URL: each sentinel:// part needs a host")
            return value
        if ";" in raw or not schemes <= {"redis", "rediss", "unix"}:
            raise ValueError(
                "CONVEYOR_REDIS_URL must start with redis://, rediss://, unix:// or sentinel:// "
                f"(several sentinels separated by ';'), not {sorted(schemes)!r}"
            )
        return value

    @model_validator(mode="after")
    def _grace_covers_a_step(self) -> SettingsFields:
        if self.recovery_grace <= self.step_time_limit:
            raise ValueError(
                "CONVEYOR_RECOVERY_GRACE must be larger than CONVEYOR_STEP_TIME_LIMIT, or healthy "
                "steps would be dispatched twice"
            )
        return self

    @property
    def redis_dsn(self) -> str:
        """The Redis URL with its password, for clients only."""
        return self.redis_url.get_secret_value()

    def redis_options(self) -> dict[str, Any]:
        """Keyword arguments for redis-py clients: TLS verification for rediss:// URLs."""
        if not self.redis_dsn.startswith("rediss://"):
            return {}
        options: dict[str, Any] = {"ssl_cert_reqs": "required"}
        if self.redis_ca_file:
            options["ssl_ca_certs"] = self.redis_ca_file
        return options

    @property
    def redis_display(self) -> str:
        """The Redis URL safe to print."""
        return ";".join(redact_url(part) for part in self.redis_dsn.split(";"))

    @property
    def uses_sentinel(self) -> bool:
        """Whether Redis is reached through Sentinel."""
        return self.redis_dsn.startswith("sentinel://")

    def redis_client(self, **options: Any) -> Any:
        """A redis-py client for this Redis: the current primary when behind Sentinel.

        ``options`` go to the connections (timeouts, health checks). A Sentinel-managed client
        asks the sentinels for the primary on every new connection, so after a failover the
        next command reaches the promoted replica.
        """
        import redis
        from redis.sentinel import Sentinel

        if not self.uses_sentinel:
            return redis.Redis.from_url(self.redis_dsn, **options, **self.redis_options())
        parts = [urlsplit(p) for p in self.redis_dsn.split(";")]
        first = parts[0]
        db = int(first.path.strip("/") or 0)
        sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
            [(p.hostname or "", p.port or 26379) for p in parts],
            socket_timeout=options.get("socket_timeout"),
            socket_connect_timeout=options.get("socket_connect_timeout"),
        )
        return sentinel.master_for(  # type: ignore[no-untyped-call,unused-ignore]
            self.redis_sentinel_master,
            db=db,
            password=first.password,
            username=first.username or None,
            **options,
        )


def from_environ(environ: Mapping[str, str] | None = None) -> SettingsFields:
    """The settings read from ``environ`` (default: ``os.environ``) as Settings reads them.

    Raises pydantic's ValidationError naming each bad field, as ``Settings()`` does.
    """
    found = {
        name.lower(): value for name, value in (os.environ if environ is None else environ).items()
    }
    data: dict[str, str] = {}
    for name, info in SettingsFields.model_fields.items():
        alias = info.validation_alias
        names = (
            [str(choice) for choice in alias.choices]
            if isinstance(alias, AliasChoices)
            else [ENV_PREFIX + name]
        )
        for variable in names:
            if variable.lower() in found:
                # Under the alias when the field has one: the model validates by it.
                data[variable if isinstance(alias, AliasChoices) else name] = found[
                    variable.lower()
                ]
                break
    return SettingsFields.model_validate(data)
