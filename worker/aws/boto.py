"""The aiobotocore implementation of :class:`worker.aws.gateway.EcsGateway`.

The only module that imports aiobotocore (botocore on asyncio; typed clients come from
types-aiobotocore). One long-lived client per worker process: a client made per call costs
40-110 ms, a reused one about 1 ms. Every botocore error is translated into Conveyor's error
tree with its AWS code kept (``raise ... from exc``), so a throttle is retried and an access
denial fails at once.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import botocore.exceptions
import botocore.session
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

from worker.aws.gateway import family_of, revision_of
from worker.aws.ratelimit import Bucket, RateLimiter, count_throttle
from worker.domain.errors import (
    THROTTLE_CODES,
    TRANSIENT_AWS_CODES,
    AwsRequestError,
    AwsUnavailableError,
    ConveyorError,
    NotFoundError,
)
from worker.domain.tickets import Ticket
from worker.observe import metrics

if TYPE_CHECKING:
    from types_aiobotocore_cloudformation import CloudFormationClient
    from types_aiobotocore_ec2 import EC2Client
    from types_aiobotocore_ecs import ECSClient
    from types_aiobotocore_elbv2 import ElasticLoadBalancingv2Client
    from types_aiobotocore_events import EventBridgeClient

P = ParamSpec("P")
T = TypeVar("T")

# Misconfiguration: retrying cannot help.
_CONFIG_ERRORS = (
    botocore.exceptions.ParamValidationError,
    botocore.exceptions.NoRegionError,
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
)
_NOT_FOUND_CODES = frozenset(
    {"ServiceNotFoundException", "ClusterNotFoundException", "ServiceNotActiveException"}
)


def known_register_fields() -> frozenset[str]:
    """The members of RegisterTaskDefinition's input in the installed botocore."""
    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    return frozenset(shape.members) if shape is not None else frozenset()


def translate_error(exc: BaseException, operation: str) -> ConveyorError:
    """Map a botocore/aiohttp/timeout error to Conveyor's error tree, keeping the AWS code."""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", "")) or str(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        text = f"{operation} failed with {code}: {message}"
        if code in TRANSIENT_AWS_CODES or status >= 500:
            return AwsUnavailableError(text, code)
        if code in _NOT_FOUND_CODES:
            return NotFoundError(text, code)
        if code == "ClientException" and "Unable to describe task definition" in message:
            return NotFoundError(text, code)
        return AwsRequestError(text, code)
    if isinstance(exc, botocore.exceptions.ParamValidationError):
        return AwsRequestError(
            f"{operation} was refused before sending: {exc}", "ParamValidationError"
        )
    if isinstance(exc, _CONFIG_ERRORS):
        return AwsRequestError(
            f"{operation}: {exc}. Set AWS_REGION and credentials the way the AWS SDK reads them",
            type(exc).__name__,
        )
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return AwsUnavailableError(f"{operation} timed out", "RequestTimeout")
    if isinstance(exc, botocore.exceptions.BotoCoreError | OSError):
        return AwsUnavailableError(
            f"{operation} could not reach AWS: {type(exc).__name__}", "ConnectionError"
        )
    return AwsRequestError(f"{operation} failed: {type(exc).__name__}: {exc}", "Unexpected")


def _count_attempt(
    response: Any = None, operation: Any = None, event_name: str = "", **_: Any
) -> None:
    """botocore's needs-retry event, after every request attempt: count it for the metrics."""
    service = event_name.split(".")[1] if event_name.count(".") >= 1 else "unknown"
    if isinstance(response, tuple):
        code = response[1].get("Error", {}).get("Code") if isinstance(response[1], dict) else None
    else:
        code = "ConnectionError"  # no answer at all
    metrics.AWS_CALLS.labels(
        service,
        str(getattr(operation, "name", "unknown")),
        metrics.aws_outcome(code, THROTTLE_CODES),
    ).inc()


