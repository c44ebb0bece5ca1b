"""Blue/green, linear and canary deployments end to end: the real CLI, Redis, celery workers and
the local AWS, which deploys these strategies stage by stage (docs/localaws-strategies.md).

For each strategy one test runs every case at once, each on its own service, while one of the
two workers is SIGKILLed mid-deployment: a success; a `fail-` image (rolled back before any
production traffic); an alarm fired during the bake (rolled back, the alarm named); a cancel
during the bake (Conveyor's rollback through StopServiceDeployment); a PAUSE hook approved, and
one rejected, through `conveyor approve` and `conveyor reject`; and `--wait-until` returning at
the production traffic shift while the deployment goes on. A simulated minute lasts 0.1 s, so a
bake of 150 minutes lasts 15 s: long enough to act during it, never a timing assert.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from localaws.devstack import ROOT, VENV_BIN, Worker
from localaws.testing import control
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

IMAGE = "registry.local:5000/team/app:1.0.0"
BAKE_MINUTES = 150  # 15 s at the local AWS's 0.1 s a minute
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


def _service(stack: Stack, strategy: str, *, alarm: str | None = None) -> str:
    """A steady two-task service deployed by ECS with ``strategy``, its breaker on."""
    ecs = stack.ecs()
    name = f"{strategy.lower().replace('_', '')}-{uuid.uuid4().hex[:6]}"
    ecs.register_task_definition(
        family=name, containerDefinitions=[{"name": "app", "image": IMAGE, "memory": 128}]
    )
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
    ecs.create_service(
        cluster="demo",
        serviceName=name,
        taskDefinition=name,
        desiredCount=2,
        launchType="EC2",
        deploymentController={"type": "ECS"},
        deploymentConfiguration={**configuration, "bakeTimeInMinutes": 0},
    )
    _steady(stack, name)
    # The service's own strategy from here on (its first deployment did not bake).
    ecs.update_service(cluster="demo", service=name, deploymentConfiguration=configuration)
    return name


def _steady(stack: Stack, name: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        (service,) = stack.ecs().describe_services(cluster="demo", services=[name])["services"]
        deployments = service["deployments"]
        if len(deployments) == 1 and deployments[0]["rolloutState"] == "COMPLETED":
            return
        assert time.monotonic() < deadline, deployments
        time.sleep(0.3)


def _with_pause_hook(stack: Stack, name: str) -> None:
    (service,) = stack.ecs().describe_services(cluster="demo", services=[name])["services"]
    configuration = {**service["deploymentConfiguration"], "lifecycleHooks": [PAUSE_HOOK]}
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


def _id_of(stack: Stack, name: str) -> str:
    """The id of the newest deployment of service ``name``."""
    deadline = time.monotonic() + 60
    while True:
        listed = stack.cli("list", "--service", name, "--json")
        found = json.loads(listed.stdout)["deployments"] if listed.returncode == 0 else []
        if found:
            return str(found[0]["id"])
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


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_case_of_a_strategy_ends_as_ecs_decided(
    stack: Stack, start_worker: Callable[[str], Worker], strategy: str
) -> None:
    alarm = f"alarm-{uuid.uuid4().hex[:6]}"
    _client(stack, "cloudwatch").put_metric_alarm(
        AlarmName=alarm,
        MetricName="5xx",
        Namespace="e2e",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    names = {
        case: _service(stack, strategy, alarm=alarm if case == "alarm" else None)
        for case in ("ok", "fail", "alarm", "cancel", "approve", "reject", "stage")
    }
    for case in ("approve", "reject"):
        _with_pause_hook(stack, names[case])
    doomed = start_worker(f"doomed-{strategy.lower()}")
    start_worker(f"steady-{strategy.lower()}")

    runs = {
        case: _start(stack, name, ":fail-2" if case == "fail" else ":1.1.0")
        for case, name in names.items()
        if case != "stage"
    }
    staged = _start(stack, names["stage"], ":1.1.0", "--wait-until", "production-traffic")
    ids = {case: _id_of(stack, name) for case, name in names.items()}

    # A worker dies while the deployments bake; the other one carries them all to the end.
    _until(stack, ids["ok"], "ok baking", _at("BAKE_TIME"))
    doomed.kill()

    _until(stack, ids["alarm"], "alarm baking", _at("BAKE_TIME"))
    _client(stack, "cloudwatch").set_alarm_state(
        AlarmName=alarm, StateValue="ALARM", StateReason="5xx above 1"
    )
    _until(stack, ids["cancel"], "cancel baking", _at("BAKE_TIME"))
    cancelled = stack.cli("cancel", ids["cancel"], "--no-wait")
    assert cancelled.returncode == 0, cancelled.stderr

    for case, verb in (("approve", "approve"), ("reject", "reject")):
        _until(
            stack,
            ids[case],
            f"{case} paused",
            lambda r: bool(r["progress"].get("awaiting_hook_id")),
        )
        assert "awaiting approval at" in stack.cli("status", ids[case]).stdout
        answered = stack.cli(verb, ids[case], "--by", "e2e", "--no-wait")
        assert answered.returncode == 0, answered.stderr

    code, record = _end(staged)
    assert code == 0, record
    assert record["state"] == "running"  # returned at the stage; the workers go on
    stage_reached = record["progress"]["lifecycle_stage"]
    assert stage_reached in (
        "PRODUCTION_TRAFFIC_SHIFT",
        "POST_PRODUCTION_TRAFFIC_SHIFT",
        "BAKE_TIME",
    )

    outcomes = {case: _end(process) for case, process in runs.items()}
    code, ok = outcomes["ok"]
    assert (code, ok["state"]) == (0, "succeeded"), ok["reason"]
    assert strategy in ok["reason"]
    assert "SUCCESSFUL" in ok["reason"]

    code, failed = outcomes["fail"]
    assert (code, failed["state"]) == (1, "rolled_back"), failed["reason"]
    assert "circuit breaker" in failed["reason"]
    assert not _production_traffic_reached_green(stack, names["fail"])

    code, alarmed = outcomes["alarm"]
    assert (code, alarmed["state"]) == (1, "rolled_back"), alarmed["reason"]
    assert alarm in alarmed["reason"]

    code, stopped = outcomes["cancel"]
    assert (code, stopped["state"]) == (5, "cancelled"), stopped["reason"]
    assert stopped["ecs_stop_requested"]

    code, approved = outcomes["approve"]
    assert (code, approved["state"]) == (0, "succeeded"), approved["reason"]
    (answer,) = approved["approvals"]
    assert (answer["action"], answer["by"], answer["stage"]) == ("CONTINUE", "e2e", "POST_SCALE_UP")
    assert answer["outcome"].startswith("sent to ECS")

    code, rejected = outcomes["reject"]
    assert (code, rejected["state"]) == (1, "rolled_back"), rejected["reason"]
    assert "ContinueServiceDeployment" in rejected["reason"]

    waited = stack.cli("wait", ids["stage"], "--json")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert json.loads(waited.stdout)["state"] == "succeeded"

    # Each service runs what its verdict says.
    ecs = stack.ecs()
    for case, name in names.items():
        (service,) = ecs.describe_services(cluster="demo", services=[name])["services"]
        final = stack.record(ids[case])
        expected = (
            final["task_definition_arn"]
            if final["state"] == "succeeded"
            else final["previous_task_definition_arn"]
        )
        assert service["taskDefinition"] == expected, (case, final["state"])
