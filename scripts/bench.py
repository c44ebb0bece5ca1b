"""`make bench [FLEET=N]`: deploy one fleet with Conveyor and with the tools people use today.

Against the local AWS with AWS's ECS token buckets emulated at their real rates (per account
and region; RegisterTaskDefinition 20 then 1/s, UpdateService 5/s, DescribeServices 20/s), the
same fleet (FLEET services, 2 tasks each) is deployed, side by side, by:

* Conveyor with 1, 2 and 4 worker processes, enqueued with one `conveyor release -f`;
* Conveyor from a shell loop of `conveyor update --no-wait`, then `conveyor wait` for each;
* the PyPI tool ecs-deploy, one service at a time and 8 at once, with its default settings;
* a plain boto3 script (register, update, the SDK's services_stable waiter), 8 at once.

``--systems conveyor-accounts --accounts 3`` instead spreads the fleet over that many accounts
(shares 3:2:1 for three; the local AWS keeps accounts and their buckets apart; Conveyor reaches
the others through assumed roles) and reports, per account, when its last service finished
against that account's own bound.

``conveyor-outside`` deploys the fleet (one release, 2 workers) while another client of the
account registers task definitions at a fifth of the register budget throughout (as Terraform or
a CI job would), and reports the bound that remains to Conveyor and whose calls were throttled.
``conveyor-late`` releases the fleet and, ``--late-after`` seconds in, while registers are still
booked ahead, 20 more services are updated one by one from the CLI. ``conveyor-canary`` releases
the fleet with every service deployed by ECS as a canary, followed through its lifecycle stages.

``--repeat N`` runs each system N times and reports the median and the spread of each figure.

Before each run the local AWS and Redis are reset and the fleet is created afresh. Prints one
table and writes docs/bench/latest.json and docs/bench/latest.png.

    python -m scripts.bench [--fleet 200] [--systems conveyor-2,boto3-8,...] [--repeat 3]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import redis
import yaml
from botocore.config import Config
from botocore.exceptions import ClientError

from config.settings import Settings
from localaws.devstack import ROOT, VENV_BIN, Worker, aws_env, run_redis
from localaws.testing import control, create_services, run_local_aws
from producers.client import ConveyorClient
from producers.contract.jobs import ImageUpdate, UpdateServiceJob

CLUSTER = "bench"
DEFAULT_ACCOUNT = "123456789012"  # the local AWS's own account (moto's default)
REGISTER_BURST, REGISTER_RATE = 20, 1.0  # the bucket that bounds a fleet update
ALL_SYSTEMS = (
    "conveyor-1",
    "conveyor-2",
    "conveyor-4",
    "conveyor-shell-loop",
    "ecs-deploy-serial",
    "ecs-deploy-8",
    "boto3-8",
)


@dataclass
class Result:
    """One system's run over the fleet."""

    system: str
    workers: int | None
    services: int
    wall_s: float
    succeeded: int
    failed: int
    throttled: int
    calls_per_deployment: float
    min_calls_per_deployment: float
    bound_s: float
    calls: dict[str, int] = field(default_factory=dict)
    # conveyor-accounts only: per account, its services, last verdict (s) and bound (s)
    accounts: list[dict[str, Any]] = field(default_factory=list)
    # conveyor-outside: the other client's calls and throttles; Conveyor's own throttles
    outside: dict[str, int] = field(default_factory=dict)
    run: int = 1


# conveyor-canary's services: ECS deploys them as canaries (the local AWS's minute lasts 0.1 s,
# so the bakes take 1.5 s, the stages about 6 s at the default 5-second rollouts).
CANARY: dict[str, Any] = {
    "strategy": "CANARY",
    "bakeTimeInMinutes": 10,
    "canaryConfiguration": {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 5},
    "deploymentCircuitBreaker": {"enable": True, "rollback": True},
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
}


