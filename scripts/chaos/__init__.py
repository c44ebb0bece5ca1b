"""`make chaos SEED=N MINUTES=M`: a seeded fault campaign checked against invariants.

`schedule` draws the campaign from the seed (pure), `runner` plays it against real processes
and records a history, and `checker` (pure) verifies the invariants on that history.
"""
