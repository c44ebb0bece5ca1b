"""The state of one local AWS process: moto's world, the simulator, stacks, faults, limits, stats.

One re-entrant lock guards moto's models: every moto request holds it (moto is not thread-safe and
the simulator edits the same objects), and so does every simulator tick and every step of a
CloudFormation stack operation. Faults, limits and stats have their own small locks because they
are consulted before a request reaches moto.
"""

from __future__ import annotations

import collections
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from localaws.cloudformation.engine import StackEngine
from localaws.limits import TokenBuckets
from localaws.one_off_tasks import TaskRegistry, TaskResultError
from localaws.rollout import DEFAULT_MINUTE_SECONDS, Simulator, Timings
from localaws.strategies import DEFAULT_CALLBACK_DELAY_SECONDS, LAMBDA_HOOK_STATUSES, LambdaAnswer

RESET_ALL = ("moto", "simulator", "stacks", "faults", "limits", "stats")
MAX_SEEDED_REVISIONS = 10_000
# ECS calls the call log keeps (the newest): a chaos campaign makes a few thousand, a bench of
# 1,000 services about 6,000; an entry is a few hundred bytes.
CALL_LOG_SIZE = 50_000


class ControlError(ValueError):
    """Raised when a control API request is malformed; the message names the bad field."""


@dataclass(frozen=True)
class Faults:
    """Faults injected into ECS requests, as set through ``POST /_localaws/faults``."""

    throttle: float = 0.0  # fraction of requests answered with ThrottlingException
    server_error: float = 0.0  # fraction answered with HTTP 500 ServerException (of all requests)
    latency_ms: float = 0.0  # added before each request is handled
    operations: frozenset[str] | None = None  # None: every ECS operation
    # Reseeds the fault dice when set, so a test's sequence of injected faults is reproducible:
    # requests are handled one at a time, so the n-th ECS request meets the same fate every run.
    seed: int | None = None

    @classmethod
    def from_json(cls, payload: Any) -> Faults:
        """Validate a control API payload; unknown or ill-typed fields raise ControlError."""
        if not isinstance(payload, dict):
            raise ControlError("faults must be a JSON object")
        known = {"throttle", "server_error", "latency_ms", "operations", "seed"}
        unknown = sorted(set(payload) - known)
        if unknown:
            raise ControlError(f"unknown field(s): {', '.join(unknown)}")
        throttle = _fraction(payload, "throttle")
        server_error = _fraction(payload, "server_error")
        if throttle + server_error > 1:
            raise ControlError("throttle + server_error must not exceed 1")
        latency = payload.get("latency_ms", 0)
        if isinstance(latency, bool) or not isinstance(latency, int | float) or latency < 0:
            raise ControlError("latency_ms must be a number >= 0")
        operations = payload.get("operations")
        if operations is not None and (
            not isinstance(operations, list) or not all(isinstance(o, str) for o in operations)
        ):
            raise ControlError("operations must be a list of ECS operation names, or null")
        seed = payload.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ControlError("seed must be an integer, or null")
        return cls(
            throttle=throttle,
            server_error=server_error,
            latency_ms=float(latency),
            operations=frozenset(operations) if operations is not None else None,
            seed=seed,
        )

    def to_json(self) -> dict[str, Any]:
        """The payload that would set these faults."""
        return {
            "throttle": self.throttle,
            "server_error": self.server_error,
            "latency_ms": self.latency_ms,
            "operations": sorted(self.operations) if self.operations is not None else None,
            "seed": self.seed,
        }

    def applies_to(self, operation: str) -> bool:
        """Whether requests for ``operation`` are subject to these faults."""
        return self.operations is None or operation in self.operations


def _fraction(payload: dict[str, Any], name: str) -> float:
    value = payload.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ControlError(f"{name} must be a number between 0 and 1")
    return float(value)


