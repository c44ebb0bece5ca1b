"""The contract between producers and workers: what crosses Redis, and nothing else.

Both sides import this package; it imports neither of them (only pydantic, PyYAML and
redis-py). It holds the job models (:mod:`.jobs`, :mod:`.fargate_spec`), image references
(:mod:`.images`), the deployment record (:mod:`.records`) and its Redis store (:mod:`.store`),
the enumerations (:mod:`.enums`), task names and Redis keys (:mod:`.names`), and the sending of
a step message (:mod:`.dispatch`). See docs/architecture.md.
"""
