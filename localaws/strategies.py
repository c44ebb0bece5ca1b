"""ECS's native deployment strategies (BLUE_GREEN, LINEAR, CANARY), one lifecycle stage at a time.

A service whose ``deploymentConfiguration.strategy`` is one of these does not roll task by task.
ECS starts the new (green) revision at full count beside the old (blue) one, then walks the
service deployment through its lifecycle stages::

    [RECONCILE_SERVICE]  only when more than one old revision still has tasks
    PRE_SCALE_UP         green not started; blue has all production traffic
    SCALE_UP             green launches desiredCount tasks; left once all of them run
    POST_SCALE_UP
    TEST_TRAFFIC_SHIFT   test traffic moves to green (0 -> 100 %)
    POST_TEST_TRAFFIC_SHIFT
    for each production step (BLUE_GREEN: 100 %; CANARY: canaryPercent, then 100 %;
                              LINEAR: stepPercent, 2 x stepPercent, ... 100 %):
        PRE_PRODUCTION_TRAFFIC_SHIFT   a hook point only (not a value of lifecycleStage)
        PRODUCTION_TRAFFIC_SHIFT       green's production share becomes the step's percent,
                                       held canaryBakeTimeInMinutes / stepBakeTimeInMinutes
                                       (no hold after the step that reaches 100 %)
    POST_PRODUCTION_TRAFFIC_SHIFT
    BAKE_TIME            held bakeTimeInMinutes, blue still running
    CLEAN_UP             blue drained; the deployment then ends SUCCESSFUL

:class:`StagedRollout` is that walk for one service deployment, with lifecycle hooks (PAUSE hooks
wait for ContinueServiceDeployment or their timeout; Lambda hooks give the answers the control
API set for their function, SUCCEEDED by default, and no function is run). It is pure: the
caller passes the clock, whether green is ready, and how many seconds a minute lasts, and it tells
the caller when to roll back. The scheduler (:mod:`localaws.rollout`) moves tasks and deployments
accordingly. The traffic split is kept as two percentages on the rollout: DescribeServiceDeployments
shows them as each service revision's ``requestedProductionTrafficWeight`` and
``requestedTestTrafficWeight``, and the control API's ``GET /_localaws/traffic`` with the stages.
"""

from __future__ import annotations

import collections
import datetime
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ROLLING = "ROLLING"
STRATEGIES = (ROLLING, "BLUE_GREEN", "LINEAR", "CANARY")
STAGED_STRATEGIES = frozenset({"BLUE_GREEN", "LINEAR", "CANARY"})

RECONCILE_SERVICE = "RECONCILE_SERVICE"
PRE_SCALE_UP = "PRE_SCALE_UP"
SCALE_UP = "SCALE_UP"
POST_SCALE_UP = "POST_SCALE_UP"
TEST_TRAFFIC_SHIFT = "TEST_TRAFFIC_SHIFT"
POST_TEST_TRAFFIC_SHIFT = "POST_TEST_TRAFFIC_SHIFT"
PRE_PRODUCTION_TRAFFIC_SHIFT = "PRE_PRODUCTION_TRAFFIC_SHIFT"
PRODUCTION_TRAFFIC_SHIFT = "PRODUCTION_TRAFFIC_SHIFT"
POST_PRODUCTION_TRAFFIC_SHIFT = "POST_PRODUCTION_TRAFFIC_SHIFT"
BAKE_TIME = "BAKE_TIME"
CLEAN_UP = "CLEAN_UP"

# The stages a lifecycle hook may name (botocore's DeploymentLifecycleHookStage).
HOOK_STAGES = (
    RECONCILE_SERVICE,
    PRE_SCALE_UP,
    POST_SCALE_UP,
    TEST_TRAFFIC_SHIFT,
    POST_TEST_TRAFFIC_SHIFT,
    PRE_PRODUCTION_TRAFFIC_SHIFT,
    PRODUCTION_TRAFFIC_SHIFT,
    POST_PRODUCTION_TRAFFIC_SHIFT,
)
# botocore's DeploymentLifecycleHook documentation: "PAUSE hooks cannot be configured at
# TEST_TRAFFIC_SHIFT or PRODUCTION_TRAFFIC_SHIFT stages".
LAMBDA_ONLY_STAGES = frozenset({TEST_TRAFFIC_SHIFT, PRODUCTION_TRAFFIC_SHIFT})
HOOK_TARGET_TYPES = ("AWS_LAMBDA", "PAUSE")
HOOK_ACTIONS = ("CONTINUE", "ROLLBACK")