def _learn_from_throttle(
    limiter: RateLimiter,
    client: Any,
    response: Any = None,
    operation: Any = None,
    attempts: int = 1,
    **_: Any,
) -> None:
    """botocore's needs-retry event of the ECS client: a throttle drains the shared bucket.

    Registered after :func:`_count_attempt`, so the attempt is counted before this raises. Only
    a first attempt is taken over (:class:`Throttled`): after an earlier attempt that failed
    otherwise (a timeout), the request may have acted, and botocore's own retry is kept.
    """
    error = response[1].get("Error", {}) if isinstance(response, tuple) else {}
    code = error.get("Code")
    if code not in THROTTLE_CODES:
        return
    name = str(getattr(operation, "name", "unknown"))
    count_throttle(client, name)
    if limiter.key(name) is None:
        return  # not paced by the shared limiter: botocore backs off
    limiter.drain(name)
    if attempts == 1:
        raise Throttled(str(code), str(error.get("Message", "")))


# Low-priority calls (cleanup) take a token only while this many more stay in the bucket, so
# that deployments sharing the bucket always find theirs.
LOW_PRIORITY_SPARE = 10
# How often one call is sent again after AWS throttled it, each time with a new token from the
# shared limiter; then the step is retried as after any transient error.
THROTTLED_RETRIES = 4


