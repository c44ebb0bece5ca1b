"""One world, two gateways: the fixtures that run each behaviour test on the fake and on AWS.

``world`` is parametrized: ``fake`` is :class:`tests.fakes.ecs.FakeAws`, seeded through its test
controls; ``boto`` is :class:`worker.aws.boto_fargate.BotoAwsGateway` made the way a worker
makes it (``Settings`` from the SDK's environment variables, a ``Runtime`` with its loop and
``ClientPool``) on a local AWS, seeded with boto3 over HTTP. Both are built by a
:class:`World` with the same methods, so each test is written once.

One local AWS and one worker runtime serve the session (started only when a ``boto`` test
runs), as one long-lived runtime serves a worker process; the local AWS is reset through its
control API before each test, so every test starts from an empty account.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import boto3
import botocore.exceptions
import pytest

from config.settings import Settings
from localaws.testing import control, run_local_aws
from tests.fakes.ecs import FakeAws
from worker.aws.gateway import AwsGateway
from worker.runtime import Runtime

T = TypeVar("T")

ROLLOUT_SECONDS = 0.5
REGION = "us-east-1"
IMAGE = "registry.local:5000/team/app:1.0.0"
WAIT_SECONDS = 30.0


@pytest.fixture(scope="session")
def local_aws_url() -> Iterator[str]:
    """One local AWS for the session, with rollouts of about half a second."""
    with run_local_aws(rollout_seconds=ROLLOUT_SECONDS) as url:
        yield url


def logged_container(image: str, group: str) -> dict[str, Any]:
    """Container ``app`` of ``image``, logging to the awslogs ``group`` with stream prefix m."""
    options = {"awslogs-group": group, "awslogs-region": REGION, "awslogs-stream-prefix": "m"}
    return {
        "name": "app",
        "image": image,
        "memory": 128,
        "logConfiguration": {"logDriver": "awslogs", "options": options},
    }


def containers_of(images: dict[str, str]) -> list[dict[str, Any]]:
    """Container definitions, one per ``name: image``, as the world registers them."""
    return [{"name": name, "image": image, "memory": 128} for name, image in images.items()]


class World(abc.ABC):
    """Builds the same account on either implementation; ``gateway`` is what tests call."""

    kind: str
    gateway: AwsGateway

    @abc.abstractmethod
    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one gateway call to completion."""

    @abc.abstractmethod
    def cluster(self, name: str) -> str:
        """Create an ACTIVE ECS cluster; returns its name."""

    @abc.abstractmethod
    def task_definition(
        self,
        family: str,
        images: dict[str, str] | None = None,
        *,
        tags: list[dict[str, str]] | None = None,
    ) -> str:
        """Register a revision (containers ``name: image``, default ``app``); returns its ARN."""

    @abc.abstractmethod
    def deregister(self, task_definition: str) -> None:
        """Deregister a revision (it becomes INACTIVE)."""

    @abc.abstractmethod
    def service(
        self, cluster: str, name: str, task_definition: str, *, breaker: bool = True
    ) -> None:
        """Create a one-task service (breaker and rollback on unless told); returns once steady."""

    @abc.abstractmethod
    def wait_breaker(self, cluster: str, name: str) -> None:
        """Let the circuit breaker fail the service's PRIMARY deployment (a ``fail-`` image)."""

    @abc.abstractmethod
    def standalone_task(self, cluster: str, task_definition: str) -> str:
        """Start a task outside any service (RunTask); returns its ARN."""

    @abc.abstractmethod
    def logged_task_definition(self, family: str, image: str, group: str) -> str:
        """Register a revision whose container ``app`` logs to ``group`` (awslogs, stream prefix
        ``m``; the group exists); returns its ARN."""

    @abc.abstractmethod
    def task_result(self, family: str, container: str, exit_code: int, lines: list[str]) -> None:
        """What ``container`` of ``family`` exits with and logs in one-off tasks started later."""

    @abc.abstractmethod
    def finish_task(self, cluster: str, task_arn: str) -> None:
        """Let a task started by the gateway's run_task run to its end (STOPPED)."""

    @abc.abstractmethod
    def schedule(self, rule: str, cluster: str, task_definition: str) -> None:
        """Add an EventBridge rule (every hour) whose target runs ``task_definition``."""

    @abc.abstractmethod
    def subnet(self, name: str) -> str:
        """Create a subnet with this Name tag; returns its id."""

    @abc.abstractmethod
    def security_group(self, name: str) -> str:
        """Create a security group with this group name; returns its id."""

    @abc.abstractmethod
    def target_group(self, name: str, *, attached: bool = False) -> str:
        """Create an ``ip`` target group, behind a load balancer if ``attached``; its ARN."""

    @abc.abstractmethod
    def settle_stack(self, name: str) -> None:
        """Let the stack's operation in progress finish (successfully)."""

    @abc.abstractmethod
    def settle_service(self, cluster: str, name: str) -> None:
        """Let the service's rollout (or ECS's rollback) finish: one COMPLETED deployment."""


