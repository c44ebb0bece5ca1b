"""Records in a real Redis: fenced commits, reclaiming overdue work, the sweeper."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from producers.contract.names import DUE_KEY, TASK_RESOLVE, TASK_WATCH
from producers.contract.records import DeploymentRecord, DeploymentState, Step
from worker.services.transitions import Transition
from worker.steps import StepContext, run_step, sweep
from worker.store import WorkerStore


def _recording(ran: list[str]) -> Callable[[DeploymentRecord], Transition]:
    """A step that notes the deployment it ran for and ends it."""

    def run(record: DeploymentRecord) -> Transition:
        ran.append(record.id)
        return Transition(record, None)

    return run


class Sender:
    """Collects sent task messages instead of publishing them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any], dict[str, Any]]] = []

    def send_task(self, name: str, args: Any = None, **options: Any) -> None:
        self.sent.append((name, list(args or []), options))


def new_record(id_: str = "d1") -> DeploymentRecord:
    return DeploymentRecord(
        id=id_, job={}, cluster="c", service="s", created_at=1.0, updated_at=1.0
    )


def ctx(client: redis.Redis, sender: Sender, now: float = 100.0) -> StepContext:
    return StepContext(
        store=WorkerStore(client),
        redis=client,
        sender=sender,
        clock=lambda: now,
        poll_interval=5,
        recovery_grace=30,
        step_time_limit=10,
        max_step_attempts=3,
    )


def test_commit_is_fenced_by_seq(client: redis.Redis) -> None:
    """Only a writer holding the current seq may commit; a stale copy's write is refused."""
    store = WorkerStore(client)
    store.create(new_record(), due=10)
    moved = new_record().model_copy(update={"seq": 1, "step": Step.REGISTER})
    assert store.commit(moved, expected_seq=0, due=20)
    assert not store.commit(new_record().model_copy(update={"seq": 1}), expected_seq=0, due=20)
    stored = store.get("d1")
    assert stored is not None
    assert stored.step is Step.REGISTER


def test_step_runs_once_per_seq_and_dispatches_the_next(client: redis.Redis) -> None:
    """A step message with the current seq runs and sends seq+1; a duplicate is stale."""
    sender = Sender()
    context = ctx(client, sender)
    context.store.create(new_record(), due=200)
    runs: list[int] = []

    def run(record: DeploymentRecord) -> Transition:
        runs.append(record.seq)
        return Transition(record, Step.WATCH, countdown=5)

    assert run_step(context, "d1", 0, run)["status"] == "ok"
    assert run_step(context, "d1", 0, run)["status"] == "stale"
    assert runs == [0]
    # Watching steps go to the watch queue.
    assert sender.sent == [
        (TASK_WATCH, ["d1", 1], {"countdown": 5, "queue": "conveyor.watch", "priority": 0})
    ]
    assert client.zscore(DUE_KEY, "d1") == 100 + 5 + 30


def test_finished_deployment_leaves_the_due_set(client: redis.Redis) -> None:
    """A terminal record is no longer watched by the sweeper."""
    sender = Sender()
    context = ctx(client, sender)
    context.store.create(new_record(), due=200)

    def run(record: DeploymentRecord) -> Transition:
        return Transition(record.model_copy(update={"state": DeploymentState.SUCCEEDED}), None)

    run_step(context, "d1", 0, run)
    assert client.zscore(DUE_KEY, "d1") is None
    assert sender.sent == []


def test_sweeper_redispatches_overdue_steps_and_fences_the_old_message(
    client: redis.Redis,
) -> None:
    """A step lost with its worker is sent again with a new seq; the lost copy becomes stale."""
    sender = Sender()
    context = ctx(client, sender, now=1000)
    context.store.create(new_record(), due=50)
    context.store.create(new_record("d2"), due=5000)
    assert sweep(context) == 1
    assert sender.sent == [
        (TASK_RESOLVE, ["d1", 1], {"countdown": None, "queue": "conveyor", "priority": 0})
    ]
    assert run_step(context, "d1", 0, lambda r: Transition(r, None))["status"] == "stale"
    assert sweep(context) == 0  # not due again until the grace has passed


