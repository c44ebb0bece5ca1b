"""Releases end to end: the real CLI and workers, the local AWS."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from localaws.devstack import Worker
from localaws.testing import create_services
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration
CONTAINER = {"name": "app", "image": "registry.local:5000/team/app:1.0.0", "memory": 128}


def services(stack: Stack, count: int, *, breaker: bool = True) -> list[str]:
    names = [f"rel-{uuid.uuid4().hex[:6]}-{i}" for i in range(count)]
    create_services(stack.endpoint, names, containers=[CONTAINER], breaker=breaker, desired=1)
    return names


def write(tmp_path: Path, release: dict[str, Any]) -> Path:
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(release))
    return path


def image_of(stack: Stack, name: str) -> str:
    service = stack.ecs().describe_services(cluster="demo", services=[name])["services"][0]
    definition = stack.ecs().describe_task_definition(taskDefinition=service["taskDefinition"])
    image: str = definition["taskDefinition"]["containerDefinitions"][0]["image"]
    return image


def test_a_release_deploys_wave_after_wave(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """Two waves from a release file: every service succeeds, exit 0, and no deployment of
    wave 2 starts before every deployment of wave 1 has ended."""
    start_worker("w1")
    a, b, c = services(stack, 3)
    path = write(
        tmp_path,
        {
            "release": "shop-2.4",
            "cluster": "demo",
            "waves": [
                [
                    {"service": a, "images": {"app": ":2.4.0"}},
                    {"service": b, "images": {"app": ":2.4.0"}},
                ],
                [{"service": c, "images": {"app": ":2.4.1"}}],
            ],
        },
    )
    result = stack.cli("release", "-f", str(path), "--json")
    assert result.returncode == 0, result.stderr + result.stdout
    release = json.loads(result.stdout)
    assert release["state"] == "succeeded"
    assert [d["state"] for d in release["deployments"]] == ["succeeded"] * 3
    records = {d["id"]: stack.record(d["id"]) for d in release["deployments"]}
    wave1 = [records[i] for i in release["waves"][0]]
    (wave2,) = [records[i] for i in release["waves"][1]]
    assert max(r["finished_at"] for r in wave1) <= wave2["created_at"]
    assert image_of(stack, c).endswith(":2.4.1")
    status = stack.cli("status", release["id"])
    assert status.returncode == 0
    assert "shop-2.4" in status.stdout
    assert f"demo/{c}" in status.stdout


def test_several_services_in_one_update(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """`conveyor update --service a --service b` deploys the same images to both, as one
    release, and exits 0 when both succeeded."""
    start_worker("w1")
    a, b = services(stack, 2)
    result = stack.cli(
        "update",
        "--cluster",
        "demo",
        "--service",
        a,
        "--service",
        b,
        "--image",
        "app=:3.0.0",
        "--json",
    )
    assert result.returncode == 0, result.stderr + result.stdout
    release = json.loads(result.stdout)
    assert [d["service"] for d in release["deployments"]] == [a, b]
    assert image_of(stack, a).endswith(":3.0.0")
    assert image_of(stack, b).endswith(":3.0.0")


def test_fail_fast_stops_the_release_at_a_failed_wave(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """A broken image in wave 1 is rolled back by the breaker; the release fails (exit 1) and
    wave 2's service is never touched."""
    start_worker("w1")
    a, b = services(stack, 2)
    path = write(
        tmp_path,
        {
            "cluster": "demo",
            "waves": [
                [{"service": a, "images": {"app": ":fail-4.0.0"}}],
                [{"service": b, "images": {"app": ":4.0.0"}}],
            ],
        },
    )
    result = stack.cli("release", "-f", str(path), "--json")
    assert result.returncode == 1, result.stderr + result.stdout
    release = json.loads(result.stdout)
    assert release["state"] == "failed"
    assert [d["state"] for d in release["deployments"]] == ["rolled_back", "pending"]
    assert image_of(stack, b).endswith(":1.0.0")