DEFAULT_STEP_PERCENT = 10.0
DEFAULT_STEP_BAKE_MINUTES = 6
DEFAULT_CANARY_PERCENT = 5.0
DEFAULT_CANARY_BAKE_MINUTES = 10
DEFAULT_HOOK_TIMEOUT_MINUTES = 1440
DEFAULT_HOOK_TIMEOUT_ACTION = "ROLLBACK"
MAX_BAKE_MINUTES = 1440
MAX_HOOK_TIMEOUT_MINUTES = 20160

# Hook statuses (botocore's DeploymentLifecycleHookStatus).
AWAITING_ACTION = "AWAITING_ACTION"
HOOK_IN_PROGRESS = "IN_PROGRESS"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
TIMED_OUT = "TIMED_OUT"
UNRESOLVED_HOOK_STATUSES = frozenset({AWAITING_ACTION, HOOK_IN_PROGRESS})

# The stages during which the deployment's CloudWatch alarms can roll it back.
ALARM_STAGES = frozenset(
    {
        PRE_PRODUCTION_TRAFFIC_SHIFT,
        PRODUCTION_TRAFFIC_SHIFT,
        POST_PRODUCTION_TRAFFIC_SHIFT,
        BAKE_TIME,
    }
)


class StrategyConfigError(ValueError):
    """Raised when a deployment configuration is one ECS would refuse; the message names the field
    and the values it takes."""


def strategy_of(config: Mapping[str, Any]) -> str:
    """The deployment strategy of a deployment configuration (ROLLING when absent)."""
    return str(config.get("strategy") or ROLLING)


def is_staged(config: Mapping[str, Any]) -> bool:
    """Whether deployments with this configuration go stage by stage (not ROLLING)."""
    return strategy_of(config) in STAGED_STRATEGIES


# -- validation --------------------------------------------------------------------------------


def check_deployment_configuration(config: Mapping[str, Any]) -> None:
    """Refuse what ECS refuses in the strategy fields of a ``deploymentConfiguration``.

    Raises StrategyConfigError naming the field, the bad value and the values allowed.
    """
    strategy = config.get("strategy")
    if strategy is not None and strategy not in STRATEGIES:
        raise StrategyConfigError(
            f"deploymentConfiguration.strategy must be one of {', '.join(STRATEGIES)}; "
            f"got {strategy!r}."
        )
    _check_minutes(config, "bakeTimeInMinutes", "deploymentConfiguration", MAX_BAKE_MINUTES)
    linear = config.get("linearConfiguration")
    if linear is not None:
        where = "deploymentConfiguration.linearConfiguration"
        _check_percent(linear, "stepPercent", where, 3.0)
        _check_minutes(linear, "stepBakeTimeInMinutes", where, MAX_BAKE_MINUTES)
    canary = config.get("canaryConfiguration")
    if canary is not None:
        where = "deploymentConfiguration.canaryConfiguration"
        _check_percent(canary, "canaryPercent", where, 0.1)
        _check_minutes(canary, "canaryBakeTimeInMinutes", where, MAX_BAKE_MINUTES)
    for index, hook in enumerate(config.get("lifecycleHooks") or []):
        _check_hook(hook, f"deploymentConfiguration.lifecycleHooks[{index}]")


def _check_percent(section: Mapping[str, Any], name: str, where: str, lowest: float) -> None:
    value = section.get(name)
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not lowest <= value <= 100
        or not math.isclose(round(value * 10), value * 10, abs_tol=1e-6)
    ):
        raise StrategyConfigError(
            f"{where}.{name} must be a multiple of 0.1 from {lowest} to 100.0; got {value!r}."
        )


def _check_minutes(section: Mapping[str, Any], name: str, where: str, highest: int) -> None:
    value = section.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= highest:
        raise StrategyConfigError(
            f"{where}.{name} must be a whole number of minutes from 0 to {highest}; got {value!r}."
        )


