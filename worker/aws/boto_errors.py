"""botocore's errors in Conveyor's error tree, the AWS code kept.

A throttle or an unreachable endpoint becomes a transient error (the step is retried), an
access denial or a refused parameter a request error (the job fails at once).
"""

from __future__ import annotations

import asyncio

import botocore.exceptions

from worker.domain.errors import (
    TRANSIENT_AWS_CODES,
    AwsRequestError,
    AwsUnavailableError,
    ConveyorError,
    NotFoundError,
)

# Misconfiguration: retrying cannot help.
_CONFIG_ERRORS = (
    botocore.exceptions.ParamValidationError,
    botocore.exceptions.NoRegionError,
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
)
_NOT_FOUND_CODES = frozenset(
    {
        "ServiceNotFoundException",
        "ClusterNotFoundException",
        "ServiceNotActiveException",
        "ServiceDeploymentNotFoundException",
    }
)


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
