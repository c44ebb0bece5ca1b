"""The aiobotocore clients of a worker process: one long-lived set per identity.

The only module that imports aiobotocore (botocore on asyncio; typed clients come from
types-aiobotocore). A client made per call costs 40-110 ms, a reused one about 1 ms.
"""

from __future__ import annotations

import asyncio
import functools
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import botocore.exceptions
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

from worker.aws.boto_calls import count_attempt, learn_from_throttle
from worker.aws.boto_cloudwatch import BotoCloudWatchGateway, CloudWatchMetrics
from worker.aws.boto_errors import translate_error
from worker.aws.boto_fargate import BotoAwsGateway
from worker.aws.ratelimit import Bucket, RateLimiter

# The clients of one identity.
_CLIENT_NAMES = ("ecs", "cloudformation", "elbv2", "ec2", "events", "cloudwatch", "logs")


def _session(region: str | None) -> AioSession:
    """A new SDK session for ``region`` (None: the region the SDK finds in its own settings)."""
    session = get_session()
    if region is not None:
        session.set_config_variable("region", region)
    return session


def _version() -> str:
    """Conveyor's installed version ("0" when run from a tree that was never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("conveyor")
    except PackageNotFoundError:
        return "0"


# Appended to every AWS call's User-Agent: "conveyor/<version>".
USER_AGENT = "conveyor/" + _version()


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
            # CloudTrail's userAgent then names Conveyor, so an operator can tell its calls
            # from Terraform's or a person's (and the local AWS's call log does the same).
            user_agent_extra=USER_AGENT,
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
        """How many clients are open (six per identity in use)."""
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
            cloudwatch = await stack.enter_async_context(
                session.create_client("cloudwatch", config=config)
            )
            logs = await stack.enter_async_context(session.create_client("logs", config=config))
        except BaseException:
            await stack.aclose()
            raise
        for client in (ecs, cfn, elbv2, ec2, events, cloudwatch, logs):
            client.meta.events.register("needs-retry", count_attempt)
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
                "needs-retry", functools.partial(learn_from_throttle, limiter, limits.redis)
            )
        gateway = BotoAwsGateway(
            ecs,
            cfn,
            elbv2,
            ec2,
            call_timeout=self._call_timeout,
            limiter=limiter,
            events=events,
            logs=logs,
        )
        # Metric gates read CloudWatch with the deployment's own identity, through the limiter.
        gateway.gate_metrics = CloudWatchMetrics(
            BotoCloudWatchGateway(cloudwatch, call_timeout=self._call_timeout, limiter=limiter)
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
