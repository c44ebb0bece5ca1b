"""In-memory stand-ins for what Conveyor talks to, used by the tests only."""
