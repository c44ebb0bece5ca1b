"""docs/configuration.md lists every setting, as the settings model defines it."""

from __future__ import annotations

from config.reference import DOC, render, settings_table
from config.settings import Settings


def test_the_reference_is_current() -> None:
    """The table in docs/configuration.md is the generated one (regenerate it with
    ``python -m config.reference --write`` after changing a setting)."""
    document = DOC.read_text()
    assert render(document) == document


def test_every_setting_is_in_the_table_with_a_meaning() -> None:
    """No setting is undocumented: each row names its variable and says what it does."""
    table = settings_table()
    for name, info in Settings.model_fields.items():
        assert info.description, f"setting {name} has no description"
    assert "`CONVEYOR_SUPERSEDE`" in table
    assert "`CONVEYOR_REDIS_CA_FILE`" in table
    assert "`AWS_REGION` or `AWS_DEFAULT_REGION`" in table
