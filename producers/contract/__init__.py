"""The contract between producers and workers: what crosses Redis, and nothing else.

Both sides import this package; it imports neither of them (only pydantic, PyYAML and
redis-py). It holds:

* the jobs: :mod:`.jobs` (update-existing), :mod:`.fargate_spec` (create-Fargate),
  :mod:`.releases` (many services in waves), with :mod:`.images` and :mod:`.patterns`;
* the deployment record (:mod:`.records`) and its Redis store (:mod:`.store`), the release
  record's store as producers use it (:mod:`.release_store`: create, read, cancel, answer;
  moving a release on is the workers'), and worker heartbeats (:mod:`.workers`);
* the enumerations (:mod:`.enums`), task names and Redis keys (:mod:`.names`), and the root
  of the producer side's errors (:mod:`.errors`);
* sending a step message (:mod:`.dispatch`, with the Celery-free ``RedisTaskSender``);
* the pure template renderer of Fargate specs (:mod:`.stack_template`).

See docs/architecture.md.
"""
