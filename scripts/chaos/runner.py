"""Play a schedule against real processes and record its history.

The local AWS (real ECS rate limits), a redis-server with AOF on (restarted in place by the
schedule), several real Celery workers (SIGKILLed and started again), services in two
accounts (the second through an assumed role). Jobs go in through ConveyorClient, outside
deployments through boto3 as Terraform would make them. When the schedule is over the faults
stop, every process is up again, and the runner waits for the system to be quiet before it
reads the history: the records from Redis, ECS's deployment history and task definitions
from the local AWS, the workers' logs, their metrics.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import boto3
import redis
import yaml
from botocore.config import Config

from config.settings import Settings
from localaws.devstack import ROOT, Worker, aws_env, free_port, redis_server_binary
from localaws.testing import control, create_alarm, create_services, run_local_aws
from producers.cli.core import stage_reached
from producers.client import ConveyorClient
from producers.contract.errors import FrozenError
from producers.contract.fargate_spec import FargateServiceJob
from producers.contract.gates import load_gate
from producers.contract.jobs import (
    ContainerSettings,
    ImageUpdate,
    PreDeployTask,
    UpdateServiceJob,
)
from producers.contract.releases import ReleaseJob
from producers.contract.stages import stage_named
from producers.planfile import PlanFileError, load_plan, moved, pin_bases, plan_file, with_settings
from scripts.chaos.checker import History, Result, check
from scripts.chaos.schedule import STAGED_SERVICES, Event, Schedule
from worker.domain.planning import DEPLOYMENT_TAG, DISCARD_TAG

ACCOUNTS = ("123456789012", "222222222222")
CLUSTER = "demo"
CONTAINER = {"name": "app", "image": "registry.local:5000/t/app:1.0.0", "memory": 128}
# A value no part of Conveyor may ever write down: it goes in as an environment value.
# The alarm every gated release's gate reads, in each account (a wave's gate is measured
# with its services' identity).
GATE_ALARM = "chaos-gate"
SECRET = "chaos-canary-7f3e9b1d"  # noqa: S105 - a canary, not a credential
# Fargate applies start from the sample spec for the demo world (default account only).
FARGATE_SPEC = ROOT / "deploy" / "examples" / "fargate-demo.yaml"
FARGATE_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo/web"
EXIT_CODES = {
    "succeeded": 0,
    "failed": 1,
    "rolled_back": 1,
    "superseded": 4,
    "cancelled": 5,
}


def service_name(account: int, number: int) -> str:
    """The real name of the schedule's service ``(account, number)``."""
    return f"a{account}-svc-{number}"


def staged_name(index: int) -> str:
    """The real name of the schedule's staged service ``index`` (default account)."""
    strategy, gated = STAGED_SERVICES[index]
    return f"st-{strategy.lower().replace('_', '')}-{'gated' if gated else 'open'}-{index}"


def alarm_name(index: int) -> str:
    """The CloudWatch alarm of staged service ``index``: on its deployment configuration,
    with rollback, from the start."""
    return f"{staged_name(index)}-5xx"


# A staged service's own deployment configuration, set once it is steady (its first
# deployment has none of it). Minutes last 0.1 s in the local AWS: a bake of 50 is 5 s.
STAGED_BAKE_MINUTES = 50
STAGED_OPTIONS: dict[str, dict[str, Any]] = {
    "BLUE_GREEN": {},
    "CANARY": {"canaryConfiguration": {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 10}},
    "LINEAR": {"linearConfiguration": {"stepPercent": 50.0, "stepBakeTimeInMinutes": 10}},
}
# A gated service's PAUSE hook: unanswered, ECS rolls the deployment back after 40 s, long
# enough for the schedule's answers to find it awaiting.
PAUSE_HOOK = {
    "targetType": "PAUSE",
    "lifecycleStages": ["POST_SCALE_UP"],
    "timeoutConfiguration": {"timeoutInMinutes": 400, "action": "ROLLBACK"},
}


def staged_configuration(index: int, *, first: bool) -> dict[str, Any]:
    """Staged service ``index``'s deployment configuration: for its creation (``first``: no
    bake, no hook, so that it becomes steady at once), or its own for every later deployment."""
    strategy, gated = STAGED_SERVICES[index]
    configuration: dict[str, Any] = {
        "strategy": strategy,
        "bakeTimeInMinutes": 0 if first else STAGED_BAKE_MINUTES,
        "maximumPercent": 200,
        "minimumHealthyPercent": 100,
        "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        **STAGED_OPTIONS[strategy],
    }
    if not first:
        configuration["alarms"] = {
            "alarmNames": [alarm_name(index)],
            "enable": True,
            "rollback": True,
        }
        if gated:
            configuration["lifecycleHooks"] = [PAUSE_HOOK]
    return configuration


