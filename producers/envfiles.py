"""Environment files (``NAME=VALUE`` lines) for update jobs, release files and Fargate specs.

The format is the common one: one ``NAME=VALUE`` per line, ``#`` comments and blank lines
ignored, an optional ``export`` prefix, values optionally in single or double quotes (taken as
they are inside them). Errors name the file and the line, never a value.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


class EnvFileError(ValueError):
    """Raised when an environment file cannot be read or has a bad line."""


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of an environment file, in file order (a later line wins)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise EnvFileError(f"cannot read environment file {path}: {exc.strerror}") from exc
    found: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise EnvFileError(f"{path}:{number}: not NAME=VALUE (a name is letters, digits, '_')")
        name, value = match.group(1), match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[name] = value
    return found


def expand_env_files(data: Any, base: Path, key: str = "environment_file") -> Any:
    """Replace every ``environment_file`` key in a loaded release file or spec by the file's
    variables merged under ``environment`` (the variables written inline win), relative to
    ``base``, the directory of the file being loaded."""
    if isinstance(data, list):
        return [expand_env_files(item, base, key) for item in data]
    if not isinstance(data, dict):
        return data
    out = {k: expand_env_files(v, base, key) for k, v in data.items() if k != key}
    if key in data:
        files = data[key] if isinstance(data[key], list) else [data[key]]
        merged: dict[str, str] = {}
        for name in files:
            if not isinstance(name, str):
                raise EnvFileError(f"{key}: give a file path (or a list of them)")
            merged.update(read_env_file(base / name))
        inline = out.get("environment") or {}
        if not isinstance(inline, dict):
            raise EnvFileError("environment: give NAME: VALUE pairs")
        out["environment"] = {**merged, **inline}
    return out