def test_concurrent_copy_is_turned_away_by_the_step_lock(client: redis.Redis) -> None:
    """While one copy of a step runs, another copy with the same seq does nothing."""
    sender = Sender()
    context = ctx(client, sender)
    context.store.create(new_record(), due=200)
    inner: list[str] = []

    def run(record: DeploymentRecord) -> Transition:
        inner.append(run_step(context, "d1", 0, lambda r: Transition(r, None))["status"])
        return Transition(record, Step.REGISTER)

    run_step(context, "d1", 0, run)
    assert inner == ["busy"]


def _queued(id_: str, created: float) -> DeploymentRecord:
    return DeploymentRecord(
        id=id_,
        job={},
        cluster="arn:aws:ecs:r:1:cluster/c",
        service="s",
        created_at=created,
        updated_at=created,
    )


def test_one_service_runs_one_deployment_at_a_time(client: redis.Redis) -> None:
    """The second deployment of a service waits for the first; the first's end releases it."""
    sender = Sender()
    context = ctx(client, sender)
    context = dataclasses.replace(context, supersede=False)
    context.store.create(_queued("a", 1.0), due=500)
    context.store.create(_queued("b", 2.0), due=500)
    started: list[str] = []

    def run(record: DeploymentRecord) -> Transition:
        started.append(record.id)
        return Transition(
            record.model_copy(update={"state": DeploymentState.RUNNING}), Step.REGISTER
        )

    run_step(context, "b", 0, run)  # waits: a is ahead
    assert started == []
    assert sender.sent[-1][0] == TASK_RESOLVE  # the same step, again later
    run_step(context, "a", 0, run)
    assert started == ["a"]

    def end(record: DeploymentRecord) -> Transition:
        return Transition(record.model_copy(update={"state": DeploymentState.SUCCEEDED}), None)

    run_step(context, "a", 1, end)
    run_step(context, "b", 1, run)
    assert started == ["a", "b"]


def test_newer_job_supersedes_older_queued_ones(client: redis.Redis) -> None:
    """With supersede on, a queued deployment with a newer one behind it never starts."""
    sender = Sender()
    context = ctx(client, sender)
    for i, id_ in enumerate(("a", "b", "c")):
        context.store.create(_queued(id_, float(i)), due=500)
    result = run_step(context, "a", 0, lambda r: Transition(r, Step.REGISTER))
    assert result["state"] == "superseded"
    superseded = context.store.get("a")
    assert superseded is not None
    assert "c" in (superseded.reason or "")
    assert run_step(context, "c", 0, lambda r: Transition(r, None))["status"] == "ok"


def test_vanished_members_do_not_block_the_queue(client: redis.Redis) -> None:
    """A queue member whose record is gone (expired, deleted) is dropped, not waited for."""
    sender = Sender()
    context = ctx(client, sender)
    context.store.create(_queued("ghost", 1.0), due=500)
    context.store.create(_queued("real", 2.0), due=500)
    client.delete(WorkerStore(client).key("ghost"))
    context = dataclasses.replace(context, supersede=False)
    ran: list[str] = []
    run_step(context, "real", 0, _recording(ran))
    assert ran == ["real"]


def test_cancel_before_any_change_ends_at_once(client: redis.Redis) -> None:
    """A queued deployment that is cancelled ends cancelled without running its step."""
    sender = Sender()
    context = ctx(client, sender)
    context.store.create(new_record(), due=500)
    context.store.modify("d1", lambda r: r.model_copy(update={"cancel_requested_at": 1.0}))
    ran: list[str] = []
    run_step(context, "d1", 0, _recording(ran))
    final = context.store.get("d1")
    assert final is not None
    assert ran == []
    assert final.state is DeploymentState.CANCELLED
    assert "before the service was changed" in (final.reason or "")


