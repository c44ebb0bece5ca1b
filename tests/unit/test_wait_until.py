"""`--wait-until STAGE`: the names it takes, and following a deployment until it reaches that
lifecycle stage (against a real Redis; the record is moved by hand as a worker would)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from producers.cli import core
from producers.contract.records import DeploymentRecord, DeploymentState, ProgressInfo, Step
from producers.contract.stages import reached, stage_choices, stage_named
from producers.contract.store import RecordStore
from tests.unit.cli_support import conveyor, point_at


def test_a_stage_is_named_by_its_short_name_or_ecs_name_in_any_case() -> None:
    assert stage_named("production-traffic") == "PRODUCTION_TRAFFIC_SHIFT"
    assert stage_named("bake") == "BAKE_TIME"
    assert stage_named("PRE_PRODUCTION_TRAFFIC_SHIFT") == "PRE_PRODUCTION_TRAFFIC_SHIFT"
    assert stage_named(" test-traffic-shift ") == "TEST_TRAFFIC_SHIFT"
    with pytest.raises(ValueError, match="unknown stage 'prod'; choose one of: scale-up"):
        stage_named("prod")
    assert len(stage_choices()) == len(set(stage_choices()))


def test_a_later_stage_has_reached_an_earlier_one_and_no_stage_none() -> None:
    assert reached("BAKE_TIME", "PRODUCTION_TRAFFIC_SHIFT")
    assert reached("PRODUCTION_TRAFFIC_SHIFT", "PRODUCTION_TRAFFIC_SHIFT")
    assert not reached("TEST_TRAFFIC_SHIFT", "PRODUCTION_TRAFFIC_SHIFT")
    assert not reached(None, "SCALE_UP")


@pytest.fixture
def store(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordStore]:
    point_at(monkeypatch, redis_url)
    client = redis.Redis.from_url(redis_url)
    yield RecordStore(client)
    client.close()


def _put(store: RecordStore, stage: str | None, **fields: Any) -> None:
    store.create(
        DeploymentRecord(
            id="d1",
            job={},
            cluster="demo",
            service="web",
            created_at=1.0,
            updated_at=1.0,
            state=DeploymentState.RUNNING,
            step=Step.WATCH,
            progress=ProgressInfo(strategy="CANARY", lifecycle_stage=stage),
            **fields,
        ),
        due=time.time() + 3600,
    )


def _follow(until: str) -> int:
    with pytest.raises(SystemExit) as ended:
        core.follow(core.client(), "d1", False, until)
    return int(ended.value.code or 0)


def _move(store: RecordStore, after: float, **update: Any) -> threading.Thread:
    def move() -> None:
        time.sleep(after)
        store.modify("d1", lambda r: r.model_copy(update={**update, "seq": r.seq + 1}))

    thread = threading.Thread(target=move)
    thread.start()
    return thread


def test_following_until_a_stage_returns_0_once_it_is_reached_while_ecs_still_deploys(
    store: RecordStore, capsys: pytest.CaptureFixture[str]
) -> None:
    _put(store, "TEST_TRAFFIC_SHIFT")
    mover = _move(store, 1.5, progress=ProgressInfo(strategy="CANARY", lifecycle_stage="BAKE_TIME"))
    assert _follow("PRODUCTION_TRAFFIC_SHIFT") == 0
    mover.join()
    err = capsys.readouterr().err
    assert "deployment d1 reached BAKE_TIME; the workers follow it to its verdict" in err
    assert "`conveyor wait d1`" in err


def test_a_deployment_that_ends_before_the_stage_exits_with_its_own_code(
    store: RecordStore,
) -> None:
    """Rolled back before production traffic: the stage is never reached, exit 1."""
    _put(store, "SCALE_UP")
    mover = _move(store, 1.0, state=DeploymentState.ROLLED_BACK, rolled_back_by_ecs=True)
    assert _follow("PRODUCTION_TRAFFIC_SHIFT") == 1
    mover.join()


def test_a_deployment_being_rolled_back_past_the_stage_has_not_reached_it(
    store: RecordStore,
) -> None:
    """ECS rolls back after an alarm during the bake: the stage it shows is no progress."""
    _put(store, "BAKE_TIME", rolled_back_by_ecs=True)
    mover = _move(store, 1.0, state=DeploymentState.ROLLED_BACK)
    assert _follow("PRODUCTION_TRAFFIC_SHIFT") == 1
    mover.join()


def test_wait_until_with_no_wait_or_several_services_is_refused() -> None:
    both = conveyor(
        "update",
        "--cluster",
        "c",
        "--service",
        "s",
        "--image",
        "a=:1",
        "--wait-until",
        "bake",
        "--no-wait",
    )
    assert both.exit_code == 2
    assert "--wait-until and --no-wait contradict each other" in both.stderr
    several = conveyor(
        "update",
        "--cluster",
        "c",
        "--service",
        "s",
        "--service",
        "t",
        "--image",
        "a=:1",
        "--wait-until",
        "bake",
    )
    assert several.exit_code == 2
    assert "--wait-until follows one deployment" in several.stderr
