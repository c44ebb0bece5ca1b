"""Faults, rate limits, stats and reset through the control API."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.localaws.conftest import Aws, client

LEGACY_RETRIES = Config(retries={"mode": "legacy", "max_attempts": 10})
NO_RETRIES = Config(retries={"mode": "legacy", "max_attempts": 0})


def test_health_and_config(aws: Aws) -> None:
    """The health endpoint answers ok; config tells the rollout duration in use."""
    assert aws.control("GET", "health") == (200, {"status": "ok"})
    status, config = aws.control("GET", "config")
    assert status == 200
    assert config["rollout_seconds"] > 0


def test_injected_throttling_is_retried_by_botocore(aws: Aws) -> None:
    """With 30 % of ECS calls throttled, botocore's legacy retries make every call succeed, and
    the stats count the throttled calls among all calls."""
    # Seeded, and one call at a time, so that the n-th request always meets the same fate: with
    # seed 6 no call is throttled more than twice in a row. Unseeded, a call could meet a long
    # run of throttles, and botocore's legacy backoff doubles with each (up to 2^9 s here).
    assert aws.control("POST", "faults", {"throttle": 0.3, "seed": 6})[0] == 200
    ecs = client(aws.url, "ecs", LEGACY_RETRIES)

    results = [ecs.list_clusters() for _ in range(40)]

    assert all(r["ResponseMetadata"]["HTTPStatusCode"] == 200 for r in results)
    retried = [r["ResponseMetadata"]["RetryAttempts"] for r in results]
    status, stats = aws.control("GET", "stats")
    assert status == 200
    throttled = stats["throttled"].get("ListClusters", 0)
    assert throttled == sum(retried) > 0
    assert stats["calls"]["ListClusters"] == 40 + throttled


def test_throttling_answer_is_aws_shaped(aws: Aws) -> None:
    """A throttled call fails (without retries) with ThrottlingException / "Rate exceeded"."""
    aws.control("POST", "faults", {"throttle": 1, "operations": ["ListServices"]})
    ecs = client(aws.url, "ecs", NO_RETRIES)

    try:
        ecs.list_services(cluster="test")
    except ClientError as error:
        assert error.response["Error"] == {
            "Code": "ThrottlingException",
            "Message": "Rate exceeded",
        }
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    else:
        raise AssertionError("ListServices was not throttled")
    ecs.list_clusters()  # not in "operations": untouched


def test_server_errors_are_injected_and_counted(aws: Aws) -> None:
    """server_error answers HTTP 500 ServerException; the stats count it; DELETE clears faults."""
    aws.control("POST", "faults", {"server_error": 1.0, "latency_ms": 5})
    ecs = client(aws.url, "ecs", NO_RETRIES)

    try:
        ecs.list_clusters()
    except ClientError as error:
        assert error.response["Error"]["Code"] == "ServerException"
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    else:
        raise AssertionError("ListClusters did not fail")
    assert aws.control("GET", "stats")[1]["server_errors"] == {"ListClusters": 1}
    assert aws.control("GET", "faults")[1]["server_error"] == 1.0

    aws.control("DELETE", "faults")
    ecs.list_clusters()
    assert aws.control("GET", "faults")[1] == {
        "throttle": 0.0,
        "server_error": 0.0,
        "latency_ms": 0.0,
        "operations": None,
        "seed": None,
    }


def test_a_seed_makes_the_sequence_of_faults_reproducible(aws: Aws) -> None:
    """The same seed gives the n-th ECS request the same fate in every run, also when the
    requests come from several threads at once; a different seed gives another sequence."""
    ecs = client(aws.url, "ecs", NO_RETRIES)

    def fates(seed: int, threads: int) -> list[str]:
        aws.control("DELETE", "stats")
        aws.control("POST", "faults", {"throttle": 0.3, "server_error": 0.2, "seed": seed})

        def call(_: int) -> str:
            try:
                ecs.list_clusters()
            except ClientError as error:
                return str(error.response["Error"]["Code"])
            return "ok"

        with ThreadPoolExecutor(max_workers=threads) as pool:
            outcomes = list(pool.map(call, range(60)))
        stats = aws.control("GET", "stats")[1]
        assert stats["throttled"].get("ListClusters", 0) == outcomes.count("ThrottlingException")
        return sorted(outcomes)

    first = fates(seed=11, threads=1)
    assert fates(seed=11, threads=6) == first
    assert {"ok", "ThrottlingException", "ServerException"} <= set(first)
    assert fates(seed=12, threads=1) != first


def test_token_buckets_throttle_a_burst_of_registrations(aws: Aws) -> None:
    """With limits on, RegisterTaskDefinition has a burst of 20: a quick burst of 30 has about
    20 successes and the rest throttled; other buckets are not affected."""
    assert aws.control("POST", "limits", {"enabled": True, "scale": 1})[0] == 200
    ecs = client(aws.url, "ecs", NO_RETRIES)
    outcomes: list[str] = []

    for i in range(30):
        try:
            ecs.register_task_definition(
                family="burst",
                containerDefinitions=[{"name": "app", "image": f"repo/app:{i}", "memory": 64}],
            )
            outcomes.append("ok")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])

    assert set(outcomes) == {"ok", "ThrottlingException"}
    assert 20 <= outcomes.count("ok") < 30
    assert outcomes[:20] == ["ok"] * 20
    stats = aws.control("GET", "stats")[1]
    assert stats["throttled"]["RegisterTaskDefinition"] == outcomes.count("ThrottlingException")
    ecs.list_task_definitions()  # a different bucket still has tokens

    aws.control("DELETE", "limits")
    ecs.register_task_definition(
        family="burst", containerDefinitions=[{"name": "app", "image": "repo/app:x", "memory": 64}]
    )


def test_control_api_rejects_bad_input_naming_the_field(aws: Aws) -> None:
    """Unknown fields, wrong types and bad JSON get HTTP 400 with a message naming the problem."""
    status, body = aws.control("POST", "faults", {"throttle": 0.1, "thrtle": 1})
    assert status == 400
    assert "thrtle" in body["message"]
    status, body = aws.control("POST", "faults", {"throttle": 2})
    assert status == 400
    assert "throttle" in body["message"]
    status, body = aws.control("POST", "faults", {"throttle": 0.6, "server_error": 0.5})
    assert status == 400
    assert "throttle + server_error" in body["message"]
    status, body = aws.control("POST", "faults", {"seed": "7"})
    assert status == 400
    assert "seed" in body["message"]
    status, body = aws.control("POST", "limits", {"enabled": "yes"})
    assert status == 400
    assert "enabled" in body["message"]
    status, body = aws.control("POST", "limits", {"scale": 0})
    assert status == 400
    assert "scale" in body["message"]
    raw = urllib.request.Request(  # noqa: S310 - the local AWS on loopback
        f"{aws.url}/_localaws/faults", data=b"{not json", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(raw, timeout=30)  # noqa: S310
    assert caught.value.code == 400
    assert "JSON" in json.loads(caught.value.read())["message"]
    assert aws.control("GET", "nowhere")[0] == 404
    assert aws.control("PUT", "faults", {})[0] == 405


def test_reset_clears_world_faults_limits_and_stats(aws: Aws) -> None:
    """POST /_localaws/reset empties moto's world and the simulator and clears the additions."""
    definition = aws.task_definition("app", "repo/app:1")
    aws.service("app", definition)
    aws.control("POST", "faults", {"latency_ms": 1})
    aws.control("POST", "limits", {"enabled": True, "scale": 5})

    assert aws.control("POST", "reset") == (200, {"status": "ok"})

    assert aws.ecs.list_clusters()["clusterArns"] == []
    assert aws.control("GET", "faults")[1]["latency_ms"] == 0.0
    assert aws.control("GET", "limits")[1]["enabled"] is False
    assert aws.control("GET", "stats")[1]["calls"] == {"ListClusters": 1}
    aws.ecs.create_cluster(clusterName="test")
    assert aws.ecs.list_services(cluster="test")["serviceArns"] == []