def test_cancel_during_rollout_rolls_back_then_ends_cancelled(client: redis.Redis) -> None:
    """Cancelled while watching: the next step is the rollback, and the end state is cancelled."""
    sender = Sender()
    context = ctx(client, sender)
    watching = new_record().model_copy(
        update={
            "state": DeploymentState.RUNNING,
            "step": Step.WATCH,
            "job": {"rollback": True},
            "cancel_requested_at": 1.0,
        }
    )
    context.store.create(watching, due=500)
    run_step(context, "d1", 0, lambda r: Transition(r, None))
    assert sender.sent[-1][0] == "conveyor.update.rollback"

    def rolled_back(record: DeploymentRecord) -> Transition:
        done = record.model_copy(
            update={
                "state": DeploymentState.ROLLED_BACK,
                "reason": "x; Conveyor rolled the service back to td:1",
            }
        )
        return Transition(done, None)

    run_step(context, "d1", 1, rolled_back)
    final = context.store.get("d1")
    assert final is not None
    assert final.state is DeploymentState.CANCELLED
    assert final.reason == "cancelled; Conveyor rolled the service back to td:1"


def test_redis_contents_sees_planted_text_in_every_type(client: redis.Redis) -> None:
    """The helper the secret-leak tests use finds text in strings, hashes, lists, sets and
    zsets, long and compressible ones included: a leak could not hide from it."""
    from tests.integration.conftest import redis_contents

    secret = b"planted-" + b"x" * 200
    client.set("s", b"a" * 100 + secret)
    client.hset("h", "f", secret)
    client.rpush("l", secret)
    client.sadd("st", secret)
    client.zadd("z", {secret: 1})
    contents = redis_contents(client)
    assert contents.count(secret) == 5


def test_queue_order_is_arrival_order_not_producer_clocks(client: redis.Redis) -> None:
    """A job from a producer whose clock runs fast does not jump, or supersede, the queue."""
    sender = Sender()
    context = dataclasses.replace(ctx(client, sender), supersede=True)
    context.store.create(_queued("first", 100.0), due=500)  # a producer 99 s fast
    context.store.create(_queued("second", 1.0), due=500)
    first = run_step(context, "first", 0, lambda r: Transition(r, Step.REGISTER))
    assert first["state"] == "superseded"  # the newer arrival wins, whatever the clocks said


def test_one_queue_per_account(client: redis.Redis) -> None:
    """The same cluster and service names in two accounts are two services."""
    a = _queued("a", 1.0).model_copy(
        update={"job": {"role_arn": "arn:aws:iam::111111111111:role/r"}}
    )
    b = _queued("b", 2.0).model_copy(
        update={"job": {"role_arn": "arn:aws:iam::222222222222:role/r"}}
    )
    assert a.service_key != b.service_key
    assert _queued("c", 1.0).service_key == "self/c/s"


def _queued_images(id_: str, created: float, *containers: str) -> DeploymentRecord:
    images = [{"container": c, "image": f":{id_}"} for c in containers]
    return _queued(id_, created).model_copy(update={"job": {"images": images}})


def test_supersede_never_drops_another_containers_change(client: redis.Redis) -> None:
    """Pipeline A queues app=:2.0, pipeline B sidecar=:1.5: A is not superseded (it used to
    be, and app:2.0 was never deployed); both run, in arrival order."""
    sender = Sender()
    context = ctx(client, sender)
    context.store.create(_queued_images("a", 1.0, "app"), due=500)
    context.store.create(_queued_images("b", 2.0, "sidecar"), due=500)
    started: list[str] = []

    def run(record: DeploymentRecord) -> Transition:
        started.append(record.id)
        return Transition(record.model_copy(update={"state": DeploymentState.RUNNING}), None)

    run_step(context, "a", 0, run)
    assert started == ["a"]
    a = context.store.get("a")
    assert a is not None
    assert a.state is not DeploymentState.SUPERSEDED


def test_a_covering_newer_job_supersedes_and_is_named(client: redis.Redis) -> None:
    """A newer job that changes app and sidecar carries A's app change: A ends superseded and
    its record names the deployment that carries its change."""
    sender = Sender()
    context = ctx(client, sender)
    context.store.create(_queued_images("a", 1.0, "app"), due=500)
    context.store.create(_queued_images("b", 2.0, "app", "sidecar"), due=500)
    context.store.create(_queued_images("c", 3.0, "sidecar"), due=500)
    result = run_step(context, "a", 0, lambda r: Transition(r, Step.REGISTER))
    assert result["state"] == "superseded"
    a = context.store.get("a")
    assert a is not None
    assert a.superseded_by == "b"
    assert "b" in (a.reason or "")


