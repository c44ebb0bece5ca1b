"""Blue/green, linear and canary deployments end to end: the real CLI, Redis, celery workers and
the local AWS, which deploys these strategies stage by stage (docs/localaws-strategies.md).

One test runs every case of every strategy at once, each on its own service (21 deployments),
while one of the two workers is SIGKILLed mid-deployment: a success; a `fail-` image (rolled back
before any production traffic); an alarm fired during the bake (rolled back, the alarm named); a
cancel during the bake (Conveyor's rollback through StopServiceDeployment); a PAUSE hook
approved, and one rejected, through `conveyor approve` and `conveyor reject`; and `--wait-until`
returning at the production traffic shift while the deployment goes on to its verdict. A
simulated minute lasts 0.1 s, so a bake of 150 minutes lasts 15 s; the cases the test acts on
during their bake (the alarm, the cancel) bake for 1,440 minutes, 144 s, which only the action
cuts short, so that a test slowed by a loaded machine still finds them baking. No assert is a
timing.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import boto3
import pytest

from localaws.devstack import ROOT, VENV_BIN, Worker
from localaws.testing import control, create_alarm
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

K = TypeVar("K")

IMAGE = "registry.local:5000/team/app:1.0.0"
BAKE_MINUTES = 150  # 15 s at the local AWS's 0.1 s a minute
# The bake of the cases the test acts on while they bake (an alarm, a cancel): far longer than
# the test takes to come round to them, since only the action ends them.
ACTED_ON_BAKE_MINUTES = 1440  # the most ECS allows: 144 s here
STRATEGIES: dict[str, dict[str, Any]] = {
    "BLUE_GREEN": {},
    "CANARY": {"canaryConfiguration": {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 20}},
    "LINEAR": {"linearConfiguration": {"stepPercent": 50.0, "stepBakeTimeInMinutes": 20}},
}
PAUSE_HOOK = {
    "targetType": "PAUSE",
    "lifecycleStages": ["POST_SCALE_UP"],
    "timeoutConfiguration": {"timeoutInMinutes": 6000, "action": "ROLLBACK"},
}


def _client(stack: Stack, service: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=stack.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def create_service(stack: Stack, prefix: str, configuration: dict[str, Any]) -> str:
    """A two-task service of cluster demo named ``prefix``-…, with ``configuration`` as its
    deployment configuration (not yet steady)."""
    ecs = stack.ecs()
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    ecs.register_task_definition(
        family=name, containerDefinitions=[{"name": "app", "image": IMAGE, "memory": 128}]
    )
    ecs.create_service(
        cluster="demo",
        serviceName=name,
        taskDefinition=name,
        desiredCount=2,
        launchType="EC2",
        deploymentController={"type": "ECS"},
        deploymentConfiguration=configuration,
    )
    return name


def _service(stack: Stack, strategy: str, *, alarm: str | None = None) -> str:
    """A two-task service deployed by ECS with ``strategy``, its breaker on (not yet steady)."""
    # No bake for the service's first deployment; its own configuration comes after.
    configuration = {**_configuration(strategy, alarm), "bakeTimeInMinutes": 0}
    return create_service(stack, strategy.lower().replace("_", ""), configuration)


def _configuration(strategy: str, alarm: str | None) -> dict[str, Any]:
    configuration: dict[str, Any] = {
        "strategy": strategy,
        "bakeTimeInMinutes": BAKE_MINUTES,
        "maximumPercent": 200,
        "minimumHealthyPercent": 100,
        "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        **STRATEGIES[strategy],
    }
    if alarm is not None:
        configuration["alarms"] = {"alarmNames": [alarm], "enable": True, "rollback": True}
    return configuration


def _steady(stack: Stack, name: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        (service,) = stack.ecs().describe_services(cluster="demo", services=[name])["services"]
        deployments = service["deployments"]
        if len(deployments) == 1 and deployments[0]["rolloutState"] == "COMPLETED":
            return
        assert time.monotonic() < deadline, deployments
        time.sleep(0.3)


def _configure(
    stack: Stack,
    name: str,
    strategy: str,
    alarm: str | None,
    hook: bool,
    bake: int = BAKE_MINUTES,
) -> None:
    """Give a steady service its own bake, alarm and hooks (its first deployment had none)."""
    configuration = {**_configuration(strategy, alarm), "bakeTimeInMinutes": bake}
    if hook:
        configuration["lifecycleHooks"] = [PAUSE_HOOK]
    stack.ecs().update_service(cluster="demo", service=name, deploymentConfiguration=configuration)


def _start(stack: Stack, name: str, image: str, *extra: str) -> subprocess.Popen[str]:
    """`conveyor update` of ``name`` to ``image``, followed to its end in the background."""
    return subprocess.Popen(
        [
            str(VENV_BIN / "conveyor"),
            "update",
            "--cluster",
            "demo",
            "--service",
            name,
            "--image",
            f"app={image}",
            "--json",
            *extra,
        ],
        cwd=ROOT,
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _ids_of(stack: Stack, names: dict[K, str]) -> dict[K, str]:
    """The id of the newest deployment of each service in ``names``.

    One `conveyor list` a look for all of them: a call for each of 21 services took long
    enough on a loaded machine that the canary's bake was over before the test first looked.
    """
    deadline = time.monotonic() + 60
    while True:
        listed = stack.cli("list", "--only", "deployments", "--limit", "200", "--json")
        newest: dict[str, str] = {}
        if listed.returncode == 0:
            for found in json.loads(listed.stdout)["deployments"]:  # newest first
                newest.setdefault(found["service"], str(found["id"]))
        if set(names.values()) <= newest.keys():
            return {key: newest[name] for key, name in names.items()}
        assert time.monotonic() < deadline, listed.stderr
        time.sleep(0.3)


def _until(
    stack: Stack, deployment_id: str, what: str, ok: Callable[[dict[str, Any]], bool]
) -> None:
    deadline = time.monotonic() + 120
    while not ok(record := stack.record(deployment_id)):
        assert record["state"] in ("queued", "running"), (what, record["state"], record["reason"])
        assert time.monotonic() < deadline, (what, record["progress"])
        time.sleep(0.2)


def _at(stage: str) -> Callable[[dict[str, Any]], bool]:
    return lambda r: r["progress"].get("lifecycle_stage") == stage


def _end(process: subprocess.Popen[str]) -> tuple[int, dict[str, Any]]:
    out, err = process.communicate(timeout=240)
    assert out.strip(), err
    record: dict[str, Any] = json.loads(out)
    return process.returncode, record


def _production_traffic_reached_green(stack: Stack, name: str) -> bool:
    _, view = control(stack.endpoint, "GET", "traffic")
    (mine,) = [s for s in view["services"] if s["service"] == name]
    return any(stage["production_percent"] > 0 for stage in mine["stages"])


CASES = ("ok", "fail", "alarm", "cancel", "approve", "reject", "stage")


@pytest.fixture
def background() -> Iterator[list[subprocess.Popen[str]]]:
    """The CLI processes a test started: any still running at its end is killed and its pipes
    closed, so that a test that failed leaves no open file behind for a later one to trip on."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_every_case_of_every_strategy_ends_as_ecs_decided(
    stack: Stack,
    start_worker: Callable[[str], Worker],
    background: list[subprocess.Popen[str]],
) -> None:
    """Each case on a service of each strategy, all at once, two workers, one of them killed."""
    alarm = f"alarm-{uuid.uuid4().hex[:6]}"
    create_alarm(_client(stack, "cloudwatch"), alarm, namespace="e2e")
    names = {
        (strategy, case): _service(stack, strategy, alarm=alarm if case == "alarm" else None)
        for strategy in STRATEGIES
        for case in CASES
    }
    for (strategy, case), name in names.items():
        _steady(stack, name)
        alarmed = alarm if case == "alarm" else None
        bake = ACTED_ON_BAKE_MINUTES if case in ("alarm", "cancel") else BAKE_MINUTES
        _configure(stack, name, strategy, alarmed, hook=case in ("approve", "reject"), bake=bake)
    doomed = start_worker("doomed")
    start_worker("steady")

    runs = {
        key: _start(stack, name, ":fail-2" if key[1] == "fail" else ":1.1.0")
        for key, name in names.items()
        if key[1] != "stage"
    }
    staged = {
        strategy: _start(
            stack, names[strategy, "stage"], ":1.1.0", "--wait-until", "production-traffic"
        )
        for strategy in STRATEGIES
    }
    background.extend([*runs.values(), *staged.values()])
    ids = _ids_of(stack, names)

    # A worker dies while the deployments bake; the other one carries them all to the end.
    _until(stack, ids["CANARY", "cancel"], "cancel baking", _at("BAKE_TIME"))
    doomed.kill()

    for strategy in STRATEGIES:
        _until(stack, ids[strategy, "alarm"], "alarm baking", _at("BAKE_TIME"))
    _client(stack, "cloudwatch").set_alarm_state(
        AlarmName=alarm, StateValue="ALARM", StateReason="5xx above 1"
    )
    for strategy in STRATEGIES:
        key = (strategy, "cancel")
        _until(stack, ids[key], "cancel baking", _at("BAKE_TIME"))
        cancelled = stack.cli("cancel", ids[key], "--no-wait")
        assert cancelled.returncode == 0, cancelled.stderr
        for case in ("approve", "reject"):
            key = (strategy, case)
            _until(stack, ids[key], f"{case} paused", _awaiting)
            assert "awaiting approval at" in stack.cli("status", ids[key]).stdout
            answered = stack.cli(case, ids[key], "--by", "e2e", "--no-wait")
            assert answered.returncode == 0, answered.stderr

    for strategy, process in staged.items():
        code, record = _end(process)
        assert code == 0, (strategy, record)
        assert record["state"] == "running"  # returned at the stage; the workers go on
        assert record["progress"]["lifecycle_stage"] in (
            "PRODUCTION_TRAFFIC_SHIFT",
            "POST_PRODUCTION_TRAFFIC_SHIFT",
            "BAKE_TIME",
        ), strategy

    outcomes = {key: _end(process) for key, process in runs.items()}
    for strategy in STRATEGIES:
        code, ok = outcomes[strategy, "ok"]
        assert (code, ok["state"]) == (0, "succeeded"), (strategy, ok["reason"])
        assert strategy in ok["reason"]
        assert "SUCCESSFUL" in ok["reason"]

        code, failed = outcomes[strategy, "fail"]
        assert (code, failed["state"]) == (1, "rolled_back"), (strategy, failed["reason"])
        assert "circuit breaker" in failed["reason"]
        assert not _production_traffic_reached_green(stack, names[strategy, "fail"])

        code, alarm_rolled = outcomes[strategy, "alarm"]
        assert (code, alarm_rolled["state"]) == (1, "rolled_back"), (
            strategy,
            alarm_rolled["reason"],
        )
        assert alarm in alarm_rolled["reason"]

        code, stopped = outcomes[strategy, "cancel"]
        assert (code, stopped["state"]) == (5, "cancelled"), (strategy, stopped["reason"])
        assert stopped["ecs_stop_requested"]

        code, approved = outcomes[strategy, "approve"]
        assert (code, approved["state"]) == (0, "succeeded"), (strategy, approved["reason"])
        (answer,) = approved["approvals"]
        assert (answer["action"], answer["by"], answer["stage"]) == (
            "CONTINUE",
            "e2e",
            "POST_SCALE_UP",
        )
        assert answer["outcome"].startswith("sent to ECS")

        code, rejected = outcomes[strategy, "reject"]
        assert (code, rejected["state"]) == (1, "rolled_back"), (strategy, rejected["reason"])
        assert "ContinueServiceDeployment" in rejected["reason"]

        waited = stack.cli("wait", ids[strategy, "stage"], "--json")
        assert waited.returncode == 0, waited.stdout + waited.stderr
        assert json.loads(waited.stdout)["state"] == "succeeded"

    # Each service runs what its verdict says.
    ecs = stack.ecs()
    for key, name in names.items():
        (service,) = ecs.describe_services(cluster="demo", services=[name])["services"]
        final = stack.record(ids[key])
        expected = (
            final["task_definition_arn"]
            if final["state"] == "succeeded"
            else final["previous_task_definition_arn"]
        )
        assert service["taskDefinition"] == expected, (key, final["state"])


def _awaiting(record: dict[str, Any]) -> bool:
    return bool(record["progress"].get("awaiting_hook_id"))
