"""Every artifact in deploy/ does what deploy/README.md says, checked without Docker."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
import redis
import yaml
from botocore.validate import validate_parameters
from dockerfile_parse import DockerfileParser

from localaws.devstack import ROOT, VENV_BIN, aws_env, free_port

DEPLOY = ROOT / "deploy"


def compose() -> dict[str, Any]:
    """deploy/docker-compose.yml, anchors resolved."""
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return data


def dockerfile() -> DockerfileParser:
    """deploy/Dockerfile, parsed."""
    return DockerfileParser(fileobj=io.BytesIO((DEPLOY / "Dockerfile").read_bytes()))


def stages(parser: DockerfileParser) -> dict[str, list[dict[str, Any]]]:
    """The instructions of each build stage, by stage name."""
    found: dict[str, list[dict[str, Any]]] = {}
    current = ""
    for item in parser.structure:
        if item["instruction"] == "FROM":
            current = item["value"].split(" AS ")[-1].strip()
            found[current] = []
        if current and item["instruction"] != "COMMENT":
            found[current].append(item)
    return found


def exec_form(item: dict[str, Any]) -> list[str]:
    """The JSON argument list of an exec-form instruction."""
    value = item["value"]
    if item["instruction"] == "HEALTHCHECK":
        value = value[value.index("CMD") + 3 :]
    parsed: list[str] = json.loads(value)
    return parsed


def final(parser: DockerfileParser, instruction: str) -> dict[str, Any]:
    """The default target's (the last stage's) last ``instruction``."""
    last_stage = list(stages(parser).values())[-1]
    return [i for i in last_stage if i["instruction"] == instruction][-1]


def runtime_env(parser: DockerfileParser) -> dict[str, str]:
    """The ENV of the default target."""
    env: dict[str, str] = {}
    for item in list(stages(parser).values())[-1]:
        if item["instruction"] == "ENV":
            for pair in item["value"].replace("\\\n", " ").split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env


# -- Dockerfile ----------------------------------------------------------------------------------


def test_the_dockerfile_is_multi_stage_slim_unprivileged_and_checks_health() -> None:
    """Parses; the default target is a slim image that copies only the built virtualenv, runs as
    a non-root user, and has a HEALTHCHECK on this host's heartbeat; its CMD is the compose
    file's worker without the concurrency flag."""
    parser = dockerfile()
    found = stages(parser)
    assert next(iter(found)) == "build"
    assert list(found)[-1] == "runtime"
    assert parser.baseimage.endswith("-slim")
    user = final(parser, "USER")["value"]
    assert user not in ("root", "0")
    assert exec_form(final(parser, "HEALTHCHECK")) == ["conveyor", "workers", "--here"]
    copies = [i["value"] for i in found["runtime"] if i["instruction"] == "COPY"]
    assert copies == ["--from=build /opt/conveyor /opt/conveyor"]
    worker = compose()["services"]["worker"]["command"]
    assert exec_form(final(parser, "CMD")) == worker[: worker.index("--concurrency")]
    assert runtime_env(parser)["CONVEYOR_METRICS_ADDRESS"] == "0.0.0.0"  # noqa: S104


