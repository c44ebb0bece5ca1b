"""The WSGI layer in front of moto: the control API, fault injection, rate limits and stats.

Control API (JSON, same port as the AWS endpoint)::

    GET    /_localaws/health   {"status": "ok"}
    GET    /_localaws/config   {"rollout_seconds": S, "tick_seconds": T, "minute_seconds": MS,
                                "task_seconds": TS, "active_services": N,
                                "active_stack_operations": M}
    POST   /_localaws/config   {"minute_seconds": 0.05, "tick_seconds": 0.05, "task_seconds": 1}
                               minute_seconds: seconds of simulated time per minute of a
                               BLUE_GREEN, LINEAR or CANARY deployment's bakes
                               (bakeTimeInMinutes, the canary and linear step holds) and of its
                               lifecycle hooks' timeouts; set at start with --minute-seconds
                               (default 0.1, so a 10-minute bake takes 1 s). tick_seconds: how
                               often the simulator moves rollouts on (default 0.2; a staged
                               deployment moves at most one stage per tick). task_seconds: how
                               long a task started by RunTask runs before it stops (default:
                               rollout_seconds). Any may be left out; a reset restores them all
                               from start
    GET    /_localaws/traffic  {"services": [...]}: each service's newest BLUE_GREEN, LINEAR or
                               CANARY service deployment: "serviceDeploymentArn", "status",
                               "lifecycle_stage", "traffic" {"production": {"green": %, "blue": %},
                               "test": {...}}, "stages" (every stage entered, in order, with the
                               split at that moment; "ROLLBACK" or "STOPPED" when it ended so),
                               "hooks". ECS shows the split only as the weights of the load
                               balancer's listener rules; this is where the local AWS shows it.
    GET    /_localaws/lambda-hooks   {"answers": {ARN: [...]}, "calls": {ARN: N}}
    POST   /_localaws/lambda-hooks   {"hookTargetArn": ARN, "answers": [{"hookStatus":
                               "IN_PROGRESS", "callBackDelay": 30}, {"hookStatus": "SUCCEEDED"}]}
                               what an AWS_LAMBDA lifecycle hook's function answers, one answer
                               per call, the last repeating (no function runs; unset: SUCCEEDED;
                               FAILED rolls the deployment back; callBackDelay, in seconds, is
                               scaled as minutes are); a reset clears them
    DELETE /_localaws/lambda-hooks   every function answers SUCCEEDED again
    GET    /_localaws/faults   the faults in force
    POST   /_localaws/faults   {"throttle": 0.3, "server_error": 0.05, "latency_ms": 20,
                                "operations": ["DescribeServices"], "seed": 7}
                               (every field optional; a seed makes the faults reproducible)
    DELETE /_localaws/faults   no faults
    GET    /_localaws/limits   {"enabled": false, "scale": 1.0, "buckets": [...]}
    POST   /_localaws/limits   {"enabled": true, "scale": 10}
    DELETE /_localaws/limits   no limits
    GET    /_localaws/stats    {"calls": {...}, "throttled": {...}, "server_errors": {...}, ...}
    DELETE /_localaws/stats    zero the counters, and empty the call log
    GET    /_localaws/calls    {"calls": [...], "dropped": N}: the log of ECS calls, oldest first
                               (the newest CALL_LOG_SIZE; each: seq, at (epoch s), op, account,
                               region, client ("conveyor" when its User-Agent says so, else
                               "other"), outcome ("ok", "throttled", "server_error", or
                               "client_error:<HTTP status>") and the request's identifying
                               fields (cluster, service, taskDefinition, family,
                               serviceDeploymentArn, stopType); never a container definition)
    POST   /_localaws/reset    moto's world, the simulator (minute_seconds back to its start value,
                               no Lambda hook answers), stacks, faults, limits and stats
    GET    /_localaws/task-results   {"results": [...]}: the results set below
    POST   /_localaws/task-results   {"family": "app", "container": "web", "exitCode": 1,
                               "logLines": ["migration 42 failed"]}: tasks of that family started
                               by RunTask from now on stop with that container exiting so
                               (null: it never starts) and writing those lines to its awslogs
                               stream (unset: 0, or 1 for a ``fail-`` image; two lines of its
                               own); a reset clears them
    DELETE /_localaws/task-results   no results set
    POST   /_localaws/task-definitions   {"family": "app", "count": 5000, "image": "repo/app:1"}
                               registers that many revisions at once (optional: "container",
                               "account", "region"); answers the first and last revision

ECS requests are recognised by their ``X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Op>``
header; faults, limits and stats apply to them only.
"""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.iam.models import get_account_id_from

from localaws.limits import ECS_RATE_LIMITS
from localaws.world import ControlError, Faults, Limits, RevisionSeed, World

ECS_TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113."
CONTROL_PREFIX = "/_localaws/"
AMZ_JSON = "application/x-amz-json-1.1"

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_REGION_IN_CREDENTIAL = re.compile(r"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/")
_ACCESS_KEY_IN_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