class RedisServer:
    """A redis-server with AOF on, on a fixed port and directory, so it can restart in place."""

    def __init__(self, workdir: Path, name: str = "redis", options: tuple[str, ...] = ()) -> None:
        self.options = options
        self.port = free_port()
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, replica_of: int | None = None) -> None:
        """Start it and wait until it answers (the AOF is loaded by then); ``replica_of``
        makes it a replica of the server on that port."""
        extra = ["--replicaof", "127.0.0.1", str(replica_of)] if replica_of else []
        with (self.dir / "redis.log").open("ab") as log:  # the server keeps its own copy
            self.proc = subprocess.Popen(
                [
                    redis_server_binary(),
                    *extra,
                    *self.options,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.dir),
                    "--appendonly",
                    "yes",
                    "--save",
                    "",
                    "--loglevel",
                    "warning",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        """SIGTERM: it writes its AOF and exits, as a restart by an operator would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL, as a machine failure would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.2)


class Redis:
    """Conveyor's Redis in a campaign: one server, or (``sentinel``) a primary, a replica and
    a sentinel, so that the schedule can fail the primary over."""

    def __init__(self, workdir: Path, *, sentinel: bool) -> None:
        self.sentinel = sentinel
        # As docs/operations.md advises behind Sentinel: a primary that has lost its replica
        # refuses writes, so that one demoted a moment later cannot take enqueues with it.
        options = ("--min-replicas-to-write", "1", "--min-replicas-max-lag", "10")
        self.nodes = [RedisServer(workdir, "redis", options if sentinel else ())]
        if sentinel:
            self.nodes.append(RedisServer(workdir, "redis-b", options))
        self.sentinel_port = free_port()
        self.workdir = workdir
        self.sentinel_proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """What workers and producers are given (``sentinel://`` with a sentinel)."""
        if self.sentinel:
            return f"sentinel://127.0.0.1:{self.sentinel_port}/0"
        return self.nodes[0].url

    def primary(self) -> RedisServer:
        """The server that is the primary now (the sentinel's answer, with a sentinel)."""
        if not self.sentinel:
            return self.nodes[0]
        sentinel: Any = redis.Redis(port=self.sentinel_port)
        _, port = sentinel.execute_command("SENTINEL", "get-master-addr-by-name", "mymaster")
        sentinel.close()
        return next(n for n in self.nodes if n.port == int(port))

    @property
    def direct_url(self) -> str:
        """The primary's own URL, for the campaign's reads."""
        return self.primary().url

    def start(self) -> None:
        """Start the servers (and the sentinel, once it knows the replica). If that fails,
        whatever was started is stopped before the error goes on: a campaign that could not
        set up leaves nothing running."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.nodes[0].start()
        if not self.sentinel:
            return
        self.nodes[1].start(replica_of=self.nodes[0].port)
        conf = self.workdir / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.workdir}\n"
            f"sentinel monitor mymaster 127.0.0.1 {self.nodes[0].port} 1\n"
            "sentinel down-after-milliseconds mymaster 2000\n"
            "sentinel failover-timeout mymaster 5000\n"
        )
        with (self.workdir / "sentinel.log").open("ab") as log:
            self.sentinel_proc = subprocess.Popen(
                [redis_server_binary(), str(conf), "--sentinel"], stdout=log, stderr=log
            )
        self._replica_known()

    def _replica_known(self) -> None:
        def known() -> bool:
            sentinel = redis.Redis(port=self.sentinel_port)
            replicas = sentinel.sentinel_slaves("mymaster")
            sentinel.close()
            return any(r.get("is_slave") and not r.get("is_disconnected") for r in replicas)

        def in_sync() -> bool:
            primary = self.primary()
            other = next(n for n in self.nodes if n is not primary)
            node = redis.Redis(port=other.port)
            info = node.info("replication")
            node.close()
            return bool(
                info.get("role") == "slave"
                and int(info.get("master_port", 0)) == primary.port
                and info.get("master_link_status") == "up"
                and not int(info.get("master_sync_in_progress", 0))
            )

        # The sentinel learns of replicas from the primary's INFO, every 10 s: a failover
        # before that finds "no good replica". And a node that comes back must have synced
        # from the primary before the next failover: replication is asynchronous, so
        # promoting it earlier would drop what the primary acknowledged meanwhile (Redis's
        # documented limit, not a Conveyor fault; the campaign leaves it out).
        _until(known, 90, "the sentinel learning of the replica")
        _until(in_sync, 90, "the replica syncing from the primary")

    def restart(self, down: float) -> None:
        """Stop the primary (SIGTERM), wait ``down`` seconds, start it again in place. With a
        sentinel a long enough stop fails over; the server then comes back as a replica."""
        node = self.primary()
        node.stop()
        time.sleep(down)
        node.start()
        if self.sentinel:
            self._replica_known()

    def failover(self) -> None:
        """SIGKILL the primary; the sentinel promotes the replica; the old primary comes back
        as the new one's replica, so that a later failover is possible."""
        old = self.primary()
        new = next(n for n in self.nodes if n is not old)
        old.kill()
        _until(lambda: self.primary() is new, 60, "the sentinel promoting the replica")
        old.start(replica_of=new.port)
        self._replica_known()

    def stop(self) -> None:
        """Stop everything."""
        if self.sentinel_proc is not None and self.sentinel_proc.poll() is None:
            self.sentinel_proc.kill()
            self.sentinel_proc.wait()
        for node in self.nodes:
            node.stop()


def _ecs(endpoint: str, account: int, service: str = "ecs") -> Any:
    client: Any = boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "legacy", "max_attempts": 10}),
    )
    if account:

        def in_account(request: Any, **_: Any) -> None:
            request.headers["x-moto-account-id"] = ACCOUNTS[account]

        client.meta.events.register(f"before-sign.{service}.*", in_account)
    return client


# How long a started worker may take to answer the campaign's ping before it is left to itself.
READY_WITHIN = 180.0