def test_the_call_log_keeps_each_ecs_call_with_its_outcome_and_never_a_definition(
    aws: Aws,
) -> None:
    """Every ECS call is logged in order with who made it, how it ended and what it acted on;
    the container definitions (which can hold secrets) are not; DELETE stats empties the log."""
    aws.control("DELETE", "stats")
    conveyor = client(
        aws.url,
        "ecs",
        Config(retries={"mode": "legacy", "max_attempts": 0}, user_agent_extra="conveyor/1.0"),
    )
    other = client(aws.url, "ecs", NO_RETRIES)
    conveyor.register_task_definition(
        family="logged",
        containerDefinitions=[
            {
                "name": "app",
                "image": "x/app:1",
                "memory": 64,
                "environment": [{"name": "TOKEN", "value": "s3cr3t-canary"}],
            }
        ],
    )
    aws.control("POST", "faults", {"throttle": 1.0, "operations": ["ListClusters"]})
    with pytest.raises(ClientError):
        other.list_clusters()
    aws.control("DELETE", "faults")
    with pytest.raises(ClientError):
        other.describe_task_definition(taskDefinition="nothing-here:1")

    status, log = aws.control("GET", "calls")
    assert status == 200
    assert log["dropped"] == 0
    calls = log["calls"]
    assert [(c["seq"], c["op"], c["client"], c["outcome"]) for c in calls] == [
        (1, "RegisterTaskDefinition", "conveyor", "ok"),
        (2, "ListClusters", "other", "throttled"),
        (3, "DescribeTaskDefinition", "other", "client_error:400"),
    ]
    assert calls[0]["family"] == "logged"
    assert calls[2]["taskDefinition"] == "nothing-here:1"
    assert calls[0]["account"] == "123456789012"
    assert "s3cr3t-canary" not in json.dumps(log)
    aws.control("DELETE", "stats")
    assert aws.control("GET", "calls")[1] == {"calls": [], "dropped": 0}


def test_the_call_log_keeps_which_hook_an_answer_was_for_and_its_action(aws: Aws) -> None:
    """A ContinueServiceDeployment is logged with its hook and its action (CONTINUE or
    ROLLBACK), even when ECS refuses it: what an answer asked for is in the log."""
    aws.control("DELETE", "stats")
    ecs = client(aws.url, "ecs", NO_RETRIES)
    arn = "arn:aws:ecs:us-east-1:123456789012:service-deployment/demo/web/nothing"
    with pytest.raises(ClientError):
        ecs.continue_service_deployment(serviceDeploymentArn=arn, hookId="h-1", action="ROLLBACK")
    (call,) = aws.control("GET", "calls")[1]["calls"]
    assert call["op"] == "ContinueServiceDeployment"
    assert (call["serviceDeploymentArn"], call["hookId"], call["action"]) == (
        arn,
        "h-1",
        "ROLLBACK",
    )
