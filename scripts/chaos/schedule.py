"""The campaign's schedule, drawn from the seed alone: the same seed gives the same schedule.

Pure: no clock, no I/O. Times are seconds from the campaign's start. Services are named by
``(account index, number)``; the runner maps them to real names.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

# The ECS operations a fault burst may aim at (those Conveyor's deployments call).
FAULT_OPERATIONS = (
    "DescribeServices",
    "UpdateService",
    "RegisterTaskDefinition",
    "DescribeTaskDefinition",
    "ListTaskDefinitions",
    "ListServiceDeployments",
    "DescribeServiceDeployments",
    "StopServiceDeployment",
)

# Relative weights of the actors and faults; the schedule draws events by these.
WEIGHTS: dict[str, int] = {
    "update": 30,
    "update_broken": 5,
    "update_secret": 4,
    # Deployment after failure: cleanups (keep_revisions), builds from the revision the service
    # runs (base: service), and releases deployed from a reviewed plan file (release --plan).
    "update_cleanup": 4,
    "update_base_service": 4,
    "release_plan": 3,
    "restart": 6,
    "fargate": 3,
    "release": 8,
    "race": 5,
    "outside": 6,
    "cancel": 6,
    "cancel_release": 3,
    "plan": 4,
    "faults": 5,
    "kill_worker": 4,
    "redis_restart": 2,
    "redis_failover": 2,
    # Staged deployments (blue/green, linear, canary) on their own services, and the people and
    # alarms that act on them during their stages and bakes.
    "staged": 12,
    "staged_wait": 5,
    "approve": 6,
    "reject": 3,
    "alarm": 3,
    # Governed releases: a failure budget (with --continue-on-failure) and approvals between
    # waves; the people who approve or reject them; freeze windows that open mid-campaign, and
    # the hotfixes that override them.
    "release_governed": 6,
    "release_answer": 5,
    "freeze": 2,
    "override": 3,
    # Releases with a metric gate after each wave (a CloudWatch alarm's state), and the outside
    # actor that sets that alarm off (ALARM: the gate fails; INSUFFICIENT_DATA: inconclusive).
    "release_gate": 5,
    "gate_alarm": 4,
    # Releases whose waves run a pre-deploy task (a migration) first; some tasks fail.
    "release_task": 5,
}

# The staged services: (ECS strategy, gated). A gated one has a PAUSE hook at POST_SCALE_UP,
# so each of its deployments waits there for `conveyor approve` or `reject` (or the hook's
# timeout, which rolls it back). All in the default account.
STAGED_SERVICES: tuple[tuple[str, bool], ...] = (
    ("BLUE_GREEN", False),
    ("CANARY", False),
    ("LINEAR", False),
    ("BLUE_GREEN", True),
    ("CANARY", True),
    ("LINEAR", True),
)
# The stages a `--wait-until` may name (short names and ECS's own, as the CLI takes them).
WAIT_STAGES = (
    "scale-up",
    "post-scale-up",
    "test-traffic",
    "production-traffic",
    "bake",
    "clean-up",
)


@dataclass(frozen=True)
class Event:
    """One thing the campaign does at ``at`` seconds: an actor's job or a fault."""

    at: float
    kind: str
    args: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for the printed schedule."""
        return f"{self.at:7.1f}s  {self.kind:<14} {json.dumps(self.args, sort_keys=True)}"


@dataclass(frozen=True)
class Schedule:
    """The whole campaign: its parameters and its events, in time order."""

    seed: int
    minutes: float
    services: int
    accounts: int
    workers: int
    events: tuple[Event, ...]

    @property
    def sentinel(self) -> bool:
        """Redis runs behind a sentinel, with a replica, when the schedule fails it over."""
        return any(e.kind == "redis_failover" for e in self.events)

    def describe(self) -> str:
        """The printed schedule: a header line, then one line per event."""
        head = (
            f"chaos seed={self.seed} minutes={self.minutes:g} services={self.services} "
            f"accounts={self.accounts} workers={self.workers} events={len(self.events)} "
            f"redis={'sentinel' if self.sentinel else 'single'}"
        )
        return "\n".join([head, *(e.describe() for e in self.events)])

    def counts(self) -> dict[str, int]:
        """How many events of each kind."""
        out: dict[str, int] = {}
        for event in self.events:
            out[event.kind] = out.get(event.kind, 0) + 1
        return dict(sorted(out.items()))


def _service(rng: random.Random, services: int, accounts: int) -> list[int]:
    index = rng.randrange(services)
    return [index % accounts, index // accounts]


def _waves(rng: random.Random, services: int, accounts: int, most: int) -> list[list[list[int]]]:
    """A release's waves: 2 or 3 of them, of 1 to ``most`` services each (fewer in a small
    fleet), no service twice."""
    waves = rng.randint(2, 3)
    chosen = rng.sample(range(services), min(services, waves * rng.randint(1, most)))
    return [[[i % accounts, i // accounts] for i in chosen[w::waves]] for w in range(waves)]


def _staged(rng: random.Random, version: int) -> dict[str, Any]:
    """A staged job's options: sometimes the service's own strategy, sometimes another one
    (the job then moves the service to it), with its bakes; sometimes a broken image or the
    service's alarm named by the job as well (``--alarm``)."""
    strategy = rng.choice([None, "blue-green", "linear", "canary"])
    args: dict[str, Any] = {
        "staged": rng.randrange(len(STAGED_SERVICES)),
        "version": version,
        "strategy": strategy,
        "bake_minutes": rng.choice([None, 20, 50, 100]),
        "broken": rng.random() < 0.15,
        "alarm": rng.random() < 0.3,
    }
    if strategy == "canary":
        args["canary_percent"] = rng.choice([5.0, 10.0, 12.5, 50.0])
        args["canary_bake_minutes"] = rng.choice([5, 10, 30])
    elif strategy == "linear":
        args["linear_step_percent"] = rng.choice([25.0, 33.3, 50.0])
        args["linear_step_bake_minutes"] = rng.choice([3, 10, 20])
    return args