def test_cancel_stops_the_whole_release(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """Cancelling a release whose first wave will never finish (no breaker) rolls that wave
    back and never starts the next: exit 5."""
    start_worker("w1")
    (stuck,) = services(stack, 1, breaker=False)
    (later,) = services(stack, 1)
    path = write(
        tmp_path,
        {
            "cluster": "demo",
            "waves": [
                [{"service": stuck, "images": {"app": ":fail-5.0.0"}}],
                [{"service": later, "images": {"app": ":5.0.0"}}],
            ],
        },
    )
    started = stack.cli("release", "-f", str(path), "--no-wait")
    assert started.returncode == 0, started.stderr
    release_id = started.stdout.strip()
    import time

    deadline = time.monotonic() + 60
    while stack.record(f"{release_id}-0000")["step"] != "watch":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    result = stack.cli("cancel", release_id, "--json")
    assert result.returncode == 5, result.stderr + result.stdout
    release = json.loads(result.stdout)
    assert release["state"] == "cancelled"
    assert release["deployments"][0]["state"] == "cancelled"
    assert release["deployments"][1]["state"] == "pending"
    assert image_of(stack, stuck).endswith(":1.0.0")
    assert image_of(stack, later).endswith(":1.0.0")


def ecr_repository(stack: Stack, tags: list[str]) -> str:
    """A new ECR repository in the local AWS with ``tags`` pushed in that order; its URI."""
    name = f"plan/app-{uuid.uuid4().hex[:6]}"
    stack.ecr().create_repository(repositoryName=name)
    for tag in tags:
        push(stack, name, tag)
    return f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{name}"


def push(stack: Stack, name: str, tag: str) -> str:
    """Push a distinct image under ``tag``; its digest."""
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 10,
                "digest": "sha256:" + hashlib.sha256(f"{name}:{tag}".encode()).hexdigest(),
            },
            "layers": [],
        }
    )
    image = stack.ecr().put_image(repositoryName=name, imageManifest=manifest, imageTag=tag)
    digest: str = image["image"]["imageId"]["imageDigest"]
    return digest


def digest_of(stack: Stack, repository: str, tag: str) -> str:
    name = repository.split("/", 1)[1]
    (image,) = stack.ecr().describe_images(repositoryName=name, imageIds=[{"imageTag": tag}])[
        "imageDetails"
    ]
    digest: str = image["imageDigest"]
    return digest