@pytest.mark.slow
def test_the_dockerfile_commands_work_in_a_fresh_virtualenv(redis_url: str, tmp_path: Path) -> None:
    """The build stage's install, run on a copy of what it COPYs; then the image's CMD starts a
    worker, the HEALTHCHECK passes while it runs and fails (exit 3) once it stopped."""
    parser = dockerfile()
    build = stages(parser)["build"]
    src = tmp_path / "src"
    src.mkdir()
    for item in build:
        if item["instruction"] == "COPY":
            *sources, _ = item["value"].split()
            for source in sources:
                path = ROOT / source
                if path.is_dir():
                    shutil.copytree(
                        path, src / source, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    shutil.copy(path, src / source)
    venv = tmp_path / "opt-conveyor"
    (run,) = [i["value"] for i in build if i["instruction"] == "RUN"]
    install = subprocess.run(
        ["bash", "-c", run.replace("/opt/conveyor", str(venv))],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    # The image's user cannot write /opt/conveyor: whatever has no bytecode from the build is
    # compiled again on every `conveyor` call and every HEALTHCHECK.
    uncompiled = subprocess.run(
        [
            f"{venv}/bin/python",
            "-c",
            "import os, sys, producers.cli, producers.client\n"
            "print(sorted(m.__name__ for m in list(sys.modules.values())"
            f" if (getattr(m, '__file__', None) or '').startswith({str(venv)!r})"
            " and m.__file__.endswith('.py') and not os.path.exists(m.__cached__)))",
        ],
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert uncompiled.stdout.strip() == "[]"

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "VIRTUAL_ENV"))},
        **runtime_env(parser),
        "PATH": f"{venv}/bin:/usr/bin:/bin",
        "CONVEYOR_REDIS_URL": redis_url,
        "CONVEYOR_METRICS_PORT": str(free_port()),
        "CONVEYOR_METRICS_ADDRESS": "127.0.0.1",
        "PYTHONPATH": "",
    }
    redis.Redis.from_url(redis_url).flushdb()
    health = exec_form(final(parser, "HEALTHCHECK"))
    unhealthy = subprocess.run(health, env=env, capture_output=True, text=True, check=False)
    assert unhealthy.returncode == 3
    worker = subprocess.Popen(
        exec_form(final(parser, "CMD")),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            check = subprocess.run(health, env=env, capture_output=True, text=True, check=False)
            if check.returncode == 0:
                break
            assert worker.poll() is None, "the image's CMD exited"
            assert time.monotonic() < deadline, check.stderr
            time.sleep(1)
        # The installed package is the one in the venv, not this checkout.
        where = subprocess.run(
            [f"{venv}/bin/python", "-c", "import worker; print(worker.__file__)"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        )
        assert where.stdout.startswith(str(venv))
    finally:
        worker.terminate()
        worker.wait(60)
    after = subprocess.run(health, env=env, capture_output=True, text=True, check=False)
    assert after.returncode == 3


# -- compose, its commands run directly ------------------------------------------------------------


def _with_ports(command: list[str], ports: dict[str, int]) -> list[str]:
    """The command with every ``--port N`` replaced by a free port, and addresses on loopback."""
    out = list(command)
    for i, arg in enumerate(out[:-1]):
        if arg == "--port":
            out[i + 1] = str(ports.setdefault(out[i + 1], free_port()))
        if arg in ("--host", "--address"):
            out[i + 1] = "127.0.0.1"
    return out


def _local(command: list[str]) -> list[str]:
    binary = VENV_BIN / command[0]
    return [str(binary) if binary.exists() else command[0], *command[1:]]


def _get(url: str, auth: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)  # noqa: S310 - loopback URL made by the test
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _until(check: Any, what: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes the test starts; all stopped afterwards."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in reversed(started):
        proc.terminate()
    for proc in started:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_the_compose_fleet_runs_from_its_commands(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """deploy/README.md's path: every compose service's command, run as written (ports and
    addresses aside), gives Redis with AOF and noeviction, the local AWS, a worker and a
    watcher with heartbeats and metrics, Flower and the dashboard behind auth; a deployment
    through the CLI succeeds and shows in metrics, Flower and the dashboard."""
    services = compose()["services"]
    image_env = runtime_env(dockerfile())
    ports: dict[str, int] = {}

    def start(name: str, extra_env: dict[str, str] | None = None) -> list[str]:
        spec = services[name]
        command = _with_ports(spec["command"], ports)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CONVEYOR_"))},
            **(image_env if name != "redis" else {}),
            **{k: str(v) for k, v in (spec.get("environment") or {}).items()},
            **(extra_env or {}),
        }
        for key, value in list(env.items()):
            if key.endswith("_PORT") and value.isdigit():
                env[key] = str(ports.setdefault(value, free_port()))
            if key.endswith("_ADDRESS"):
                env[key] = "127.0.0.1"
        with (tmp_path / f"{name}.log").open("wb") as log:  # the child keeps its own copy
            processes.append(
                subprocess.Popen(_local(command), env=env, cwd=tmp_path, stdout=log, stderr=log)
            )
        return command

    redis_command = start("redis")
    assert "--appendonly" in redis_command
    redis_port = ports["6379"]
    client = redis.Redis(port=redis_port)
    _until(client.ping, "redis")
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}

    start("local-aws")
    aws_url = f"http://127.0.0.1:{ports['4566']}"
    _until(lambda: _get(aws_url + "/_localaws/health")[0] == 200, "the local AWS", 120)
    shared = {
        "CONVEYOR_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        **aws_env(aws_url),
        "CONVEYOR_FLOWER_BASIC_AUTH": "ops:fl0wer-pass-2026",
        "CONVEYOR_DASHBOARD_BASIC_AUTH": "releases:d4sh-pass-2026",
    }
    # The compose file's own endpoint and credentials, pointed at this test's services.
    for name in ("worker", "watcher", "flower", "dashboard"):
        services[name]["environment"] = {
            k: v
            for k, v in (services[name].get("environment") or {}).items()
            if not k.startswith(
                ("AWS_", "CONVEYOR_REDIS_URL", "CONVEYOR_FLOWER_BASIC", "CONVEYOR_DASH")
            )
        }
        start(name, shared)

    cli_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CONVEYOR_"))},
        **shared,
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(VENV_BIN / "conveyor"), *args],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )

    def both_workers() -> bool:
        listed = cli("workers", "--json")
        names = {w["name"].split("@")[0] for w in json.loads(listed.stdout or "[]")}
        return names == {"worker", "watcher"}

    _until(both_workers, "the worker and the watcher")
    update = cli("update", "--cluster", "demo", "--service", "web", "--image", "web=:1.1.0")
    assert update.returncode == 0, update.stdout + update.stderr

    worker_metrics = f"http://127.0.0.1:{ports['9808']}/metrics"
    status, body = _get(worker_metrics)
    assert status == 200
    assert b"conveyor_queue_depth" in body
    assert b"conveyor_aws_calls_total" in body
    watched = b"".join(_get(f"http://127.0.0.1:{ports[p]}/metrics")[1] for p in ("9808", "9809"))
    assert b'conveyor_deployments_total{kind="update-existing",state="succeeded"} 1.0' in watched

    flower = f"http://127.0.0.1:{ports['5555']}"
    _until(lambda: _get(flower + "/api/workers")[0] == 401, "flower")
    status, body = _get(flower + "/api/workers", "ops:fl0wer-pass-2026")
    assert status == 200
    dashboard = f"http://127.0.0.1:{ports['8080']}"
    _until(lambda: _get(dashboard + "/api/list")[0] == 401, "the dashboard")
    status, body = _get(dashboard + "/api/list", "releases:d4sh-pass-2026")
    assert status == 200
    listed = json.loads(body)["deployments"]
    assert [(d["service"], d["state"]) for d in listed] == [("web", "succeeded")]


