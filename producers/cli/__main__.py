"""``python -m producers.cli``: the same as the ``conveyor`` command."""

from producers.cli import main

main(prog_name="conveyor")
