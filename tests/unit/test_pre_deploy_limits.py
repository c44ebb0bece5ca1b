"""The calls of a pre-deploy task take tokens from the buckets AWS documents for them."""

from __future__ import annotations

import redis

from worker.aws.ratelimit import Bucket, RateLimiter, default_buckets


def test_run_task_describe_tasks_and_get_log_events_have_their_own_buckets() -> None:
    """RunTask and StopTask share ECS's cluster-resource-write bucket (100, 40/s), DescribeTasks
    and ListTasks the read one (100, 20/s), GetLogEvents CloudWatch Logs' quota (25/s)."""
    buckets = default_buckets()
    assert buckets["RunTask"] == buckets["StopTask"] == Bucket(100, 40)
    assert buckets["DescribeTasks"] == buckets["ListTasks"] == Bucket(100, 20)
    assert buckets["GetLogEvents"] == Bucket(25, 25)
    limiter = RateLimiter(redis.Redis(), account="1", region="r")  # no connection is made
    keys = {op: limiter.key(op) for op in ("RunTask", "StopTask", "DescribeTasks", "GetLogEvents")}
    assert keys["RunTask"] == keys["StopTask"]
    assert len({keys["RunTask"], keys["DescribeTasks"], keys["GetLogEvents"]}) == 3
