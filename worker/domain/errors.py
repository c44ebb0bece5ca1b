"""Conveyor's errors: one root, split by what the caller should do next.

::

    ConveyorError                       every error Conveyor raises on purpose
    ├── PermanentError                  retrying cannot help: fail the deployment now
    │   ├── InvalidJobError             the job payload does not validate
    │   ├── NotFoundError               cluster, service, family or revision is missing
    │   ├── UnknownContainerError       a requested container is not in the task definition
    │   └── AwsRequestError             AWS refused the request (access denied, bad parameter)
    └── TransientError                  retry the step later, with backoff
        └── AwsUnavailableError         throttled, 5xx, timeout or connection failure

Every error carries a stable ``code`` (the AWS error code when AWS raised it) and a message
that names the bad value and the fix. Errors are plain ``Exception`` subclasses whose only
constructor arguments are positional strings, so they survive Celery's JSON result backend.
"""

from __future__ import annotations

from typing import Any

from producers.contract.enums import ErrorCode
from worker.domain.tickets import Ticket


class ConveyorError(Exception):
    """Raised for every failure Conveyor reports on purpose."""

    default_code: str = ErrorCode.CONVEYOR

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message, code or self.default_code)
        self.message = message
        self.code = code or self.default_code

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """Return the error as the JSON-safe mapping stored in deployment records."""
        return {
            "type": type(self).__name__,
            "code": self.code,
            "message": self.message,
            "retryable": isinstance(self, TransientError),
        }


class PermanentError(ConveyorError):
    """Raised when retrying cannot help; the deployment fails at once."""

    default_code: str = ErrorCode.PERMANENT


class TransientError(ConveyorError):
    """Raised when the same step may succeed later (throttling, outages, timeouts).

    ``retry_after`` (seconds), when set, is the earliest the step can succeed again.
    """

    default_code: str = ErrorCode.TRANSIENT
    retry_after: float = 0.0
    # When set, a rate-limit token is already reserved for the step (its place in line, and the
    # wall time it should come round); the step comes back then and passes it to ``reserve``
    # instead of queueing again.
    ticket: Ticket | None = None


class InvalidJobError(PermanentError):
    """Raised when a job payload fails validation (at the producer or in the worker)."""

    default_code: str = ErrorCode.INVALID_JOB


class NotFoundError(PermanentError):
    """Raised when a cluster, service, task definition family or revision does not exist."""

    default_code: str = ErrorCode.NOT_FOUND


class UnknownContainerError(PermanentError):
    """Raised when a job names a container that the task definition does not have."""

    default_code: str = ErrorCode.UNKNOWN_CONTAINER


class AwsRequestError(PermanentError):
    """Raised when AWS rejects a request for a reason retrying will not change."""

    default_code: str = ErrorCode.AWS_REQUEST


class AwsUnavailableError(TransientError):
    """Raised when AWS throttles, fails with 5xx, times out or cannot be reached."""

    default_code: str = ErrorCode.AWS_UNAVAILABLE


# AWS error codes that mean "try again later". Everything else from AWS is permanent.
TRANSIENT_AWS_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "ServerException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalError",
        "RequestTimeout",
        "RequestTimeoutException",
        "SlowDown",
    }
)

# The transient codes that mean "slow down" (counted as throttles).
THROTTLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "SlowDown",
    }
)
