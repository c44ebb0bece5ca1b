"""CloudFormation for the local AWS: the stacks Conveyor makes, created, updated and rolled back
the way AWS does it, and nothing Conveyor does not use.

* :mod:`.template` — template checks, parameters, Ref and Fn::GetAtt (pure);
* :mod:`.resources` — the three resource types and the in-process calls that make them;
* :mod:`.model` — the data model: stacks, their resources and events, change sets;
* :mod:`.api` — request handling: the API actions, in place of moto's stack handlers;
* :mod:`.engine` — the operations (create, update, delete, rollbacks) and their thread;
* :mod:`.changesets` — the diff a change set shows.

Nothing is imported here, so that importing the package does not load moto.
"""
