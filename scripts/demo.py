"""`make demo`: a local Redis, the local AWS with the demo world, a worker, two deployments.

1. a real update of the two-container service `web` to a new image tag, with live progress;
2. a broken (`fail-`) image on `api`, which ECS's circuit breaker rolls back, and Conveyor
   reports as rolled_back (not as success);
3. the sample spec deploy/examples/fargate-demo.yaml applied: a Fargate service owned by
   Conveyor as one CloudFormation stack, linked to the demo load balancer;
4. a canary deployment of `web` (10 % of production traffic for 5 minutes, then all of it, then
   a 10-minute bake; a simulated minute lasts a second here), followed through ECS's lifecycle
   stages, with the stages it passed listed at the end;
then everything is shut down. Exit status 0 only when all ended as they should.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from localaws.devstack import ROOT, VENV_BIN, Worker, aws_env, run_redis
from localaws.testing import control, run_local_aws


def banner(text: str) -> None:
    """Print a section heading."""
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def conveyor(env: dict[str, str], *args: str) -> int:
    """Run the real `conveyor` command with the demo's environment; return its exit code."""
    print("$ conveyor " + " ".join(args), flush=True)
    return subprocess.run(
        [str(VENV_BIN / "conveyor"), *args], env=env, cwd=ROOT, check=False
    ).returncode


def main() -> int:
    """Run the demo; return the process exit status."""
    banner("starting redis-server and the local AWS (demo world, 6 s rollouts)")
    with (
        run_redis() as redis_url,
        run_local_aws(rollout_seconds=6.0, seed="demo", minute_seconds=1.0) as endpoint,
    ):
        print(f"redis  {redis_url}\nAWS    {endpoint}", flush=True)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CONVEYOR_"))},
            **aws_env(endpoint),
            "CONVEYOR_REDIS_URL": redis_url,
            "CONVEYOR_POLL_INTERVAL": "1",
            "CONVEYOR_LOG_FORMAT": "json",
        }
        logs = Path(tempfile.mkdtemp(prefix="conveyor-demo-"))
        banner(f"starting a worker (log: {logs / 'worker.log'})")
        worker = Worker("demo", env, logs / "worker.log")
        try:
            worker.wait_ready(redis_url)
            if conveyor(env, "--version") != 0:
                return 1
            banner("1. deploy demo/web:1.1.0 into container 'web' of service 'web'")
            good = conveyor(
                env, "update", "--cluster", "demo", "--service", "web", "--image", "web=:1.1.0"
            )
            banner("2. deploy a broken image (tag fail-1.3.0) to service 'api'")
            bad = conveyor(
                env, "update", "--cluster", "demo", "--service", "api", "--image", "api=:fail-1.3.0"
            )
            banner("3. create the Fargate service 'shop' from deploy/examples/fargate-demo.yaml")
            owned = conveyor(env, "fargate", "apply", "-f", "deploy/examples/fargate-demo.yaml")
            banner("4. a canary deployment of web:1.2.0 (a simulated minute lasts 1 s)")
            canary = conveyor(
                env,
                "update",
                "--cluster",
                "demo",
                "--service",
                "web",
                "--image",
                "web=:1.2.0",
                "--strategy",
                "canary",
                "--canary-percent",
                "10",
                "--canary-bake-minutes",
                "5",
                "--bake-minutes",
                "10",
            )
            print_stages(endpoint, "web")
        finally:
            banner("shutting down")
            worker.stop()
    ok = (good, bad, owned, canary) == (0, 1, 0, 0)
    banner(
        "demo finished: web succeeded, api rolled back, shop created as one stack, "
        "web's canary succeeded"
        if ok
        else f"demo did not go as expected (exit codes {good}, {bad}, {owned}, {canary}); "
        f"see {logs}"
    )
    return 0 if ok else 1


def print_stages(endpoint: str, service: str) -> None:
    """The lifecycle stages the service's newest staged deployment passed, with the share of
    production traffic on the new revision at each (the local AWS's traffic view)."""
    _, view = control(endpoint, "GET", "traffic")
    found = [s for s in view.get("services", []) if s.get("service") == service]
    if not found:
        print("(no staged deployment to show)", flush=True)
        return
    print(f"stages of {service}'s canary ({found[0].get('status')}):", flush=True)
    for stage in found[0].get("stages", []):
        share = stage.get("production_percent", 0.0)
        print(f"  {stage.get('stage'):<32} production traffic on the new revision: {share:g} %")
    print(json.dumps(found[0].get("traffic")), flush=True)


if __name__ == "__main__":
    sys.exit(main())