class LocalAwsApp:
    """WSGI application: the control API, then ECS faults/limits/stats, then moto under the lock."""

    def __init__(self, moto_app: WSGIApp, world: World) -> None:
        self.moto_app = moto_app
        self.world = world

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Handle one request."""
        path = environ.get("PATH_INFO", "")
        if path.startswith(CONTROL_PREFIX) or path == CONTROL_PREFIX.rstrip("/"):
            return self._control(environ, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith(ECS_TARGET_PREFIX):
            return self._ecs(target[len(ECS_TARGET_PREFIX) :], environ, start_response)
        if path == "/moto-api/reset" and environ.get("REQUEST_METHOD") == "POST":
            # moto's own reset must not leave the simulator driving services (or stacks holding
            # resources) that no longer exist.
            self.world.reset(parts=("simulator", "stacks"))
        return self._moto(environ, start_response)

    def _moto(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        with self.world.lock:
            # Flask builds the whole body inside the call, so the lock covers serialization too.
            return list(self.moto_app(environ, start_response))

    # -- ECS -----------------------------------------------------------------------------------

    def _ecs(
        self, operation: str, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        world = self.world
        world.count("calls", operation)
        call = _call_entry(operation, environ)
        faults = world.faults
        applies = faults.applies_to(operation)
        if applies and faults.latency_ms > 0:
            time.sleep(faults.latency_ms / 1000)
        fault = world.draw_fault(faults) if applies else None
        if fault == "throttle" or (
            fault is None and not world.within_limits(call["account"], call["region"], operation)
        ):
            world.count("throttled", operation)
            world.log_call(call, "throttled")
            return _aws_error(start_response, 400, "ThrottlingException", "Rate exceeded")
        if fault == "server_error":
            world.count("server_errors", operation)
            world.log_call(call, "server_error")
            return _aws_error(start_response, 500, "ServerException", "Service unavailable")

        def counting_start_response(status: str, headers: Any, *args: Any) -> Any:
            code = int(status.split(" ", 1)[0])
            if code >= 500:
                world.count("server_errors", operation)
                world.log_call(call, "server_error")
            elif code >= 400:
                world.count("client_errors", operation)
                world.log_call(call, f"client_error:{code}")
            else:
                world.log_call(call, "ok")
            return start_response(status, headers, *args)

        return self._moto(environ, counting_start_response)

    # -- control API ---------------------------------------------------------------------------

    def _control(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        resource = environ.get("PATH_INFO", "")[len(CONTROL_PREFIX) :].strip("/")
        routes: dict[tuple[str, str], Callable[[Any], tuple[int, Any]]] = {
            ("GET", "health"): lambda _: (200, {"status": "ok"}),
            ("GET", "config"): lambda _: (200, self._config()),
            ("POST", "config"): self._set_config,
            ("GET", "traffic"): lambda _: (200, self._traffic()),
            ("GET", "lambda-hooks"): lambda _: (200, self._lambda_hooks()),
            ("POST", "lambda-hooks"): self._set_lambda_hooks,
            ("DELETE", "lambda-hooks"): self._clear_lambda_hooks,
            ("GET", "faults"): lambda _: (200, self.world.faults.to_json()),
            ("POST", "faults"): self._set_faults,
            ("DELETE", "faults"): lambda _: self._set_faults({}),
            ("GET", "limits"): lambda _: (200, self._limits()),
            ("POST", "limits"): self._set_limits,
            ("DELETE", "limits"): lambda _: self._set_limits({"enabled": False}),
            ("GET", "stats"): lambda _: (200, self.world.stats()),
            ("GET", "calls"): lambda _: (200, self.world.call_log()),
            ("DELETE", "stats"): self._clear_stats,
            ("POST", "reset"): self._reset,
            ("POST", "task-definitions"): self._seed_revisions,
            ("GET", "task-results"): lambda _: (200, self._task_results()),
            ("POST", "task-results"): self._set_task_result,
            ("DELETE", "task-results"): self._clear_task_results,
        }
        handler = routes.get((method, resource))
        if handler is None:
            known = {path for (_, path) in routes}
            status = 405 if resource in known else 404
            return _json(start_response, status, {"message": f"no {method} /_localaws/{resource}"})
        try:
            payload = _read_json(environ) if method == "POST" else None
            status, body = handler(payload)
        except ControlError as exc:
            return _json(start_response, 400, {"message": str(exc)})
        return _json(start_response, status, body)

    def _config(self) -> dict[str, Any]:
        return {
            "rollout_seconds": self.world.rollout_seconds,
            "tick_seconds": self.world.simulator.tick_seconds,
            "minute_seconds": self.world.simulator.minute_seconds,
            "task_seconds": self.world.tasks.task_seconds,
            "active_services": self.world.simulator.active_count(),
            "active_stack_operations": self.world.stacks.active_count(),
        }

    def _set_config(self, payload: Any) -> tuple[int, Any]:
        self.world.set_config(payload if payload is not None else {})
        return 200, self._config()

    def _task_results(self) -> dict[str, Any]:
        with self.world.lock:
            return {"results": self.world.tasks.results_json()}

    def _set_task_result(self, payload: Any) -> tuple[int, Any]:
        self.world.set_task_result(payload)
        return 200, self._task_results()

    def _clear_task_results(self, _: Any) -> tuple[int, Any]:
        with self.world.lock:
            self.world.tasks.results.clear()
        return 200, self._task_results()

    def _traffic(self) -> dict[str, Any]:
        with self.world.lock:
            return {"services": self.world.simulator.traffic()}

    def _lambda_hooks(self) -> dict[str, Any]:
        with self.world.lock:
            return self.world.simulator.lambda_hooks.to_json()

    def _set_lambda_hooks(self, payload: Any) -> tuple[int, Any]:
        self.world.set_lambda_answers(payload)
        return 200, self._lambda_hooks()

    def _clear_lambda_hooks(self, _: Any) -> tuple[int, Any]:
        with self.world.lock:
            self.world.simulator.lambda_hooks.clear()
        return 200, self._lambda_hooks()

    def _set_faults(self, payload: Any) -> tuple[int, Any]:
        self.world.set_faults(Faults.from_json(payload if payload is not None else {}))
        return 200, self.world.faults.to_json()

    def _limits(self) -> dict[str, Any]:
        limits = self.world.limits
        return {
            "enabled": limits.enabled,
            "scale": limits.scale,
            "buckets": [
                {
                    "name": spec.name,
                    "burst": spec.burst,
                    "refill_per_second": spec.refill_per_second,
                    "operations": sorted(spec.operations),
                }
                for spec in ECS_RATE_LIMITS
            ],
        }

    def _set_limits(self, payload: Any) -> tuple[int, Any]:
        self.world.set_limits(Limits.from_json(payload if payload is not None else {}))
        return 200, self._limits()

    def _clear_stats(self, _: Any) -> tuple[int, Any]:
        self.world.clear_stats()
        return 200, self.world.stats()

    def _reset(self, _: Any) -> tuple[int, Any]:
        self.world.reset()
        return 200, {"status": "ok"}

    def _seed_revisions(self, payload: Any) -> tuple[int, Any]:
        return 200, self.world.seed_revisions(RevisionSeed.from_json(payload))


# The request fields a call-log entry keeps: enough to tell which service, revision or service
# deployment a call acted on. Never a container definition: those can hold secrets.
_LOGGED_FIELDS = (
    "cluster",
    "service",
    "taskDefinition",
    "family",
    "serviceDeploymentArn",
    "stopType",
    "hookId",  # ContinueServiceDeployment: which hook an answer was for,
    "action",  # and what it asked (CONTINUE or ROLLBACK)
)


def _call_entry(operation: str, environ: dict[str, Any]) -> dict[str, Any]:
    """The call-log entry of one ECS request, without its outcome. Reads the body and puts it
    back for moto."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    raw = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(raw)
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        body = {}
    agent = str(environ.get("HTTP_USER_AGENT", ""))
    entry: dict[str, Any] = {
        "at": round(time.time(), 3),
        "op": operation,
        "account": _account(environ),
        "region": _region(environ),
        "client": "conveyor" if "conveyor/" in agent else "other",
    }
    if isinstance(body, dict):
        for name in _LOGGED_FIELDS:
            value = body.get(name)
            if isinstance(value, str | int | float | bool):
                entry[name] = value
    return entry