# -- hardening: one bad record stops nothing; every key bounded ------------------------------


def _hand_edit(client: redis.Redis, id_: str, **fields: Any) -> None:
    import json

    key = WorkerStore(client).key(id_)
    data = json.loads(client.get(key) or b"{}")
    data.update(fields)
    client.set(key, json.dumps(data))


def test_an_unreadable_record_is_quarantined_and_the_sweep_goes_on(client: redis.Redis) -> None:
    """A hand-edited record used to abort every sweep at its id. Now it is moved aside (out
    of the due set) and the other overdue deployments are re-dispatched in the same sweep."""
    sender = Sender()
    context = ctx(client, sender, now=1000.0)
    context.store.create(new_record("bad"), due=10)
    context.store.create(new_record("good"), due=20)
    _hand_edit(client, "bad", state="exploded")
    assert sweep(context) == 1
    assert [args[0] for _, args, _ in sender.sent] == ["good"]
    assert client.get(WorkerStore(client).key("bad")) is None
    assert client.exists("conveyor:quarantine:bad")
    assert client.zscore(DUE_KEY, "bad") is None
    assert context.store.is_quarantined("bad")


def test_the_queue_moves_past_an_unreadable_head(client: redis.Redis) -> None:
    """A damaged record at the head of a service's queue no longer freezes the service."""
    sender = Sender()
    context = dataclasses.replace(ctx(client, sender), supersede=False)
    context.store.create(_queued("bad", 1.0), due=500)
    context.store.create(_queued("next", 2.0), due=500)
    _hand_edit(client, "bad", step="a-step-from-nowhere")
    ran: list[str] = []
    run_step(context, "next", 0, _recording(ran))
    assert ran == ["next"]


def test_a_record_of_a_newer_version_is_left_alone(client: redis.Redis) -> None:
    """During a rolling upgrade a newer worker may record a state this one does not know: it is
    not quarantined, its steps are left to newer workers, and it still holds its service."""
    from producers.contract.store import NewerRecordError

    sender = Sender()
    context = dataclasses.replace(ctx(client, sender), supersede=False)
    context.store.create(_queued("newer", 1.0), due=500)
    context.store.create(_queued("mine", 2.0), due=500)
    _hand_edit(client, "newer", state="paused", schema_version=99)
    with pytest.raises(NewerRecordError):
        context.store.get("newer")
    assert run_step(context, "newer", 0, lambda r: Transition(r, None))["status"] == "newer"
    ran: list[str] = []
    run_step(context, "mine", 0, _recording(ran))
    assert ran == []  # waits behind the newer one
    assert client.get(WorkerStore(client).key("newer")) is not None


def test_the_terminal_commit_drops_payload_queue_and_due_at_once(client: redis.Redis) -> None:
    """Finishing is one transaction: a crash right after it cannot leave the full payload
    (environment values) for the record TTL, nor the service held."""
    store = WorkerStore(client)
    record = _queued("d", 1.0)
    store.create(record, due=500, job={"environment": {"TOKEN": "value"}})
    done = record.model_copy(update={"state": DeploymentState.SUCCEEDED, "seq": 1})
    assert store.commit(done, expected_seq=0, due=None)
    assert client.get("conveyor:job:d") is None
    assert client.zscore(store.queue_key(record.service_key), "d") is None
    assert client.zscore(DUE_KEY, "d") is None


def test_the_index_is_trimmed_to_the_record_ttl(client: redis.Redis) -> None:
    """The index of deployments used to grow for ever; it keeps what the TTL keeps."""
    store = WorkerStore(client, ttl_seconds=100)
    store.create(_queued("old", 1.0), due=500)
    store.create(_queued("recent", 500.0), due=500)
    assert client.zrange("conveyor:deployments", 0, -1) == [b"recent"]