def test_compose_serves_plain_http_on_the_hosts_loopback_only() -> None:
    """Flower and the dashboard speak plain HTTP in the compose file: each says so explicitly
    (or the process refuses to start on 0.0.0.0) and is published on 127.0.0.1 only, so their
    passwords never cross the network in clear."""
    services = compose()["services"]
    flower, dashboard = services["flower"], services["dashboard"]
    assert flower["environment"]["CONVEYOR_FLOWER_INSECURE_HTTP"] == "true"
    assert "--insecure-http" in dashboard["command"]
    for spec in (flower, dashboard):
        assert spec["ports"], spec
        assert all(str(port).startswith("127.0.0.1:") for port in spec["ports"]), spec["ports"]


def test_the_example_environment_never_starts_with_its_placeholder_passwords() -> None:
    """Copied unchanged, conveyor.env.example's Flower and dashboard passwords are refused:
    nobody runs with a password printed in this repository."""
    from config.basic_auth import BasicAuthError, parse_basic_auth

    example = (DEPLOY / "systemd" / "conveyor.env.example").read_text().splitlines()
    settings = dict(line.split("=", 1) for line in example if line and not line.startswith("#"))
    for name in ("CONVEYOR_FLOWER_BASIC_AUTH", "CONVEYOR_DASHBOARD_BASIC_AUTH"):
        with pytest.raises(BasicAuthError):
            parse_basic_auth(name, settings[name])


# -- ECS -------------------------------------------------------------------------------------------