def draw(
    seed: int,
    minutes: float,
    *,
    services: int = 100,
    accounts: int = 2,
    workers: int = 3,
    events_per_minute: float = 40.0,
) -> Schedule:
    """Draw the campaign of ``seed``: ``minutes`` long, over ``services`` spread round-robin
    across ``accounts``, with ``workers`` workers to kill. Events stop at 85 % of the length,
    so the last jobs have time to finish before the system must be quiet."""
    if services < accounts or accounts < 1 or workers < 1 or minutes <= 0:
        raise ValueError(
            "services must be at least accounts, accounts and workers at least 1, and minutes "
            "positive"
        )
    rng = random.Random(seed)
    span = minutes * 60 * 0.85
    kinds = list(WEIGHTS)
    weights = [WEIGHTS[k] for k in kinds]
    total = max(1, round(events_per_minute * minutes))
    events: list[Event] = []
    for version in range(1, total + 1):
        at = round(rng.uniform(0, span), 1)
        kind = rng.choices(kinds, weights)[0]
        args: dict[str, Any] = {}
        if kind in ("update", "update_broken", "update_secret", "restart", "outside"):
            args = {"service": _service(rng, services, accounts), "version": version}
        elif kind == "update_cleanup":
            args = {
                "service": _service(rng, services, accounts),
                "version": version,
                "keep": rng.randint(1, 4),
            }
        elif kind == "update_base_service":
            # Sometimes broken: its revision is then discarded, and later jobs must step over it.
            args = {
                "service": _service(rng, services, accounts),
                "version": version,
                "broken": rng.random() < 0.3,
            }
        elif kind == "fargate":
            # A few stacks, so that most applies update a stack another one created.
            args = {"stack": rng.randrange(3), "version": version}
        elif kind == "race":
            args = {
                "service": _service(rng, services, accounts),
                "version": version,
                "pipelines": rng.randint(2, 4),
            }
        elif kind in ("release", "plan", "release_plan"):
            args = {
                "waves": _waves(rng, services, accounts, 3),
                "version": version,
                "broken": rng.random() < 0.2,
            }
            if kind == "release_plan":
                # Seconds between writing the plan file and deploying it: the review, in which
                # other jobs may move a service (the release is then refused, as planned).
                args["review"] = round(rng.uniform(0, 6), 1)
        elif kind in ("cancel", "cancel_release"):
            # Which of the jobs accepted so far: a fraction, resolved by the runner.
            args = {"pick": round(rng.random(), 3), "delay": round(rng.uniform(0, 8), 1)}
        elif kind == "faults":
            args = {
                "throttle": round(rng.uniform(0.05, 0.4), 2),
                "server_error": round(rng.uniform(0.0, 0.15), 2),
                "latency_ms": rng.choice([0, 0, 20, 100, 300]),
                "operations": sorted(rng.sample(FAULT_OPERATIONS, rng.randint(1, 3))),
                "seconds": round(rng.uniform(3, 15), 1),
                "seed": rng.randrange(1 << 30),
            }
        elif kind == "kill_worker":
            args = {"worker": rng.randrange(workers), "down": round(rng.uniform(1, 20), 1)}
        elif kind == "redis_restart":
            args = {"down": round(rng.uniform(1, 8), 1)}
        elif kind == "staged":
            args = _staged(rng, version)
        elif kind == "staged_wait":
            args = {**_staged(rng, version), "wait_until": rng.choice(WAIT_STAGES)}
        elif kind in ("approve", "reject"):
            # Which staged deployment: one awaiting approval when the event comes, if any,
            # else a fraction of those accepted so far (resolved by the runner).
            args = {"pick": round(rng.random(), 3), "delay": round(rng.uniform(0, 10), 1)}
        elif kind == "release_governed":
            wave_list = _waves(rng, services, accounts, 3)
            entries = sum(len(wave) for wave in wave_list)
            args = {
                "waves": wave_list,
                "version": version,
                # Which entries (in wave order) get a broken image: the budget's failures.
                "broken": sorted(rng.sample(range(entries), rng.randint(0, min(3, entries)))),
                "budget": rng.choice([None, 0, 1, 2]),
                "approve": rng.choice([None, *range(1, len(wave_list))]),
            }
        elif kind == "release_gate":
            args = {
                "waves": _waves(rng, services, accounts, 2),
                "version": version,
                "count": rng.randint(1, 2),
                "on_inconclusive": rng.choice(["pause", "fail", "pass"]),
            }
        elif kind == "release_task":
            wave_list = _waves(rng, services, accounts, 3)
            # Per wave: the entry that runs the task (None: no task), and whether it fails.
            tasks = [
                rng.randrange(len(wave)) if wave and rng.random() < 0.7 else None
                for wave in wave_list
            ]
            args = {
                "waves": wave_list,
                "version": version,
                "tasks": tasks,
                "broken": [t is not None and rng.random() < 0.35 for t in tasks],
            }
        elif kind == "gate_alarm":
            args = {
                "state": rng.choice(["ALARM", "ALARM", "INSUFFICIENT_DATA"]),
                # Long enough to catch gates being measured (5 s apart, up to 2 times).
                "seconds": round(rng.uniform(8, 30), 1),
            }
        elif kind == "release_answer":
            # Which release awaiting approval (a fraction, resolved by the runner), and how.
            args = {
                "pick": round(rng.random(), 3),
                "delay": round(rng.uniform(0, 10), 1),
                "reject": rng.random() < 0.3,
            }
        elif kind == "freeze":
            # A one-off window, opening a second after it is written, this many seconds long.
            args = {"seconds": round(rng.uniform(3, 15), 1)}
        elif kind == "override":
            args = {"service": _service(rng, services, accounts), "version": version}
        elif kind == "alarm":
            # An outside actor (CloudWatch) sets the staged service's alarm to ALARM for a
            # while, then back to OK: a deployment in its traffic shift or bake meanwhile is
            # rolled back by ECS.
            args = {
                "staged": rng.randrange(len(STAGED_SERVICES)),
                "seconds": round(rng.uniform(2, 12), 1),
            }
        events.append(Event(at, kind, args))
    events.sort(key=lambda e: (e.at, e.kind))
    return Schedule(seed, minutes, services, accounts, workers, tuple(events))