def test_release_plan_deploys_exactly_the_planned_digests(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """`plan --out` then `release --plan`: '{latest}' is the highest release (not the
    'latest', 'buildcache' or '1.9.9-hotfix' tags pushed after it) and each service gets
    REPOSITORY:TAG@DIGEST as planned, even though a newer release was pushed in between; the
    plan file holds no environment value or secret reference, so the plan alone is refused
    (exit 2, nothing deployed) and the values come from the release file given with it."""
    start_worker("w1")
    repo = ecr_repository(stack, ["1.0.0", "1.1.0", "1.9.9-hotfix", "buildcache", "latest"])
    a, b = services(stack, 2)
    secret_value = f"value-{uuid.uuid4().hex}"
    secret_ref = f"arn:aws:ssm:us-east-1:123456789012:parameter/ref-{uuid.uuid4().hex[:8]}"
    path = write(
        tmp_path,
        {
            "cluster": "demo",
            "waves": [
                [
                    {
                        "service": a,
                        "images": {"app": f"{repo}:{{latest}}"},
                        "settings": [
                            {
                                "container": "app",
                                "environment": {"TOKEN": secret_value},
                                "secrets": {"DB": secret_ref},
                            }
                        ],
                    }
                ],
                [{"service": b, "images": {"app": f"{repo}:{{[1.0,2.0)}}"}}],
            ],
        },
    )
    out = tmp_path / "plan.json"
    planned = stack.cli("plan", "-f", str(path), "--out", str(out))
    assert planned.returncode == 0, planned.stdout + planned.stderr
    pinned = f"{repo}:1.1.0@{digest_of(stack, repo, '1.1.0')}"
    assert f"-> {pinned}" in planned.stdout
    text = out.read_text()
    assert secret_value not in text
    assert secret_ref not in text
    data = json.loads(text)
    assert [s["images"] for s in data["services"]] == [{"app": pinned}] * 2
    assert all(s["base"] and s["current_task_definition"] for s in data["services"])

    push(stack, repo.split("/", 1)[1], "1.2.0")  # the rules would pick 1.2.0 now

    alone = stack.cli("release", "--plan", str(out))
    assert alone.returncode == 2, alone.stdout + alone.stderr
    assert f"demo/{a} set environment variables or secrets" in alone.stderr
    assert "-f RELEASE.yaml" in alone.stderr
    assert json.loads(stack.cli("list", "--json").stdout)["deployments"] == []

    result = stack.cli("release", "--plan", str(out), "-f", str(path), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["state"] == "succeeded"
    assert image_of(stack, a) == pinned
    assert image_of(stack, b) == pinned
    service = stack.ecs().describe_services(cluster="demo", services=[a])["services"][0]
    container = stack.ecs().describe_task_definition(taskDefinition=service["taskDefinition"])[
        "taskDefinition"
    ]["containerDefinitions"][0]
    assert {"name": "TOKEN", "value": secret_value} in container["environment"]
    assert {"name": "DB", "valueFrom": secret_ref} in container["secrets"]


def test_release_plan_is_refused_when_a_service_moved_since_the_plan(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """A service updated by someone else between `plan --out` and `release --plan`: the
    release is refused with exit 2 naming that service, its revision then and now, and the
    base; nothing is deployed; the service that did not move is not named."""
    start_worker("w1")
    repo = ecr_repository(stack, ["1.0.0", "1.1.0"])
    still, moving = services(stack, 2)
    path = write(
        tmp_path,
        {
            "cluster": "demo",
            "services": [
                {"service": still, "images": {"app": f"{repo}:{{latest}}"}},
                {"service": moving, "images": {"app": f"{repo}:{{latest}}"}},
            ],
        },
    )
    out = tmp_path / "plan.json"
    planned = stack.cli("plan", "-f", str(path), "--out", str(out), "--json")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    entry = json.loads(out.read_text())["services"][1]

    moved = stack.cli(
        "update", "--cluster", "demo", "--service", moving, "--image", "app=:1.0.1", "--json"
    )
    assert moved.returncode == 0, moved.stdout + moved.stderr
    now = json.loads(moved.stdout)["task_definition_arn"].rsplit("/", 1)[-1]
    before = json.loads(stack.cli("list", "--json").stdout)["deployments"]

    refused = stack.cli("release", "--plan", str(out))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"demo/{moving}: runs {now} now, {entry['current_task_definition']} when planned" in (
        refused.stderr
    )
    assert f"demo/{moving}: its new revision would be built from {now} now" in refused.stderr
    assert f"demo/{still}" not in refused.stderr
    assert json.loads(stack.cli("list", "--json").stdout)["deployments"] == before
    assert image_of(stack, moving).endswith(":1.0.1")
    assert image_of(stack, still) == CONTAINER["image"]


def test_a_cancel_racing_the_move_to_the_next_wave_deploys_nothing_of_it(
    stack: Stack, start_worker: Callable[[str], Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wave 1 has ended and an advance is moving the release on when `cancel` lands between
    its read and its write (forced here by a hook in the advancing process). Real workers then
    sweep everything overdue: the image-only deployment of wave 2 never starts and its service
    keeps its image. A standalone deployment made overdue after the race marks that the
    sweeper has passed."""
    import time

    import redis

    from producers.contract.dispatch import RedisTaskSender
    from producers.contract.jobs import ImageUpdate, UpdateServiceJob
    from producers.contract.records import DeploymentRecord, DeploymentState
    from producers.contract.release_store import new_deployment
    from producers.contract.releases import ReleaseJob, ReleaseState, new_release_id
    from producers.contract.store import RecordStore
    from worker.release_store import WorkerReleaseStore

    first, later, marker = services(stack, 3)
    client = redis.Redis.from_url(stack.redis_url)
    records = RecordStore(client)
    releases = WorkerReleaseStore(client, records, ttl_seconds=3600, recovery_grace=15)
    job = ReleaseJob.model_validate(
        {
            "cluster": "demo",
            "waves": [
                [{"service": first, "images": {"app": ":6.0.0"}}],
                [{"service": later, "images": {"app": ":6.0.0"}}],
            ],
        }
    )
    release_id = new_release_id()
    now = time.time()
    release = releases.create(job, release_id, now)
    (wave1,) = release.waves[0]
    (wave2,) = release.waves[1]
    records.modify(wave1, lambda r: r.model_copy(update={"state": DeploymentState.SUCCEEDED}))

    read = records.get_many
    pending = [lambda: releases.request_cancel(release_id, now)]

    def get_many(deployment_ids: list[str]) -> dict[str, DeploymentRecord | None]:
        while pending:
            pending.pop()()
        return read(deployment_ids)

    # The advance reads the wave's records through get_many, between its read of the release
    # and its write: the cancel lands there.
    monkeypatch.setattr(records, "get_many", get_many)
    # An old clock: anything this advance creates is overdue at once, for the sweeper.
    done = releases.advance(release_id, RedisTaskSender(client), clock=lambda: now - 1000)
    monkeypatch.undo()
    assert done is not None
    assert done.state is ReleaseState.CANCELLED

    marker_job = UpdateServiceJob(
        cluster="demo", service=marker, images=(ImageUpdate(container="app", image=":6.0.1"),)
    )
    marked = new_deployment(marker_job, f"marker-{uuid.uuid4().hex[:8]}", now=now, account=None)
    records.create(marked, due=now - 500, job=marker_job.model_dump(mode="json"))

    start_worker("w1")
    deadline = time.monotonic() + 120
    while stack.record(marked.id)["state"] not in ("succeeded", "failed", "rolled_back"):
        assert time.monotonic() < deadline, "the sweeper never sent the overdue marker"
        time.sleep(0.5)
    assert stack.record(marked.id)["state"] == "succeeded"
    orphan = records.get(wave2)
    # The cancel failed the transaction that would have moved the release and created wave
    # 2's records with it: no record of that wave exists at all.
    assert orphan is None, orphan
    assert image_of(stack, later).endswith(":1.0.0")
    assert image_of(stack, first).endswith(":1.0.0")
    client.close()
