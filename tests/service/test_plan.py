"""plan_update against the fake ECS: reads only, values never shown."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from producers.contract.jobs import ContainerSettings, ImageUpdate, UpdateServiceJob
from tests.fakes.ecs import FakeEcs
from worker.services.plan import plan_update

FIXTURE = Path(__file__).parent.parent / "fixtures" / "describe_task_definition_web.json"


def fake() -> FakeEcs:
    ecs = FakeEcs()
    described = json.loads(FIXTURE.read_text())
    ecs.add_service("demo", "web", ecs.add_task_definition(described["taskDefinition"], []))
    return ecs


def test_a_plan_reads_only_and_hides_values() -> None:
    """Images before and after, settings by name, secret fields without values; no write."""
    ecs = fake()
    job = UpdateServiceJob(
        cluster="demo",
        service="web",
        images=(ImageUpdate(container="web", image=":9"),),
        settings=(
            ContainerSettings(
                container="web", environment={"TOKEN": "v-env"}, secrets={"DB": "arn:v-secret"}
            ),
        ),
        maximum_percent=150,
    )
    plan = asyncio.run(plan_update(ecs, job))
    text = json.dumps(plan)
    assert "v-env" not in text
    assert "v-secret" not in text
    secret_fields = [
        f
        for f in plan["task_definition"]["fields"]
        if "environment" in f["field"] or "secrets" in f["field"]
    ]
    assert secret_fields
    assert all(set(f) == {"field"} for f in secret_fields)
    image = next(f for f in plan["task_definition"]["fields"] if f["field"].endswith(".image"))
    assert image["after"].endswith(":9")
    assert any(
        c["field"] == "deploymentConfiguration.maximumPercent" for c in plan["service_changes"]
    )
    assert not {"RegisterTaskDefinition", "UpdateService"} & set(ecs.calls)


def test_a_plan_reports_what_the_job_would_fail_on() -> None:
    """An unknown container, a missing service: an error in the plan, nothing raised."""
    ecs = fake()
    bad = UpdateServiceJob(
        cluster="demo", service="web", images=(ImageUpdate(container="nope", image=":2"),)
    )
    assert "'nope' is not in" in asyncio.run(plan_update(ecs, bad))["error"]
    missing = UpdateServiceJob(
        cluster="demo", service="gone", images=(ImageUpdate(container="web", image=":2"),)
    )
    assert "not found" in asyncio.run(plan_update(ecs, missing))["error"]
    restart = UpdateServiceJob(cluster="demo", service="web", images=(), force_new_deployment=True)
    planned = asyncio.run(plan_update(ecs, restart))
    assert planned["task_definition"] is None
    assert planned["restart"] is True


def test_a_resolved_rule_plans_and_shows_tag_and_digest() -> None:
    """A rule resolved to REPOSITORY:TAG@DIGEST goes into the new revision as written (the
    digest is not dropped, the tag not taken for a port), and the plan shows it in the image
    field and in its versions; a later ':TAG' on that container drops the stale digest."""
    ecs = fake()
    digest = "sha256:" + "ab" * 32
    image = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/demo/web:1.1.0@{digest}"
    job = UpdateServiceJob(
        cluster="demo",
        service="web",
        images=(ImageUpdate(container="web", image=image, rule="latest", digest=digest),),
    )
    plan = asyncio.run(plan_update(ecs, job))
    field = next(f for f in plan["task_definition"]["fields"] if f["field"].endswith(".image"))
    assert field["after"] == image
    assert plan["versions"] == [
        {"container": "web", "rule": "latest", "image": image, "digest": digest}
    ]
    from worker.domain.planning import plan_revision

    base = json.loads(FIXTURE.read_text())["taskDefinition"]
    web = next(c for c in base["containerDefinitions"] if c["name"] == "web")
    web["image"] = image
    retagged = plan_revision(
        base, [], {"web": ImageUpdate(container="web", image=":1.2.0").spec}, "d"
    )
    assert retagged.changes[0].after == image.replace(f"1.1.0@{digest}", "1.2.0")
