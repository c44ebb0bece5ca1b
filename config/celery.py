"""Celery configuration derived from Settings; shared by workers and producers."""

from __future__ import annotations

from typing import Any

from config.settings import Settings

# A broker message unacknowledged for this long goes back on the queue. Steps are short and
# countdowns are a poll interval, so this only matters for a worker that died: the recovery
# sweeper re-dispatches such steps long before, and fencing makes the late copy a no-op.
VISIBILITY_TIMEOUT = 3600


def celery_config(settings: Settings) -> dict[str, Any]:
    """Return the Celery configuration mapping for ``settings``."""
    url = settings.redis_dsn
    transport: dict[str, Any] = {"visibility_timeout": VISIBILITY_TIMEOUT}
    config: dict[str, Any] = {
        "broker_url": url,
        # kombu's Redis transport, with a defect that killed workers on Redis restarts absorbed.
        "broker_transport": "config.broker:Transport",
        "result_backend": url,
        # JSON only: a pickled message could run code in the worker.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # The queues a worker consumes are the worker's to declare (worker/app.py): their
        # names are the contract's (producers/contract/names.py), which config does not import.
        "task_default_queue": settings.queue,
        "task_acks_late": True,
        "worker_prefetch_multiplier": 1,
        # Safe only because every step is idempotent and fenced.
        "task_reject_on_worker_lost": True,
        "worker_deduplicate_successful_tasks": True,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "task_track_started": True,
        "result_extended": True,
        "result_expires": 24 * 3600,
        "task_soft_time_limit": settings.step_time_limit,
        "task_time_limit": settings.step_time_limit + 15,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        # Our structlog lines are already structured; do not re-wrap them as warnings.
        "worker_redirect_stdouts": False,
        "enable_utc": True,
    }
    if settings.uses_sentinel:
        # kombu's Sentinel transport (with the same close fix) and Celery's Sentinel backend
        # ask the sentinels for the primary, again after every failover.
        sentinel = {**transport, "master_name": settings.redis_sentinel_master}
        config["broker_transport"] = "config.broker:SentinelTransport"
        config["broker_transport_options"] = sentinel
        config["result_backend_transport_options"] = sentinel
    if url.startswith("rediss://"):
        import ssl

        tls: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        if settings.redis_ca_file:
            tls["ssl_ca_certs"] = settings.redis_ca_file
        config["broker_use_ssl"] = tls
        config["redis_backend_use_ssl"] = tls
    return config