def bound_seconds(fleet: int, rollout: float, share: float = 1.0) -> float:
    """The physical limit: the register bucket's burst, then its refill (``share`` of it when
    another client spends the rest), then one rollout."""
    return max(0, fleet - REGISTER_BURST) / (REGISTER_RATE * share) + rollout


def split_fleet(names: list[str], accounts: int) -> dict[str, list[str]]:
    """Spread the fleet over ``accounts`` accounts, shares k:k-1:…:1 (the first the busiest)."""
    ids = [DEFAULT_ACCOUNT] + [str(i) * 12 for i in range(2, accounts + 1)]
    weights = list(range(accounts, 0, -1))
    out: dict[str, list[str]] = {}
    start = 0
    for i, account in enumerate(ids):
        size = round(len(names) * weights[i] / sum(weights)) if i < accounts - 1 else None
        out[account] = names[start : None if size is None else start + size]
        start += size or 0
    return out


def min_calls(rollout: float, poll: float) -> float:
    """Describe the service, describe the family, register, update, and a tenth of a describe
    per poll (10 services per DescribeServices call)."""
    return 4 + math.ceil(rollout / poll) / 10


def _entries(names: list[str], role: str | None = None) -> list[dict[str, Any]]:
    """Release file entries: a new image for each service's app container."""
    return [
        {"service": n, "images": {"app": ":1.1.0"}, **({"role_arn": role} if role else {})}
        for n in names
    ]


