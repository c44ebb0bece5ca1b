"""The create-Fargate flow: validate, apply the stack, watch it, then watch the service.

Everything that can be checked is checked before the first stack call: the spec (by the job
model), then the cluster, subnets, security groups and each target group (it exists, has a load
balancer attached and is of target type ``ip``). A stack operation carries the deployment id as
its ClientRequestToken, so a retried step never starts a second operation, and the events of
exactly this operation are the ones recorded. A stack that ends COMPLETE still has to show its
service on the stack's task definition, COMPLETED: the same truthful verdict as update jobs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import structlog
from pydantic import ValidationError

from producers.contract.enums import ErrorCode, JobKind
from producers.contract.fargate_spec import FargateServiceJob
from producers.contract.jobs import describe_validation_error
from producers.contract.records import (
    DeploymentRecord,
    DeploymentState,
    ProgressInfo,
    StackEvent,
    StackInfo,
    Step,
    StepEntry,
    StepStatus,
)
from producers.contract.stack_template import (
    legacy_stack_name,
    render_template,
    stack_name,
    stack_names_service,
    stack_owner,
    stack_tags,
    template_parameters,
)
from worker.aws.gateway import AwsGateway
from worker.domain.errors import InvalidJobError, NotFoundError, TransientError
from worker.domain.stack_verdict import StackOutcome, judge_stack
from worker.domain.verdict import Outcome, judge
from worker.services.flow import handler_for
from worker.services.transitions import Transition, finish

log = structlog.get_logger("conveyor.fargate")

MAX_STACK_EVENTS = 100


def validate_fargate_job(
    record: DeploymentRecord, payload: dict[str, Any] | None = None
) -> FargateServiceJob:
    """Validate the job payload (default: the record's copy) again; workers trust nothing."""
    try:
        job = FargateServiceJob.model_validate(record.job if payload is None else payload)
    except ValidationError as exc:
        raise InvalidJobError("invalid spec: " + "; ".join(describe_validation_error(exc))) from exc
    unresolved = [c.name for c in job.containers if c.unresolved_rule]
    if unresolved:
        raise InvalidJobError(
            f"container {unresolved[0]!r}: its version rule was not resolved; apply with "
            "`conveyor` or ConveyorClient, which resolve rules against ECR"
        )
    return job


def _token(record: DeploymentRecord, what: str) -> str:
    # CloudFormation tokens: at most 128 characters of [a-zA-Z0-9-].
    return f"conveyor-{what}-{record.id}"[:128]


class FargateFlow:
    """Runs one step of a create-Fargate deployment against a gateway."""

    def __init__(
        self, gateway: AwsGateway, *, poll_interval: float, clock: Callable[[], float]
    ) -> None:
        self._aws = gateway
        self._poll = poll_interval
        self._clock = clock

    async def run(
        self,
        record: DeploymentRecord,
        payload: dict[str, Any] | None = None,
        *,
        rerun: bool = True,
    ) -> Transition:
        """Run the record's current step; ``payload`` is the full job when stored apart.

        Every stack step looks before it acts (a request token makes a retried one a no-op),
        so ``rerun`` changes nothing here.
        """
        job = validate_fargate_job(record, payload)
        handlers = {
            Step.VALIDATE: self.validate,
            Step.APPLY: self.apply,
            Step.DELETE_STALE: self.delete_stale,
            Step.WATCH_STACK: self.watch_stack,
            Step.WATCH_SERVICE: self.watch_service,
        }
        return await handler_for(handlers, record, JobKind.CREATE_FARGATE)(record, job)

    def _log(
        self, record: DeploymentRecord, detail: str, status: StepStatus = StepStatus.COMPLETED
    ) -> list[StepEntry]:
        entry = StepEntry(step=record.step, status=status, at=self._clock(), detail=detail)
        return [*record.steps, entry]

    async def validate(self, record: DeploymentRecord, job: FargateServiceJob) -> Transition:
        """Check everything the stack depends on, before any stack call."""
        now = self._clock()
        stack = await self.check_dependencies(job)
        updated = record.model_copy(
            update={
                "state": DeploymentState.RUNNING,
                "started_at": record.started_at or now,
                "deadline": record.deadline or now + job.timeout_seconds,
                "stack": stack,
                "steps": self._log(
                    record,
                    f"cluster, network and {len(stack.target_group_arns)} target group(s) ok",
                ),
            }
        )
        return Transition(updated, Step.APPLY)

    async def check_dependencies(self, job: FargateServiceJob) -> StackInfo:
        """The cluster, the network and the target groups the stack needs, resolved to ids:
        the stack's name and inputs. Read calls only."""
        if not await self._aws.cluster_is_active(job.cluster):
            raise NotFoundError(
                f"cluster: {job.cluster!r} does not exist or is not ACTIVE; create it first or "
                "fix `cluster` in the spec",
                ErrorCode.CLUSTER_NOT_FOUND,
            )
        subnets = await self._aws.resolve_subnets(list(job.network.subnets))
        groups = await self._aws.resolve_security_groups(list(job.network.security_groups))
        arns = []
        for i, link in enumerate(job.load_balancers):
            where = f"load_balancers[{i}]"
            group = await self._usable_target_group(link.target_group, f"{where}.target_group")
            if link.alternate_target_group is not None:
                # Blue/green, linear and canary move traffic between the two on one listener
                # rule: ECS rolls a deployment back whose groups are not both on it.
                other = await self._usable_target_group(
                    link.alternate_target_group, f"{where}.alternate_target_group"
                )
                if not set(group["LoadBalancerArns"]) & set(other["LoadBalancerArns"]):
                    raise InvalidJobError(
                        f"{where}: target_group {link.target_group!r} and alternate_target_group "
                        f"{link.alternate_target_group!r} share no load balancer; put both on "
                        "the production listener rule"
                    )
            arns.append(str(group["TargetGroupArn"]))
        return StackInfo(
            name=await self._stack_name(job),
            subnets=subnets,
            security_groups=groups,
            target_group_arns=arns,
        )

    async def _usable_target_group(self, ref: str, where: str) -> dict[str, Any]:
        """The target group ``ref`` as ELB describes it: it must exist, sit behind a load
        balancer and take ip targets (Fargate's awsvpc)."""
        group = await self._aws.describe_target_group(ref)
        where = f"{where} {ref!r}"
        if group is None:
            raise NotFoundError(
                f"{where} does not exist; check the name or ARN", ErrorCode.NOT_FOUND
            )
        if not group.get("LoadBalancerArns"):
            raise InvalidJobError(
                f"{where} has no load balancer attached; add it to a listener rule of a load "
                "balancer first (ECS refuses unattached target groups)"
            )
        if group.get("TargetType") != "ip":
            raise InvalidJobError(
                f"{where} has target type {group.get('TargetType')!r}; Fargate tasks use "
                "awsvpc networking and need a target group of target type 'ip'"
            )
        return group

    async def preview(self, job: FargateServiceJob) -> dict[str, Any]:
        """What applying the spec would do: the stack operation and its change set, as JSON.

        The same checks and inputs as validate and apply, then a change set that is deleted
        afterwards; a stack another service owns, or one busy with an operation, is reported,
        not touched.
        """
        info = await self.check_dependencies(job)
        current = await self._aws.describe_stack(info.name)
        status = str(current.get("StackStatus")) if current else None
        create = current is None or status == "DELETE_COMPLETE"
        if current is not None and not create:
            self._check_owner(info.name, current, job)
            if status is not None and status.endswith("_IN_PROGRESS"):
                return {"stack": info.name, "error": f"stack is {status}; plan again after it"}
            if status == "ROLLBACK_COMPLETE":
                return {
                    "stack": info.name,
                    "operation": "delete the failed stack, then create",
                    "changes": [],
                }
        template = json.dumps(render_template(job), sort_keys=True)
        parameters = template_parameters(
            job,
            subnets=info.subnets,
            security_groups=info.security_groups,
            target_group_arns=info.target_group_arns,
        )
        preview = await self._aws.preview_stack(
            info.name, template, parameters, stack_tags(job), create=create
        )
        return {
            "versions": [
                {"container": c.name, "rule": c.rule, "image": c.image, "digest": c.digest}
                for c in job.containers
                if c.rule
            ],
            "stack": info.name,
            "operation": "create" if create else "update",
            "subnets": info.subnets,
            "security_groups": info.security_groups,
            "target_groups": info.target_group_arns,
            **preview,
        }

    async def _stack_name(self, job: FargateServiceJob) -> str:
        """This service's stack: the hashed name, or a legacy-named stack that is provably its.

        Stacks made before names carried a hash are adopted only when their own tags or
        outputs name this cluster and service; another pair may share the legacy name.
        """
        name = stack_name(job.cluster, job.service)
        if await self._aws.describe_stack(name) is not None:
            return name
        legacy = legacy_stack_name(job.cluster, job.service)
        old = await self._aws.describe_stack(legacy)
        if old is not None and stack_names_service(old, job.cluster, job.service):
            log.info("adopting a stack named before names carried a hash", stack=legacy)
            return legacy
        return name

    def _check_owner(self, name: str, stack: dict[str, Any], job: FargateServiceJob) -> None:
        """Refuse to update or delete a stack that is not this cluster's and service's."""
        if not stack_names_service(stack, job.cluster, job.service):
            raise InvalidJobError(
                f"stack {name} belongs to {stack_owner(stack)}, not to cluster {job.cluster!r}, "
                f"service {job.service!r}; Conveyor will not update or delete it. Remove or "
                "rename that stack, or check cluster and service in the spec"
            )

    def _stack(self, record: DeploymentRecord) -> StackInfo:
        if record.stack is None:
            raise InvalidJobError("the deployment record has no stack; it cannot continue")
        return record.stack

    async def apply(self, record: DeploymentRecord, job: FargateServiceJob) -> Transition:
        """Create the stack, or update it; a failed create is deleted and created again."""
        info = self._stack(record)
        template = json.dumps(render_template(job), sort_keys=True)
        parameters = template_parameters(
            job,
            subnets=info.subnets,
            security_groups=info.security_groups,
            target_group_arns=info.target_group_arns,
        )
        tags = stack_tags(job)
        token = _token(record, "apply")
        current = await self._aws.describe_stack(info.name)
        status = str(current.get("StackStatus")) if current else None
        if current is not None and status != "DELETE_COMPLETE":
            # Before any UpdateStack or DeleteStack: the stack must say it is ours.
            self._check_owner(info.name, current, job)
        if status == "ROLLBACK_COMPLETE":
            # A failed create leaves a stack that can only be deleted.
            await self._aws.delete_stack(info.name, _token(record, "delete"))
            detail = f"stack {info.name} was left by a failed create; deleting it first"
            updated = record.model_copy(update={"steps": self._log(record, detail)})
            return Transition(updated, Step.DELETE_STALE, countdown=self._poll)
        if status is not None and status.endswith("_IN_PROGRESS"):
            if await self._ours(info.name, token):
                return self._watching(record, info, current, "adopted the operation in progress")
            raise TransientError(
                f"stack {info.name} is {status} by another operation; waiting for it to end",
                ErrorCode.STACK_BUSY,
            )
        if current is None or status == "DELETE_COMPLETE":
            stack_id = await self._aws.create_stack(info.name, template, parameters, tags, token)
            operation = "create"
        else:
            updated_id = await self._aws.update_stack(info.name, template, parameters, tags, token)
            if updated_id is None:
                # Nothing to update is a success only if the service is what the stack says:
                # go and check it, as after any stack operation.
                outputs = {
                    o["OutputKey"]: o["OutputValue"] for o in (current or {}).get("Outputs", [])
                }
                unchanged = record.model_copy(
                    update={
                        "stack": info.model_copy(update={"operation": "none", "status": status}),
                        "task_definition_arn": outputs.get("TaskDefinitionArn"),
                        "steps": self._log(record, f"stack {info.name}: nothing to update"),
                    }
                )
                return Transition(unchanged, Step.WATCH_SERVICE)
            stack_id, operation = updated_id, "update"
        log.info("stack operation started", stack=info.name, operation=operation)
        info = info.model_copy(update={"id": stack_id, "operation": operation})
        updated = record.model_copy(
            update={"stack": info, "steps": self._log(record, f"{operation} {info.name}")}
        )
        return Transition(updated, Step.WATCH_STACK, countdown=min(self._poll, 2.0))

    async def _ours(self, name: str, token: str) -> bool:
        """Whether the operation in progress is this deployment's (a retried apply step).

        Decided by the ClientRequestToken on the stack's events, never by clocks: another
        person's update that happens to start later is not ours to follow.
        """
        events = await self._aws.stack_events(name)
        return any(event.get("ClientRequestToken") == token for event in events)

    def _watching(
        self, record: DeploymentRecord, info: StackInfo, stack: dict[str, Any] | None, how: str
    ) -> Transition:
        operation = "update" if stack and stack.get("LastUpdatedTime") else "create"
        info = info.model_copy(update={"id": (stack or {}).get("StackId"), "operation": operation})
        updated = record.model_copy(update={"stack": info, "steps": self._log(record, how)})
        return Transition(updated, Step.WATCH_STACK, countdown=self._poll)

    async def delete_stale(self, record: DeploymentRecord, job: FargateServiceJob) -> Transition:
        """Wait until the stack left by a failed create is gone, then apply again."""
        info = self._stack(record)
        current = await self._aws.describe_stack(info.name)
        status = current.get("StackStatus") if current else None
        if current is None or status == "DELETE_COMPLETE":
            return Transition(record, Step.APPLY)
        if status == "DELETE_FAILED":
            raise NotFoundError(
                f"stack {info.name} could not be deleted ({current.get('StackStatusReason')}); "
                "delete it by hand, then apply again",
                ErrorCode.DELETE_FAILED,
            )
        if record.deadline is not None and self._clock() >= record.deadline:
            raise TransientError(f"stack {info.name} is still being deleted", ErrorCode.STACK_BUSY)
        return Transition(record, Step.DELETE_STALE, countdown=self._poll)

    async def _events(self, record: DeploymentRecord, info: StackInfo) -> list[StackEvent]:
        seen = {e.id for e in info.events}
        fresh = []
        for event in await self._aws.stack_events(info.name):
            if event.get("ClientRequestToken") not in (None, _token(record, "apply")):
                continue
            if str(event.get("EventId")) in seen:
                continue
            fresh.append(
                StackEvent(
                    id=str(event.get("EventId")),
                    timestamp=str(event.get("Timestamp", "")),
                    logical_id=str(event.get("LogicalResourceId", "")),
                    resource_type=str(event.get("ResourceType", "")),
                    status=str(event.get("ResourceStatus", "")),
                    reason=event.get("ResourceStatusReason"),
                )
            )
        return (fresh + info.events)[:MAX_STACK_EVENTS]

    async def watch_stack(self, record: DeploymentRecord, job: FargateServiceJob) -> Transition:
        """Poll the stack; on COMPLETE go on to the service, on rollback or failure finish."""
        info = self._stack(record)
        current = await self._aws.describe_stack(info.name)
        status = str(current.get("StackStatus")) if current else "DELETE_COMPLETE"
        events = await self._events(record, info)
        info = info.model_copy(update={"status": status, "events": events})
        latest = events[0] if events else None
        text = f"stack {status}"
        if latest is not None:
            text = f"{latest.logical_id} {latest.status}" + (
                f": {latest.reason}" if latest.reason else ""
            )
        progress = record.progress.model_copy(update={"latest_event": text})
        record = record.model_copy(update={"stack": info, "progress": progress})
        now = self._clock()
        verdict = judge_stack(info.name, status, events, now=now, deadline=record.deadline)
        if verdict.outcome is StackOutcome.COMPLETE:
            outputs = {o["OutputKey"]: o["OutputValue"] for o in (current or {}).get("Outputs", [])}
            target = outputs.get("TaskDefinitionArn")
            record = record.model_copy(
                update={
                    "task_definition_arn": target,
                    "steps": self._log(record, verdict.reason),
                }
            )
            return Transition(record, Step.WATCH_SERVICE)
        if verdict.outcome is StackOutcome.ROLLED_BACK:
            return Transition(
                finish(record, DeploymentState.ROLLED_BACK, verdict.reason, now), None
            )
        if verdict.outcome in (StackOutcome.FAILED, StackOutcome.TIMED_OUT):
            return Transition(finish(record, DeploymentState.FAILED, verdict.reason, now), None)
        return Transition(record, Step.WATCH_STACK, countdown=self._poll)

    async def watch_service(self, record: DeploymentRecord, job: FargateServiceJob) -> Transition:
        """The stack says COMPLETE: the service must run the stack's revision, COMPLETED."""
        target = record.task_definition_arn
        service = await self._aws.describe_service(job.cluster, job.service)
        deployments = (service or {}).get("deployments", [])
        ours = next((d for d in deployments if d.get("taskDefinition") == target), None)
        now = self._clock()
        if target is None or ours is None:
            reason = (
                f"stack completed, but service {job.service} runs no deployment of "
                f"{target or 'the stack revision'} (rolled back or changed outside the stack)"
            )
            return Transition(finish(record, DeploymentState.FAILED, reason, now), None)
        verdict = judge(service, str(ours["id"]), target, now=now, deadline=record.deadline or now)
        p = verdict.progress
        progress = ProgressInfo(
            running=p.running,
            desired=p.desired,
            pending=p.pending,
            failed_tasks=p.failed_tasks,
            rollout_state=p.rollout_state,
            latest_event=record.progress.latest_event,
        )
        record = record.model_copy(update={"progress": progress, "ecs_deployment_id": ours["id"]})
        if verdict.outcome is Outcome.SUCCEEDED:
            operation = record.stack.operation if record.stack else "apply"
            done = (
                "stack unchanged: nothing to update"
                if operation == "none"
                else f"stack {operation} complete"
            )
            reason = f"{done}; {verdict.reason}"
            return Transition(finish(record, DeploymentState.SUCCEEDED, reason, now), None)
        if verdict.outcome is Outcome.IN_PROGRESS:
            return Transition(record, Step.WATCH_SERVICE, countdown=self._poll)
        return Transition(finish(record, DeploymentState.FAILED, verdict.reason, now), None)
