"""Plan files: `conveyor plan -f R --out plan.json`, then `conveyor release --plan plan.json`.

A plan file holds the release as planned: every job with its version rules already resolved to
``REPOSITORY:TAG@DIGEST`` (or the tag, with ``--tag-only``), and per service the revision it ran
(``current_task_definition``) and the revision its new one would be built from (``base``) when
it was planned. Deploying the file deploys exactly those images: nothing is resolved again.

What a plan file never holds: environment values and secret references. Jobs are written as
records are (:meth:`UpdateServiceJob.redacted`, values as ``***``), so a plan file can be
attached to a change request or kept as a CI artifact. A release whose jobs set environment or
secrets therefore needs its release file again at deploy time (``--plan plan.json -f R``):
the values come from the file, and the file must still describe the planned release (the same
services in the same waves, the same settings names and options; an image may be the rule the
plan resolved). Without the file, such a plan is refused rather than deployed with ``***``.

Before deploying, the producer asks the workers for a fresh plan of the same jobs (the path
`conveyor plan` uses) and compares, per service, the revision it runs and the base of its new
revision with the plan file. Any difference means the world moved since the plan was reviewed:
the release is refused (exit 2) naming each service and what moved. A version rule that would
now resolve differently does not matter: the plan's digests are deployed.

This module is pure: the CLI reads and writes the files and talks to the workers.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from producers.contract.errors import ProducerError
from producers.contract.jobs import UpdateServiceJob, describe_validation_error, load_update_job
from producers.contract.releases import ReleaseJob
from producers.contract.versions import split_rule_image

PLAN_FORMAT = 1


class PlanFileError(ProducerError, ValueError):
    """Raised when a plan file cannot be used as it is; the message says what to do."""


def _name(job: UpdateServiceJob) -> str:
    return f"{job.cluster.rsplit('/', 1)[-1]}/{job.service.rsplit('/', 1)[-1]}"


def _jobs(release: ReleaseJob) -> list[UpdateServiceJob]:
    return [job for wave in release.waves for job in wave]


def base_of(plan: dict[str, Any]) -> str | None:
    """The revision a plan would build the new one from (None for a restart)."""
    revision = plan.get("task_definition")
    if isinstance(revision, dict) and revision.get("base"):
        return str(revision["base"])
    base = plan.get("base")
    return str(base) if isinstance(base, str) else None


def plan_file(release: ReleaseJob, plans: list[dict[str, Any]], source: str) -> dict[str, Any]:
    """The plan file of a resolved release and its plans (one per job, in order), as JSON.

    PlanFileError when a plan has an error: such a release cannot be deployed as planned.
    """
    jobs = _jobs(release)
    failed = [f"{_name(j)}: {p['error']}" for j, p in zip(jobs, plans, strict=True) if "error" in p]
    if failed:
        raise PlanFileError(
            "no plan file written: " + "; ".join(failed) + ". Fix the release and plan again."
        )
    unresolved = [_name(j) for j in jobs if any(i.unresolved_rule for i in j.images)]
    if unresolved:
        raise PlanFileError(f"version rules of {', '.join(unresolved)} are not resolved")
    header = release.model_dump(mode="json", exclude={"waves"})
    return {
        "conveyor_plan": PLAN_FORMAT,
        "release_file": source,
        "release": {**header, "waves": [[j.redacted() for j in wave] for wave in release.waves]},
        "services": [
            {
                "cluster": job.cluster,
                "service": job.service,
                "current_task_definition": plan.get("current_task_definition"),
                "base": base_of(plan),
                "images": {i.container: i.image for i in job.images},
            }
            for job, plan in zip(jobs, plans, strict=True)
        ],
        "plans": plans,
    }


def load_plan(data: Any, where: str) -> tuple[ReleaseJob, list[dict[str, Any]]]:
    """The planned release (settings masked) and its per-service entries, from a plan file."""
    if not isinstance(data, dict) or data.get("conveyor_plan") != PLAN_FORMAT:
        raise PlanFileError(
            f"{where}: not a Conveyor plan file (format {PLAN_FORMAT}); write one with "
            "`conveyor plan -f RELEASE --out FILE`"
        )
    try:
        raw = dict(data["release"])
        waves = [[load_update_job(job) for job in wave] for wave in raw.pop("waves")]
        release = ReleaseJob.model_validate({**raw, "waves": waves})
        services = list(data["services"])
    except ValidationError as exc:
        problems = "; ".join(describe_validation_error(exc))
        raise PlanFileError(f"{where}: the planned release is not valid: {problems}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanFileError(
            f"{where}: the plan file is damaged ({type(exc).__name__}); plan again with "
            "`conveyor plan -f RELEASE --out FILE`"
        ) from None
    jobs = _jobs(release)
    if len(services) != len(jobs) or any(
        not isinstance(s, dict) or (s.get("cluster"), s.get("service")) != (j.cluster, j.service)
        for s, j in zip(services, jobs, strict=False)
    ):
        raise PlanFileError(f"{where}: its services do not match its release; plan again")
    unresolved = [_name(j) for j in jobs if any(i.unresolved_rule for i in j.images)]
    if unresolved:
        raise PlanFileError(f"{where}: version rules of {', '.join(unresolved)} are not resolved")
    return release, services


def _shape(job: UpdateServiceJob) -> dict[str, Any]:
    """What must agree between the planned job and the release file's: all but image texts
    and setting values (which a plan file does not hold)."""
    shape = job.redacted()
    shape["images"] = sorted(i.container for i in job.images)
    return shape


def with_settings(
    planned: ReleaseJob, release_file: ReleaseJob | None, plan_name: str, file_name: str = ""
) -> ReleaseJob:
    """The planned release with the settings' values taken from the release file.

    PlanFileError when the plan's jobs set environment or secrets and no release file is
    given, or when the release file no longer describes the planned release.
    """
    jobs = _jobs(planned)
    if release_file is None:
        masked = [_name(j) for j in jobs if j.settings]
        if masked:
            raise PlanFileError(
                f"{plan_name}: {', '.join(masked)} set environment variables or secrets, whose "
                "values a plan file never holds; give the release file as well: "
                f"conveyor release --plan {plan_name} -f RELEASE.yaml"
            )
        return planned
    given = [len(w) for w in release_file.waves]
    if given != [len(w) for w in planned.waves] or [_name(j) for j in _jobs(release_file)] != [
        _name(j) for j in jobs
    ]:
        raise PlanFileError(
            f"{file_name}: its services or waves differ from the plan in {plan_name}; plan "
            "this release file again"
        )
    merged: list[list[UpdateServiceJob]] = []
    pairs = iter(zip(jobs, _jobs(release_file), strict=True))
    for wave in planned.waves:
        out = []
        for _ in wave:
            plan_job, file_job = next(pairs)
            differ = sorted(
                key
                for key in set(_shape(plan_job)) | set(_shape(file_job))
                if _shape(plan_job).get(key) != _shape(file_job).get(key)
            )
            images = {i.container: i.image for i in plan_job.images}
            differ += [
                f"images.{i.container}"
                for i in file_job.images
                if split_rule_image(i.image) is None and images.get(i.container) != i.image
            ]
            if differ:
                raise PlanFileError(
                    f"{file_name}: {_name(file_job)} differs from the plan in {plan_name} "
                    f"({', '.join(differ)}); plan this release file again"
                )
            out.append(plan_job.model_copy(update={"settings": file_job.settings}))
        merged.append(out)
    return planned.model_copy(update={"waves": merged})


def pin_bases(release: ReleaseJob, services: list[dict[str, Any]]) -> ReleaseJob:
    """The release with each job pinned to the base revision its plan showed.

    Checked against a fresh plan just before (:func:`moved`), the pin also holds for what lands
    between that check and the job's register step: the revision is built from the reviewed
    base, or the job is refused (exit 2) when that base was deregistered or discarded since.
    """
    bases = iter(entry.get("base") for entry in services)
    waves = []
    for wave in release.waves:
        pinned = []
        for job in wave:
            base = next(bases)
            if job.restart or job.base == "service" or not isinstance(base, str):
                pinned.append(job)
            else:
                pinned.append(job.model_copy(update={"base_revision": base}))
        waves.append(pinned)
    return release.model_copy(update={"waves": waves})


def moved(services: list[dict[str, Any]], fresh: list[dict[str, Any]]) -> list[str]:
    """What changed since the plan, one line per service (empty: nothing that matters)."""
    changes = []
    for entry, plan in zip(services, fresh, strict=True):
        name = f"{entry['cluster'].rsplit('/', 1)[-1]}/{entry['service'].rsplit('/', 1)[-1]}"
        if "error" in plan:
            changes.append(f"{name}: cannot be planned now: {plan['error']}")
            continue
        was, now = entry.get("current_task_definition"), plan.get("current_task_definition")
        if was != now:
            changes.append(f"{name}: runs {now} now, {was} when planned")
        was, now = entry.get("base"), base_of(plan)
        if was != now:
            changes.append(
                f"{name}: its new revision would be built from {now} now, from {was} when planned"
            )
    return changes