class FakeWorld(World):
    """The world in :class:`FakeAws`, emptied of its demo defaults."""

    kind = "fake"

    def __init__(self) -> None:
        self.fake = FakeAws()
        self.fake.clusters.clear()
        self.fake.subnets.clear()
        self.fake.security_groups.clear()
        self.gateway = self.fake
        self._loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run on this world's own loop, as the worker runs steps on its runtime's."""
        return self._loop.run_until_complete(coro)

    def close(self) -> None:
        """Close the loop."""
        self._loop.close()

    def cluster(self, name: str) -> str:
        """See World."""
        return self.fake.add_cluster(name)

    def task_definition(
        self,
        family: str,
        images: dict[str, str] | None = None,
        *,
        tags: list[dict[str, str]] | None = None,
    ) -> str:
        """See World."""
        definition = {
            "family": family,
            "containerDefinitions": containers_of(images or {"app": IMAGE}),
        }
        return self.fake.add_task_definition(definition, tags)

    def deregister(self, task_definition: str) -> None:
        """See World."""
        self.fake.deregister_task_definition(task_definition)

    def service(
        self, cluster: str, name: str, task_definition: str, *, breaker: bool = True
    ) -> None:
        """See World."""
        self.fake.add_service(cluster, name, task_definition, desired=1, breaker=breaker)

    def wait_breaker(self, cluster: str, name: str) -> None:
        """See World."""
        self.fake.fail_rollout(cluster, name)

    def standalone_task(self, cluster: str, task_definition: str) -> str:
        """See World."""
        return self.fake.start_task(cluster, task_definition)

    def logged_task_definition(self, family: str, image: str, group: str) -> str:
        """See World."""
        return self.fake.add_task_definition(
            {"family": family, "containerDefinitions": [logged_container(image, group)]}
        )

    def task_result(self, family: str, container: str, exit_code: int, lines: list[str]) -> None:
        """See World. The fake keys results by container alone."""
        self.fake.set_task_result(container, exit_code, lines)

    def finish_task(self, cluster: str, task_arn: str) -> None:
        """See World."""
        self.fake.start_task_run(task_arn)
        self.fake.finish_task(task_arn)

    def schedule(self, rule: str, cluster: str, task_definition: str) -> None:
        """See World."""
        self.fake.add_schedule(rule, task_definition)

    def subnet(self, name: str) -> str:
        """See World."""
        return self.fake.add_subnet(name)

    def security_group(self, name: str) -> str:
        """See World."""
        return self.fake.add_security_group(name)

    def target_group(self, name: str, *, attached: bool = False) -> str:
        """See World."""
        return self.fake.add_target_group(name, attached=attached, kind="ip")

    def settle_stack(self, name: str) -> None:
        """See World."""
        self.fake.finish_stack(name)

    def settle_service(self, cluster: str, name: str) -> None:
        """See World."""
        self.fake.complete(cluster, name)


def _client(url: str, service: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]  # the service name is chosen at run time
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def wait_for(what: str, condition: Callable[[], T | None]) -> T:
    """Poll until ``condition()`` gives a value; fail the test after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        value = condition()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"the local AWS did not get there in {WAIT_SECONDS:.0f} s: {what}")
        time.sleep(0.1)