def rss_mb(pid: int) -> list[float]:
    """Resident memory of a process and of each of its children, in MB (from /proc)."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    found = []
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    found.append(int(line.split()[1]) / 1024)
        except FileNotFoundError:
            continue
    return found


class Bench:
    """The local AWS, a Redis, and the fleet; resets both between systems."""

    def __init__(self, endpoint: str, redis_url: str, args: argparse.Namespace) -> None:
        self.endpoint = endpoint
        self.redis_url = redis_url
        self.args = args
        self.names = [f"svc-{i:04d}" for i in range(args.fleet)]
        self.accounts: dict[str, list[str]] = {}  # account -> its services (multi-account runs)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CONVEYOR_"))},
            **aws_env(endpoint),
            "CONVEYOR_REDIS_URL": redis_url,
            "CONVEYOR_POLL_INTERVAL": str(args.poll),
            "CONVEYOR_LOG_FORMAT": "json",
            "CONVEYOR_LOG_LEVEL": "WARNING",
        }
        self.logs = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
        self.rss: dict[str, list[float]] = {}

    def ecs(self) -> Any:
        return boto3.client(
            "ecs",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(max_pool_connections=32),
        )

    def reset(self, accounts: int = 1) -> None:
        """Fresh accounts with a steady fleet, limits on, stats cleared, Redis empty."""
        control(self.endpoint, "POST", "reset")
        redis.Redis.from_url(self.redis_url).flushdb()
        self.ecs().create_cluster(clusterName=CLUSTER)
        self.accounts = split_fleet(self.names, accounts)
        for account, names in self.accounts.items():
            create_services(
                self.endpoint,
                names,
                cluster=CLUSTER,
                containers=[
                    {"name": "app", "image": "registry.local:5000/bench/app:1.0.0", "memory": 128},
                    {"name": "sidecar", "image": "registry.local:5000/bench/proxy:1", "memory": 64},
                ],
                desired=self.args.tasks,
                account=None if account == DEFAULT_ACCOUNT else account,
            )
        control(self.endpoint, "POST", "limits", {"enabled": True, "scale": 1})
        control(self.endpoint, "DELETE", "stats")

    def result(self, system: str, workers: int | None, wall: float, ok: int) -> Result:
        stats = control(self.endpoint, "GET", "stats")[1]
        calls = dict(stats.get("calls", {}))
        n = len(self.names)
        return Result(
            system=system,
            workers=workers,
            services=n,
            wall_s=round(wall, 1),
            succeeded=ok,
            failed=n - ok,
            throttled=sum(stats.get("throttled", {}).values()),
            calls_per_deployment=round(sum(calls.values()) / n, 2),
            min_calls_per_deployment=min_calls(self.args.rollout_seconds, self.args.poll),
            bound_s=bound_seconds(n, self.args.rollout_seconds),
            calls=calls,
        )

    # -- Conveyor ---------------------------------------------------------------------------

    def _workers(self, count: int) -> list[Worker]:
        workers = []
        for i in range(count):
            worker = Worker(f"bench{i}", self.env, self.logs / f"bench{i}.log", concurrency=2)
            worker.wait_ready(self.redis_url)
            workers.append(worker)
        return workers

    def conveyor_release(self, workers: int) -> Result:
        """Enqueue the fleet with one `conveyor release -f`; wait for the verdict."""
        running = self._workers(workers)
        client, release_id, started = self._release(_entries(self.names), "bench")
        peak: list[float] = []
        record = client.release_status(release_id)
        while not record.terminal:
            time.sleep(0.5)
            record = client.release_status(record.id)
            sample = [r for w in running for r in rss_mb(w.proc.pid)]
            peak = sample if sum(sample) > sum(peak) else peak
        wall = time.time() - started
        if workers == 2:
            self.rss = {
                "idle_after": [round(r, 1) for w in running for r in rss_mb(w.proc.pid)],
                "peak": [round(r, 1) for r in peak],
            }
        for worker in running:
            worker.stop()
        ok = record.summary().get("succeeded", 0)
        return self.result(f"conveyor-{workers}", workers, wall, ok)

    def conveyor_accounts(self) -> Result:
        """The fleet over several accounts in one release (2 workers); per-account finish."""
        running = self._workers(2)
        services = []
        for account, names in self.accounts.items():
            role = None if account == DEFAULT_ACCOUNT else f"arn:aws:iam::{account}:role/deployer"
            services += _entries(names, role)
        client, release_id, started = self._release(services, "bench-accounts")
        record = client.wait_release(release_id, timeout=7200)
        wall = time.time() - started
        for worker in running:
            worker.stop()
        finished: dict[str, float] = {}
        for deployment in client.release_deployments(record):
            if deployment is not None and deployment.finished_at is not None:
                finished[deployment.service] = deployment.finished_at - started
        per_account: list[dict[str, Any]] = [
            {
                "account": account,
                "services": len(names),
                "last_verdict_s": round(max(finished.get(n, wall) for n in names), 1),
                "bound_s": bound_seconds(len(names), self.args.rollout_seconds),
            }
            for account, names in self.accounts.items()
        ]
        result = self.result("conveyor-accounts", 2, wall, record.summary().get("succeeded", 0))
        result.accounts = per_account
        result.bound_s = max(
            bound_seconds(len(n), self.args.rollout_seconds) for n in self.accounts.values()
        )
        return result

    def _release(
        self, services: list[dict[str, Any]], name: str
    ) -> tuple[ConveyorClient, str, float]:
        """Enqueue ``services`` (release file entries) with one `conveyor release -f`; the
        client, the release id and the wall time it started."""
        release = {"release": name, "cluster": CLUSTER, "services": services}
        path = self.logs / f"{name}.yaml"
        path.write_text(yaml.safe_dump(release))
        client = ConveyorClient(Settings(redis_url=self.redis_url))  # type: ignore[arg-type]
        started = time.time()
        out = subprocess.run(
            [str(VENV_BIN / "conveyor"), "release", "-f", str(path), "--no-wait"],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return client, out.stdout.strip(), started

    def conveyor_outside(self) -> Result:
        """The fleet in one release while another client spends a fifth of the register
        budget throughout; the bound is what the other client leaves."""
        share = self.args.outside_share
        running = self._workers(2)
        other = {"calls": 0, "throttled": 0}
        stop = threading.Event()
        ecs = boto3.client(
            "ecs",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"total_max_attempts": 1}),
        )

        def other_client() -> None:
            # Evenly spaced, as a steady stream of Terraform runs and CI jobs would be.
            while not stop.wait(1 / (REGISTER_RATE * share)):
                other["calls"] += 1
                try:
                    ecs.register_task_definition(
                        family="outside-client",
                        containerDefinitions=[{"name": "app", "image": "x/app:1", "memory": 64}],
                    )
                except ClientError:
                    other["throttled"] += 1

        thread = threading.Thread(target=other_client, daemon=True)
        thread.start()
        try:
            client, release_id, started = self._release(_entries(self.names), "bench-outside")
            record = client.wait_release(release_id, timeout=7200)
            wall = time.time() - started
        finally:
            stop.set()
            thread.join()
        for worker in running:
            worker.stop()
        result = self.result("conveyor-outside", 2, wall, record.summary().get("succeeded", 0))
        # The local AWS counts every throttled call; the other client's own are taken out.
        result.outside = {**other, "conveyor_throttled": result.throttled - other["throttled"]}
        result.throttled -= other["throttled"]
        for op in ("RegisterTaskDefinition",):
            result.calls[op] = result.calls.get(op, 0) - other["calls"]
        result.calls_per_deployment = round(sum(result.calls.values()) / len(self.names), 2)
        result.bound_s = bound_seconds(len(self.names), self.args.rollout_seconds, 1 - share)
        return result

    def conveyor_late(self) -> Result:
        """The fleet less 20 in one release; 20 more updates from the CLI ``--late-after`` s in,
        while the release's registers are still booked ahead."""
        running = self._workers(2)
        first, late = self.names[:-20], self.names[-20:]
        client, release_id, started = self._release(_entries(first), "bench-late")
        time.sleep(max(0.0, started + self.args.late_after - time.time()))
        ids = []
        for name in late:
            out = subprocess.run(
                [
                    str(VENV_BIN / "conveyor"),
                    "update",
                    "--cluster",
                    CLUSTER,
                    "--service",
                    name,
                    "--image",
                    "app=:1.1.0",
                    "--no-wait",
                ],
                env=self.env,
                capture_output=True,
                text=True,
                check=True,
            )
            ids.append(out.stdout.strip())
        record = client.wait_release(release_id, timeout=7200)
        ok = record.summary().get("succeeded", 0)
        ok += sum(client.wait(i, timeout=3600).state.value == "succeeded" for i in ids)
        wall = time.time() - started
        for worker in running:
            worker.stop()
        return self.result("conveyor-late", 2, wall, ok)

    def conveyor_canary(self) -> Result:
        """The fleet, every service deployed by ECS as a canary (10 % for 5 minutes, then a
        10-minute bake), in one release (2 workers). The bound is the register bucket's, plus
        one canary deployment's own duration, measured alone after the release."""
        ecs = self.ecs()
        for name in self.names:
            ecs.update_service(cluster=CLUSTER, service=name, deploymentConfiguration=CANARY)
        control(self.endpoint, "DELETE", "stats")  # those calls are the bench's, not Conveyor's
        running = self._workers(2)
        client, release_id, started = self._release(_entries(self.names), "bench-canary")
        record = client.wait_release(release_id, timeout=7200)
        wall = time.time() - started
        result = self.result("conveyor-canary", 2, wall, record.summary().get("succeeded", 0))
        alone = time.time()
        subprocess.run(
            [
                str(VENV_BIN / "conveyor"),
                "update",
                "--cluster",
                CLUSTER,
                "--service",
                self.names[0],
                "--image",
                "app=:1.2.0",
            ],
            env=self.env,
            capture_output=True,
            check=True,
        )
        one = time.time() - alone
        for worker in running:
            worker.stop()
        result.bound_s = round(bound_seconds(len(self.names), one), 1)
        return result

    def conveyor_shell_loop(self) -> Result:
        """One `conveyor update --no-wait` per service from a shell loop, then `conveyor wait`."""
        running = self._workers(2)
        script = (
            f"for s in {' '.join(self.names)}; do "
            f'"{VENV_BIN / "conveyor"}" update --cluster {CLUSTER} --service "$s" '
            "--image app=:1.1.0 --no-wait; done"
        )
        started = time.monotonic()
        out = subprocess.run(
            ["bash", "-c", script], env=self.env, capture_output=True, text=True, check=True
        )
        ids = out.stdout.split()
        ok = 0
        for deployment_id in ids:
            waited = subprocess.run(
                [str(VENV_BIN / "conveyor"), "wait", deployment_id],
                env=self.env,
                capture_output=True,
                text=True,
                check=False,
            )
            ok += waited.returncode == 0
        wall = time.monotonic() - started
        for worker in running:
            worker.stop()
        return self.result("conveyor-shell-loop", 2, wall, ok)

    # -- peers ---------------------------------------------------------------------------------

    def ecs_deploy(self, parallel: int) -> Result:
        """The PyPI ecs-deploy, default settings, `parallel` services at once."""
        binary = os.environ.get("ECS_DEPLOY_BIN") or shutil.which("ecs") or ""
        env = {**self.env, "AWS_DEFAULT_REGION": "us-east-1"}

        def one(name: str) -> bool:
            run = subprocess.run(
                [
                    binary,
                    "deploy",
                    CLUSTER,
                    name,
                    "-i",
                    "app",
                    "registry.local:5000/bench/app:1.1.0",
                ],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            return run.returncode == 0 and "Deployment successful" in run.stdout

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            ok = sum(pool.map(one, self.names))
        wall = time.monotonic() - started
        name = "ecs-deploy-serial" if parallel == 1 else f"ecs-deploy-{parallel}"
        return self.result(name, None, wall, ok)

    def boto3_script(self, parallel: int) -> Result:
        """Register, update and the SDK's services_stable waiter, `parallel` at once."""

        def one(name: str) -> bool:
            ecs = self.ecs()
            try:
                service = ecs.describe_services(cluster=CLUSTER, services=[name])["services"][0]
                td = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])
                definition = td["taskDefinition"]
                keep = ("family", "containerDefinitions", "networkMode", "volumes", "cpu", "memory")
                payload = {k: definition[k] for k in keep if k in definition}
                payload["containerDefinitions"][0]["image"] = "registry.local:5000/bench/app:1.1.0"
                arn = ecs.register_task_definition(**payload)["taskDefinition"]["taskDefinitionArn"]
                ecs.update_service(cluster=CLUSTER, service=name, taskDefinition=arn)
                ecs.get_waiter("services_stable").wait(cluster=CLUSTER, services=[name])
            except Exception:  # noqa: BLE001 - a failed deployment is a result, not a crash
                return False
            return True

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            ok = sum(pool.map(one, self.names))
        wall = time.monotonic() - started
        return self.result(f"boto3-{parallel}", None, wall, ok)

    # -- latency and verdict lag at low load -----------------------------------------------------

    def low_load(self, samples: int) -> tuple[dict[str, float], dict[str, float]]:
        """Enqueue-to-UpdateService latency and verdict lag, one deployment at a time."""
        running = self._workers(2)
        client = ConveyorClient(Settings(redis_url=self.redis_url))  # type: ignore[arg-type]
        latency, lag = [], []
        for i, name in enumerate(self.names[:samples]):
            record = client.enqueue(
                UpdateServiceJob(
                    cluster=CLUSTER,
                    service=name,
                    images=(ImageUpdate(container="app", image=f":2.0.{i}"),),
                )
            )
            final = client.wait(record.id, timeout=300, interval=0.2)
            updated = next(
                (s.at for s in final.steps if s.step == "update" and s.status == "completed"), None
            )
            if updated is not None:
                latency.append((updated - final.created_at) * 1000)
            steady = [e for e in final.events if "steady state" in e.message]
            if steady and final.finished_at:
                # The event ECS writes when the rollout completed, against the verdict's time.
                at = datetime.fromisoformat(steady[0].created_at).timestamp()
                lag.append(max(0.0, (final.finished_at - at) * 1000))
        for worker in running:
            worker.stop()
        return _percentiles(latency), _percentiles(lag)


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    return {"p50": round(statistics.median(ordered), 1), "p99": round(p99, 1), "n": len(ordered)}


