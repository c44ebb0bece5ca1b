"""The installed AWS SDK knows the ECS API that Conveyor builds on.

These tests read botocore's ECS service model, the same one the workers' clients validate
requests against and parse answers with. A member the model lacks is refused when sent
(``ParamValidationError``) and silently left out of every answer, so a deployment configuration
read from DescribeServices and written back by UpdateService would lose it.
"""

from __future__ import annotations

import botocore.session
import pytest
from botocore.model import OperationModel, ServiceModel, Shape, StringShape, StructureShape

from worker.aws.boto_ecs import known_register_fields
from worker.domain.planning import READ_ONLY_KEYS


@pytest.fixture(scope="module")
def ecs() -> ServiceModel:
    """The ECS model of the installed botocore."""
    return botocore.session.get_session().get_service_model("ecs")


def enum_of(shape: Shape) -> list[str]:
    """The values a string shape allows."""
    assert isinstance(shape, StringShape), shape.name
    return shape.enum


def structure(model: ServiceModel, name: str) -> StructureShape:
    """The named structure shape of the model."""
    shape = model.shape_for(name)
    assert isinstance(shape, StructureShape), name
    return shape


def member(shape: StructureShape, *path: str) -> StructureShape:
    """The structure reached from ``shape`` through the members named by ``path``."""
    for name in path:
        assert name in shape.members, f"{shape.name} has no member {name!r}"
        found = shape.members[name]
        if found.type_name == "list":
            found = found.member  # type: ignore[attr-defined]
        assert isinstance(found, StructureShape), f"{shape.name}.{name}"
        shape = found
    return shape


def test_continue_service_deployment_exists(ecs: ServiceModel) -> None:
    """ContinueServiceDeployment (botocore 1.43.10) answers a PAUSE hook: the deployment's ARN,
    the hook's id and an action."""
    operation: OperationModel = ecs.operation_model("ContinueServiceDeployment")
    assert operation.input_shape is not None
    assert {"serviceDeploymentArn", "hookId", "action"} <= set(operation.input_shape.members)


def test_lifecycle_hooks_can_pause_with_a_timeout(ecs: ServiceModel) -> None:
    """deploymentConfiguration.lifecycleHooks take a PAUSE target and a timeout that rolls
    back or continues (botocore 1.43.10)."""
    hook = member(structure(ecs, "DeploymentConfiguration"), "lifecycleHooks")
    assert "PAUSE" in enum_of(hook.members["targetType"])
    timeout = member(hook, "timeoutConfiguration")
    assert set(enum_of(timeout.members["action"])) >= {"ROLLBACK", "CONTINUE"}
    assert "timeoutInMinutes" in timeout.members
    stages = hook.members["lifecycleStages"].member.enum  # type: ignore[attr-defined]
    assert "PRE_PRODUCTION_TRAFFIC_SHIFT" in stages


def test_the_circuit_breaker_takes_thresholds(ecs: ServiceModel) -> None:
    """deploymentCircuitBreaker.thresholdConfiguration (botocore 1.43.37): COUNT,
    BOUNDED_PERCENT or UNBOUNDED_PERCENT with a value."""
    breaker = member(structure(ecs, "DeploymentConfiguration"), "deploymentCircuitBreaker")
    threshold = member(breaker, "thresholdConfiguration")
    assert set(enum_of(threshold.members["type"])) >= {
        "COUNT",
        "BOUNDED_PERCENT",
        "UNBOUNDED_PERCENT",
    }
    assert "value" in threshold.members
    assert "resetOnHealthyTask" in breaker.members


def test_service_deployments_report_their_hooks(ecs: ServiceModel) -> None:
    """A service deployment names its lifecycle hooks' state, where a paused hook's id is read."""
    assert "lifecycleHookDetails" in structure(ecs, "ServiceDeployment").members


def test_every_output_only_member_of_a_task_definition_is_a_read_only_key(
    ecs: ServiceModel,
) -> None:
    """What DescribeTaskDefinition returns but RegisterTaskDefinition does not take is removed
    by planning as read-only, so that no warning calls it a field the SDK does not know."""
    described = set(structure(ecs, "TaskDefinition").members)
    output_only = described - known_register_fields()
    assert output_only == set(READ_ONLY_KEYS)


def test_register_fields_include_the_ones_old_sdks_dropped() -> None:
    """The fields that tools on an old SDK silently dropped are known, so they are carried
    over into every new revision."""
    assert {
        "pidMode",
        "ipcMode",
        "ephemeralStorage",
        "runtimePlatform",
        "enableFaultInjection",
    } <= known_register_fields()


def test_a_deployment_configuration_read_can_be_sent_back_whole(ecs: ServiceModel) -> None:
    """DescribeServices answers with the very DeploymentConfiguration shape UpdateService
    takes: strategy, bake time, hooks, linear and canary steps and alarms go back untouched."""
    answer = member(structure(ecs, "Service"), "deploymentConfiguration")
    operation = ecs.operation_model("UpdateService")
    assert operation.input_shape is not None
    request = operation.input_shape.members["deploymentConfiguration"]
    assert answer.name == request.name == "DeploymentConfiguration"
    assert {
        "strategy",
        "bakeTimeInMinutes",
        "lifecycleHooks",
        "linearConfiguration",
        "canaryConfiguration",
        "alarms",
    } <= set(answer.members)


def test_service_deployments_carry_what_the_staged_watch_reads(ecs: ServiceModel) -> None:
    """Every member of DescribeServiceDeployments that the watch of a blue/green, linear or
    canary deployment reads is in the model (absent members would read as missing)."""
    deployment = structure(ecs, "ServiceDeployment")
    assert {
        "serviceDeploymentArn",
        "status",
        "statusReason",
        "lifecycleStage",
        "lifecycleHookDetails",
        "deploymentConfiguration",
        "rollback",
        "deploymentCircuitBreaker",
        "alarms",
    } <= set(deployment.members)
    hook = member(deployment, "lifecycleHookDetails")
    assert {"hookId", "targetType", "targetArn", "status", "expiresAt", "timeoutAction"} <= set(
        hook.members
    )
    assert "AWAITING_ACTION" in enum_of(hook.members["status"])
    assert "triggeredAlarmNames" in member(deployment, "alarms").members
    assert {"status", "failureCount", "threshold"} <= set(
        member(deployment, "deploymentCircuitBreaker").members
    )
    assert "reason" in member(deployment, "rollback").members
    assert "BAKE_TIME" in enum_of(deployment.members["lifecycleStage"])