def test_the_ecs_manifests_are_valid_requests_and_register(local_aws: str) -> None:
    """Both files validate against the ECS API model as RegisterTaskDefinition and
    CreateService input; on the local AWS they register and create a running service; the
    container runs the image's worker command as the image's user with its health check."""
    model = botocore.session.get_session().get_service_model("ecs")
    task = json.loads((DEPLOY / "ecs" / "task-definition.json").read_text())
    service = json.loads((DEPLOY / "ecs" / "service.json").read_text())
    register = model.operation_model("RegisterTaskDefinition").input_shape
    create = model.operation_model("CreateService").input_shape
    assert register is not None
    assert create is not None
    validate_parameters(task, register)
    validate_parameters(service, create)

    parser = dockerfile()
    (container,) = task["containerDefinitions"]
    assert container["user"] == final(parser, "USER")["value"]
    assert container["healthCheck"]["command"] == ["CMD", *exec_form(final(parser, "HEALTHCHECK"))]
    assert container["command"] == compose()["services"]["worker"]["command"]

    kw: dict[str, Any] = {"endpoint_url": local_aws, "region_name": "us-east-1",
          "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # fmt: skip
    ecs = boto3.client("ecs", **kw)
    ec2 = boto3.client("ec2", **kw)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="conveyor", Description="c", VpcId=vpc)["GroupId"]
    ecs.create_cluster(clusterName=service["cluster"])
    arn = ecs.register_task_definition(**task)["taskDefinition"]["taskDefinitionArn"]
    assert arn.endswith("task-definition/conveyor-worker:1")
    service["networkConfiguration"]["awsvpcConfiguration"].update(
        subnets=[subnet], securityGroups=[group]
    )
    created = ecs.create_service(**service)["service"]
    assert created["taskDefinition"] == arn
    assert created["desiredCount"] == 2


# -- Kubernetes ------------------------------------------------------------------------------------


def test_the_kubernetes_manifests_match_the_image_and_scale_on_queue_depth() -> None:
    """The Deployment runs the compose worker's command as the image's user, with the image's
    health check as liveness probe; the HPA targets it on the exported queue-depth metric."""
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "conveyor.yaml").read_text()))
    by_kind = {d["kind"]: d for d in docs}
    assert set(by_kind) == {
        "Namespace",
        "ServiceAccount",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
    }
    parser = dockerfile()
    pod = by_kind["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert str(pod["securityContext"]["runAsUser"]) == final(parser, "USER")["value"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["command"] == compose()["services"]["worker"]["command"]
    assert container["livenessProbe"]["exec"]["command"] == exec_form(final(parser, "HEALTHCHECK"))
    env = {e["name"]: e for e in container["env"]}
    assert env["CONVEYOR_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "conveyor-redis"
    hpa = by_kind["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == by_kind["Deployment"]["metadata"]["name"]
    (metric,) = hpa["metrics"]
    assert metric["external"]["metric"]["name"] == "conveyor_queue_depth"
    from worker.observe.metrics import QueueDepthCollector

    families = list(QueueDepthCollector(redis.Redis(port=1), ["conveyor"]).collect())
    assert families[0].name == "conveyor_queue_depth"


# -- systemd ---------------------------------------------------------------------------------------


def test_the_systemd_units_verify_and_run_the_compose_commands(tmp_path: Path) -> None:
    """systemd-analyze verify accepts each unit (with /opt/conveyor pointed at this venv); the
    worker unit runs the compose worker's command, concurrency from its environment."""
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        text = unit.read_text().replace("/opt/conveyor/bin", str(VENV_BIN))
        copy = tmp_path / unit.name
        copy.write_text(text)
        verified = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(copy)],
            capture_output=True,
            text=True,
            check=False,
        )
        problems = [
            line
            for line in verified.stderr.splitlines()
            # The test machine has no conveyor user and no network-online target set up.
            if "conveyor" in line and "user" not in line.lower()
        ]
        assert verified.returncode == 0, verified.stderr
        assert problems == [], problems
    worker_unit = (DEPLOY / "systemd" / "conveyor-worker.service").read_text()
    (exec_start,) = [x for x in worker_unit.splitlines() if x.startswith("ExecStart=")]
    argv = exec_start.removeprefix("ExecStart=").split()
    expected = compose()["services"]["worker"]["command"]
    assert argv[0] == "/opt/conveyor/bin/celery"
    assert [a.replace("%%", "%") for a in argv[1:]] == [
        *expected[1 : expected.index("--concurrency") + 1],
        "${CONVEYOR_WORKER_CONCURRENCY}",
    ]