def _check_hook(hook: Mapping[str, Any], where: str) -> None:
    target_type = hook.get("targetType") or "AWS_LAMBDA"
    if target_type not in HOOK_TARGET_TYPES:
        raise StrategyConfigError(
            f"{where}.targetType must be one of {', '.join(HOOK_TARGET_TYPES)}; "
            f"got {target_type!r}."
        )
    if target_type == "AWS_LAMBDA" and not hook.get("hookTargetArn"):
        raise StrategyConfigError(
            f"{where}.hookTargetArn is required for an AWS_LAMBDA hook: give the Lambda "
            "function's ARN, or set targetType to PAUSE."
        )
    stages = hook.get("lifecycleStages") or []
    if not stages:
        raise StrategyConfigError(
            f"{where}.lifecycleStages must name at least one of {', '.join(HOOK_STAGES)}."
        )
    for stage in stages:
        if stage not in HOOK_STAGES:
            raise StrategyConfigError(
                f"{where}.lifecycleStages: {stage!r} is not a stage a hook can run at; "
                f"use one of {', '.join(HOOK_STAGES)}."
            )
        if target_type == "PAUSE" and stage in LAMBDA_ONLY_STAGES:
            raise StrategyConfigError(
                f"{where}: PAUSE hooks cannot be configured at {stage}; TEST_TRAFFIC_SHIFT and "
                "PRODUCTION_TRAFFIC_SHIFT take AWS_LAMBDA hooks only (pause at "
                "PRE_PRODUCTION_TRAFFIC_SHIFT or a POST_ stage instead)."
            )
    timeout = hook.get("timeoutConfiguration") or {}
    minutes = timeout.get("timeoutInMinutes")
    if minutes is not None and (
        isinstance(minutes, bool)
        or not isinstance(minutes, int)
        or not 1 <= minutes <= MAX_HOOK_TIMEOUT_MINUTES
    ):
        raise StrategyConfigError(
            f"{where}.timeoutConfiguration.timeoutInMinutes must be from 1 to "
            f"{MAX_HOOK_TIMEOUT_MINUTES}; got {minutes!r}."
        )
    action = timeout.get("action")
    if action is not None and action not in HOOK_ACTIONS:
        raise StrategyConfigError(
            f"{where}.timeoutConfiguration.action must be one of {', '.join(HOOK_ACTIONS)}; "
            f"got {action!r}."
        )


# -- the plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShiftStep:
    """One production traffic shift: green's share after it, and how long it is held."""

    percent: float
    bake_minutes: int


def production_steps(config: Mapping[str, Any]) -> list[ShiftStep]:
    """The production traffic shifts of a strategy, in order; the last one reaches 100 %.

    >>> [s.percent for s in production_steps({"strategy": "LINEAR",
    ...     "linearConfiguration": {"stepPercent": 40.0, "stepBakeTimeInMinutes": 1}})]
    [40.0, 80.0, 100.0]
    """
    strategy = strategy_of(config)
    if strategy == "CANARY":
        canary = config.get("canaryConfiguration") or {}
        percent = float(canary.get("canaryPercent", DEFAULT_CANARY_PERCENT))
        bake = int(canary.get("canaryBakeTimeInMinutes", DEFAULT_CANARY_BAKE_MINUTES))
        if percent >= 100:
            return [ShiftStep(100.0, 0)]
        return [ShiftStep(percent, bake), ShiftStep(100.0, 0)]
    if strategy == "LINEAR":
        linear = config.get("linearConfiguration") or {}
        step = float(linear.get("stepPercent", DEFAULT_STEP_PERCENT))
        bake = int(linear.get("stepBakeTimeInMinutes", DEFAULT_STEP_BAKE_MINUTES))
        count = max(1, math.ceil(100 / step - 1e-9))
        percents = [min(100.0, round(step * (i + 1), 1)) for i in range(count)]
        return [ShiftStep(p, bake if p < 100 else 0) for p in percents]
    return [ShiftStep(100.0, 0)]


def stage_plan(steps: int, *, reconcile: bool) -> list[tuple[str, int]]:
    """Every (stage, production step index) a staged deployment passes, in order."""
    plan: list[tuple[str, int]] = [(RECONCILE_SERVICE, -1)] if reconcile else []
    plan += [
        (PRE_SCALE_UP, -1),
        (SCALE_UP, -1),
        (POST_SCALE_UP, -1),
        (TEST_TRAFFIC_SHIFT, -1),
        (POST_TEST_TRAFFIC_SHIFT, -1),
    ]
    for index in range(steps):
        plan += [(PRE_PRODUCTION_TRAFFIC_SHIFT, index), (PRODUCTION_TRAFFIC_SHIFT, index)]
    plan += [(POST_PRODUCTION_TRAFFIC_SHIFT, -1), (BAKE_TIME, -1), (CLEAN_UP, -1)]
    return plan