class Throttled(Exception):
    """AWS throttled the first attempt of a rate-limited call: nothing was done.

    Raised from botocore's needs-retry hook instead of letting botocore retry with a backoff of
    its own, which takes no token: such retries spend the refill that the shared limiter has
    promised to other callers, who are then throttled and retried in turn. The call's wrapper
    takes a new token from the (drained) shared bucket and sends the call again.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


async def _every_page(
    page: Callable[[str | None], Coroutine[Any, Any, dict[str, Any]]], key: str
) -> list[str]:
    """Every item of a paginated List call, page after page."""
    items: list[str] = []
    token: str | None = None
    while True:
        answer = await page(token)
        items += [str(i) for i in answer.get(key, [])]
        token = answer.get("nextToken")
        if not token:
            return items


def _aws_call(
    operation: str, *, spare: int | None = None
) -> Callable[[Callable[P, Coroutine[Any, Any, T]]], Callable[P, Coroutine[Any, Any, T]]]:
    def decorate(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            self = args[0]
            limiter: RateLimiter | None = getattr(self, "limiter", None)
            throttled = 0
            while True:
                if limiter is not None and spare is not None:
                    await limiter.acquire_spare(operation, spare)
                elif limiter is not None:
                    # Before the call's own timeout: waiting for a token is not the call hanging.
                    await limiter.acquire(operation)
                try:
                    async with asyncio.timeout(self.call_timeout):  # type: ignore[attr-defined]
                        return await fn(*args, **kwargs)
                except Throttled as exc:
                    throttled += 1
                    if throttled < THROTTLED_RETRIES:
                        continue  # with a new token, after the bucket was drained
                    raise AwsUnavailableError(
                        f"{operation} failed with {exc.code}: {exc.message}", exc.code
                    ) from exc
                except ConveyorError:
                    raise
                except (
                    botocore.exceptions.BotoCoreError,
                    botocore.exceptions.ClientError,
                    TimeoutError,
                    OSError,
                ) as exc:
                    raise translate_error(exc, operation) from exc

        return wrapper

    return decorate


class BotoEcsGateway:
    """EcsGateway over one long-lived aiobotocore ECS client."""

    def __init__(
        self,
        client: ECSClient,
        call_timeout: float = 20.0,
        limiter: RateLimiter | None = None,
        *,
        events: EventBridgeClient | None = None,
    ) -> None:
        self._ecs = client
        self._events = events  # EventBridge, for the revisions scheduled tasks name
        self.call_timeout = call_timeout
        self.limiter = limiter

    @_aws_call("DescribeServices")
    async def describe_service(self, cluster: str, service: str) -> dict[str, Any] | None:
        """Return the service, or None when it does not exist."""
        answer = await self._ecs.describe_services(
            cluster=cluster, services=[service], include=["TAGS"]
        )
        services = answer.get("services", [])
        return dict(services[0]) if services else None

    async def reserve(self, operation: str, ticket: Ticket | None = None) -> None:
        """Take the token of the next ``operation`` call now (nothing without a limiter)."""
        if self.limiter is not None:
            await self.limiter.reserve(operation, ticket)

    @_aws_call("DescribeServices")
    async def describe_services(self, cluster: str, services: list[str]) -> dict[str, Any]:
        """Up to 10 services of one cluster in one call, by service name."""
        answer = await self._ecs.describe_services(cluster=cluster, services=services[:10])
        return {str(s["serviceName"]): dict(s) for s in answer.get("services", [])}

    @_aws_call("DescribeTaskDefinition")
    async def describe_task_definition(
        self, task_definition: str
    ) -> tuple[dict[str, Any], list[dict[str, str]]]:
        """Return a task definition with its tags (``include=['TAGS']``)."""
        answer = await self._ecs.describe_task_definition(
            taskDefinition=task_definition, include=["TAGS"]
        )
        tags = [{"key": t["key"], "value": t.get("value", "")} for t in answer.get("tags", [])]
        return dict(answer["taskDefinition"]), tags

    @_aws_call("ListTaskDefinitions")
    async def active_task_definition_arns(self, family: str) -> list[str]:
        """See EcsGateway. Pages of 100, newest first."""
        arns: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"familyPrefix": family, "status": "ACTIVE", "sort": "DESC"}
            if token:
                kwargs["nextToken"] = token
            answer = await self._ecs.list_task_definitions(**kwargs)
            arns += [a for a in answer.get("taskDefinitionArns", []) if family_of(a) == family]
            token = answer.get("nextToken")
            if not token:
                return arns

    async def service_task_definitions(self) -> set[str]:
        """See EcsGateway. ListClusters, ListServices and DescribeServices ten at a time, each
        at low priority."""
        used: set[str] = set()
        for cluster in await self._clusters():
            services = await _every_page(
                functools.partial(self._list_services_page, cluster), "serviceArns"
            )
            for start in range(0, len(services), 10):
                answer = await self._describe_services_low(cluster, services[start : start + 10])
                for service in answer.get("services", []):
                    arns = [service.get("taskDefinition")]
                    arns += [d.get("taskDefinition") for d in service.get("deployments", [])]
                    used |= {str(a) for a in arns if a}
        return used

    async def running_task_definitions(self) -> set[str]:
        """See EcsGateway. ListTasks (RUNNING) and DescribeTasks a hundred at a time, per
        cluster, at low priority."""
        used: set[str] = set()
        for cluster in await self._clusters():
            tasks = await _every_page(
                functools.partial(self._list_running_tasks_page, cluster), "taskArns"
            )
            for start in range(0, len(tasks), 100):
                answer = await self._describe_tasks_low(cluster, tasks[start : start + 100])
                used |= {
                    str(t["taskDefinitionArn"])
                    for t in answer.get("tasks", [])
                    if t.get("taskDefinitionArn")
                }
        return used

    async def scheduled_task_definitions(self) -> set[str]:
        """See EcsGateway. ListRules, then ListTargetsByRule per rule, on the default bus."""
        if self._events is None:  # before any call
            raise self._no_events()
        used: set[str] = set()
        for rule in await self._rule_names():
            targets = await self._rule_targets(rule)
            for target in targets:
                arn = target.get("EcsParameters", {}).get("TaskDefinitionArn")
                if arn:
                    used.add(str(arn))
        return used

    @staticmethod
    def _no_events() -> AwsRequestError:
        return AwsRequestError(
            "ListRules: this gateway has no EventBridge client", "NoEventsClient"
        )

    async def _clusters(self) -> list[str]:
        return await _every_page(self._list_clusters_page, "clusterArns")

    async def _rule_names(self) -> list[str]:
        names: list[str] = []
        token: str | None = None
        while True:
            answer = await self._list_rules_page(token)
            names += [str(r["Name"]) for r in answer.get("Rules", [])]
            token = answer.get("NextToken")
            if not token:
                return names

    async def _rule_targets(self, rule: str) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            answer = await self._list_targets_page(rule, token)
            targets += [dict(t) for t in answer.get("Targets", [])]
            token = answer.get("NextToken")
            if not token:
                return targets

    @_aws_call("ListClusters", spare=LOW_PRIORITY_SPARE)
    async def _list_clusters_page(self, token: str | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"nextToken": token} if token else {}
        return dict(await self._ecs.list_clusters(**kwargs))

    @_aws_call("ListServices", spare=LOW_PRIORITY_SPARE)
    async def _list_services_page(self, cluster: str, token: str | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"cluster": cluster, **({"nextToken": token} if token else {})}
        return dict(await self._ecs.list_services(**kwargs))

    @_aws_call("DescribeServices", spare=LOW_PRIORITY_SPARE)
    async def _describe_services_low(self, cluster: str, services: list[str]) -> dict[str, Any]:
        return dict(await self._ecs.describe_services(cluster=cluster, services=services))

    @_aws_call("ListTasks", spare=LOW_PRIORITY_SPARE)
    async def _list_running_tasks_page(self, cluster: str, token: str | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "cluster": cluster,
            "desiredStatus": "RUNNING",
            "maxResults": 100,
            **({"nextToken": token} if token else {}),
        }
        return dict(await self._ecs.list_tasks(**kwargs))

    @_aws_call("DescribeTasks", spare=LOW_PRIORITY_SPARE)
    async def _describe_tasks_low(self, cluster: str, tasks: list[str]) -> dict[str, Any]:
        return dict(await self._ecs.describe_tasks(cluster=cluster, tasks=tasks))

    @_aws_call("ListRules")
    async def _list_rules_page(self, token: str | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"Limit": 100, **({"NextToken": token} if token else {})}
        if self._events is None:
            raise self._no_events()
        return dict(await self._events.list_rules(**kwargs))

    @_aws_call("ListTargetsByRule")
    async def _list_targets_page(self, rule: str, token: str | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"Rule": rule, "Limit": 100}
        if token:
            kwargs["NextToken"] = token
        if self._events is None:
            raise self._no_events()
        return dict(await self._events.list_targets_by_rule(**kwargs))

    @_aws_call("DeregisterTaskDefinition", spare=LOW_PRIORITY_SPARE)
    async def deregister_revision(self, arn: str) -> None:
        """See EcsGateway."""
        await self._ecs.deregister_task_definition(taskDefinition=arn)

    @_aws_call("TagResource")
    async def tag_task_definition(self, arn: str, tags: dict[str, str]) -> None:
        """See EcsGateway."""
        await self._ecs.tag_resource(
            resourceArn=arn, tags=[{"key": k, "value": v} for k, v in tags.items()]
        )

    @_aws_call("ListTaskDefinitions")
    async def newer_task_definition_arns(self, family: str, after_revision: int) -> list[str]:
        """The family's ACTIVE revisions newer than ``after_revision``, newest first.

        Reads pages of ten, newest first, and stops at the first page that reaches
        ``after_revision``: one call when nothing is newer, however large the family.
        """
        arns: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "familyPrefix": family,
                "status": "ACTIVE",
                "sort": "DESC",
                "maxResults": 10,
            }
            if token:
                kwargs["nextToken"] = token
            answer = await self._ecs.list_task_definitions(**kwargs)
            for arn in answer.get("taskDefinitionArns", []):
                if family_of(arn) != family:
                    continue
                if revision_of(arn) <= after_revision:
                    return arns
                arns.append(arn)
            token = answer.get("nextToken")
            if not token:
                return arns

    @_aws_call("RegisterTaskDefinition")
    async def register_task_definition(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Register ``payload`` as a new revision."""
        answer = await self._ecs.register_task_definition(**payload)
        return dict(answer["taskDefinition"])

    @_aws_call("UpdateService")
    async def update_service(
        self,
        cluster: str,
        service: str,
        task_definition: str,
        *,
        force_new_deployment: bool,
        desired_count: int | None = None,
        deployment_configuration: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Point the service at ``task_definition``; nothing else about it changes, but the
        desired count and deployment configuration when given."""
        options: dict[str, Any] = {}
        if desired_count is not None:
            options["desiredCount"] = desired_count
        if deployment_configuration is not None:
            options["deploymentConfiguration"] = deployment_configuration
        answer = await self._ecs.update_service(
            cluster=cluster,
            service=service,
            taskDefinition=task_definition,
            forceNewDeployment=force_new_deployment,
            **options,
        )
        return dict(answer["service"])

    @_aws_call("ListServiceDeployments")
    async def find_service_deployment(
        self, cluster: str, service: str, task_definition: str, *, created_after: float
    ) -> dict[str, Any] | None:
        """The newest service deployment created after ``created_after`` (epoch seconds) whose
        target revision runs ``task_definition``, as DescribeServiceDeployments gives it."""
        briefs: list[dict[str, Any]] = []
        token: str | None = None
        after = datetime.fromtimestamp(created_after, UTC)
        for _ in range(5):  # 100 deployments of one service since the job started is plenty
            kwargs: dict[str, Any] = {
                "cluster": cluster,
                "service": service,
                "createdAt": {"after": after},
                "maxResults": 20,
            }
            if token:
                kwargs["nextToken"] = token
            answer = await self._ecs.list_service_deployments(**kwargs)
            briefs.extend(dict(b) for b in answer.get("serviceDeployments", []))
            token = answer.get("nextToken")
            if not token:
                break
        revisions = sorted(
            {
                str(b["targetServiceRevisionArn"])
                for b in briefs
                if b.get("targetServiceRevisionArn")
            }
        )
        definitions: dict[str, str] = {}
        for start in range(0, len(revisions), 20):
            described = await self._ecs.describe_service_revisions(
                serviceRevisionArns=revisions[start : start + 20]
            )
            for revision in described.get("serviceRevisions", []):
                definitions[str(revision["serviceRevisionArn"])] = str(
                    revision.get("taskDefinition")
                )
        ours = [
            b
            for b in briefs
            if definitions.get(str(b.get("targetServiceRevisionArn"))) == task_definition
        ]
        if not ours:
            return None
        newest = max(ours, key=lambda b: b.get("createdAt") or after)
        return await self.describe_service_deployment(str(newest["serviceDeploymentArn"]))

    @_aws_call("DescribeServiceDeployments")
    async def describe_service_deployment(self, arn: str) -> dict[str, Any] | None:
        """One service deployment by ARN, or None when ECS does not know it."""
        answer = await self._ecs.describe_service_deployments(serviceDeploymentArns=[arn])
        found = answer.get("serviceDeployments", [])
        return dict(found[0]) if found else None

    @_aws_call("StopServiceDeployment")
    async def stop_service_deployment(self, arn: str) -> None:
        """Ask ECS to stop an ongoing deployment and roll it back itself."""
        await self._ecs.stop_service_deployment(serviceDeploymentArn=arn, stopType="ROLLBACK")

    @_aws_call("ListTasks")
    async def list_stopped_task_arns(self, cluster: str, service: str) -> list[str]:
        """Return up to 100 stopped task ARNs of the service."""
        answer = await self._ecs.list_tasks(
            cluster=cluster, serviceName=service, desiredStatus="STOPPED", maxResults=100
        )
        return list(answer.get("taskArns", []))

    @_aws_call("DescribeTasks")
    async def describe_tasks(self, cluster: str, task_arns: list[str]) -> list[dict[str, Any]]:
        """Describe up to 100 tasks."""
        if not task_arns:
            return []
        answer = await self._ecs.describe_tasks(cluster=cluster, tasks=task_arns[:100])
        return [dict(t) for t in answer.get("tasks", [])]


# The clients of one identity.
_CLIENT_NAMES = ("ecs", "cloudformation", "elbv2", "ec2", "events")


def _session(region: str | None) -> AioSession:
    """A new SDK session for ``region`` (None: the region the SDK finds in its own settings)."""
    session = get_session()
    if region is not None:
        session.set_config_variable("region", region)
    return session


@dataclass(frozen=True)
class Limits:
    """How the pool's gateways share AWS's rate limits: a Redis, the buckets, the longest wait."""

    redis: Any
    buckets: dict[str, Bucket]
    max_wait: float


@dataclass
class _Clients:
    """The gateway of one identity, the stack that closes its clients, and when to refresh."""

    gateway: BotoAwsGateway
    stack: AsyncExitStack
    expires: float


class ClientPool:
    """One aiobotocore session and long-lived clients per worker process, per role.

    Bound to the event loop that created it; create it after the fork, in the worker process.
    A role's clients are replaced shortly before its credentials expire, and the old ones are
    closed then: a worker up for months holds one set of clients per role, not one per hour.
    """

    def __init__(
        self,
        *,
        region: str | None = None,
        max_attempts: int = 8,
        call_timeout: float = 20.0,
        limits: Limits | None = None,
    ) -> None:
        self._limits = limits
        self._session = _session(region)
        self._clients: dict[str | None, _Clients] = {}
        self._config = AioConfig(
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=5,
            read_timeout=call_timeout,
        )
        self._call_timeout = call_timeout
        self._accounts: dict[str | None, str] = {}

    async def gateway(self, role_arn: str | None = None, *, now: float) -> BotoAwsGateway:
        """Return the gateway for the worker's own credentials, or for an assumed role."""
        cached = self._clients.get(role_arn)
        if cached is not None and cached.expires > now:
            return cached.gateway
        try:
            fresh = await self._make(role_arn)
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise translate_error(exc, "CreateClient") from exc
        self._clients[role_arn] = fresh
        if cached is not None:
            # No step holds the old clients past this point: steps of one process run one at a
            # time on its loop, and each asks for its gateway when it starts.
            await cached.stack.aclose()
        return fresh.gateway

    def open_clients(self) -> int:
        """How many clients are open (five per identity in use)."""
        return len(_CLIENT_NAMES) * len(self._clients)

    async def _make(self, role_arn: str | None) -> _Clients:
        if role_arn is None:
            session, expires = self._session, float("inf")
        else:
            session, expires = await self._assume(role_arn)
        stack = AsyncExitStack()
        config = self._config
        try:
            # One call per service, so that each client keeps its own type.
            ecs = await stack.enter_async_context(session.create_client("ecs", config=config))
            cfn = await stack.enter_async_context(
                session.create_client("cloudformation", config=config)
            )
            elbv2 = await stack.enter_async_context(session.create_client("elbv2", config=config))
            ec2 = await stack.enter_async_context(session.create_client("ec2", config=config))
            events = await stack.enter_async_context(session.create_client("events", config=config))
        except BaseException:
            await stack.aclose()
            raise
        for client in (ecs, cfn, elbv2, ec2, events):
            client.meta.events.register("needs-retry", _count_attempt)
        limiter = None
        if self._limits is not None:
            limits = self._limits
            account = await self.account_id(role_arn)
            region = str(self.region or "default")
            limiter = RateLimiter(
                limits.redis,
                account=account,
                region=region,
                buckets=limits.buckets,
                max_wait=limits.max_wait,
            )

            ecs.meta.events.register(
                "needs-retry", functools.partial(_learn_from_throttle, limiter, limits.redis)
            )
        gateway = BotoAwsGateway(
            ecs, cfn, elbv2, ec2, call_timeout=self._call_timeout, limiter=limiter, events=events
        )
        # Watched rollouts are batched per account and region: say which this gateway is.
        gateway.scope = f"{await self.account_id(role_arn)}:{self.region or ''}"
        return _Clients(gateway, stack, expires)

    @property
    def region(self) -> str | None:
        """The region the clients are made for: the one given, else the SDK's own setting."""
        region = self._session.get_config_variable("region")
        return str(region) if region else None

    async def _assume(self, role_arn: str) -> tuple[AioSession, float]:
        """A session with the role's temporary credentials, and when to refresh it."""
        try:
            async with self._session.create_client("sts", config=self._config) as sts:
                answer = await sts.assume_role(RoleArn=role_arn, RoleSessionName="conveyor")
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise translate_error(exc, "AssumeRole") from exc
        creds = answer["Credentials"]
        session = _session(self.region)
        session.set_credentials(
            creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]
        )
        # Refresh five minutes before the credentials expire.
        return session, creds["Expiration"].timestamp() - 300

    async def account_id(self, role_arn: str | None = None) -> str:
        """The AWS account the worker acts in, for its own credentials or a role (cached).

        A role's ARN names its account; the worker's own identity is asked of STS once per
        process.
        """
        if role_arn is not None:
            return role_arn.split(":")[4]
        cached = self._accounts.get(None)
        if cached is not None:
            return cached
        try:
            async with asyncio.timeout(self._call_timeout):
                async with self._session.create_client("sts", config=self._config) as sts:
                    answer = await sts.get_caller_identity()
        except (
            botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError,
            TimeoutError,
            OSError,
        ) as exc:
            raise translate_error(exc, "GetCallerIdentity") from exc
        account = str(answer["Account"])
        self._accounts[None] = account
        return account

    async def close(self) -> None:
        """Close every client."""
        clients, self._clients = list(self._clients.values()), {}
        for entry in clients:
            await entry.stack.aclose()


