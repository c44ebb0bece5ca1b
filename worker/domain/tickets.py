"""A rate-limit ticket: a token booked ahead, held by a step that gave its worker slot back."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ticket:
    """A place in a shared bucket's line, and when it was expected to come round.

    ``position`` counts the bucket's bookings (-1: a ticket from before positions, honoured by
    its time); ``born`` names the bucket's incarnation (a key that expired and came back starts
    counting again, and every ticket of the old one has been served); ``due`` is the wall time
    (``time.time()``) the position was expected at when booked or last looked at. The place in
    line is what counts: when the bucket learns a lower rate, a ticket comes round later than
    ``due``, and its step waits again with the same ticket.
    """

    position: int
    born: int
    due: float

    def encode(self) -> str:
        """The text kept in the step's notes."""
        return f"{self.position}:{self.born}:{self.due!r}"

    @classmethod
    def decode(cls, text: str) -> Ticket:
        """The ticket ``encode`` wrote; a bare due time (an older worker's note) has no place."""
        parts = text.split(":")
        if len(parts) == 3:
            return cls(int(parts[0]), int(parts[1]), float(parts[2]))
        return cls(-1, 0, float(text))