class Campaign:
    """One campaign: the processes, the actors, the history they leave."""

    def __init__(self, schedule: Schedule, workdir: Path, *, log: Any = print) -> None:
        self.schedule = schedule
        self.workdir = workdir
        self.say = log
        self.history = History(default_account=ACCOUNTS[0])
        self.lock = threading.Lock()
        self.start = 0.0
        self.endpoint = ""
        self.redis = Redis(workdir, sentinel=schedule.sentinel)
        self.workers: list[Worker | None] = []
        self.worker_locks = [threading.Lock() for _ in range(schedule.workers)]
        self.redis_lock = threading.Lock()
        self.fault_generation = 0
        self.notes: list[str] = []
        self.crashes: list[str] = []
        self.env: dict[str, str] = {}
        # The freeze file producers and workers share; windows are added, never removed.
        self.freeze_file = workdir / "freeze.yaml"
        self.windows: list[dict[str, Any]] = []

    # -- set-up ---------------------------------------------------------------------------

    def _now(self) -> float:
        return round(time.monotonic() - self.start, 2)

    def _key(self, service: list[int]) -> str:
        return f"{ACCOUNTS[service[0]]}/{CLUSTER}/{service_name(*service)}"

    def _names(self) -> list[list[int]]:
        return [
            [i % self.schedule.accounts, i // self.schedule.accounts]
            for i in range(self.schedule.services)
        ]

    def _worker_env(self, index: int) -> dict[str, str]:
        env = dict(self.env)
        # A fresh port each start: the children of a SIGKILLed worker hold its socket a moment.
        self.metrics_ports[index] = free_port()
        env["CONVEYOR_METRICS_PORT"] = str(self.metrics_ports[index])
        metrics_dir = self.workdir / f"metrics-{index}"
        metrics_dir.mkdir(exist_ok=True)
        env["CONVEYOR_METRICS_DIR"] = str(metrics_dir)
        return env

    def _start_worker(self, index: int) -> None:
        """Start worker ``index`` and wait until it answers a ping.

        The probe publishes through Redis, so while Redis refuses writes (a failover, a
        primary without its replica) it fails though the worker is up and waiting for Redis
        as it should. Such a worker is probed again, never stopped: stopping it made its warm
        shutdown look like an exit of its own to the supervisor. Only a worker that died while
        starting is started anew; one still not answering after ``READY_WITHIN`` is left
        running, as systemd would leave it.
        """
        starts = 8
        for _start in range(starts):
            worker = Worker(
                f"chaos{index}", self._worker_env(index), self.workdir / f"worker-{index}.log"
            )
            self.workers[index] = worker
            deadline = time.monotonic() + READY_WITHIN
            while True:
                try:
                    worker.wait_ready(self.redis.direct_url, timeout=120)
                except Exception as exc:  # noqa: BLE001 - Redis may be restarting under the probe
                    if worker.proc.poll() is not None:
                        self._note(f"{self._now():.1f}s worker {index} died starting ({exc})")
                        worker.stop()  # closes its log too
                        time.sleep(3)
                        break
                    if time.monotonic() > deadline:
                        self._note(
                            f"{self._now():.1f}s worker {index} not ready after "
                            f"{READY_WITHIN:.0f} s ({exc}); left running"
                        )
                        return
                    self._note(f"{self._now():.1f}s worker {index} not ready yet ({exc})")
                    time.sleep(3)
                else:
                    return
        raise RuntimeError(f"worker {index} died starting {starts} times running")

    @contextlib.contextmanager
    def _stack(self) -> Iterator[None]:
        with run_local_aws(rollout_seconds=2.0, seed="demo") as endpoint:
            self.endpoint = endpoint
            for account in range(self.schedule.accounts):
                names = [service_name(*s) for s in self._names() if s[0] == account]
                create_services(
                    endpoint,
                    names,
                    containers=[CONTAINER],
                    desired=1,
                    account=ACCOUNTS[account] if account else None,
                )
                for name in names:
                    key = f"{ACCOUNTS[account]}/{CLUSTER}/{name}"
                    self.history.asked[key] = [
                        _ecs(endpoint, account).describe_services(cluster=CLUSTER, services=[name])[
                            "services"
                        ][0]["taskDefinition"]
                    ]
            self._create_staged(endpoint)
            for account in range(self.schedule.accounts):
                cloudwatch = _ecs(endpoint, account, "cloudwatch")
                create_alarm(cloudwatch, GATE_ALARM, namespace="chaos")
                cloudwatch.set_alarm_state(
                    AlarmName=GATE_ALARM, StateValue="OK", StateReason="chaos: quiet"
                )
            control(endpoint, "POST", "limits", {"enabled": True, "scale": 1})
            control(endpoint, "DELETE", "stats")
            self.redis.start()
            self._write_freeze()
            self.env = {
                **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CONVEYOR_"))},
                **aws_env(endpoint),
                "CONVEYOR_REDIS_URL": self.redis.url,
                "CONVEYOR_POLL_INTERVAL": "1",
                "CONVEYOR_RECOVERY_INTERVAL": "2",
                "CONVEYOR_RECOVERY_GRACE": "25",
                "CONVEYOR_STEP_TIME_LIMIT": "20",
                "CONVEYOR_LOG_FORMAT": "json",
                "CONVEYOR_FREEZE_FILE": str(self.freeze_file),
            }
            self.metrics_ports = [free_port() for _ in range(self.schedule.workers)]
            self.workers = [None] * self.schedule.workers
            try:
                for index in range(self.schedule.workers):
                    self._start_worker(index)
                self.client = ConveyorClient(
                    Settings(redis_url=self.redis.url, freeze_file=str(self.freeze_file))  # type: ignore[arg-type]
                )
                yield
            finally:
                for worker in self.workers:
                    if worker is not None:
                        worker.stop()
                self.redis.stop()

    def _create_staged(self, endpoint: str) -> None:
        """The staged services, each with its CloudWatch alarm (OK until an alarm event): made
        steady with no bake or hook, then given their own configuration for what follows."""
        ecs = _ecs(endpoint, 0)
        cloudwatch = _ecs(endpoint, 0, "cloudwatch")
        names = [staged_name(i) for i in range(len(STAGED_SERVICES))]
        for index, name in enumerate(names):
            create_alarm(cloudwatch, alarm_name(index), namespace="chaos")
            cloudwatch.set_alarm_state(
                AlarmName=alarm_name(index), StateValue="OK", StateReason="chaos: quiet"
            )
            ecs.register_task_definition(family=name, containerDefinitions=[CONTAINER])
            ecs.create_service(
                cluster=CLUSTER,
                serviceName=name,
                taskDefinition=name,
                desiredCount=1,
                launchType="EC2",
                deploymentController={"type": "ECS"},
                deploymentConfiguration=staged_configuration(index, first=True),
            )
        waiter = ecs.get_waiter("services_stable")
        waiter.wait(cluster=CLUSTER, services=names, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        for index, name in enumerate(names):
            # A configuration change alone starts no deployment (as on ECS).
            ecs.update_service(
                cluster=CLUSTER,
                service=name,
                deploymentConfiguration=staged_configuration(index, first=False),
            )
            running = ecs.describe_services(cluster=CLUSTER, services=[name])["services"][0]
            self.history.asked[f"{ACCOUNTS[0]}/{CLUSTER}/{name}"] = [running["taskDefinition"]]

    # -- actors and faults ----------------------------------------------------------------

    def _entry(self, kind: str, index: int, **extra: Any) -> dict[str, Any]:
        """The history entry of one enqueue of schedule event ``index``, not yet accepted."""
        return {
            "kind": kind,
            **extra,
            "at": self._now(),
            "event": index,
            "accepted": False,
            "id": None,
            "exit_code": None,
            "error": None,
        }

    def _submit(self, entry: dict[str, Any], submit: Callable[[], str]) -> None:
        """Run ``submit`` (an enqueue that returns its id) and record ``entry``: accepted, or
        refused: exit 2 inside a freeze window, exit 3 as the CLI exits when Redis stays away.
        The wall-clock times around the call (``wall_from``, ``wall_to``) let the checker
        compare it with the freeze windows."""
        entry["wall_from"] = time.time()
        try:
            entry["id"] = submit()
            entry["accepted"] = True
        except FrozenError as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["exit_code"] = 2
        except Exception as exc:  # noqa: BLE001 - a refused enqueue is part of the history
            entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["exit_code"] = 3
        entry["wall_to"] = time.time()
        self._record_enqueue(entry)

    def _record_enqueue(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.history.enqueues.append(entry)

    def _job(self, service: list[int], image: str | None, **extra: Any) -> UpdateServiceJob:
        role = f"arn:aws:iam::{ACCOUNTS[service[0]]}:role/deployer" if service[0] else None
        images = (ImageUpdate(container="app", image=image),) if image else ()
        return UpdateServiceJob(
            cluster=CLUSTER,
            service=service_name(*service),
            images=images,
            role_arn=role,
            timeout_seconds=300,
            **extra,
        )

    def _enqueue(self, kind: str, service: list[int], job: UpdateServiceJob, index: int) -> None:
        entry = self._entry(kind, index, service=self._key(service))
        self._submit(entry, lambda: self.client.enqueue(job).id)

    def _staged_job(self, args: dict[str, Any]) -> UpdateServiceJob:
        """The job of a staged event: the options it drew, no ``timeout_seconds`` (the
        strategy's default covers its bakes and hooks; a short one is refused)."""
        version = args["version"]
        image = f":fail-{version}" if args["broken"] else f":4.{version}.0"
        options = {
            name: args[name]
            for name in (
                "strategy",
                "bake_minutes",
                "canary_percent",
                "canary_bake_minutes",
                "linear_step_percent",
                "linear_step_bake_minutes",
            )
            if args.get(name) is not None
        }
        return UpdateServiceJob(
            cluster=CLUSTER,
            service=staged_name(args["staged"]),
            images=(ImageUpdate(container="app", image=f"registry.local:5000/t/app{image}"),),
            alarms=(alarm_name(args["staged"]),) if args["alarm"] else (),
            **options,
        )

    def _staged(self, args: dict[str, Any], index: int) -> None:
        """A staged update; with ``wait_until``, followed as `conveyor update --wait-until
        STAGE` follows it, and the stages ECS shows its service deployment went through read
        the moment the wait returned (GET /_localaws/traffic)."""
        name = staged_name(args["staged"])
        entry = self._entry("staged", index, service=f"{ACCOUNTS[0]}/{CLUSTER}/{name}")
        self._submit(entry, lambda: self.client.enqueue(self._staged_job(args)).id)
        stage_name = args.get("wait_until")
        if not entry["accepted"] or stage_name is None:
            return
        stage = stage_named(stage_name)
        with self.lock:
            entry["wait_until"] = stage
        try:
            record = self.client.wait(
                str(entry["id"]), until=stage_reached(stage), interval=0.5, timeout=600
            )
        except Exception as exc:  # noqa: BLE001 - Redis away: the CLI would exit 3
            with self.lock:
                entry.update(wait_exit=3, wait_error=f"{type(exc).__name__}: {exc}")
            return
        stages = None
        arn = record.service_deployment_arn
        try:
            _, view = control(self.endpoint, "GET", "traffic")
            for service in view.get("services") or []:
                if arn and service.get("serviceDeploymentArn") == arn:
                    stages = [str(s.get("stage")) for s in service.get("stages") or []]
        except Exception as exc:  # noqa: BLE001 - the check then says it could not tell
            self._note(f"{self._now():.1f}s traffic view unreadable: {exc}")
        with self.lock:
            entry.update(
                wait_exit=0 if not record.terminal else EXIT_CODES.get(record.state.value, 6),
                wait_terminal=record.terminal,
                wait_state=record.state.value,
                wait_stage=record.progress.lifecycle_stage,
                wait_arn=arn,
                wait_ecs_stages=stages,
                wait_at=self._now(),
            )

    def _answer(self, args: dict[str, Any], action: str) -> None:
        """`conveyor approve` (CONTINUE) or `reject` (ROLLBACK) of a staged deployment: one
        awaiting approval now if there is one, else the ``pick`` of those accepted so far."""
        time.sleep(args["delay"])
        with self.lock:
            ids = [
                str(e["id"])
                for e in self.history.enqueues
                if e["accepted"] and e["kind"] == "staged"
            ]
        if not ids:
            return
        awaiting: list[str] = []
        for deployment_id in ids:
            try:
                record = self.client.status(deployment_id)
            except Exception:  # noqa: BLE001, S112 - unreadable now: not a candidate
                continue
            if not record.terminal and record.progress.awaiting_hook_id:
                awaiting.append(deployment_id)
        pool = awaiting or ids
        target = pool[min(len(pool) - 1, int(args["pick"] * len(pool)))]
        answer: dict[str, Any] = {
            "at": self._now(),
            "id": target,
            "action": action,
            "by": "chaos",
            "awaiting": target in awaiting,
            "error": None,
        }
        try:
            self.client.answer_hook(
                target, "CONTINUE" if action == "CONTINUE" else "ROLLBACK", "chaos"
            )
        except Exception as exc:  # noqa: BLE001 - a refused answer is part of the history
            answer["error"] = f"{type(exc).__name__}: {exc}"
        with self.lock:
            self.history.answers.append(answer)
        self._note(f"{self._now():.1f}s {action} {target}: {answer['error'] or 'recorded'}")

    def _alarm(self, args: dict[str, Any]) -> None:
        """CloudWatch, outside Conveyor: the staged service's alarm in ALARM for a while."""
        cloudwatch = _ecs(self.endpoint, 0, "cloudwatch")
        name = alarm_name(args["staged"])
        fired: dict[str, Any] = {
            "alarm": name,
            "service": f"{ACCOUNTS[0]}/{CLUSTER}/{staged_name(args['staged'])}",
            "at": self._now(),
            "until": None,
        }
        with self.lock:
            self.history.alarms.append(fired)
        try:
            cloudwatch.set_alarm_state(
                AlarmName=name, StateValue="ALARM", StateReason="chaos: 5xx above 1"
            )
            time.sleep(args["seconds"])
        finally:
            cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="chaos: quiet")
            with self.lock:
                fired["until"] = self._now()

    def _fargate(self, args: dict[str, Any], index: int) -> None:
        spec: dict[str, Any] = yaml.safe_load(FARGATE_SPEC.read_text())
        spec.update(service=f"fg-{args['stack']}", desired_count=1)
        spec["containers"][0]["image"] = f"{FARGATE_IMAGE}:1.{args['version']}.0"
        spec["containers"][0]["environment"]["TOKEN"] = SECRET
        entry = self._entry("fargate", index, service=f"{ACCOUNTS[0]}/{CLUSTER}/{spec['service']}")
        self._submit(entry, lambda: self.client.enqueue(FargateServiceJob.model_validate(spec)).id)

    def _release_job(self, args: dict[str, Any]) -> ReleaseJob:
        tag = f":fail-{args['version']}" if args["broken"] else f":2.{args['version']}.0"
        waves = [
            [
                self._job(s, tag if w == len(args["waves"]) - 1 else f":2.{args['version']}.0")
                for s in wave
            ]
            for w, wave in enumerate(args["waves"])
        ]
        return ReleaseJob(
            release=f"chaos-{args['version']}", cluster=CLUSTER, waves=waves, timeout_seconds=300
        )

    def _governed_job(self, args: dict[str, Any]) -> ReleaseJob:
        """A release with a failure budget (and --continue-on-failure), or an approval before
        one of its waves, or both; ``broken`` entries (in wave order) get a broken image."""
        broken = set(args["broken"])
        waves: list[list[UpdateServiceJob]] = []
        position = 0
        for wave in args["waves"]:
            jobs = []
            for service in wave:
                bad = position in broken
                tag = f":fail-{args['version']}" if bad else f":2.{args['version']}.0"
                jobs.append(self._job(service, tag))
                position += 1
            waves.append(jobs)
        extra: dict[str, Any] = {}
        if args["budget"] is not None:
            extra.update(max_failures=args["budget"], fail_fast=False)
        if args["approve"] is not None:
            # Unanswered, it fails a minute later: the campaign must end quiet.
            extra.update(approve_before=[args["approve"]], approval_timeout_minutes=1)
        return ReleaseJob(
            release=f"chaos-gov-{args['version']}",
            cluster=CLUSTER,
            waves=waves,
            timeout_seconds=300,
            **extra,
        )

    def _gated_job(self, args: dict[str, Any]) -> ReleaseJob:
        """A release whose every wave is followed by a gate on the gate alarm's state."""
        gate = {
            "name": "chaos-gate",
            "alarm": {"name": GATE_ALARM},
            "count": args["count"],
            "interval_seconds": 5,
            "on_inconclusive": args["on_inconclusive"],
        }
        waves = [
            [self._job(service, f":2.{args['version']}.0") for service in wave]
            for wave in args["waves"]
        ]
        return ReleaseJob(
            release=f"chaos-gate-{args['version']}",
            cluster=CLUSTER,
            waves=waves,
            timeout_seconds=300,
            gate=load_gate(gate),
            # An inconclusive gate that pauses fails a minute later when nobody answers.
            approval_timeout_minutes=1,
        )

    def _task_job(self, args: dict[str, Any]) -> ReleaseJob:
        """A release whose waves may each run a pre-deploy task in one of their entries; a
        broken one's image exits 1 (the local AWS's ``fail-`` images)."""
        waves: list[list[UpdateServiceJob]] = []
        for number, wave in enumerate(args["waves"]):
            jobs = []
            for position, service in enumerate(wave):
                if args["tasks"][number] == position:
                    bad = args["broken"][number]
                    tag = f":fail-{args['version']}" if bad else f":2.{args['version']}.0"
                    task = PreDeployTask(container="app", command=("migrate", "--up"))
                    jobs.append(self._job(service, tag, pre_deploy=task))
                else:
                    jobs.append(self._job(service, f":2.{args['version']}.0"))
            waves.append(jobs)
        return ReleaseJob(
            release=f"chaos-task-{args['version']}",
            cluster=CLUSTER,
            waves=waves,
            timeout_seconds=300,
        )

    def _release_task(self, args: dict[str, Any], index: int) -> None:
        entry = self._entry("release", index, tasks=True)
        self._submit(entry, lambda: self.client.release(self._task_job(args)).id)

    def _release_gate(self, args: dict[str, Any], index: int) -> None:
        entry = self._entry("release", index, governed=True, gated=True)
        self._submit(entry, lambda: self.client.release(self._gated_job(args)).id)

    def _gate_alarm(self, args: dict[str, Any]) -> None:
        """CloudWatch, outside Conveyor: the gate alarm in ALARM (or without data) for a while,
        in every account."""
        clients = [_ecs(self.endpoint, a, "cloudwatch") for a in range(self.schedule.accounts)]
        fired: dict[str, Any] = {"state": args["state"], "at": self._now(), "until": None}
        with self.lock:
            self.history.gate_alarms.append(fired)
        try:
            for cloudwatch in clients:
                cloudwatch.set_alarm_state(
                    AlarmName=GATE_ALARM, StateValue=args["state"], StateReason="chaos"
                )
            time.sleep(args["seconds"])
        finally:
            for cloudwatch in clients:
                cloudwatch.set_alarm_state(
                    AlarmName=GATE_ALARM, StateValue="OK", StateReason="chaos: quiet"
                )
            with self.lock:
                fired["until"] = self._now()

    def _release_governed(self, args: dict[str, Any], index: int) -> None:
        entry = self._entry("release", index, governed=True)
        self._submit(entry, lambda: self.client.release(self._governed_job(args)).id)

    def _release_answer(self, args: dict[str, Any]) -> None:
        """`conveyor approve REL` or `reject REL` of a release waiting before a wave (or, when
        none waits, of one that does not: refused, and recorded as such)."""
        time.sleep(args["delay"])
        with self.lock:
            ids = [
                str(e["id"])
                for e in self.history.enqueues
                if e["accepted"] and e["kind"] == "release" and e.get("governed")
            ]
        if not ids:
            return
        awaiting: list[str] = []
        for release_id in ids:
            try:
                if self.client.release_status(release_id).awaiting_wave is not None:
                    awaiting.append(release_id)
            except Exception:  # noqa: BLE001, S112 - unreadable now: not a candidate
                continue
        pool = awaiting or ids
        target = pool[min(len(pool) - 1, int(args["pick"] * len(pool)))]
        action = "REJECT" if args["reject"] else "CONTINUE"
        answer: dict[str, Any] = {
            "at": self._now(),
            "wall": time.time(),
            "id": target,
            "action": action,
            "awaiting": target in awaiting,
            "error": None,
        }
        try:
            self.client.answer_release(target, action, "chaos")  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - a refused answer is part of the history
            answer["error"] = f"{type(exc).__name__}: {exc}"
        with self.lock:
            self.history.release_answers.append(answer)
        self._note(f"{self._now():.1f}s {action} release {target}: {answer['error'] or 'ok'}")

    def _write_freeze(self) -> None:
        """Write the freeze file whole, then move it into place: a reader never sees half."""
        windows = [
            {
                "name": w["name"],
                "timezone": "UTC",
                "start": _utc(w["start"]),
                "end": _utc(w["end"]),
            }
            for w in self.windows
        ]
        partial = self.freeze_file.with_suffix(".tmp")
        partial.write_text(yaml.safe_dump({"windows": windows}))
        os.replace(partial, self.freeze_file)

    def _freeze(self, args: dict[str, Any], index: int) -> None:
        """A freeze window, opening a second after the file says so (every reader then sees
        it before it starts), for ``seconds``."""
        start = time.time() + 1.0
        window = {
            "name": f"chaos-freeze-{index}",
            "start": start,
            "end": start + args["seconds"],
            "at": self._now(),
        }
        with self.lock:
            self.windows.append(window)
            self.history.freezes.append(window)
            self._write_freeze()
        self._note(f"{self._now():.1f}s freeze {window['name']} for {args['seconds']} s")

    def _override(self, args: dict[str, Any], index: int) -> None:
        """A hotfix enqueued with --override-freeze: accepted, inside a window or not."""
        service = args["service"]
        job = self._job(service, f":1.{args['version']}.0")
        entry = self._entry("update", index, service=self._key(service), override=True)
        self._submit(entry, lambda: self.client.enqueue(job, override_freeze="chaos hotfix").id)

    def _outside(self, service: list[int], version: int) -> None:
        ecs = _ecs(self.endpoint, service[0])
        name = service_name(*service)
        key = self._key(service)
        try:
            current = ecs.describe_services(cluster=CLUSTER, services=[name])["services"][0]
            td = ecs.describe_task_definition(taskDefinition=current["taskDefinition"])
            containers = td["taskDefinition"]["containerDefinitions"]
            for container in containers:
                container["image"] = f"registry.local:5000/t/app:outside-{version}"
            new = ecs.register_task_definition(family=name, containerDefinitions=containers)
            arn = new["taskDefinition"]["taskDefinitionArn"]
            with self.lock:
                self.history.asked.setdefault(key, []).append(arn)
            ecs.update_service(cluster=CLUSTER, service=name, taskDefinition=arn)
            self._note(f"{self._now():.1f}s outside deployment of {arn} on {key}")
        except Exception as exc:  # noqa: BLE001 - Terraform's failures are its own
            self._note(f"{self._now():.1f}s outside deployment on {key} failed: {exc}")

    def _note(self, text: str) -> None:
        with self.lock:
            self.notes.append(text)

    def _cancel(self, args: dict[str, Any], release: bool) -> None:
        time.sleep(args["delay"])
        with self.lock:
            kinds = {"release"} if release else {"update", "restart", "race", "staged"}
            ids = [e["id"] for e in self.history.enqueues if e["accepted"] and e["kind"] in kinds]
        if not ids:
            return
        target = ids[min(len(ids) - 1, int(args["pick"] * len(ids)))]
        try:
            if release:
                self.client.cancel_release(target)
            else:
                self.client.cancel(target)
            self._note(f"{self._now():.1f}s cancel {'release ' if release else ''}{target}")
        except Exception as exc:  # noqa: BLE001
            self._note(f"{self._now():.1f}s cancel of {target} failed: {exc}")

    def _faults(self, args: dict[str, Any]) -> None:
        body = {
            k: args[k] for k in ("throttle", "server_error", "latency_ms", "operations", "seed")
        }
        with self.lock:
            self.fault_generation += 1
            generation = self.fault_generation
        control(self.endpoint, "POST", "faults", body)
        self._note(f"{self._now():.1f}s faults {body} for {args['seconds']} s")
        time.sleep(args["seconds"])
        with self.lock:
            if generation == self.fault_generation:
                control(self.endpoint, "DELETE", "faults")

    def _kill_worker(self, args: dict[str, Any]) -> None:
        index = args["worker"]
        if not self.worker_locks[index].acquire(blocking=False):
            self._note(f"{self._now():.1f}s kill of worker {index} skipped: it is down")
            return
        try:
            worker = self.workers[index]
            if worker is not None:
                worker.kill()
                self._note(f"{self._now():.1f}s SIGKILL worker {index}")
            time.sleep(args["down"])
            self._start_worker(index)
        finally:
            self.worker_locks[index].release()

    def _supervise(self, stop: threading.Event) -> None:
        """Restart a worker that exited on its own, as systemd's Restart=always would
        (deploy/), and note it: a crash is part of the history even when nothing is lost."""
        while not stop.wait(2):
            for index, lock in enumerate(self.worker_locks):
                if not lock.acquire(blocking=False):
                    continue  # the schedule is killing or starting it
                try:
                    worker = self.workers[index]
                    if worker is not None and worker.proc.poll() is not None:
                        code = worker.proc.returncode
                        self._note(
                            f"{self._now():.1f}s worker {index} exited by itself "
                            f"(code {code}); started again"
                        )
                        if code != -signal.SIGTERM:  # SIGTERM: a start the campaign gave up
                            with self.lock:
                                self.crashes.append(f"worker {index} exited with {code}")
                        worker.stop()  # closes its log
                        self._start_worker(index)
                except Exception as exc:  # noqa: BLE001 - try again at the next round
                    self._note(f"{self._now():.1f}s supervisor: {exc}")
                finally:
                    lock.release()

    def _redis_restart(self, args: dict[str, Any]) -> None:
        if not self.redis_lock.acquire(blocking=False):
            self._note(f"{self._now():.1f}s redis_restart skipped: Redis is busy with another")
            return
        try:
            self._note(f"{self._now():.1f}s redis primary stopped for {args['down']} s")
            self.redis.restart(args["down"])
            self._note(f"{self._now():.1f}s redis started again")
        finally:
            self.redis_lock.release()

    def _redis_failover(self) -> None:
        if not self.redis_lock.acquire(blocking=False):
            self._note(f"{self._now():.1f}s redis_failover skipped: Redis is busy with another")
            return
        try:
            self._note(f"{self._now():.1f}s redis primary SIGKILLed")
            self.redis.failover()
            self._note(f"{self._now():.1f}s redis failed over; old primary back as replica")
        finally:
            self.redis_lock.release()

    def _plan(self, args: dict[str, Any], index: int) -> None:
        entry = self._entry("plan", index)
        try:
            plans = self.client.plan(self._release_job(args), pin_digest=False, timeout=60)
            entry["accepted"] = True
            entry["exit_code"] = 1 if any("error" in p for p in plans) else 0
        except Exception as exc:  # noqa: BLE001
            entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["exit_code"] = 3
        self._record_enqueue(entry)

    def _release(self, args: dict[str, Any], index: int) -> None:
        entry = self._entry("release", index)
        self._submit(entry, lambda: self.client.release(self._release_job(args)).id)

    def _release_plan(self, args: dict[str, Any], index: int) -> None:
        """`conveyor plan --out FILE`, a review, then `conveyor release --plan FILE`: the
        release deployed with each job pinned to its planned base, or refused (exit 2) when a
        service moved since the plan, as the command does."""
        entry = self._entry("release", index, from_plan=True)
        path = self.workdir / f"plan-{index}.json"
        try:
            release = self._release_job(args)
            plans = self.client.plan(release, pin_digest=False, timeout=60)
            try:
                path.write_text(json.dumps(plan_file(release, plans, "chaos")))
            except PlanFileError as exc:
                entry["error"] = f"no plan file: {exc}"
                entry["exit_code"] = 1
                self._record_enqueue(entry)
                return
            time.sleep(args["review"])
            planned, services = load_plan(json.loads(path.read_text()), str(path))
            planned = with_settings(planned, None, str(path), "")
            changes = moved(services, self.client.plan(planned, pin_digest=False, timeout=60))
            if changes:
                entry["error"] = "the world moved since the plan: " + "; ".join(changes)
                entry["exit_code"] = 2
            else:
                entry["id"] = self.client.release(pin_bases(planned, services)).id
                entry["accepted"] = True
        except Exception as exc:  # noqa: BLE001 - a refused release is part of the history
            entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["exit_code"] = 3
        self._record_enqueue(entry)

    def play(self, event: Event, index: int) -> None:
        """Carry out one event of the schedule."""
        args = event.args
        kind = event.kind
        version = args.get("version", 0)
        if kind == "update":
            self._enqueue(
                kind, args["service"], self._job(args["service"], f":1.{version}.0"), index
            )
        elif kind == "update_broken":
            job = self._job(args["service"], f":fail-{version}")
            self._enqueue("update", args["service"], job, index)
        elif kind == "update_secret":
            settings = (ContainerSettings(container="app", environment={"TOKEN": SECRET}),)
            job = self._job(args["service"], f":1.{version}.0", settings=settings)
            self._enqueue("update", args["service"], job, index)
        elif kind == "update_cleanup":
            job = self._job(args["service"], f":1.{version}.0", keep_revisions=args["keep"])
            self._enqueue("update", args["service"], job, index)
        elif kind == "update_base_service":
            tag = f":fail-{version}" if args["broken"] else f":1.{version}.0"
            job = self._job(args["service"], tag, base="service")
            self._enqueue("update", args["service"], job, index)
        elif kind == "restart":
            job = self._job(args["service"], None, force_new_deployment=True)
            self._enqueue(kind, args["service"], job, index)
        elif kind == "fargate":
            self._fargate(args, index)
        elif kind == "race":
            threads = [
                threading.Thread(
                    target=self._enqueue,
                    args=(
                        "race",
                        args["service"],
                        self._job(args["service"], f":3.{version}.{n}"),
                        index,
                    ),
                )
                for n in range(args["pipelines"])
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        elif kind == "outside":
            self._outside(args["service"], version)
        elif kind == "cancel":
            self._cancel(args, release=False)
        elif kind == "cancel_release":
            self._cancel(args, release=True)
        elif kind == "release":
            self._release(args, index)
        elif kind == "plan":
            self._plan(args, index)
        elif kind == "release_plan":
            self._release_plan(args, index)
        elif kind == "faults":
            self._faults(args)
        elif kind == "kill_worker":
            self._kill_worker(args)
        elif kind == "redis_restart":
            self._redis_restart(args)
        elif kind == "redis_failover":
            self._redis_failover()
        elif kind in ("staged", "staged_wait"):
            self._staged(args, index)
        elif kind in ("approve", "reject"):
            self._answer(args, "CONTINUE" if kind == "approve" else "ROLLBACK")
        elif kind == "alarm":
            self._alarm(args)
        elif kind == "release_governed":
            self._release_governed(args, index)
        elif kind == "release_answer":
            self._release_answer(args)
        elif kind == "freeze":
            self._freeze(args, index)
        elif kind == "override":
            self._override(args, index)
        elif kind == "release_gate":
            self._release_gate(args, index)
        elif kind == "gate_alarm":
            self._gate_alarm(args)
        elif kind == "release_task":
            self._release_task(args, index)

    # -- the campaign ---------------------------------------------------------------------

    def run(self, quiet_timeout: float = 600.0) -> tuple[History, list[Result]]:
        """Play the schedule, wait for quiet, read the history and check it."""
        with self._stack():
            self.start = time.monotonic()
            futures: list[Future[None]] = []
            stop = threading.Event()
            supervisor = threading.Thread(target=self._supervise, args=(stop,), daemon=True)
            supervisor.start()
            with ThreadPoolExecutor(max_workers=24) as pool:
                for index, event in enumerate(self.schedule.events):
                    delay = event.at - (time.monotonic() - self.start)
                    if delay > 0:
                        time.sleep(delay)
                    futures.append(pool.submit(self.play, event, index))
                for number, future in enumerate(futures):
                    exc = future.exception()
                    if exc is not None:
                        what = self.schedule.events[number].describe()
                        self._note(f"an actor failed: {type(exc).__name__}: {exc} ({what})")
            control(self.endpoint, "DELETE", "faults")
            stop.set()
            supervisor.join()
            for index, worker in enumerate(self.workers):
                if worker is None or worker.proc.poll() is not None:
                    if worker is not None:
                        worker.stop()  # closes its log
                    self._note(f"worker {index} was not running at the end; started again")
                    self._start_worker(index)
            self.say(f"schedule played in {self._now():.0f} s; waiting for quiet")
            quiet = self._wait_quiet(quiet_timeout)
            self.say(f"quiet after {self._now():.0f} s" if quiet else "NOT quiet at the timeout")
            _, self.history.aws_calls = control(self.endpoint, "GET", "stats")
            _, log = control(self.endpoint, "GET", "calls")
            self.history.aws_log = list(log["calls"])
            self.history.aws_log_dropped = int(log["dropped"])
            control(self.endpoint, "DELETE", "limits")
            self._collect()
        return self.history, check(self.history)

    def _ids(self) -> tuple[list[str], list[str]]:
        deployments = [
            str(e["id"])
            for e in self.history.enqueues
            if e["accepted"] and e["kind"] not in ("release", "plan")
        ]
        releases = [
            str(e["id"]) for e in self.history.enqueues if e["accepted"] and e["kind"] == "release"
        ]
        return deployments, releases

    def _wait_quiet(self, timeout: float) -> bool:
        client = redis.Redis.from_url(self.redis.direct_url)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                deployments, releases = self._ids()
                pending = 0
                for release_id in releases:
                    raw = client.get(f"conveyor:release:{release_id}")
                    release = json.loads(raw) if raw else {}
                    if release.get("state") == "running":
                        pending += 1
                    deployments += [d for wave in release.get("waves", []) for d in wave]
                    deployments += _rollback_ids(release)
                for deployment_id in deployments:
                    raw = client.get(f"conveyor:deployment:{deployment_id}")
                    if raw and json.loads(raw).get("state") in ("queued", "running"):
                        pending += 1
                _, config = control(self.endpoint, "GET", "config")
                if pending == 0 and not config.get("active_services"):
                    return True
                time.sleep(2)
            return False
        finally:
            client.close()

    def _collect(self) -> None:
        client = redis.Redis.from_url(self.redis.direct_url)
        history = self.history
        deployments, releases = self._ids()
        for release_id in releases:
            raw = client.get(f"conveyor:release:{release_id}")
            history.releases[release_id] = json.loads(raw) if raw else None
            for wave in (history.releases[release_id] or {}).get("waves", []):
                deployments += wave
            deployments += _rollback_ids(history.releases[release_id] or {})
        for deployment_id in deployments:
            raw = client.get(f"conveyor:deployment:{deployment_id}")
            history.deployments[deployment_id] = json.loads(raw) if raw else None
        for entry in history.enqueues:
            if entry["accepted"] and entry["kind"] == "release":
                release = history.releases.get(entry["id"]) or {}
                entry["exit_code"] = {"succeeded": 0, "failed": 1, "cancelled": 5}.get(
                    release.get("state", ""), 6
                )
            elif entry["accepted"] and entry["kind"] != "plan":
                record = history.deployments.get(entry["id"]) or {}
                entry["exit_code"] = EXIT_CODES.get(record.get("state", ""), 6)
        self._collect_redis(client)
        client.close()
        self._collect_ecs()
        self._collect_secrets()

    def _collect_redis(self, client: redis.Redis) -> None:
        history = self.history
        history.leftovers = {
            "conveyor:due": int(client.zcard("conveyor:due")),
            "conveyor:releases:active": int(client.zcard("conveyor:releases:active")),
            "conveyor:service:*:queue": sum(
                int(client.zcard(k)) for k in client.scan_iter("conveyor:service:*:queue")
            ),
            "conveyor:family:*:deployments": sum(
                int(client.zcard(k)) for k in client.scan_iter("conveyor:family:*:deployments")
            ),
            "conveyor:lock:deployment:*": sum(
                1 for _ in client.scan_iter("conveyor:lock:deployment:*")
            ),
            "conveyor:job:*": sum(1 for _ in client.scan_iter("conveyor:job:*")),
        }
        for pattern in ("conveyor:deployment:*", "conveyor:release:*", "conveyor:attempted:*"):
            for key in client.scan_iter(pattern):
                if client.ttl(key) == -1:
                    history.untimed.append(key.decode())
        history.secret_hits += [
            f"redis key {key.decode()}"
            for key in client.scan_iter("*")
            if SECRET.encode() in _value(client, key)
        ]

    def _collect_ecs(self) -> None:
        history = self.history
        every = [(s[0], service_name(*s)) for s in self._names()]
        every += [(0, staged_name(i)) for i in range(len(STAGED_SERVICES))]
        for account, name in every:
            ecs = _ecs(self.endpoint, account)
            key = f"{ACCOUNTS[account]}/{CLUSTER}/{name}"
            running = ecs.describe_services(cluster=CLUSTER, services=[name])["services"][0]
            entries: list[dict[str, Any]] = []
            arns: list[str] = []
            token: dict[str, str] = {}
            while True:  # the SDK has no paginator for it
                page = ecs.list_service_deployments(
                    cluster=CLUSTER, service=name, maxResults=100, **token
                )
                arns += [d["serviceDeploymentArn"] for d in page["serviceDeployments"]]
                if not page.get("nextToken"):
                    break
                token = {"nextToken": page["nextToken"]}
            for start in range(0, len(arns), 20):
                found = ecs.describe_service_deployments(
                    serviceDeploymentArns=arns[start : start + 20]
                )
                targets = [
                    d.get("targetServiceRevision", {}).get("arn")
                    for d in found["serviceDeployments"]
                ]
                revisions = (
                    {
                        r["serviceRevisionArn"]: r["taskDefinition"]
                        for r in ecs.describe_service_revisions(
                            serviceRevisionArns=[t for t in targets if t]
                        )["serviceRevisions"]
                    }
                    if any(targets)
                    else {}
                )
                for d in found["serviceDeployments"]:
                    target = d.get("targetServiceRevision", {}).get("arn")
                    entries.append(
                        {
                            "arn": d["serviceDeploymentArn"],
                            "status": d.get("status"),
                            "task_definition": revisions.get(target),
                            "status_reason": d.get("statusReason"),
                            "rollback_reason": (d.get("rollback") or {}).get("reason"),
                        }
                    )
            history.ecs[key] = {
                "task_definition": running["taskDefinition"],
                "deployments": entries,
            }
            for status in ("ACTIVE", "INACTIVE"):
                for page in ecs.get_paginator("list_task_definitions").paginate(
                    familyPrefix=name, status=status
                ):
                    for arn in page["taskDefinitionArns"]:
                        tags = ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
                        for tag in tags.get("tags") or []:
                            if tag["key"] == DEPLOYMENT_TAG:
                                history.revisions.setdefault(tag["value"], []).append(arn)
                            elif tag["key"] == DISCARD_TAG:
                                history.discarded[arn] = tag["value"]

    def _collect_secrets(self) -> None:
        for log in sorted(self.workdir.glob("worker-*.log")):
            if SECRET in log.read_text(errors="replace"):
                self.history.secret_hits.append(f"log {log.name}")
        for index, port in enumerate(self.metrics_ports):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    if SECRET.encode() in r.read():
                        self.history.secret_hits.append(f"metrics of worker {index}")
            except OSError as exc:
                self._note(f"metrics of worker {index} unreadable: {exc}")


def _value(client: Any, key: bytes) -> bytes:
    kind = client.type(key)
    if kind == b"string":
        value: bytes = client.get(key) or b""
        return value
    if kind == b"hash":
        return b"\n".join(b"%s=%s" % kv for kv in client.hgetall(key).items())
    if kind == b"list":
        return b"\n".join(client.lrange(key, 0, -1))
    if kind == b"set":
        return b"\n".join(client.smembers(key))
    if kind == b"zset":
        return b"\n".join(client.zrange(key, 0, -1))
    if kind == b"stream":  # the audit trail
        return b"\n".join(
            b"%s=%s" % kv for _, fields in client.xrange(key) for kv in fields.items()
        )
    return b""


def _rollback_ids(release: dict[str, Any]) -> list[str]:
    """The deployments a release's failed gate started to roll its wave back."""
    return [str(r["deployment"]) for r in release.get("rollbacks") or [] if r.get("deployment")]


def _utc(epoch: float) -> str:
    """An epoch time as the freeze file writes it: ISO 8601, UTC, to the microsecond."""
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def history_json(history: History) -> str:
    """The history as JSON, for replaying the checker or reading by hand."""
    return json.dumps(asdict(history), indent=1, sort_keys=True, default=str)
