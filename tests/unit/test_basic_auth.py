"""The credentials of Flower and the dashboard: every pair checked, no credential in errors."""

from __future__ import annotations

import pytest

from config.basic_auth import MIN_PASSWORD_LENGTH, BasicAuthError, parse_basic_auth

SETTING = "CONVEYOR_X_BASIC_AUTH"


def test_long_enough_passwords_pass_and_may_contain_colons() -> None:
    """A password of exactly the minimum passes; a colon belongs to the password."""
    exact = "p" * MIN_PASSWORD_LENGTH
    raw = f"ops:{exact},viewer:a:b:c-long-pass"
    assert parse_basic_auth(SETTING, raw) == [("ops", exact), ("viewer", "a:b:c-long-pass")]


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "admin:",
        "admin:" + "p" * (MIN_PASSWORD_LENGTH - 1),
        "admin",
        ":" + "p" * 20,
        "ops:correct-horse-battery,admin:",
        "ops:correct-horse-battery,admin:hunter2",
        "ops:correct-horse-battery,",
    ],
)
def test_missing_empty_or_short_passwords_are_refused_without_echoing_them(raw: str | None) -> None:
    """Each pair of a list is checked; the message names the setting, never a credential."""
    with pytest.raises(BasicAuthError) as caught:
        parse_basic_auth(SETTING, raw)
    message = str(caught.value)
    assert message.startswith(SETTING)
    for secret in ("correct-horse", "hunter2", "pppp", "admin", "ops"):
        assert secret not in message