def test_status_names_lost_and_unreadable_records(client: redis.Redis, redis_url: str) -> None:
    """The client tells a vanished or quarantined record from an unknown id."""
    from config.settings import Settings
    from producers.client import ConveyorClient, DeploymentLostError, DeploymentNotFoundError

    conveyor = ConveyorClient(Settings(redis_url=SecretStr(redis_url)))
    store = WorkerStore(client)
    store.create(new_record("gone"), due=500)
    client.delete(WorkerStore(client).key("gone"))
    with pytest.raises(DeploymentLostError, match="vanished"):
        conveyor.status("gone")
    store.create(new_record("bad"), due=500)
    _hand_edit(client, "bad", state="exploded")
    with pytest.raises(DeploymentLostError, match="unreadable"):
        conveyor.status("bad")
    with pytest.raises(DeploymentNotFoundError):
        conveyor.status("never")


# -- hardening: one queue per service, however the credentials were obtained ------------------

ACCOUNT = "123456789012"


def test_a_job_without_role_and_one_with_a_role_share_the_queue(client: redis.Redis) -> None:
    """A job with a role in account A and one on the workers' own credentials (also A) used to
    be keyed under A and ``self``, and ran at once on one service. Re-keyed under the real
    account at the gate, the second waits for the first."""
    sender = Sender()
    context = dataclasses.replace(
        ctx(client, sender), supersede=False, account_of=lambda r: ACCOUNT
    )
    with_role = _queued("role", 1.0).model_copy(
        update={"job": {"role_arn": f"arn:aws:iam::{ACCOUNT}:role/deployer"}}
    )
    own = _queued("own", 2.0)
    assert own.service_key.startswith("self/")  # no worker had published its account yet
    context.store.create(with_role, due=500)
    context.store.create(own, due=500)
    started: list[str] = []

    def run(record: DeploymentRecord) -> Transition:
        started.append(record.id)
        return Transition(
            record.model_copy(update={"state": DeploymentState.RUNNING}), Step.REGISTER
        )

    run_step(context, "own", 0, run)
    assert started == []  # behind the job with the role, in arrival order
    moved = context.store.get("own")
    assert moved is not None
    assert moved.account == ACCOUNT
    assert moved.service_key == with_role.service_key
    run_step(context, "role", 0, run)
    assert started == ["role"]


def test_producers_key_jobs_under_the_published_account(
    client: redis.Redis, redis_url: str
) -> None:
    """Once a worker has published its account, jobs without a role are keyed under it."""
    from config.settings import Settings
    from producers.client import ConveyorClient
    from producers.contract.jobs import ImageUpdate, UpdateServiceJob

    WorkerStore(client).publish_self_account(ACCOUNT)
    conveyor = ConveyorClient(Settings(redis_url=SecretStr(redis_url)))
    job = UpdateServiceJob(
        cluster="c", service="s", images=(ImageUpdate(container="web", image=":1"),)
    )
    record = conveyor.enqueue(job)
    assert record.service_key == f"{ACCOUNT}/c/s"
    with_role = job.model_copy(update={"role_arn": f"arn:aws:iam::{ACCOUNT}:role/x"})
    assert conveyor.enqueue(with_role).service_key == record.service_key


def test_reclaim_retries_when_it_loses_a_race(client: redis.Redis) -> None:
    """A reclaim whose transaction loses a race with a step's write (WATCH) tries again, rather
    than leaving an overdue deployment unreclaimed until the next sweep by chance."""
    from redis.exceptions import WatchError

    class Contended(WorkerStore):
        races = 2

        def _reclaim_once(self, deployment_id: str, *, now: float, due: float) -> Any:
            if self.races:
                self.races -= 1
                raise WatchError("a step committed meanwhile")
            return super()._reclaim_once(deployment_id, now=now, due=due)

    store = Contended(client)
    store.create(new_record("d"), due=10)
    reclaimed = store.reclaim("d", now=100.0, due=200.0)
    assert reclaimed is not None
    assert reclaimed.seq == 1


