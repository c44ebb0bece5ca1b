"""CloudFormation for the local AWS: stacks that create ECS resources the way AWS does.

* :mod:`.template` — templates, parameters, conditions and intrinsic functions (pure);
* :mod:`.resources` — the resource types and the in-process calls that make them;
* :mod:`.engine` — stacks, their events and states, moved by a background thread;
* :mod:`.api` — the API actions, in place of moto's stack handlers.

Nothing is imported here, so that importing the package does not load moto.
"""