# A ROLLING deployment with lifecycle hooks: the stages at which its hooks run. SCALE_UP is the
# rolling update itself (new tasks start, old ones drain as minimumHealthyPercent allows); it is
# left once the new revision has all its tasks running and healthy and the old ones are gone, so
# a POST_SCALE_UP hook sees the finished roll-out, and CLEAN_UP is the rest (the alarms' bake,
# then COMPLETED). Hooks at the traffic-shift stages are never reached: a rolling update shifts
# no traffic of its own.
ROLLING_PLAN: tuple[tuple[str, int], ...] = (
    (PRE_SCALE_UP, -1),
    (SCALE_UP, -1),
    (POST_SCALE_UP, -1),
    (CLEAN_UP, -1),
)


def has_hooks(config: Mapping[str, Any]) -> bool:
    """Whether a deployment configuration names any lifecycle hook."""
    return bool(config.get("lifecycleHooks"))


# -- hooks -------------------------------------------------------------------------------------


@dataclass
class HookRun:
    """One lifecycle hook reached at one stage (one entry of ``lifecycleHookDetails``)."""

    hook_id: str
    stage: str
    target_type: str
    target_arn: str | None
    status: str
    expires: float  # on the simulator's clock
    expires_at: datetime.datetime
    timeout_action: str
    reason: str | None = None  # why it asks for a rollback, when it does
    next_call: float = math.inf  # a Lambda hook that answered IN_PROGRESS: when to call again

    def detail(self) -> dict[str, Any]:
        """The ECS ``DeploymentLifecycleHookDetail`` shape."""
        detail: dict[str, Any] = {
            "hookId": self.hook_id,
            "targetType": self.target_type,
            "status": self.status,
            "expiresAt": self.expires_at,
            "timeoutAction": self.timeout_action,
        }
        if self.target_arn:
            detail["targetArn"] = self.target_arn
        return detail


class HookError(Exception):
    """ContinueServiceDeployment names a hook that cannot be acted on (the message says why)."""


# What a Lambda hook function may answer (its ``hookStatus``), and ECS's default wait before it
# calls a function again that answered IN_PROGRESS (``callBackDelay``, seconds).
LAMBDA_HOOK_STATUSES = (SUCCEEDED, FAILED, HOOK_IN_PROGRESS)
DEFAULT_CALLBACK_DELAY_SECONDS = 30.0


@dataclass(frozen=True)
class LambdaAnswer:
    """One answer of a Lambda hook function: its hookStatus and, for IN_PROGRESS, how many
    seconds (of ECS's time: scaled like minutes) ECS waits before calling it again."""

    hook_status: str
    callback_delay: float = DEFAULT_CALLBACK_DELAY_SECONDS

    def to_json(self) -> dict[str, Any]:
        """The control API's form."""
        return {"hookStatus": self.hook_status, "callBackDelay": self.callback_delay}


class LambdaHooks:
    """What each Lambda hook function answers, as the control API sets it.

    No Lambda runs here: a function's answers are given in advance, as a list that each call
    consumes, the last one repeating. A function with no answers set answers SUCCEEDED.
    """

    def __init__(self) -> None:
        self._answers: dict[str, list[LambdaAnswer]] = {}
        self._calls: collections.Counter[str] = collections.Counter()

    def set(self, function_arn: str, answers: list[LambdaAnswer]) -> None:
        """From now on ``function_arn`` gives ``answers``, one per call, the last one repeating."""
        self._answers[function_arn] = list(answers)

    def call(self, function_arn: str) -> LambdaAnswer:
        """Call a hook function: its next answer."""
        self._calls[function_arn] += 1
        queue = self._answers.get(function_arn)
        if not queue:
            return LambdaAnswer(SUCCEEDED)
        answer = queue[0]
        if len(queue) > 1:
            queue.pop(0)
        return answer

    def clear(self) -> None:
        """Forget every answer and call count."""
        self._answers.clear()
        self._calls.clear()

    def to_json(self) -> dict[str, Any]:
        """The answers still to come and how often each function was called."""
        return {
            "answers": {
                arn: [answer.to_json() for answer in answers]
                for arn, answers in self._answers.items()
            },
            "calls": dict(self._calls),
        }


