"""The Redis broker transport, with one kombu defect absorbed.

When Redis goes away under a worker, Celery closes the broken connection. kombu's Redis channel
disconnects its connection pools and then, within the same ``close()``, tries to build a new
pool to give back the unacknowledged messages; the transport's client is gone by then, the
AttributeError escapes Celery's ``ignore_errors`` (which only ignores connection errors), and
the worker exits with "Unrecoverable error". Conveyor does not depend on that give-back: a
lost step is re-dispatched by the recovery sweeper and stale copies are fenced off. So this
channel treats the failure as what it is, a give-back that could not happen, and the worker
goes on to reconnect.
"""

from __future__ import annotations

import logging

from kombu.transport import redis as kombu_redis

log = logging.getLogger("conveyor.broker")


class _SafeClose:
    """Closing a broken connection never takes the worker down."""

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


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Sentinel transport with :class:`SentinelChannel`."""

    Channel = SentinelChannel
