"""`make bench`: deploy a fleet of services at once through real workers; measure it.

Starts a local Redis, the local AWS (with AWS's ECS rate limits emulated, optionally scaled),
and N worker processes; creates S services; enqueues one update per service at the same moment
and waits for all. Prints, and writes to docs/benchmarks.md: wall time, deployments per minute,
ECS calls per deployment by operation, throttled calls, and worker memory (RSS).

    python -m scripts.bench [--services 40] [--workers 2] [--limit-scale 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import boto3

from config.settings import Settings
from localaws.devstack import ROOT, Worker, aws_env, run_redis
from localaws.testing import control, create_services, run_local_aws
from producers.client import ConveyorClient
from producers.contract.jobs import ImageUpdate, UpdateServiceJob


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB (from /proc)."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total / 1024


def make_services(endpoint: str, count: int) -> list[str]:
    """Create ``count`` steady two-container services on cluster bench."""
    boto3.client(
        "ecs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_cluster(clusterName="bench")
    return create_services(
        endpoint,
        [f"svc-{i:04d}" for i in range(count)],
        cluster="bench",
        containers=[
            {"name": "app", "image": "registry.local:5000/bench/app:1.0.0", "memory": 128},
            {"name": "sidecar", "image": "registry.local:5000/bench/proxy:1", "memory": 64},
        ],
        tags=[{"key": "bench", "value": "yes"}],
    )


def main() -> int:
    """Run the benchmark; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rollout-seconds", type=float, default=5.0)
    parser.add_argument(
        "--limit-scale",
        type=float,
        default=1.0,
        help="multiply AWS's ECS refill rates (1 = real limits)",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()

    with run_redis() as redis_url, run_local_aws(rollout_seconds=args.rollout_seconds) as endpoint:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CONVEYOR_"))},
            **aws_env(endpoint),
            "CONVEYOR_REDIS_URL": redis_url,
            "CONVEYOR_POLL_INTERVAL": "2",
            "CONVEYOR_LOG_FORMAT": "json",
        }
        names = make_services(endpoint, args.services)
        control(endpoint, "POST", "limits", {"enabled": True, "scale": args.limit_scale})
        control(endpoint, "DELETE", "stats")
        logs = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
        workers = []
        for i in range(args.workers):
            worker = Worker(f"bench{i}", env, logs / f"bench{i}.log", concurrency=args.concurrency)
            worker.wait_ready(redis_url)
            workers.append(worker)
        idle_rss = [rss_mb(w.proc.pid) for w in workers]
        client = ConveyorClient(Settings(redis_url=redis_url))  # type: ignore[arg-type]
        started = time.monotonic()
        ids = [
            client.enqueue(
                UpdateServiceJob(
                    cluster="bench",
                    service=name,
                    images=(ImageUpdate(container="app", image=":1.1.0"),),
                )
            ).id
            for name in names
        ]
        enqueue_seconds = time.monotonic() - started
        durations = []
        states: dict[str, int] = {}
        peak_rss = list(idle_rss)
        for deployment_id in ids:
            record = client.wait(deployment_id, timeout=1800, interval=0.5)
            states[record.state.value] = states.get(record.state.value, 0) + 1
            if record.finished_at and record.started_at:
                durations.append(record.finished_at - record.created_at)
            peak_rss = [max(p, rss_mb(w.proc.pid)) for p, w in zip(peak_rss, workers, strict=True)]
        wall = time.monotonic() - started
        stats = control(endpoint, "GET", "stats")[1]
        for worker in workers:
            worker.stop()

    n = len(ids)
    calls = stats.get("calls", {})
    lines = [
        "# Benchmarks",
        "",
        "Measured by `make bench` (`python -m scripts.bench "
        f"--services {args.services} --workers {args.workers} --concurrency {args.concurrency} "
        f"--rollout-seconds {args.rollout_seconds} --limit-scale {args.limit_scale}`) on "
        f"{platform.machine()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}. "
        "Shared, noisy machines: read the figures as orders of magnitude.",
        "",
        f"- deployments: {n} services, one new revision each, enqueued at once; outcomes: {states}",
        f"- enqueue: {n / enqueue_seconds:.0f} jobs/s from one producer process",
        f"- wall time until all ended: {wall:.1f} s ({n / wall * 60:.0f} deployments/min); "
        f"each simulated rollout takes {args.rollout_seconds} s",
        f"- per deployment, enqueue to verdict: median {statistics.median(durations):.1f} s, "
        f"max {max(durations):.1f} s"
        if durations
        else "- no durations recorded",
        "- ECS calls per deployment (throttled attempts included): "
        + ", ".join(f"{op} {count / n:.1f}" for op, count in sorted(calls.items())),
        f"- throttled ECS calls (AWS limits emulated, refill x{args.limit_scale}): "
        f"{sum(stats.get('throttled', {}).values())}",
        f"- worker RSS (main + {args.concurrency} children): idle "
        + ", ".join(f"{r:.0f} MB" for r in idle_rss)
        + "; peak "
        + ", ".join(f"{r:.0f} MB" for r in peak_rss),
        "",
        "RegisterTaskDefinition's bucket (20 burst, 1/s refill per account and region) bounds "
        "any tool that registers a revision per service: about 20 + t services in t seconds.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    return 0 if states.get("succeeded", 0) == n else 1


if __name__ == "__main__":
    sys.exit(main())
