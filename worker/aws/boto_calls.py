"""How each aiobotocore call is made: the rate limiter's token, a timeout, translated errors.

:func:`aws_call` wraps every gateway method that calls AWS; :func:`count_attempt` and
:func:`learn_from_throttle` are hooks on botocore's needs-retry event, which sees every attempt,
botocore's own retries included.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import botocore.exceptions

from worker.aws.boto_errors import translate_error
from worker.aws.ratelimit import RateLimiter, count_throttle
from worker.domain.errors import THROTTLE_CODES, AwsUnavailableError, ConveyorError
from worker.observe import metrics

P = ParamSpec("P")
T = TypeVar("T")


def count_attempt(
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


def learn_from_throttle(
    limiter: RateLimiter,
    client: Any,
    response: Any = None,
    operation: Any = None,
    attempts: int = 1,
    **_: Any,
) -> None:
    """botocore's needs-retry event of the ECS client: a throttle drains the shared bucket.

    Registered after :func:`count_attempt`, so the attempt is counted before this raises. Only
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


async def every_page(
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


def aws_call(
    operation: str, *, spare: int | None = None
) -> Callable[[Callable[P, Coroutine[Any, Any, T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """Make a gateway method one AWS call ``operation``: a token, a timeout, Conveyor's errors.

    The token comes from the gateway's ``limiter`` (a low-priority call, with ``spare``, only
    while that many stay in the bucket); the call is bounded by the gateway's
    ``call_timeout``; a first attempt AWS throttled is sent again with a new token.
    """

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