# -- the walk ------------------------------------------------------------------------------------


@dataclass
class StageEntry:
    """A stage the rollout entered, with the traffic split it had then."""

    stage: str
    at: datetime.datetime
    production_percent: float
    test_percent: float

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for the control API."""
        return {
            "stage": self.stage,
            "at": self.at.isoformat(),
            "production_percent": self.production_percent,
            "test_percent": self.test_percent,
        }


@dataclass
class StagedRollout:
    """The lifecycle stages of one BLUE_GREEN, LINEAR or CANARY service deployment, or the hook
    stages of a ROLLING one (:meth:`for_rolling`).

    ``production_percent`` and ``test_percent`` are green's share of production and test traffic
    (blue has the rest). The rollout moves only through :meth:`advance`; after :meth:`halt` (a
    rollback, which puts all traffic back on blue, or a stop) it moves no more.
    """

    strategy: str
    hooks: list[dict[str, Any]]
    steps: list[ShiftStep]
    bake_minutes: int
    plan: list[tuple[str, int]]
    position: int = -1
    entered: float = 0.0
    production_percent: float = 0.0
    test_percent: float = 0.0
    hook_runs: list[HookRun] = field(default_factory=list)
    log: list[StageEntry] = field(default_factory=list)
    halted: bool = False
    first_current_run: int = 0  # index in hook_runs of the first hook of the current stage

    @classmethod
    def for_configuration(cls, config: Mapping[str, Any], *, reconcile: bool) -> StagedRollout:
        """The rollout a deployment with ``config`` goes through; ``reconcile`` when more than
        one old revision still has tasks."""
        steps = production_steps(config)
        return cls(
            strategy=strategy_of(config),
            hooks=[dict(hook) for hook in config.get("lifecycleHooks") or []],
            steps=steps,
            bake_minutes=int(config.get("bakeTimeInMinutes") or 0),
            plan=stage_plan(len(steps), reconcile=reconcile),
        )

    @classmethod
    def for_rolling(cls, config: Mapping[str, Any]) -> StagedRollout:
        """The hook stages of a ROLLING deployment with ``config`` (:data:`ROLLING_PLAN`): no
        traffic split and no bake of its own; the scheduler rolls tasks during SCALE_UP."""
        return cls(
            strategy=ROLLING,
            hooks=[dict(hook) for hook in config.get("lifecycleHooks") or []],
            steps=[],
            bake_minutes=0,
            plan=list(ROLLING_PLAN),
        )

    # what a client sees ---------------------------------------------------------------------

    @property
    def stage(self) -> str:
        """The stage the rollout is in (PRE_SCALE_UP before it starts)."""
        return self.plan[max(self.position, 0)][0]

    @property
    def step(self) -> int:
        """The production step the rollout is at (-1 outside the production shift)."""
        return self.plan[max(self.position, 0)][1]

    @property
    def lifecycle_stage(self) -> str:
        """The stage as DescribeServiceDeployments shows it.

        PRE_PRODUCTION_TRAFFIC_SHIFT is a hook point, not a value of ``lifecycleStage``
        (botocore's ServiceDeploymentLifecycleStage has no such member): there, the stage shown
        is the one before it.
        """
        if self.stage == PRE_PRODUCTION_TRAFFIC_SHIFT:
            return POST_TEST_TRAFFIC_SHIFT if self.step == 0 else PRODUCTION_TRAFFIC_SHIFT
        return self.stage

    @property
    def launches_green(self) -> bool:
        """Whether green may have tasks (from SCALE_UP on)."""
        return self.position >= self._index_of(SCALE_UP)

    @property
    def cleaning_up(self) -> bool:
        """Whether blue is to be drained (CLEAN_UP)."""
        return self.stage == CLEAN_UP and self.position >= 0

    @property
    def monitors_alarms(self) -> bool:
        """Whether the deployment's alarms can roll it back now (production shift and bake)."""
        before_any_shift = self.stage == PRE_PRODUCTION_TRAFFIC_SHIFT and self.step == 0
        return (
            not self.halted
            and self.position >= 0
            and self.stage in ALARM_STAGES
            and not before_any_shift
        )

    def hook_details(self) -> list[dict[str, Any]]:
        """``lifecycleHookDetails``: every hook reached so far, oldest first."""
        return [run.detail() for run in self.hook_runs]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for the control API: the stage, the traffic split, the stages passed."""
        return {
            "strategy": self.strategy,
            "lifecycle_stage": self.lifecycle_stage,
            "stage": self.stage,
            "production_step": self.step,
            "production_steps": [step.percent for step in self.steps],
            "traffic": {
                "production": {
                    "green": self.production_percent,
                    "blue": round(100.0 - self.production_percent, 1),
                },
                "test": {"green": self.test_percent, "blue": round(100.0 - self.test_percent, 1)},
            },
            "halted": self.halted,
            "stages": [entry.to_json() for entry in self.log],
            "hooks": [
                {**run.detail(), "stage": run.stage, "expiresAt": run.expires_at.isoformat()}
                for run in self.hook_runs
            ],
        }

    # moving ----------------------------------------------------------------------------------

    def advance(
        self,
        now: float,
        now_dt: datetime.datetime,
        *,
        green_ready: bool,
        minute_seconds: float,
        stage_seconds: float,
        lambdas: LambdaHooks | None = None,
    ) -> str | None:
        """Move at most one stage on; return a rollback reason when a hook asks for one.

        A stage is left once it has lasted ``stage_seconds`` (traffic holds and the bake: their
        minutes times ``minute_seconds``), SCALE_UP once green is ready, and any stage only when
        its hooks are resolved. Lambda hooks get their answers from ``lambdas`` (SUCCEEDED when
        None).
        """
        if self.halted:
            return None
        if self.position < 0:
            self._enter(0, now, now_dt, minute_seconds, lambdas)
            return self._rollback_reason()
        reason = self._resolve_hooks(now, minute_seconds, lambdas)
        if reason is not None:
            return reason
        if self.stage == CLEAN_UP:
            return None
        if any(run.status in UNRESOLVED_HOOK_STATUSES for run in self._current_runs()):
            return None
        if now - self.entered < self._hold(minute_seconds, stage_seconds):
            return None
        if self.stage == SCALE_UP and not green_ready:
            return None
        self._enter(self.position + 1, now, now_dt, minute_seconds, lambdas)
        return self._rollback_reason()

    def resolve(self, hook_id: str, action: str) -> None:
        """ContinueServiceDeployment: answer a hook AWAITING_ACTION with CONTINUE or ROLLBACK.

        Raises HookError when the rollout has no such hook or it is not awaiting an action.
        """
        run = next((r for r in self.hook_runs if r.hook_id == hook_id), None)
        if run is None:
            raise HookError(f"The lifecycle hook {hook_id} does not exist in this deployment.")
        if run.status != AWAITING_ACTION or self.halted:
            raise HookError(
                f"The lifecycle hook {hook_id} is {run.status}, not AWAITING_ACTION: "
                "there is nothing to continue or roll back."
            )
        if action == "ROLLBACK":
            run.status = FAILED
            run.reason = (
                f"Service deployment rollback requested by ContinueServiceDeployment at "
                f"lifecycle hook {hook_id} ({run.stage})."
            )
        else:
            run.status = SUCCEEDED

    def halt(self, now_dt: datetime.datetime, *, to_blue: bool) -> None:
        """A rollback (``to_blue``: all traffic back on blue) or a stop (traffic stays as it is):
        the rollout moves no more. The log records it as a ROLLBACK or STOPPED entry."""
        if self.halted:
            return
        self.halted = True
        if to_blue:
            self.production_percent = 0.0
            self.test_percent = 0.0
        self.log.append(
            StageEntry(
                "ROLLBACK" if to_blue else "STOPPED",
                now_dt,
                self.production_percent,
                self.test_percent,
            )
        )

    # internals -------------------------------------------------------------------------------

    def _index_of(self, stage: str) -> int:
        return next(i for i, (name, _) in enumerate(self.plan) if name == stage)

    def _current_runs(self) -> list[HookRun]:
        """The hooks reached when the rollout entered its current stage."""
        return self.hook_runs[self.first_current_run :]

    def _hooks_at(self, stage: str) -> list[dict[str, Any]]:
        return [hook for hook in self.hooks if stage in (hook.get("lifecycleStages") or [])]

    def _hold(self, minute_seconds: float, stage_seconds: float) -> float:
        if self.stage == BAKE_TIME:
            return max(stage_seconds, self.bake_minutes * minute_seconds)
        if self.stage == PRODUCTION_TRAFFIC_SHIFT:
            return max(stage_seconds, self.steps[self.step].bake_minutes * minute_seconds)
        return stage_seconds

    def _enter(
        self,
        position: int,
        now: float,
        now_dt: datetime.datetime,
        minute_seconds: float,
        lambdas: LambdaHooks | None,
    ) -> None:
        self.position = position
        self.entered = now
        stage = self.stage
        if stage == TEST_TRAFFIC_SHIFT:
            self.test_percent = 100.0
        elif stage == PRODUCTION_TRAFFIC_SHIFT:
            self.production_percent = self.steps[self.step].percent
        self.log.append(StageEntry(stage, now_dt, self.production_percent, self.test_percent))
        self.first_current_run = len(self.hook_runs)
        for hook in self._hooks_at(stage):
            run = self._run_hook(hook, stage, now, now_dt, minute_seconds)
            self.hook_runs.append(run)
            if run.target_type == "AWS_LAMBDA":
                self._call_lambda(run, now, minute_seconds, lambdas)

    def _run_hook(
        self,
        hook: Mapping[str, Any],
        stage: str,
        now: float,
        now_dt: datetime.datetime,
        minute_seconds: float,
    ) -> HookRun:
        timeout = hook.get("timeoutConfiguration") or {}
        minutes = int(timeout.get("timeoutInMinutes") or DEFAULT_HOOK_TIMEOUT_MINUTES)
        seconds = minutes * minute_seconds
        target_type = str(hook.get("targetType") or "AWS_LAMBDA")
        return HookRun(
            hook_id=secrets.token_hex(8),
            stage=stage,
            target_type=target_type,
            target_arn=hook.get("hookTargetArn") if target_type == "AWS_LAMBDA" else None,
            status=AWAITING_ACTION if target_type == "PAUSE" else HOOK_IN_PROGRESS,
            expires=now + seconds,
            expires_at=now_dt + datetime.timedelta(seconds=seconds),
            timeout_action=str(timeout.get("action") or DEFAULT_HOOK_TIMEOUT_ACTION),
        )

    def _call_lambda(
        self, run: HookRun, now: float, minute_seconds: float, lambdas: LambdaHooks | None
    ) -> None:
        """Call a Lambda hook's function and act on its answer."""
        answer = lambdas.call(run.target_arn or "") if lambdas is not None else None
        status = answer.hook_status if answer is not None else SUCCEEDED
        run.next_call = math.inf
        if status == HOOK_IN_PROGRESS and answer is not None:
            run.status = HOOK_IN_PROGRESS
            # callBackDelay is in seconds of ECS's time: scaled as minutes are.
            run.next_call = now + answer.callback_delay * minute_seconds / 60
        elif status == FAILED:
            run.status = FAILED
            run.reason = (
                f"Lifecycle hook {run.hook_id} ({run.stage}): {run.target_arn} answered FAILED: "
                "rolling back."
            )
        else:
            run.status = SUCCEEDED

    def _rollback_reason(self) -> str | None:
        return next((run.reason for run in self._current_runs() if run.reason is not None), None)

    def _resolve_hooks(
        self, now: float, minute_seconds: float, lambdas: LambdaHooks | None
    ) -> str | None:
        """Time out expired hooks and call again Lambda hooks that are due; return the reason of
        the first hook that asks to roll back."""
        for run in self._current_runs():
            if run.status in UNRESOLVED_HOOK_STATUSES and now >= run.expires:
                run.status = TIMED_OUT
                run.next_call = math.inf
                if run.timeout_action == "ROLLBACK":
                    run.reason = (
                        f"Lifecycle hook {run.hook_id} ({run.stage}) timed out: rolling back."
                    )
            elif run.status == HOOK_IN_PROGRESS and now >= run.next_call:
                self._call_lambda(run, now, minute_seconds, lambdas)
        return self._rollback_reason()
