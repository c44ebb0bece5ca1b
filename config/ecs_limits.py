"""AWS's ECS API rate limits: one token bucket per row, per account and region.

AWS's documented figures (shared/ECS_FACTS.md). Workers size their shared limiter from this
table by default; the local AWS emulates the same buckets. CloudWatch's two calls of metric
gates have rows of their own (``CLOUDWATCH_RATE_LIMITS``), and so has CloudWatch Logs'
GetLogEvents of pre-deploy tasks (``LOGS_RATE_LIMITS``), for the workers' limiter only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BucketSpec:
    """One row of the ECS rate-limit table."""

    name: str
    burst: int
    refill_per_second: float
    operations: frozenset[str]


ECS_RATE_LIMITS: tuple[BucketSpec, ...] = (
    BucketSpec(
        "task-definition-writes",
        20,
        1,
        frozenset({"RegisterTaskDefinition", "DeregisterTaskDefinition"}),
    ),
    BucketSpec(
        "task-definition-reads",
        50,
        20,
        frozenset({"DescribeTaskDefinition", "ListTaskDefinitions", "ListTaskDefinitionFamilies"}),
    ),
    BucketSpec(
        "service-writes", 50, 5, frozenset({"CreateService", "UpdateService", "DeleteService"})
    ),
    BucketSpec("service-reads", 100, 20, frozenset({"DescribeServices", "ListServices"})),
    BucketSpec(
        "service-deployments",
        50,
        20,
        frozenset({"DescribeServiceDeployments", "ListServiceDeployments"}),
    ),
    BucketSpec("cluster-resource-reads", 100, 20, frozenset({"DescribeTasks", "ListTasks"})),
    BucketSpec("cluster-resource-writes", 100, 40, frozenset({"RunTask", "StopTask"})),
    BucketSpec("cluster-reads", 50, 20, frozenset({"DescribeClusters", "ListClusters"})),
    BucketSpec("tagging", 20, 10, frozenset({"TagResource", "UntagResource"})),
    BucketSpec("tag-reads", 50, 20, frozenset({"ListTagsForResource"})),
)

# CloudWatch's documented quotas for the two calls metric gates make, in calls per second per
# account and region (GetMetricData's can be raised). AWS documents no burst: a bucket holds one
# second's calls. The local AWS limits ECS's calls only, so it does not emulate these.
CLOUDWATCH_RATE_LIMITS: tuple[BucketSpec, ...] = (
    BucketSpec("cloudwatch-get-metric-data", 50, 50, frozenset({"GetMetricData"})),
    BucketSpec("cloudwatch-describe-alarms", 9, 9, frozenset({"DescribeAlarms"})),
)

# CloudWatch Logs' documented quota of GetLogEvents (the tail of a pre-deploy task's log), in
# calls per second per account and region; it cannot be raised. No burst documented: a bucket
# holds one second's calls. Workers' limiter only, as CloudWatch's rows above.
LOGS_RATE_LIMITS: tuple[BucketSpec, ...] = (
    BucketSpec("logs-get-log-events", 25, 25, frozenset({"GetLogEvents"})),
)

# The bucket of every limited operation; the shared limiter sizes its buckets from this.
BUCKET_FOR_OPERATION: dict[str, BucketSpec] = {
    operation: spec
    for spec in (*ECS_RATE_LIMITS, *CLOUDWATCH_RATE_LIMITS, *LOGS_RATE_LIMITS)
    for operation in spec.operations
}
