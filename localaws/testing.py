"""Run a local AWS in a subprocess for tests and tools: ``with run_local_aws() as url: ...``.

The server runs as ``python -m localaws`` in its own process, like in production use, so
that tests talk to it only over HTTP (boto3/aiobotocore with ``endpoint_url=url``, and the
control API under ``url + "/_localaws/"``). This module imports nothing from moto.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

READY_LINE = re.compile(r"conveyor local-aws ready at (http://\S+)")
# The project root, so that ``-m localaws`` resolves to this source tree.
_ROOT = Path(__file__).resolve().parents[1]


class LocalAwsStartError(RuntimeError):
    """Raised when the local AWS subprocess exits or stays silent instead of becoming ready."""


@contextlib.contextmanager
def run_local_aws(
    rollout_seconds: float = 2.0,
    seed: str | None = None,
    *,
    startup_timeout: float = 60.0,
    minute_seconds: float | None = None,
) -> Iterator[str]:
    """Start ``python -m localaws`` on a free port; yield its URL; stop it afterwards.

    Waits up to ``startup_timeout`` seconds for the ready line (with a seed, the seeded world is
    steady by then). On exit the process gets SIGTERM, then SIGKILL if it has not stopped.
    ``minute_seconds``: seconds per simulated minute of blue/green bakes and hook timeouts
    (the server's default when None).
    """
    command = [
        sys.executable,
        "-m",
        "localaws",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--rollout-seconds",
        str(rollout_seconds),
    ]
    if seed is not None:
        command += ["--seed", seed]
    if minute_seconds is not None:
        command += ["--minute-seconds", str(minute_seconds)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    # stderr goes to a file, not a pipe: an unread pipe would eventually block the server.
    with tempfile.TemporaryFile(mode="w+b") as stderr:
        process = subprocess.Popen(
            command,
            cwd=_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            url = _wait_ready(process, startup_timeout, stderr)
            yield url
        finally:
            _stop(process)


def _wait_ready(process: subprocess.Popen[str], timeout: float, stderr: IO[bytes]) -> str:
    assert process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(
        target=_pump, args=(process.stdout, lines), name="localaws-stdout", daemon=True
    ).start()
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise LocalAwsStartError(
                f"local AWS not ready after {timeout:.0f} s{_tail(stderr)}"
            ) from None
        if line is None:
            code = process.wait()
            raise LocalAwsStartError(f"local AWS exited with code {code}{_tail(stderr)}")
        match = READY_LINE.search(line)
        if match:
            return match.group(1)


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    # Keeps reading after the ready line too, so the server never blocks on a full stdout pipe.
    for line in stream:
        lines.put(line)
    lines.put(None)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()


def _tail(stderr: IO[bytes], limit: int = 4000) -> str:
    stderr.seek(0)
    text = stderr.read().decode(errors="replace")[-limit:]
    return f"; its stderr ends with:\n{text}" if text.strip() else ""


def control(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """Call the local AWS's control API at ``url``; returns (HTTP status, decoded JSON body)."""
    data = json.dumps(body).encode() if body is not None else None
    # The URL is always the local AWS on loopback: no file: or other schemes can reach here.
    request = urllib.request.Request(  # noqa: S310
        f"{url}/_localaws/{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def create_alarm(cloudwatch: Any, name: str, *, namespace: str = "app") -> None:
    """A CloudWatch alarm on a 5xx count, for a deployment to watch; it stays as CloudWatch
    leaves it until SetAlarmState moves it (the local AWS evaluates no metric)."""
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        MetricName="5xx",
        Namespace=namespace,
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanThreshold",
    )


def create_services(
    url: str,
    names: list[str],
    *,
    cluster: str = "demo",
    containers: list[dict[str, Any]] | None = None,
    breaker: bool = True,
    tags: list[dict[str, str]] | None = None,
    desired: int = 2,
    account: str | None = None,
) -> list[str]:
    """Create steady EC2 services (a task definition family each) on a running local AWS.

    Waits, through the ``services_stable`` waiter, until every service has COMPLETED its first
    rollout; returns ``names``. ``account`` creates them (and the cluster) in another account.
    """
    import boto3

    # Typed loosely on purpose: callers pass plain JSON-shaped container definitions.
    ecs: Any = boto3.client(
        "ecs",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto accepts any credentials
    )
    if account is not None:

        def in_account(request: Any, **_: Any) -> None:
            request.headers["x-moto-account-id"] = account

        ecs.meta.events.register("before-sign.ecs.*", in_account)
        ecs.create_cluster(clusterName=cluster)
    for name in names:
        ecs.register_task_definition(
            family=name,
            containerDefinitions=containers
            or [{"name": "app", "image": "registry.local:5000/t/app:1.0.0", "memory": 128}],
            **({"tags": tags} if tags else {}),
        )
        ecs.create_service(
            cluster=cluster,
            serviceName=name,
            taskDefinition=name,
            desiredCount=desired,
            launchType="EC2",
            deploymentConfiguration={
                "deploymentCircuitBreaker": {"enable": breaker, "rollback": breaker},
                "maximumPercent": 200,
                "minimumHealthyPercent": 100,
            },
        )
    waiter = ecs.get_waiter("services_stable")
    for start in range(0, len(names), 10):  # DescribeServices takes at most 10 services
        waiter.wait(
            cluster=cluster,
            services=names[start : start + 10],
            WaiterConfig={"Delay": 1, "MaxAttempts": 120},
        )
    return names