class BotoWorld(World):
    """The world on a freshly reset local AWS, seeded with boto3; the worker's own gateway."""

    kind = "boto"

    def __init__(self, url: str, runtime: Runtime, gateway: AwsGateway) -> None:
        self.url = url
        self.ecs = _client(url, "ecs")
        self.ec2 = _client(url, "ec2")
        self.elbv2 = _client(url, "elbv2")
        self.cfn = _client(url, "cloudformation")
        self.events = _client(url, "events")
        self.runtime = runtime
        self.gateway = gateway
        self._vpc: str | None = None
        self._subnets = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run on the worker runtime's loop, as a worker runs a step."""
        return self.runtime.run(coro)

    def close(self) -> None:
        """Close the seeding clients (the runtime lives for the session)."""
        for client in (self.ecs, self.ec2, self.elbv2, self.cfn, self.events):
            client.close()

    def cluster(self, name: str) -> str:
        """See World."""
        self.ecs.create_cluster(clusterName=name)
        return name

    def task_definition(
        self,
        family: str,
        images: dict[str, str] | None = None,
        *,
        tags: list[dict[str, str]] | None = None,
    ) -> str:
        """See World."""
        answer = self.ecs.register_task_definition(
            family=family,
            containerDefinitions=containers_of(images or {"app": IMAGE}),
            **({"tags": tags} if tags else {}),
        )
        return str(answer["taskDefinition"]["taskDefinitionArn"])

    def deregister(self, task_definition: str) -> None:
        """See World."""
        self.ecs.deregister_task_definition(taskDefinition=task_definition)

    def _deployments(self, cluster: str, name: str) -> list[dict[str, Any]]:
        answer = self.ecs.describe_services(cluster=cluster, services=[name])
        return list(answer["services"][0]["deployments"])

    def service(
        self, cluster: str, name: str, task_definition: str, *, breaker: bool = True
    ) -> None:
        """See World."""
        self.ecs.create_service(
            cluster=cluster,
            serviceName=name,
            taskDefinition=task_definition,
            desiredCount=1,
            launchType="EC2",
            deploymentConfiguration={
                "deploymentCircuitBreaker": {"enable": breaker, "rollback": breaker},
                "maximumPercent": 200,
                "minimumHealthyPercent": 100,
            },
        )

        def steady() -> bool | None:
            deployments = self._deployments(cluster, name)
            done = len(deployments) == 1 and deployments[0]["rolloutState"] == "COMPLETED"
            return True if done else None

        wait_for(f"service {cluster}/{name} steady", steady)

    def settle_service(self, cluster: str, name: str) -> None:
        """See World."""

        def steady() -> bool | None:
            deployments = self._deployments(cluster, name)
            done = len(deployments) == 1 and deployments[0]["rolloutState"] == "COMPLETED"
            return True if done else None

        wait_for(f"service {cluster}/{name} settled", steady)

    def wait_breaker(self, cluster: str, name: str) -> None:
        """See World."""

        def failed() -> bool | None:
            states = [d["rolloutState"] for d in self._deployments(cluster, name)]
            return True if "FAILED" in states else None

        wait_for(f"a FAILED deployment of {cluster}/{name}", failed)

    def standalone_task(self, cluster: str, task_definition: str) -> str:
        """See World. A Fargate task: moto places EC2 tasks only on registered instances. It
        runs for an hour: the local AWS stops RunTask's tasks after a while."""
        control(self.url, "POST", "config", {"task_seconds": 3600})
        self.ec2.modify_vpc_attribute(VpcId=self._vpc_id(), EnableDnsHostnames={"Value": True})
        answer = self.ecs.run_task(
            cluster=cluster,
            taskDefinition=task_definition,
            launchType="FARGATE",
            networkConfiguration={
                "awsvpcConfiguration": {"subnets": [self._new_subnet([])], "securityGroups": []}
            },
        )
        return str(answer["tasks"][0]["taskArn"])

    def logged_task_definition(self, family: str, image: str, group: str) -> str:
        """See World."""
        logs = _client(self.url, "logs")
        logs.create_log_group(logGroupName=group)
        logs.close()
        answer = self.ecs.register_task_definition(
            family=family, containerDefinitions=[logged_container(image, group)]
        )
        return str(answer["taskDefinition"]["taskDefinitionArn"])

    def task_result(self, family: str, container: str, exit_code: int, lines: list[str]) -> None:
        """See World."""
        body = {"family": family, "container": container, "exitCode": exit_code, "logLines": lines}
        status, answer = control(self.url, "POST", "task-results", body)
        assert status == 200, answer

    def finish_task(self, cluster: str, task_arn: str) -> None:
        """See World."""

        def stopped() -> bool | None:
            tasks = self.ecs.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"]
            return True if tasks and tasks[0]["lastStatus"] == "STOPPED" else None

        wait_for(f"task {task_arn} stopped", stopped)

    def schedule(self, rule: str, cluster: str, task_definition: str) -> None:
        """See World."""
        self.events.put_rule(Name=rule, ScheduleExpression="rate(1 hour)")
        self.events.put_targets(
            Rule=rule,
            Targets=[
                {
                    "Id": "run",
                    "Arn": f"arn:aws:ecs:{REGION}:123456789012:cluster/{cluster}",
                    "RoleArn": "arn:aws:iam::123456789012:role/events-run-task",
                    "EcsParameters": {"TaskDefinitionArn": task_definition, "TaskCount": 1},
                }
            ],
        )

    def _vpc_id(self) -> str:
        if self._vpc is None:
            self._vpc = str(self.ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"])
        return self._vpc

    def _new_subnet(self, tags: list[dict[str, str]]) -> str:
        self._subnets += 1
        answer = self.ec2.create_subnet(
            VpcId=self._vpc_id(),
            CidrBlock=f"10.7.{self._subnets}.0/24",
            AvailabilityZone=f"{REGION}{'ab'[self._subnets % 2]}",
            **({"TagSpecifications": [{"ResourceType": "subnet", "Tags": tags}]} if tags else {}),
        )
        return str(answer["Subnet"]["SubnetId"])

    def subnet(self, name: str) -> str:
        """See World."""
        return self._new_subnet([{"Key": "Name", "Value": name}])

    def security_group(self, name: str) -> str:
        """See World."""
        answer = self.ec2.create_security_group(
            GroupName=name, Description=name, VpcId=self._vpc_id()
        )
        return str(answer["GroupId"])

    def target_group(self, name: str, *, attached: bool = False) -> str:
        """See World."""
        arn = str(
            self.elbv2.create_target_group(
                Name=name, Protocol="HTTP", Port=8080, VpcId=self._vpc_id(), TargetType="ip"
            )["TargetGroups"][0]["TargetGroupArn"]
        )
        if attached:
            balancer = self.elbv2.create_load_balancer(
                Name=f"{name}-lb",
                Subnets=[self._new_subnet([]), self._new_subnet([])],
                Type="application",
            )["LoadBalancers"][0]["LoadBalancerArn"]
            self.elbv2.create_listener(
                LoadBalancerArn=balancer,
                Protocol="HTTP",
                Port=80,
                DefaultActions=[{"Type": "forward", "TargetGroupArn": arn}],
            )
        return arn

    def settle_stack(self, name: str) -> None:
        """See World."""

        def settled() -> str | None:
            try:
                stacks = self.cfn.describe_stacks(StackName=name)["Stacks"]
            except botocore.exceptions.ClientError as exc:
                if "does not exist" in str(exc):
                    return "gone"
                raise
            status = str(stacks[0]["StackStatus"])
            return None if status.endswith("_IN_PROGRESS") else status

        wait_for(f"stack {name} settled", settled)


@pytest.fixture(scope="session")
def worker_runtime(local_aws_url: str) -> Iterator[tuple[Runtime, AwsGateway]]:
    """A worker's runtime and gateway on the local AWS, built the way a worker builds them.

    A worker is pointed at the local AWS by the SDK's own variables, nothing else. They are set
    only while the runtime makes its clients (the SDK reads them then, and the clients live for
    the session), so that they do not leak into the other suites of the session.
    """
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN"):
            env.delenv(name, raising=False)
        env.setenv("AWS_ENDPOINT_URL", local_aws_url)
        env.setenv("AWS_REGION", REGION)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        # The gateway alone: the shared rate limiter (which needs Redis) is tested apart.
        env.setenv("CONVEYOR_RATE_LIMIT", "false")
        runtime = Runtime(Settings())
        gateway: AwsGateway = runtime.run(runtime.pool.gateway(None, now=time.time()))
    try:
        yield runtime, gateway
    finally:
        runtime.close()


@pytest.fixture(params=["fake", "boto"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    """An empty account on the fake or on the local AWS, with a builder for both."""
    built: FakeWorld | BotoWorld
    if request.param == "fake":
        built = FakeWorld()
    else:
        url: str = request.getfixturevalue("local_aws_url")
        runtime, gateway = request.getfixturevalue("worker_runtime")
        status, _ = control(url, "POST", "reset")
        assert status == 200, "the local AWS refused its reset"
        built = BotoWorld(url, runtime, gateway)
    try:
        yield built
    finally:
        built.close()
