"""The local AWS: moto in server mode with ECS rollouts that move the way ECS moves them.

Entry points (each documented in its module, and in docs/localaws.md):

* ``python -m localaws [--port 0] [--rollout-seconds S] [--seed demo]``, or
  :func:`localaws.server.serve` — run it;
* :func:`localaws.testing.run_local_aws` — run it in a subprocess for tests;
* :func:`localaws.seed.seed_demo` — build the demo world on a running one.

Nothing is imported here, so that ``localaws.testing`` stays importable without moto.
"""