@dataclass(frozen=True)
class Limits:
    """Whether ECS rate limits are emulated, and how much faster buckets refill than on AWS."""

    enabled: bool = False
    scale: float = 1.0

    @classmethod
    def from_json(cls, payload: Any) -> Limits:
        """Validate a control API payload; unknown or ill-typed fields raise ControlError."""
        if not isinstance(payload, dict):
            raise ControlError("limits must be a JSON object")
        unknown = sorted(set(payload) - {"enabled", "scale"})
        if unknown:
            raise ControlError(f"unknown field(s): {', '.join(unknown)}")
        enabled = payload.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ControlError("enabled must be true or false")
        scale = payload.get("scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, int | float) or scale <= 0:
            raise ControlError("scale must be a number > 0")
        return cls(enabled=enabled, scale=float(scale))


@dataclass(frozen=True)
class RevisionSeed:
    """Task definition revisions to register at once, as ``POST /_localaws/task-definitions`` asks.

    Each revision has one container (``image``, 128 MiB reserved), as a minimal
    RegisterTaskDefinition makes it; seeding thousands takes well under a second, where the API
    would need one request each.
    """

    family: str
    count: int
    image: str = "public.ecr.aws/docker/library/busybox:latest"
    container: str = "app"
    account: str | None = None  # the default account when absent
    region: str = "us-east-1"

    @classmethod
    def from_json(cls, payload: Any) -> RevisionSeed:
        """Validate a control API payload; unknown or ill-typed fields raise ControlError."""
        if not isinstance(payload, dict):
            raise ControlError("task-definitions must be a JSON object")
        fields = {"family", "count", "image", "container", "account", "region"}
        unknown = sorted(set(payload) - fields)
        if unknown:
            raise ControlError(f"unknown field(s): {', '.join(unknown)}")
        family = payload.get("family")
        if not isinstance(family, str) or not family:
            raise ControlError("family must be a non-empty string")
        count = payload.get("count")
        if (
            isinstance(count, bool)
            or not isinstance(count, int)
            or not 1 <= count <= MAX_SEEDED_REVISIONS
        ):
            raise ControlError(f"count must be an integer between 1 and {MAX_SEEDED_REVISIONS}")
        for name in ("image", "container", "account", "region"):
            value = payload.get(name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ControlError(f"{name} must be a non-empty string")
        return cls(
            family=family,
            count=count,
            image=payload.get("image") or cls.image,
            container=payload.get("container") or cls.container,
            account=payload.get("account"),
            region=payload.get("region") or cls.region,
        )


@dataclass
class Stats:
    """Counters of ECS calls by operation."""

    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    throttled: collections.Counter[str] = field(default_factory=collections.Counter)
    server_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    client_errors: collections.Counter[str] = field(default_factory=collections.Counter)

    def to_json(self) -> dict[str, dict[str, int]]:
        """Plain dicts for the control API."""
        return {
            "calls": dict(self.calls),
            "throttled": dict(self.throttled),
            "server_errors": dict(self.server_errors),
            "client_errors": dict(self.client_errors),
        }


class World:
    """Everything one local AWS process holds besides the HTTP server."""

    def __init__(
        self, rollout_seconds: float, minute_seconds: float = DEFAULT_MINUTE_SECONDS
    ) -> None:
        self.rollout_seconds = rollout_seconds
        self.lock = threading.RLock()
        self.simulator = Simulator(
            self.lock, Timings.for_rollout(rollout_seconds), minute_seconds=minute_seconds
        )
        # Tasks started by RunTask: they run for about a rollout, then stop with exit codes.
        self.tasks = TaskRegistry(task_seconds=rollout_seconds)
        # CloudFormation stacks, moved by their own thread under the same lock.
        self.stacks = StackEngine(self.lock, rollout_seconds)
        self._control_lock = threading.Lock()
        self._faults = Faults()
        self._limits = Limits()
        self._buckets: TokenBuckets | None = None
        self._stats = Stats()
        self._calls: collections.deque[dict[str, Any]] = collections.deque(maxlen=CALL_LOG_SIZE)
        self._call_seq = 0
        self._random = random.Random()

    # settings ------------------------------------------------------------------------------------

    def set_config(self, payload: Any) -> None:
        """Apply ``POST /_localaws/config``: ``minute_seconds`` (a number >= 0, the seconds of
        simulated time per minute of bake, traffic hold or hook timeout) and ``tick_seconds``
        (a number > 0, how often the simulator moves rollouts on). Nothing is applied unless
        every field is valid."""
        if not isinstance(payload, dict):
            raise ControlError("config must be a JSON object")
        settable = {"minute_seconds", "tick_seconds", "task_seconds"}
        unknown = sorted(set(payload) - settable)
        if unknown:
            raise ControlError(
                f"unknown or read-only field(s): {', '.join(unknown)}; "
                f"only {' and '.join(sorted(settable))} can be set"
            )
        minute = _seconds(payload, "minute_seconds")
        if minute is not None and minute < 0:
            raise ControlError("minute_seconds must be a number >= 0 (seconds per minute)")
        tick = _seconds(payload, "tick_seconds")
        if tick is not None and tick <= 0:
            raise ControlError("tick_seconds must be a number > 0 (seconds between two ticks)")
        task = _seconds(payload, "task_seconds")
        if task is not None and task < 0:
            raise ControlError("task_seconds must be a number >= 0 (how long a RunTask task runs)")
        with self.lock:
            if task is not None:
                self.tasks.task_seconds = task
            if minute is not None:
                self.simulator.minute_seconds = minute
            if tick is not None:
                self.simulator.tick_seconds = tick

    def set_task_result(self, payload: Any) -> None:
        """Apply ``POST /_localaws/task-results`` (:meth:`TaskRegistry.set_result`)."""
        with self.lock:
            try:
                self.tasks.set_result(payload)
            except TaskResultError as exc:
                raise ControlError(str(exc)) from exc

    def set_lambda_answers(self, payload: Any) -> None:
        """Apply ``POST /_localaws/lambda-hooks``: what one Lambda hook function answers.

        ``{"hookTargetArn": ARN, "answers": [{"hookStatus": "IN_PROGRESS", "callBackDelay": 30},
        {"hookStatus": "SUCCEEDED"}]}``: each call of the function takes the next answer, the last
        one repeating; callBackDelay (seconds, default 30) is scaled as minutes are.
        """
        if not isinstance(payload, dict):
            raise ControlError("lambda-hooks must be a JSON object")
        unknown = sorted(set(payload) - {"hookTargetArn", "answers"})
        if unknown:
            raise ControlError(f"unknown field(s): {', '.join(unknown)}")
        arn = payload.get("hookTargetArn")
        if not isinstance(arn, str) or not arn:
            raise ControlError("hookTargetArn must be the Lambda function ARN the hook names")
        raw = payload.get("answers")
        if not isinstance(raw, list) or not raw:
            raise ControlError(
                'answers must be a non-empty list such as [{"hookStatus": "SUCCEEDED"}]'
            )
        answers: list[LambdaAnswer] = []
        for index, item in enumerate(raw):
            status = item.get("hookStatus") if isinstance(item, dict) else None
            if status not in LAMBDA_HOOK_STATUSES:
                raise ControlError(
                    f"answers[{index}].hookStatus must be one of "
                    f"{', '.join(LAMBDA_HOOK_STATUSES)}; got {status!r}"
                )
            delay = item.get("callBackDelay", DEFAULT_CALLBACK_DELAY_SECONDS)
            if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
                raise ControlError(f"answers[{index}].callBackDelay must be a number >= 0")
            answers.append(LambdaAnswer(str(status), float(delay)))
        with self.lock:
            self.simulator.lambda_hooks.set(arn, answers)

    # faults and limits ---------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._faults

    def set_faults(self, faults: Faults) -> None:
        """Replace the faults in force; a seed restarts the fault dice from it."""
        with self._control_lock:
            self._faults = faults
            if faults.seed is not None:
                self._random.seed(faults.seed)

    @property
    def limits(self) -> Limits:
        """The rate-limit emulation in force."""
        return self._limits

    def set_limits(self, limits: Limits) -> None:
        """Turn rate limits on or off; buckets start full each time."""
        with self._control_lock:
            self._limits = limits
            self._buckets = TokenBuckets(limits.scale) if limits.enabled else None

    def draw_fault(self, faults: Faults) -> str | None:
        """Roll once for one request: "throttle", "server_error" or None (thread-safe).

        One draw per request, so with a seed the n-th request meets the same fate in every run,
        however concurrent requests interleave.
        """
        if faults.throttle <= 0 and faults.server_error <= 0:
            return None
        with self._control_lock:
            roll = self._random.random()
        if roll < faults.throttle:
            return "throttle"
        if roll < faults.throttle + faults.server_error:
            return "server_error"
        return None

    def within_limits(self, account: str, region: str, operation: str) -> bool:
        """Spend a token for this call; False means AWS would throttle it."""
        buckets = self._buckets
        return buckets is None or buckets.try_acquire(account, region, operation)

    # stats ---------------------------------------------------------------------------------------

    def count(self, counter: str, operation: str) -> None:
        """Add one to a stats counter ("calls", "throttled", "server_errors", "client_errors")."""
        with self._control_lock:
            getattr(self._stats, counter)[operation] += 1

    def stats(self) -> dict[str, dict[str, int]]:
        """A snapshot of the counters."""
        with self._control_lock:
            return self._stats.to_json()

    def clear_stats(self) -> None:
        """Zero every counter and empty the call log."""
        with self._control_lock:
            self._stats = Stats()
            self._calls.clear()
            self._call_seq = 0

    def log_call(self, entry: dict[str, Any], outcome: str) -> None:
        """Append one ECS call, with how it ended, to the call log."""
        with self._control_lock:
            self._call_seq += 1
            self._calls.append({**entry, "seq": self._call_seq, "outcome": outcome})

    def call_log(self) -> dict[str, Any]:
        """The ECS calls logged, oldest first, and how many older ones the bound dropped."""
        with self._control_lock:
            calls = list(self._calls)
        dropped = calls[0]["seq"] - 1 if calls else self._call_seq
        return {"calls": calls, "dropped": dropped}

    # seeding -------------------------------------------------------------------------------------

    def seed_revisions(self, seed: RevisionSeed) -> dict[str, Any]:
        """Register ``seed.count`` revisions of a family directly in moto, under the lock."""
        from moto.core.models import DEFAULT_ACCOUNT_ID

        from localaws.ecs_patches import register_revisions

        account = seed.account or DEFAULT_ACCOUNT_ID
        container = {"name": seed.container, "image": seed.image, "memoryReservation": 128}
        with self.lock:
            revisions = register_revisions(account, seed.region, seed.family, seed.count, container)
        return {
            "family": seed.family,
            "account": account,
            "region": seed.region,
            "first_revision": revisions[0],
            "last_revision": revisions[-1],
        }

    # reset ---------------------------------------------------------------------------------------

    def reset(self, parts: Iterable[str] = RESET_ALL) -> None:
        """Reset moto's world and Conveyor's additions (all of them unless ``parts`` says)."""
        selected = set(parts)
        with self.lock:
            if "moto" in selected:
                from moto.moto_api._internal.models import moto_api_backend

                moto_api_backend.reset()
            if "simulator" in selected:
                self.simulator.reset()
                self.tasks.reset()
            if "stacks" in selected:
                self.stacks.reset()
        if "faults" in selected:
            self.set_faults(Faults())
        if "limits" in selected:
            self.set_limits(Limits())
        if "stats" in selected:
            self.clear_stats()


def _seconds(payload: dict[str, Any], name: str) -> float | None:
    """``payload[name]`` as a float, None when absent; ControlError when it is not a number."""
    if name not in payload:
        return None
    value = payload[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ControlError(f"{name} must be a number of seconds, got {value!r}")
    return float(value)
