"""The CLI's settings reader (config.fields.from_environ) reads what Settings reads.

`conveyor` reads its settings without pydantic-settings to start faster; these tests hold
the two readers to the same values and the same errors, for every field.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from config.fields import SettingsFields, from_environ
from config.settings import Settings

# One environment per case; together they set every field at least once, in several spellings.
CASES: list[dict[str, str]] = [
    {},
    {
        "CONVEYOR_REDIS_URL": "redis://:pw@redis.internal:6380/2",
        "CONVEYOR_REDIS_SENTINEL_MASTER": "primary",
        "CONVEYOR_REDIS_CA_FILE": "/etc/ca.pem",
        "CONVEYOR_QUEUE": "fleet-b",
        "CONVEYOR_METRICS_PORT": "9100",
        "CONVEYOR_METRICS_ADDRESS": "0.0.0.0",  # noqa: S104 -- a value, nothing listens
        "CONVEYOR_METRICS_DIR": "/tmp/m",
        "CONVEYOR_DASHBOARD_BASIC_AUTH": "ops:long-enough-password",
        "CONVEYOR_DASHBOARD_TLS_CERT": "/c.pem",
        "CONVEYOR_DASHBOARD_TLS_KEY": "/k.pem",
        "CONVEYOR_DASHBOARD_INSECURE_HTTP": "yes",
        "CONVEYOR_POLL_INTERVAL": "2.5",
        "CONVEYOR_RECOVERY_INTERVAL": "3",
        "CONVEYOR_RECOVERY_GRACE": "60",
        "CONVEYOR_STEP_TIME_LIMIT": "20",
        "CONVEYOR_AWS_CALL_TIMEOUT": "5",
        "CONVEYOR_AWS_MAX_ATTEMPTS": "3",
        "CONVEYOR_MAX_STEP_ATTEMPTS": "7",
        "CONVEYOR_RECORD_TTL_DAYS": "9",
        "CONVEYOR_SUPERSEDE": "false",
        "CONVEYOR_HISTORY_RETENTION_DAYS": "120",
        "CONVEYOR_ACTOR": "pipeline:shop#812",
        "CONVEYOR_FREEZE_FILE": "/etc/conveyor/freeze.yaml",
        "CONVEYOR_ALLOW_EVICTING_REDIS": "1",
        "CONVEYOR_REDIS_SOCKET_TIMEOUT": "4",
        "CONVEYOR_REDIS_RETRY_SECONDS": "0",
        "CONVEYOR_RATE_LIMIT": "off",
        "CONVEYOR_PROMETHEUS_URL": "https://u:pw@prometheus.internal:9090",
        "CONVEYOR_RATE_LIMIT_SCALE": "0.5",
        "CONVEYOR_RATE_LIMIT_MAX_WAIT": "1.5",
        "AWS_REGION": "eu-west-1",
        "CONVEYOR_LOG_FORMAT": "json",
        "CONVEYOR_LOG_LEVEL": "DEBUG",
    },
    # Any case of the name; the first of a field's own variables wins; unknown ones ignored.
    {"conveyor_queue": "lower", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "eu-west-1"},
    {"Conveyor_Record_Ttl_Days": "3", "AWS_DEFAULT_REGION": "eu-west-1", "CONVEYOR_NOPE": "x"},
    {"CONVEYOR_REDIS_URL": "sentinel://:pw@s1:26379/0;sentinel://s2:26379"},
    # Errors: a bad scheme, an empty number, a bad choice, a check across fields.
    {"CONVEYOR_REDIS_URL": "http://x", "CONVEYOR_METRICS_PORT": ""},
    {"CONVEYOR_LOG_FORMAT": "xml", "CONVEYOR_QUEUE": "has space", "CONVEYOR_POLL_INTERVAL": "0"},
    {"CONVEYOR_RECOVERY_GRACE": "10", "CONVEYOR_STEP_TIME_LIMIT": "30"},
    {"CONVEYOR_HISTORY_RETENTION_DAYS": "0"},
    {"CONVEYOR_SUPERSEDE": "maybe", "CONVEYOR_METRICS_PORT": "70000"},
]


def _plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _outcome(read: Any) -> Any:
    """What a reader gives: every field's value, or every error's place and message."""
    try:
        settings = read()
    except ValidationError as exc:
        return [(e["loc"], e["msg"]) for e in exc.errors(include_url=False)]
    return {name: _plain(getattr(settings, name)) for name in SettingsFields.model_fields}


@pytest.mark.parametrize("environ", CASES)
def test_from_environ_reads_what_settings_reads(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same values, or the same errors at the same places, for each environment."""
    for name in list(os.environ):
        if name.upper().startswith(("CONVEYOR_", "AWS_")):
            monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    expected = _outcome(Settings)
    assert _outcome(lambda: from_environ(dict(os.environ))) == expected
    assert _outcome(from_environ) == expected


def test_the_cases_set_every_field() -> None:
    """A new setting must get a case above (the test can fail)."""
    variables = {name.upper() for case in CASES for name in case}
    unset = [
        name
        for name, info in SettingsFields.model_fields.items()
        if f"CONVEYOR_{name.upper()}" not in variables
        and not set(getattr(info.validation_alias, "choices", ())) & variables
    ]
    assert unset == []


def test_settings_are_the_same_fields() -> None:
    """Settings adds the environment source to the fields, and nothing else."""
    assert issubclass(Settings, SettingsFields)
    assert Settings.model_fields.keys() == SettingsFields.model_fields.keys()
