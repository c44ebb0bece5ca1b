"""``python -m scripts.readme_exit_codes``: write README.md's exit-code table from the enum.

``tests/unit/test_cli_exit_codes.py`` fails while the README's table differs from
``producers.cli.exit_codes.render_table()``; this puts the rendered table in its place.
"""

from __future__ import annotations

import sys
from pathlib import Path

from producers.cli.exit_codes import readme_block, render_table

README = Path(__file__).resolve().parents[1] / "README.md"


def main() -> int:
    """Replace the block between the README's exit-code markers; 1 when they are missing."""
    text = README.read_text()
    old = readme_block(text)
    if old is None:
        print(f"{README}: the exit-code markers are missing", file=sys.stderr)
        return 1
    README.write_text(text.replace(old, render_table()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
