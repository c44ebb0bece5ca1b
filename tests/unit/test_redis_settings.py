"""CONVEYOR_REDIS_URL: plain, TLS and Sentinel URLs, and what is made of them."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from config.celery import celery_config
from config.settings import Settings


def settings(url: str, **extra: object) -> Settings:
    return Settings(redis_url=SecretStr(url), **extra)  # type: ignore[arg-type]


def test_sentinel_urls_are_accepted_and_printed_without_the_password() -> None:
    """Several sentinels separated by ';'; the password is masked in every part."""
    s = settings("sentinel://:s3cret@10.0.0.1:26379/2;sentinel://10.0.0.2:26379")
    assert s.uses_sentinel
    assert "s3cret" not in s.redis_display
    assert s.redis_display == "sentinel://:***@10.0.0.1:26379/2;sentinel://10.0.0.2:26379"


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("http://x:1/0", "http"),
        ("redis://a:1/0;redis://b:1/0", "redis"),
        ("sentinel://a:1;redis://b:1", "sentinel"),
        ("sentinel:///0", "needs a host"),
    ],
)
def test_bad_urls_are_refused_naming_the_setting(url: str, named: str) -> None:
    """Unknown schemes, several plain URLs, mixed schemes and a sentinel without a host."""
    with pytest.raises(ValidationError) as info:
        settings(url)
    assert "CONVEYOR_REDIS_URL" in str(info.value)
    assert named in str(info.value)
    assert "s3cret" not in str(info.value)


def test_celery_uses_the_sentinel_transport_and_the_master_name() -> None:
    """Broker and result backend both ask the sentinels for the primary named in settings."""
    config = celery_config(settings("sentinel://10.0.0.1:26379/0", redis_sentinel_master="prod"))
    assert config["broker_transport"] == "config.broker:SentinelTransport"
    assert config["broker_transport_options"]["master_name"] == "prod"
    assert config["result_backend_transport_options"]["master_name"] == "prod"
    assert config["result_backend"].startswith("sentinel://")
    plain = celery_config(settings("redis://127.0.0.1:6379/0"))
    assert plain["broker_transport"] == "config.broker:Transport"
    assert "master_name" not in plain["broker_transport_options"]


def test_the_client_of_a_sentinel_url_asks_for_the_named_primary() -> None:
    """redis_client() builds a Sentinel-managed client for the master name, db and password."""
    client = settings(
        "sentinel://:pw@10.0.0.1:26379/3;sentinel://10.0.0.2:26380", redis_sentinel_master="prod"
    ).redis_client(socket_timeout=1)
    pool = client.connection_pool
    assert pool.service_name == "prod"
    assert pool.connection_kwargs["db"] == 3
    assert pool.connection_kwargs["password"] == "pw"
    hosts = [
        (c.connection_pool.connection_kwargs["host"], c.connection_pool.connection_kwargs["port"])
        for c in pool.sentinel_manager.sentinels
    ]
    assert hosts == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]