class BotoAwsGateway(BotoEcsGateway):
    """The full gateway: ECS plus CloudFormation, ELBv2 and EC2 for create-Fargate jobs."""

    def __init__(
        self,
        ecs: ECSClient,
        cfn: CloudFormationClient,
        elbv2: ElasticLoadBalancingv2Client,
        ec2: EC2Client,
        call_timeout: float = 20.0,
        limiter: RateLimiter | None = None,
        events: EventBridgeClient | None = None,
    ) -> None:
        super().__init__(ecs, call_timeout, limiter, events=events)
        self.scope: str | None = None  # "account:region", set by the pool
        self._cfn = cfn
        self._elbv2 = elbv2
        self._ec2 = ec2

    @_aws_call("DescribeClusters")
    async def cluster_is_active(self, cluster: str) -> bool:
        """True when the cluster exists and is ACTIVE."""
        answer = await self._ecs.describe_clusters(clusters=[cluster])
        return any(c.get("status") == "ACTIVE" for c in answer.get("clusters", []))

    @staticmethod
    async def _resolve(
        refs: list[str],
        id_prefix: str,
        by_ids: Callable[[list[str]], Coroutine[Any, Any, dict[str, str]]],
        by_names: Callable[[list[str]], Coroutine[Any, Any, dict[str, str]]],
        what: str,
        code: str,
    ) -> list[str]:
        """Ids for a mix of ids and names, in the order given; NotFoundError names the missing."""
        ids = [r for r in refs if r.startswith(id_prefix)]
        names = [r for r in refs if not r.startswith(id_prefix)]
        found: dict[str, str] = {}
        if ids:
            # Looked up with a filter, which never fails on a missing id: the message below then
            # names exactly the missing ones (EC2's own error names them as a set, or wrongly).
            found.update(await by_ids(ids))
        if names:
            found.update(await by_names(names))
        missing = [r for r in refs if r not in found]
        if missing:
            raise NotFoundError(
                f"{what}: none found for {', '.join(missing)}; check the spec", code
            )
        return [found[r] for r in refs]

    @_aws_call("DescribeSubnets")
    async def resolve_subnets(self, refs: list[str]) -> list[str]:
        """Subnet ids for ids or Name tags, in the order given."""

        async def by_ids(ids: list[str]) -> dict[str, str]:
            answer = await self._ec2.describe_subnets(
                Filters=[{"Name": "subnet-id", "Values": ids}]
            )
            return {s["SubnetId"]: s["SubnetId"] for s in answer["Subnets"]}

        async def by_names(names: list[str]) -> dict[str, str]:
            answer = await self._ec2.describe_subnets(
                Filters=[{"Name": "tag:Name", "Values": names}]
            )
            return {
                tag["Value"]: subnet["SubnetId"]
                for subnet in answer["Subnets"]
                for tag in subnet.get("Tags", [])
                if tag["Key"] == "Name" and tag["Value"] in names
            }

        return await self._resolve(
            refs,
            "subnet-",
            by_ids,
            by_names,
            "network.subnets (ids or Name tags)",
            "InvalidSubnetID.NotFound",
        )

    @_aws_call("DescribeSecurityGroups")
    async def resolve_security_groups(self, refs: list[str]) -> list[str]:
        """Security group ids for ids or group names, in the order given."""

        async def by_ids(ids: list[str]) -> dict[str, str]:
            answer = await self._ec2.describe_security_groups(
                Filters=[{"Name": "group-id", "Values": ids}]
            )
            return {g["GroupId"]: g["GroupId"] for g in answer["SecurityGroups"]}

        async def by_names(names: list[str]) -> dict[str, str]:
            answer = await self._ec2.describe_security_groups(
                Filters=[{"Name": "group-name", "Values": names}]
            )
            return {g["GroupName"]: g["GroupId"] for g in answer["SecurityGroups"]}

        return await self._resolve(
            refs,
            "sg-",
            by_ids,
            by_names,
            "network.security_groups (ids or group names)",
            "InvalidGroup.NotFound",
        )

    @_aws_call("DescribeTargetGroups")
    async def describe_target_group(self, ref: str) -> dict[str, Any] | None:
        """A target group by ARN or name, or None."""
        try:
            if ref.startswith("arn:"):
                answer = await self._elbv2.describe_target_groups(TargetGroupArns=[ref])
            else:
                answer = await self._elbv2.describe_target_groups(Names=[ref])
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "TargetGroupNotFound":
                return None
            raise
        groups = answer.get("TargetGroups", [])
        return dict(groups[0]) if groups else None

    @_aws_call("DescribeStacks")
    async def describe_stack(self, name: str) -> dict[str, Any] | None:
        """The stack, or None when it does not exist."""
        try:
            answer = await self._cfn.describe_stacks(StackName=name)
        except botocore.exceptions.ClientError as exc:
            if "does not exist" in str(exc.response.get("Error", {}).get("Message", "")):
                return None
            raise
        stacks = answer.get("Stacks", [])
        return dict(stacks[0]) if stacks else None

    @staticmethod
    def _stack_args(
        name: str, template: str, parameters: dict[str, str], tags: dict[str, str], token: str
    ) -> dict[str, Any]:
        return {
            "StackName": name,
            "TemplateBody": template,
            "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
            "ClientRequestToken": token,
        }

    @_aws_call("CreateStack")
    async def create_stack(
        self,
        name: str,
        template: str,
        parameters: dict[str, str],
        tags: dict[str, str],
        token: str,
    ) -> str:
        """Create the stack; return its id."""
        answer = await self._cfn.create_stack(
            **self._stack_args(name, template, parameters, tags, token)
        )
        return str(answer["StackId"])

    @_aws_call("UpdateStack")
    async def update_stack(
        self,
        name: str,
        template: str,
        parameters: dict[str, str],
        tags: dict[str, str],
        token: str,
    ) -> str | None:
        """Update the stack; None when there is nothing to update (a success)."""
        try:
            answer = await self._cfn.update_stack(
                **self._stack_args(name, template, parameters, tags, token)
            )
        except botocore.exceptions.ClientError as exc:
            if "No updates are to be performed" in str(
                exc.response.get("Error", {}).get("Message")
            ):
                return None
            raise
        return str(answer["StackId"])

    @_aws_call("DeleteStack")
    async def delete_stack(self, name: str, token: str) -> None:
        """Delete the stack."""
        await self._cfn.delete_stack(StackName=name, ClientRequestToken=token)

    async def preview_stack(
        self,
        name: str,
        template: str,
        parameters: dict[str, str],
        tags: dict[str, str],
        *,
        create: bool,
    ) -> dict[str, Any]:
        """See StackGateway. CreateChangeSet, DescribeChangeSet until it settles (a minute at
        most), DeleteChangeSet; on a create, the REVIEW_IN_PROGRESS stack is deleted too."""
        change_set = f"conveyor-plan-{int(datetime.now(UTC).timestamp())}"
        args = self._stack_args(name, template, parameters, tags, "unused")
        args.pop("ClientRequestToken")
        await self._create_change_set(
            ChangeSetName=change_set, ChangeSetType="CREATE" if create else "UPDATE", **args
        )
        try:
            described: dict[str, Any] = {}
            for _ in range(60):
                described = await self._describe_change_set(change_set, name)
                if described.get("Status") in ("CREATE_COMPLETE", "FAILED", "DELETE_COMPLETE"):
                    break
                await asyncio.sleep(1)
        finally:
            await self._delete_change_set(change_set, name)
            if create:
                await self.delete_stack(name, f"conveyor-plan-{change_set}")
        changes = []
        for change in described.get("Changes", []):
            resource = change.get("ResourceChange", {})
            changes.append(
                {
                    "action": resource.get("Action"),
                    "logical_id": resource.get("LogicalResourceId"),
                    "type": resource.get("ResourceType"),
                    "replacement": resource.get("Replacement"),
                }
            )
        return {
            "status": described.get("Status"),
            "reason": described.get("StatusReason"),
            "changes": changes,
        }

    @_aws_call("CreateChangeSet")
    async def _create_change_set(self, **kwargs: Any) -> dict[str, Any]:
        return dict(await self._cfn.create_change_set(**kwargs))

    @_aws_call("DescribeChangeSet")
    async def _describe_change_set(self, name: str, stack: str) -> dict[str, Any]:
        return dict(await self._cfn.describe_change_set(ChangeSetName=name, StackName=stack))

    @_aws_call("DeleteChangeSet")
    async def _delete_change_set(self, name: str, stack: str) -> None:
        await self._cfn.delete_change_set(ChangeSetName=name, StackName=stack)

    @_aws_call("DescribeStackEvents")
    async def stack_events(self, name: str) -> list[dict[str, Any]]:
        """The newest page of the stack's events."""
        answer = await self._cfn.describe_stack_events(StackName=name)
        return [dict(e) for e in answer.get("StackEvents", [])]