def _spread(values: list[float]) -> dict[str, float]:
    """Median, least and most of one figure over the runs."""
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def summarize(results: list[Result]) -> dict[str, dict[str, Any]]:
    """Per system, over its runs: the median and spread of wall time, of wall time over the
    bound, of throttled calls, and of each account's finish over its own bound."""
    summary: dict[str, dict[str, Any]] = {}
    for system in dict.fromkeys(r.system for r in results):
        runs = [r for r in results if r.system == system]
        entry: dict[str, Any] = {
            "runs": len(runs),
            "wall_s": _spread([r.wall_s for r in runs]),
            "x_bound": _spread([r.wall_s / r.bound_s for r in runs]),
            "throttled": _spread([float(r.throttled) for r in runs]),
            "failed": sum(r.failed for r in runs),
        }
        accounts = dict.fromkeys(a["account"] for r in runs for a in r.accounts)
        if accounts:
            entry["accounts_x_own_bound"] = {
                account: _spread(
                    [
                        a["last_verdict_s"] / a["bound_s"]
                        for r in runs
                        for a in r.accounts
                        if a["account"] == account
                    ]
                )
                for account in accounts
            }
        summary[system] = entry
    return summary


def summary_lines(summary: dict[str, dict[str, Any]]) -> list[str]:
    """The summary as text, one line per system and per account."""

    def show(s: dict[str, float], fmt: str) -> str:
        return f"{s['median']:{fmt}} ({s['min']:{fmt}}-{s['max']:{fmt}})"

    lines = []
    for system, entry in summary.items():
        lines.append(
            f"{system}: {entry['runs']} runs, wall {show(entry['wall_s'], '.1f')} s, "
            f"x bound {show(entry['x_bound'], '.3f')}, throttled "
            f"{show(entry['throttled'], '.0f')}, failed {entry['failed']}"
        )
        for account, s in entry.get("accounts_x_own_bound", {}).items():
            lines.append(f"  account {account}: x own bound {show(s, '.3f')}")
    return lines


