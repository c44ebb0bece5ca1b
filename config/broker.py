"""The Redis broker transport, with one kombu defect absorbed and NOREPLICAS made an outage.

When Redis goes away under a worker, Celery closes the broken connection. kombu's Redis channel
disconnects its connection pools and then, within the same ``close()``, tries to build a new
pool to give back the unacknowledged messages; the transport's client is gone by then, the
AttributeError escapes Celery's ``ignore_errors`` (which only ignores connection errors), and
the worker exits with "Unrecoverable error". Conveyor does not depend on that give-back: a
lost step is re-dispatched by the recovery sweeper and stale copies are fenced off. So this
channel treats the failure as what it is, a give-back that could not happen, and the worker
goes on to reconnect.

A primary with ``min-replicas-to-write`` (as docs/operations.md advises behind Sentinel)
refuses writes with NOREPLICAS until its replica is back, for up to tens of seconds after a
restart or a failover. redis-py raises that as a plain ``ResponseError``, which Celery's
consumer does not count as a connection error: a worker that started or reconnected then
(kombu takes a lock with SET to give back unacknowledged messages, and declares its queues with
SADD) exited with "Unrecoverable error". On the broker's connections NOREPLICAS is
:class:`NoReplicasError`, a connection error: the consumer waits and connects again, as it does
for a Redis that is down.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from kombu.transport import redis as kombu_redis

log = logging.getLogger("conveyor.broker")
# A primary without its replica refuses writes for seconds to tens of seconds.
_NO_REPLICAS_PAUSE = 1.0


class NoReplicasError(redis.ConnectionError):
    """The primary refuses writes until it has the replicas ``min-replicas-to-write`` asks for."""


def _no_replicas_connection(base: type[redis.Connection]) -> type[redis.Connection]:
    """``base`` (a redis-py connection class) whose NOREPLICAS replies raise NoReplicasError."""

    class NoReplicasConnection(base):  # type: ignore[valid-type, misc]
        def read_response(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().read_response(*args, **kwargs)
            except redis.ResponseError as exc:
                if str(exc).startswith("NOREPLICAS"):
                    raise NoReplicasError(str(exc)) from exc
                raise

    return NoReplicasConnection


class _SafeClose:
    """Closing a broken connection never takes the worker down; nor does NOREPLICAS."""

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        params: dict[str, Any] = super()._connparams(asynchronous)  # type: ignore[misc]
        params["connection_class"] = _no_replicas_connection(params["connection_class"])
        return params

    def close(self) -> None:
        """Close; an unrecoverable give-back of unacked messages is logged, not raised."""
        try:
            super().close()  # type: ignore[misc]
        except AttributeError as exc:
            log.warning(
                "unacknowledged messages were not given back while closing a broken broker "
                "connection (%s); their steps are re-dispatched by the recovery sweeper",
                exc,
            )

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        """Acknowledge; an ack lost with a broken connection is logged, not raised.

        A task that ends after Redis went away and came back acknowledges through the channel
        that was closed: the same AttributeError, raised from the worker's task-done path,
        would end the worker. The message stays unacknowledged and comes back after the
        visibility timeout, when its seq no longer matches the record: it does nothing.
        """
        try:
            super().basic_ack(delivery_tag, multiple=multiple)  # type: ignore[misc]
        except AttributeError as exc:
            log.warning(
                "a message could not be acknowledged on a broken broker connection (%s); its "
                "redelivery will find its step already taken",
                exc,
            )


class Channel(_SafeClose, kombu_redis.Channel):
    """kombu's Redis channel whose close never takes the worker down."""


class SentinelChannel(_SafeClose, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel, with the same close."""


class _PausedRetry:
    """A consumer refused with NOREPLICAS pauses before Celery connects it again.

    The refusal comes after the connection is made, while kombu registers it with the event
    loop; Celery then reconnects at once, about five times a second, with a traceback each
    second, for as long as the primary lacks its replica.
    """

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        """Register; on NOREPLICAS wait a second, then let Celery reconnect."""
        try:
            super().register_with_event_loop(connection, loop)  # type: ignore[misc]
        except NoReplicasError:
            log.warning("the Redis primary refuses writes until a replica is back; waiting")
            time.sleep(_NO_REPLICAS_PAUSE)
            raise


class Transport(_PausedRetry, kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


class SentinelTransport(_PausedRetry, kombu_redis.SentinelTransport):
    """kombu's Sentinel transport with :class:`SentinelChannel`."""

    Channel = SentinelChannel
