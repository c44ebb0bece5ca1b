"""Conveyor's settings, read from the environment (prefix ``CONVEYOR_``).

Built once at each entry point (CLI, worker) and passed down: nothing below ``config/`` reads
the environment. The AWS endpoint, region and credentials follow the SDK's own conventions
(``AWS_ENDPOINT_URL``, ``AWS_REGION``/``AWS_DEFAULT_REGION``, the credential chain), so that
pointing Conveyor at the local AWS or at real AWS is configuration only.

The fields themselves are :class:`config.fields.SettingsFields`; the ``conveyor`` command reads
them without pydantic-settings (:func:`config.fields.from_environ`).
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from config.fields import ENV_PREFIX, SettingsFields, redact_url

__all__ = ["Settings", "redact_url"]


class Settings(BaseSettings, SettingsFields):
    """Every setting Conveyor has; see docs/configuration.md."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")