def chart(results: list[Result], path: Path) -> None:
    """Wall time and calls per deployment, per system, against the bound and the minimum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.system for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.barh(names, [r.wall_s for r in results], color="#4c72b0")
    left.axvline(results[0].bound_s, color="#c44e52", linestyle="--", label="bound")
    left.set_xlabel("wall time (s)")
    left.legend()
    right.barh(names, [r.calls_per_deployment for r in results], color="#55a868")
    right.axvline(
        results[0].min_calls_per_deployment, color="#c44e52", linestyle="--", label="minimum"
    )
    right.set_xlabel("ECS calls per deployment")
    right.legend()
    fig.suptitle(f"{results[0].services} services, AWS's ECS limits at real rates")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    """Run the benchmark; return 0 when every Conveyor deployment succeeded."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--fleet", type=int, default=int(os.environ.get("FLEET", "200")))
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--rollout-seconds", type=float, default=5.0)
    parser.add_argument("--poll", type=float, default=5.0)
    parser.add_argument("--systems", default=",".join(ALL_SYSTEMS))
    parser.add_argument("--latency-samples", type=int, default=10)
    parser.add_argument("--accounts", type=int, default=3, help="for conveyor-accounts")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "bench")
    parser.add_argument("--repeat", type=int, default=int(os.environ.get("REPEAT", "1")))
    parser.add_argument(
        "--outside-share", type=float, default=0.2, help="conveyor-outside: the other's share"
    )
    parser.add_argument(
        "--late-after", type=float, default=85.0, help="conveyor-late: when the 20 arrive (s)"
    )
    args = parser.parse_args()
    systems = [s for s in args.systems.split(",") if s]
    runners: dict[str, Callable[[Bench], Result]] = {
        "conveyor-1": lambda b: b.conveyor_release(1),
        "conveyor-2": lambda b: b.conveyor_release(2),
        "conveyor-4": lambda b: b.conveyor_release(4),
        "conveyor-shell-loop": Bench.conveyor_shell_loop,
        "ecs-deploy-serial": lambda b: b.ecs_deploy(1),
        "ecs-deploy-8": lambda b: b.ecs_deploy(8),
        "boto3-8": lambda b: b.boto3_script(8),
        "conveyor-accounts": Bench.conveyor_accounts,
        "conveyor-outside": Bench.conveyor_outside,
        "conveyor-late": Bench.conveyor_late,
        "conveyor-canary": Bench.conveyor_canary,
    }
    results: list[Result] = []
    with run_redis() as redis_url, run_local_aws(rollout_seconds=args.rollout_seconds) as url:
        bench = Bench(url, redis_url, args)
        for system in systems:
            for run in range(1, args.repeat + 1):
                bench.reset(args.accounts if system == "conveyor-accounts" else 1)
                result = runners[system](bench)
                result.run = run
                results.append(result)
                print(
                    f"{result.system:22} run {run}  {result.wall_s:8.1f} s"
                    f"  x{result.wall_s / result.bound_s:.3f} of {result.bound_s:.0f} s"
                    f"  {result.succeeded:4}/{result.services}  throttled {result.throttled:4}"
                    f"  calls/deployment {result.calls_per_deployment}"
                    + "".join(
                        f"  [{a['account']}: x{a['last_verdict_s'] / a['bound_s']:.3f}]"
                        for a in result.accounts
                    )
                    + (f"  outside {result.outside}" if result.outside else ""),
                    flush=True,
                )
        latency: dict[str, float] = {}
        lag: dict[str, float] = {}
        if args.latency_samples > 0:
            bench.reset()
            latency, lag = bench.low_load(args.latency_samples)
    print()
    header = ("system", "wall s", "bound s", "ok", "throttled", "calls/dep", "min")
    print(f"{header[0]:22} " + " ".join(f"{h:>9}" for h in header[1:]))
    for r in results:
        print(
            f"{r.system:22} {r.wall_s:9.1f} {r.bound_s:9.1f} {r.succeeded:9} {r.throttled:9} "
            f"{r.calls_per_deployment:9.2f} {r.min_calls_per_deployment:9.2f}"
        )
    for r in results:
        for a in r.accounts:
            print(
                f"  account {a['account']}: {a['services']} services, last verdict "
                f"{a['last_verdict_s']} s, bound {a['bound_s']} s"
            )
    summary = summarize(results)
    if args.repeat > 1:
        print()
        print("median (spread: min-max) over the runs:")
        for line in summary_lines(summary):
            print("  " + line)
    print(f"enqueue to UpdateService (low load), ms: {latency}")
    print(f"verdict lag, ms: {lag}")
    print(f"worker RSS (2 workers: main and children), MB: {bench.rss}")
    report = {
        "results": [asdict(r) for r in results],
        "summary": summary,
        "latency_ms": latency,
        "verdict_lag_ms": lag,
        "worker_rss_mb": bench.rss,
        "settings": {
            "fleet": args.fleet,
            "tasks_per_service": args.tasks,
            "rollout_seconds": args.rollout_seconds,
            "poll_interval": args.poll,
            "limits": "AWS's ECS buckets at real rates (scale 1)",
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "date": time.strftime("%Y-%m-%d"),
            "repeat": args.repeat,
        },
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    chart([r for r in results if r.run == 1], args.output / "latest.png")
    conveyor = [r for r in results if r.system.startswith("conveyor")]
    return 0 if all(r.failed == 0 for r in conveyor) else 1


if __name__ == "__main__":
    sys.exit(main())
