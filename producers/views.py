"""The JSON shapes of ``--json`` output, shared by the CLI and the dashboard's API.

One function per view, so that `conveyor list --json`, `conveyor status ID --json` and the
dashboard's ``/api/...`` answer the same documents.
"""

from __future__ import annotations

from typing import Any

from producers.client import ConveyorClient
from producers.contract.records import DeploymentRecord
from producers.contract.releases import ReleaseRecord


def deployment_view(record: DeploymentRecord) -> dict[str, Any]:
    """A deployment's full record (its job is already redacted in the store)."""
    return record.model_dump(mode="json")


def release_view(client: ConveyorClient, release: ReleaseRecord) -> dict[str, Any]:
    """A release without its job payloads, and one line per deployment, wave by wave."""
    records = client.release_deployments(release)
    ids = [i for wave in release.waves for i in wave]
    waves = {i: n for n, wave in enumerate(release.waves, start=1) for i in wave}
    deployments = []
    for deployment_id, record in zip(ids, records, strict=True):
        job = release.jobs[deployment_id]
        # Never created: it waits for its wave's pre-deploy tasks, or ended unstarted.
        unstarted = release.not_started.get(deployment_id)
        deployments.append(
            {
                "id": deployment_id,
                "wave": waves[deployment_id],
                "cluster": job["cluster"],
                "service": job["service"],
                "state": record.state.value if record else "cancelled" if unstarted else "pending",
                "step": record.step.value if record and not record.terminal else None,
                "reason": record.reason if record else unstarted,
            }
        )
    return {**release.model_dump(mode="json", exclude={"jobs"}), "deployments": deployments}


def list_view(
    client: ConveyorClient,
    *,
    services: tuple[str, ...] = (),
    states: tuple[str, ...] = (),
    clusters: tuple[str, ...] = (),
    only: str | None = None,
    limit: int = 20,
) -> dict[str, Any]:
    """Recent deployments and releases, newest first, filtered as `conveyor list` does.

    Releases have no single service or cluster: a service or cluster filter lists deployments
    only. ``unreadable_releases`` names the recent releases whose records could not be read.
    """
    deployments = (
        []
        if only == "releases"
        else client.list_deployments(
            services=services, states=states, clusters=clusters, limit=limit
        )
    )
    unreadable: list[str] = []
    releases = (
        []
        if only == "deployments" or services or clusters
        else client.list_releases(states=states, limit=limit, unreadable=unreadable)
    )
    return {
        "deployments": [deployment_view(r) for r in deployments],
        "releases": [r.model_dump(mode="json", exclude={"jobs"}) for r in releases],
        # Release records that could not be read (quarantined, or of a newer Conveyor).
        "unreadable_releases": unreadable,
    }