def _read_json(environ: dict[str, Any]) -> Any:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError as exc:
        raise ControlError("bad Content-Length") from exc
    raw = environ["wsgi.input"].read(length) if length > 0 else b""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ControlError(f"body is not valid JSON: {exc}") from exc


def _json(start_response: StartResponse, status: int, body: Any) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        f"{status} {_REASONS.get(status, 'OK')}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]


def _aws_error(start_response: StartResponse, status: int, code: str, message: str) -> list[bytes]:
    data = json.dumps({"__type": code, "message": message}).encode()
    start_response(
        f"{status} {_REASONS.get(status, 'Error')}",
        [
            ("Content-Type", AMZ_JSON),
            ("Content-Length", str(len(data))),
            ("x-amzn-RequestId", str(uuid.uuid4())),
        ],
    )
    return [data]


def _account(environ: dict[str, Any]) -> str:
    """The account a request acts in, as moto decides it: its header, else its access key
    (credentials from STS AssumeRole belong to the role's account), else the default one."""
    header = environ.get("HTTP_X_MOTO_ACCOUNT_ID")
    if header:
        return str(header)
    match = _ACCESS_KEY_IN_CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    if match is None:
        return DEFAULT_ACCOUNT_ID
    return str(get_account_id_from(match.group(1)))


def _region(environ: dict[str, Any]) -> str:
    match = _REGION_IN_CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    return match.group(1) if match else "us-east-1"


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
}