def test_a_job_being_moved_to_its_account_is_not_overtaken(client: redis.Redis) -> None:
    """Two jobs keyed under ``self`` (no worker had published its account): if the later one
    reaches the real account's queue first, it still waits for the earlier one, which is only
    being moved. Before, it started, and the earlier one then started on top of it."""
    sender = Sender()
    context = dataclasses.replace(
        ctx(client, sender), supersede=False, account_of=lambda r: ACCOUNT
    )
    context.store.create(_queued("early", 1.0), due=500)
    context.store.create(_queued("late", 2.0), due=500)
    started: list[str] = []

    def run(record: DeploymentRecord) -> Transition:
        started.append(record.id)
        return Transition(
            record.model_copy(update={"state": DeploymentState.RUNNING}), Step.REGISTER
        )

    run_step(context, "late", 0, run)  # moved first; "early" is still under self
    assert started == []
    run_step(context, "early", 0, run)
    assert started == ["early"]


def test_a_job_with_a_role_waits_for_an_earlier_one_still_under_self(client: redis.Redis) -> None:
    """A job without a role (still keyed under self) and a later one with a role in the same
    account: the later one does not start first."""
    sender = Sender()
    context = dataclasses.replace(
        ctx(client, sender), supersede=False, account_of=lambda r: ACCOUNT
    )
    context.store.create(_queued("own", 1.0), due=500)
    with_role = _queued("role", 2.0).model_copy(
        update={"job": {"role_arn": f"arn:aws:iam::{ACCOUNT}:role/deployer"}}
    )
    context.store.create(with_role, due=500)
    started: list[str] = []

    def run(record: DeploymentRecord) -> Transition:
        started.append(record.id)
        return Transition(
            record.model_copy(update={"state": DeploymentState.RUNNING}), Step.REGISTER
        )

    run_step(context, "role", 0, run)
    assert started == []
    run_step(context, "own", 0, run)
    assert started == ["own"]


def test_the_family_index_holds_unfinished_deployments_only(client: redis.Redis) -> None:
    """A deployment enters its family's index with the commit that names the family and
    leaves it with the commit that ends it; a member whose record vanished is dropped when
    read. The index key expires with the records."""
    store = WorkerStore(client, ttl_seconds=600)
    for id_ in ("d1", "d2"):
        store.create(new_record(id_), due=10.0)
    assert store.unfinished_in_family("web") == []
    named = [
        new_record(id_).model_copy(update={"seq": 1, "family": "web", "updated_at": 2.0})
        for id_ in ("d1", "d2")
    ]
    for record in named:
        assert store.commit(record, expected_seq=0, due=20.0)
    assert [r.id for r in store.unfinished_in_family("web")] == ["d1", "d2"]
    assert 0 < client.ttl("conveyor:family:web:deployments") <= 600
    ended = named[0].model_copy(update={"seq": 2, "state": DeploymentState.SUCCEEDED})
    assert store.commit(ended, expected_seq=1, due=None)
    assert [r.id for r in store.unfinished_in_family("web")] == ["d2"]
    client.delete(store.key("d2"))  # expired, or lost
    assert store.unfinished_in_family("web") == []
    assert not client.exists("conveyor:family:web:deployments")


def test_a_pre_deploy_record_is_left_alone_by_a_reader_of_schema_1(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record of a job with a pre-deploy task is written with schema 2 (its steps are new):
    a reader that knows schema 1 leaves it alone instead of quarantining it; every other record
    keeps schema 1, readable by it."""
    import producers.contract.store as store_module
    from producers.contract.store import NewerRecordError

    store = WorkerStore(client)
    plain = _queued("plain", 1.0)
    task = _queued("task", 2.0).model_dump()
    task.pop("schema_version")
    task["job"] = {**task["job"], "pre_deploy": {"container": "web"}}
    migrating = DeploymentRecord.model_validate(task)
    assert (plain.schema_version, migrating.schema_version) == (1, 2)
    store.create(plain, due=500)
    store.create(migrating.model_copy(update={"step": Step.WATCH_TASK}), due=500)
    monkeypatch.setattr(store_module, "RECORD_SCHEMA", 1)
    raw = client.get(store.key("task"))
    assert isinstance(raw, bytes)
    # A step this reader does not know, as a schema-1 reader sees watch_task.
    client.set(store.key("task"), raw.replace(b'"watch_task"', b'"unknown_step"'))
    with pytest.raises(NewerRecordError):
        store.get("task")
    assert store.get("plain") is not None
    assert client.get(store.key("task")) is not None  # not moved aside
