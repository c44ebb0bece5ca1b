"""A worker up for a day of hourly credential refreshes holds one set of clients per role."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest

from worker.aws.boto_pool import ClientPool

ROLE = "arn:aws:iam::210987654321:role/deployer"


class _Client:
    """A client with an event system that takes handlers and never fires them."""

    def __init__(self) -> None:
        self.meta = SimpleNamespace(events=SimpleNamespace(register=lambda *_, **__: None))


class CountingSession:
    """Stands in for an aiobotocore session: counts the clients opened and closed."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts
        self.region_name = "us-east-1"

    @asynccontextmanager
    async def create_client(self, name: str, **_: Any) -> AsyncIterator[object]:
        self.counts["opened"] += 1
        try:
            yield _Client()
        finally:
            self.counts["closed"] += 1


def test_a_day_of_refreshes_leaves_one_set_of_clients_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every refresh closes the clients it replaces: 24 hourly refreshes leave one set open
    (ECS, CloudFormation, ELBv2, EC2, EventBridge, CloudWatch), not 24.

    The credentials of an assumed role last an hour; each refresh used to open a set of clients
    and never close the previous one.
    """
    counts = {"opened": 0, "closed": 0}

    async def day() -> int:
        pool = ClientPool(region="us-east-1")
        clock = {"now": 0.0}

        async def assume(_: ClientPool, role: str) -> tuple[Any, float]:
            return CountingSession(counts), clock["now"] + 3600 - 300

        monkeypatch.setattr(ClientPool, "_assume", assume)
        for hour in range(24):
            clock["now"] = hour * 3600.0
            await pool.gateway(ROLE, now=clock["now"])
            await pool.gateway(ROLE, now=clock["now"] + 60)  # cached within the hour
        open_now = counts["opened"] - counts["closed"]
        await pool.close()
        return open_now

    open_during = asyncio.run(day())
    per_set = 7  # ECS, CloudFormation, ELBv2, EC2, EventBridge, CloudWatch, CloudWatch Logs
    assert open_during == per_set
    assert counts["opened"] == 24 * per_set
    assert counts["closed"] == counts["opened"]


def test_the_account_of_a_role_needs_no_call() -> None:
    """A role's account is in its ARN; no STS call is made for it."""
    assert asyncio.run(ClientPool(region="us-east-1").account_id(ROLE)) == "210987654321"
