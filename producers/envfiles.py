"""Environment files (``NAME=VALUE`` lines) for update jobs, release files and Fargate specs.

The format is the one docker compose and most ``.env`` tooling read, parsed by python-dotenv:
one ``NAME=VALUE`` per line, ``#`` comments (whole lines, or after whitespace on an unquoted
value), blank lines, an optional ``export`` prefix, values in single quotes (literal) or double
quotes (``\\n`` and the other usual escapes decoded; a quoted value may span lines).

Values are taken literally: ``${OTHER}`` stays ``${OTHER}``. Expanding it would read this
machine's environment into a deployment, and a ``$`` inside a password or a secret reference
would be silently changed.

What the parser cannot read is refused, never guessed at: a line without ``=``, an unterminated
quote, a name that is not letters, digits and ``_``. Errors name the file and the line, never a
value or the text of the line (which may be part of a secret).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from dotenv.parser import Binding, parse_stream

from producers.contract.errors import ProducerError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NEWLINE = re.compile(r"\r\n|\n|\r")

# Key in a release file or a Fargate spec -> (the key its variables merge under, what a line holds).
FILE_KEYS: dict[str, tuple[str, str]] = {
    "environment_file": ("environment", "NAME=VALUE"),
    "secrets_file": ("secrets", "NAME=REFERENCE"),
}


class EnvFileError(ProducerError, ValueError):
    """Raised when an environment file cannot be read or has a line that cannot be parsed."""


def _first_line(binding: Binding) -> int:
    """The line a binding's statement starts on: python-dotenv marks the statement where the
    blank lines and whitespace before it begin."""
    text = binding.original.string
    leading = text[: len(text) - len(text.lstrip())]
    return binding.original.line + len(_NEWLINE.findall(leading))


def read_env_file(path: Path, *, line_holds: str = "NAME=VALUE") -> dict[str, str]:
    """The variables of an environment file, in file order (a later line wins).

    ``line_holds`` names what a line should be, for the error message (``NAME=REFERENCE`` for
    a secrets file). Raises EnvFileError naming the file and line of the first statement that
    cannot be read.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise EnvFileError(f"cannot read environment file {path}: it is not UTF-8 text") from None
    except OSError as exc:
        raise EnvFileError(f"cannot read environment file {path}: {exc.strerror}") from exc
    found: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            problem = (
                "cannot be parsed: is a quote left open, or is there text after a closing "
                "quote? Quote a value that holds spaces, '#' or line breaks"
            )
        elif binding.key is None:
            continue  # a comment or blank lines
        elif binding.value is None:
            problem = f"no '=': give {line_holds}"
        elif not _NAME.fullmatch(binding.key):
            # The name is not shown: a line that is not what its author meant (the second
            # line of an unquoted multi-line value, say) may be part of a secret.
            problem = (
                "the name is not letters, digits and '_' (not starting with a digit); "
                "a value that spans lines must be quoted"
            )
        else:
            found[binding.key] = binding.value
            continue
        raise EnvFileError(f"{path}:{_first_line(binding)}: {problem}")
    return found


def expand_env_files(data: Any, base: Path) -> Any:
    """Replace every ``environment_file`` and ``secrets_file`` key in a loaded release file or
    spec by the file's variables, merged under ``environment`` or ``secrets`` (those written
    inline win), relative to ``base``, the directory of the file being loaded.

    A secrets file holds ``NAME=REFERENCE`` lines (a Secrets Manager ARN or an SSM parameter),
    in the environment file format."""
    if isinstance(data, list):
        return [expand_env_files(item, base) for item in data]
    if not isinstance(data, dict):
        return data
    out = {k: expand_env_files(v, base) for k, v in data.items() if k not in FILE_KEYS}
    for key, (target, line_holds) in FILE_KEYS.items():
        if key not in data:
            continue
        files = data[key] if isinstance(data[key], list) else [data[key]]
        merged: dict[str, str] = {}
        for name in files:
            if not isinstance(name, str):
                raise EnvFileError(f"{key}: give a file path (or a list of them)")
            merged.update(read_env_file(base / name, line_holds=line_holds))
        inline = out.get(target) or {}
        if not isinstance(inline, dict):
            raise EnvFileError(f"{target}: give NAME: VALUE pairs")
        if data.get("mode") == "replace" and not merged and not inline:
            # Replace leaves a kind with nothing given as it is, so an empty file would not
            # empty the container's list, as its author may expect.
            raise EnvFileError(
                f"{key}: no variables in {', '.join(map(str, files))}, and mode replace "
                f"replaces only a kind that is given; give the {target} to keep, or use append"
            )
        out[target] = {**merged, **inline}
    return out
