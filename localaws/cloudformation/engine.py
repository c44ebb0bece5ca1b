"""The stack operations: create, update and delete, with their rollbacks, moved in the background.

A request handler (:mod:`.api`) checks a request, records the stack's new state and starts an
*operation* here (:meth:`StackEngine.begin_create`, ``begin_update``, ``begin_delete``): a
generator that does the work one step at a time. A background thread resumes every operation each
tick with the world lock held, so that operations, request handlers and the rollout simulator
never run at the same time. A step that waits (an ECS service that is not yet stable) yields.

States follow CloudFormation's: CREATE_IN_PROGRESS → CREATE_COMPLETE, or ROLLBACK_IN_PROGRESS →
ROLLBACK_COMPLETE; UPDATE_IN_PROGRESS → UPDATE_COMPLETE_CLEANUP_IN_PROGRESS → UPDATE_COMPLETE, or
UPDATE_ROLLBACK_IN_PROGRESS → UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS →
UPDATE_ROLLBACK_COMPLETE; DELETE_IN_PROGRESS → DELETE_COMPLETE (a failure to delete: the
matching ``*_FAILED``).

Invariants:

* a stack has at most one operation, and has one exactly while it is ``*_IN_PROGRESS`` (but
  REVIEW_IN_PROGRESS, the state of a stack that only a CREATE change set has made);
* resources are created in dependency order and deleted in the reverse order; an operation that
  fails undoes what it did: a failed create deletes every resource it made, a failed update puts
  every resource it changed back (in reverse order) and deletes the replacements it made, and the
  stack gets its previous template, parameters, tags and outputs back;
* an update touches only resources whose properties or stack tags changed, and never adds,
  removes or retypes a resource (the API refuses such updates);
* an unexpected error in one operation fails that stack visibly and never stops the others.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any

from localaws.cloudformation.model import Registry, Snapshot, Stack, StackResource, now
from localaws.cloudformation.resources import (
    RESOURCE_TYPES,
    AwsCaller,
    Physical,
    ResourceContext,
    ResourceFailed,
    WSGIApp,
    merged_tags,
)
from localaws.cloudformation.template import Evaluator, TemplateError, creation_order

logger = logging.getLogger(__name__)

TICK_SECONDS = 0.1
REPLACING = "Requested update requires the creation of a new physical resource; hence creating one."

Steps = Generator[None, None, None]


@dataclass
class _Operation:
    stack: Stack
    steps: Steps
    kind: str  # CREATE, UPDATE or DELETE


@dataclass
class _Change:
    """What an update did to one resource, for its rollback and cleanup."""

    logical_id: str
    before: Physical  # the physical resource before the update
    before_tags: list[tuple[str, str]]
    # What an in-place update was moving to; None for a replacement (a new physical resource).
    attempted: Physical | None = None


class StackEngine:
    """All stacks of one local AWS process (:attr:`registry`), and the thread that moves them."""

    def __init__(
        self, lock: threading.RLock, rollout_seconds: float, tick: float = TICK_SECONDS
    ) -> None:
        self.lock = lock
        self.rollout_seconds = rollout_seconds
        self.tick_seconds = tick
        self.caller: AwsCaller | None = None
        self.registry = Registry()
        self._operations: dict[str, _Operation] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def attach(self, app: WSGIApp) -> None:
        """Make resources through ``app`` (the WSGI application that serves moto)."""
        self.caller = AwsCaller(app)

    def start(self) -> None:
        """Start the background thread."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="localaws-cloudformation", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def reset(self) -> None:
        """Forget every stack (the resources they made are being reset with moto)."""
        for operation in self._operations.values():
            operation.steps.close()
        self._operations.clear()
        self.registry.clear()

    def active_count(self) -> int:
        """How many stack operations are in progress."""
        return len(self._operations)

    def busy(self, stack: Stack) -> bool:
        """Whether an operation of ``stack`` is in progress."""
        return stack.stack_id in self._operations

    def _run(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            with self.lock:
                self.tick()

    def tick(self) -> None:
        """Resume every operation once (caller holds the lock)."""
        for stack_id, operation in list(self._operations.items()):
            try:
                next(operation.steps)
            except StopIteration:
                self._operations.pop(stack_id, None)
                self._finish_change_sets(operation.stack)
            except Exception:
                # A bug in one operation must not stop the others: fail this stack visibly.
                logger.exception("stack operation failed on %s", operation.stack.name)
                failed = {
                    "CREATE": "CREATE_FAILED",
                    "UPDATE": "UPDATE_ROLLBACK_FAILED",
                    "DELETE": "DELETE_FAILED",
                }[operation.kind]
                operation.stack.set_status(
                    failed, "Internal failure of the local AWS (see its log)."
                )
                self._operations.pop(stack_id, None)
                self._finish_change_sets(operation.stack)

    def _finish_change_sets(self, stack: Stack) -> None:
        succeeded = stack.status in ("CREATE_COMPLETE", "UPDATE_COMPLETE")
        for change_set in self.registry.change_sets:
            if (
                change_set.stack_id == stack.stack_id
                and change_set.execution_status == "EXECUTE_IN_PROGRESS"
            ):
                change_set.execution_status = "EXECUTE_COMPLETE" if succeeded else "EXECUTE_FAILED"

    # -- starting operations (the API has checked the request) ------------------------------------

    def begin_create(self, stack: Stack) -> None:
        """CREATE_IN_PROGRESS, and create the resources in the background."""
        stack.set_status("CREATE_IN_PROGRESS", "User Initiated")
        self._operations[stack.stack_id] = _Operation(stack, self._create(stack), "CREATE")

    def begin_update(self, stack: Stack, update: Snapshot, token: str | None) -> None:
        """Take the update's template, parameters and tags; UPDATE_IN_PROGRESS; update."""
        previous = stack.snapshot()
        stack.restore(update)
        stack.outputs = previous.outputs  # until the update completes
        stack.token = token
        stack.last_updated = now()
        stack.set_status("UPDATE_IN_PROGRESS", "User Initiated")
        self._operations[stack.stack_id] = _Operation(
            stack, self._update(stack, previous), "UPDATE"
        )

    def begin_delete(self, stack: Stack, token: str | None) -> None:
        """DELETE_IN_PROGRESS, and delete the resources; a creation in progress stops."""
        operation = self._operations.get(stack.stack_id)
        if operation is not None:
            operation.steps.close()
        stack.token = token
        stack.set_status("DELETE_IN_PROGRESS", "User Initiated")
        self._operations[stack.stack_id] = _Operation(stack, self._delete(stack), "DELETE")

    # -- operations ------------------------------------------------------------------------------

    def _create(self, stack: Stack) -> Steps:
        evaluator = self._evaluator(stack)
        resources = stack.template["Resources"]
        failed: str | None = None
        try:
            for logical_id in creation_order(resources):
                failed = logical_id
                definition = resources[logical_id]
                yield from self._create_resource(stack, logical_id, definition, evaluator)
                failed = None
                yield
            stack.outputs = self._outputs(stack, evaluator)
        except (ResourceFailed, TemplateError) as failure:
            if failed is None:
                reason = str(failure)
            else:
                reason = f"The following resource(s) failed to create: [{failed}]. "
            stack.set_status("ROLLBACK_IN_PROGRESS", reason + "Rollback requested by user.")
            yield
            for resource in self._deletion_order(stack):
                if resource.physical is None:
                    stack.resource_event(resource, "DELETE_COMPLETE")
                    continue
                try:
                    yield from self._delete_resource(stack, resource, resource.physical)
                except ResourceFailed:
                    stack.set_status(
                        "ROLLBACK_FAILED",
                        f"The following resource(s) failed to delete: [{resource.logical_id}]. ",
                    )
                    return
            stack.set_status("ROLLBACK_COMPLETE")
            return
        stack.set_status("CREATE_COMPLETE")

    def _update(self, stack: Stack, previous: Snapshot) -> Steps:
        evaluator = self._evaluator(stack)
        resources = stack.template["Resources"]
        changes: list[_Change] = []
        failed: str | None = None
        try:
            for logical_id in creation_order(resources):
                failed = logical_id
                change = yield from self._update_resource(
                    stack, stack.resources[logical_id], resources[logical_id], evaluator, changes
                )
                if change is not None:
                    yield
                failed = None
        except ResourceFailed as failure:
            if failed is None:
                reason = str(failure)
            else:
                reason = f"The following resource(s) failed to update: [{failed}]. "
            yield from self._rollback_update(stack, previous, changes, reason)
            return
        stack.set_status("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS")
        yield
        for change in reversed(changes):
            if change.attempted is None:
                # AWS leaves a resource it fails to clean up behind, with a DELETE_FAILED event;
                # the update stands.
                with contextlib.suppress(ResourceFailed):
                    yield from self._delete_resource(
                        stack, stack.resources[change.logical_id], change.before, keep_status=True
                    )
        stack.outputs = self._outputs(stack, evaluator)
        stack.set_status("UPDATE_COMPLETE")

    def _update_resource(
        self,
        stack: Stack,
        resource: StackResource,
        definition: Mapping[str, Any],
        evaluator: Evaluator,
        changes: list[_Change],
    ) -> Generator[None, None, _Change | None]:
        """Update one resource if its properties or stack tags changed; record the change."""
        handler = RESOURCE_TYPES[resource.resource_type]
        before = resource.physical
        assert before is not None
        logical_id = resource.logical_id
        try:
            properties = self._properties(evaluator, logical_id, definition)
        except ResourceFailed as failure:
            stack.resource_event(resource, "UPDATE_FAILED", str(failure))
            raise
        if properties == before.properties and resource.stack_tags == stack.tags:
            return None
        change = _Change(logical_id, before, list(resource.stack_tags))
        if handler.needs_replacement(before, properties):
            stack.resource_event(resource, "UPDATE_IN_PROGRESS", REPLACING)

            def created(physical: Physical) -> None:
                resource.physical = physical
                changes.append(change)
                stack.resource_event(resource, "UPDATE_IN_PROGRESS", "Resource creation Initiated")

            steps = handler.create(self._context(stack, logical_id, created), properties)
        else:
            change.attempted = Physical(
                before.physical_id,
                before.ref,
                before.attributes,
                properties,
                merged_tags(properties.get("Tags"), stack.tags),
                before.state,
            )
            # Recorded before the handler runs: a failed in-place update may have changed the
            # resource already and must be reverted too.
            changes.append(change)
            stack.resource_event(resource, "UPDATE_IN_PROGRESS")
            steps = handler.update(self._context(stack, logical_id), before, properties)
        try:
            physical = yield from steps
        except ResourceFailed as failure:
            stack.resource_event(resource, "UPDATE_FAILED", str(failure))
            raise
        resource.physical = physical
        resource.stack_tags = list(stack.tags)
        stack.resource_event(resource, "UPDATE_COMPLETE")
        return change

    def _rollback_update(
        self, stack: Stack, previous: Snapshot, changes: list[_Change], reason: str
    ) -> Steps:
        stack.set_status("UPDATE_ROLLBACK_IN_PROGRESS", reason)
        stack.restore(previous)
        yield
        replacements: list[tuple[StackResource, Physical]] = []
        for change in reversed(changes):
            resource = stack.resources[change.logical_id]
            if change.attempted is None:
                newer = resource.physical
                stack.resource_event(resource, "UPDATE_IN_PROGRESS")
                resource.physical, resource.stack_tags = change.before, change.before_tags
                stack.resource_event(resource, "UPDATE_COMPLETE")
                if newer is not None and newer is not change.before:
                    replacements.append((resource, newer))
                continue
            handler = RESOURCE_TYPES[resource.resource_type]
            stack.resource_event(resource, "UPDATE_IN_PROGRESS")
            try:
                reverted = yield from handler.update(
                    self._context(stack, resource.logical_id, stack_tags=change.before_tags),
                    change.attempted,
                    change.before.properties,
                )
            except ResourceFailed as failure:
                stack.resource_event(resource, "UPDATE_FAILED", str(failure))
                stack.set_status(
                    "UPDATE_ROLLBACK_FAILED",
                    f"The following resource(s) failed to update: [{resource.logical_id}]. ",
                )
                return
            resource.physical, resource.stack_tags = reverted, change.before_tags
            stack.resource_event(resource, "UPDATE_COMPLETE")
            yield
        stack.set_status("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS")
        yield
        for resource, physical in replacements:
            with contextlib.suppress(ResourceFailed):
                yield from self._delete_resource(stack, resource, physical, keep_status=True)
        stack.set_status("UPDATE_ROLLBACK_COMPLETE")

    def _delete(self, stack: Stack) -> Steps:
        definitions = stack.template["Resources"]
        for resource in self._deletion_order(stack):
            if resource.status == "DELETE_COMPLETE":
                continue
            retain = definitions[resource.logical_id].get("DeletionPolicy") == "Retain"
            if retain and resource.physical is not None:
                stack.resource_event(resource, "DELETE_SKIPPED")
                continue
            if resource.physical is None:
                stack.resource_event(resource, "DELETE_COMPLETE")
                continue
            try:
                yield from self._delete_resource(stack, resource, resource.physical)
            except ResourceFailed:
                stack.set_status(
                    "DELETE_FAILED",
                    f"The following resource(s) failed to delete: [{resource.logical_id}]. ",
                )
                return
            yield
        stack.set_status("DELETE_COMPLETE")

    # -- steps of operations ---------------------------------------------------------------------

    def _create_resource(
        self, stack: Stack, logical_id: str, definition: Mapping[str, Any], evaluator: Evaluator
    ) -> Steps:
        resource = StackResource(logical_id, str(definition["Type"]), stack_tags=list(stack.tags))
        stack.resources[logical_id] = resource
        handler = RESOURCE_TYPES[resource.resource_type]
        stack.resource_event(resource, "CREATE_IN_PROGRESS")
        try:
            properties = self._properties(evaluator, logical_id, definition)

            def created(physical: Physical) -> None:
                resource.physical = physical
                stack.resource_event(resource, "CREATE_IN_PROGRESS", "Resource creation Initiated")

            physical = yield from handler.create(
                self._context(stack, logical_id, created), properties
            )
        except ResourceFailed as failure:
            stack.resource_event(resource, "CREATE_FAILED", str(failure))
            raise
        resource.physical = physical
        stack.resource_event(resource, "CREATE_COMPLETE")

    def _delete_resource(
        self,
        stack: Stack,
        resource: StackResource,
        physical: Physical,
        *,
        keep_status: bool = False,
    ) -> Steps:
        """Delete one physical resource with its two events.

        ``keep_status``: an old physical resource of a replaced resource; the resource itself
        keeps its status (the events name the old physical id).
        """
        physical_id = physical.physical_id if keep_status else None
        stack.resource_event(resource, "DELETE_IN_PROGRESS", physical_id=physical_id)
        try:
            yield from RESOURCE_TYPES[resource.resource_type].delete(
                self._context(stack, resource.logical_id), physical
            )
        except ResourceFailed as failure:
            stack.resource_event(resource, "DELETE_FAILED", str(failure), physical_id=physical_id)
            raise
        stack.resource_event(resource, "DELETE_COMPLETE", physical_id=physical_id)

    @staticmethod
    def _deletion_order(stack: Stack) -> list[StackResource]:
        """The stack's resources, dependents first."""
        order = reversed(creation_order(stack.template["Resources"]))
        return [stack.resources[name] for name in order if name in stack.resources]

    @staticmethod
    def _evaluator(stack: Stack) -> Evaluator:
        def made(name: str, error: str) -> tuple[StackResource, Physical]:
            resource = stack.resources.get(name)
            if resource is None or resource.physical is None:
                raise TemplateError(error)
            return resource, resource.physical

        def ref(name: str) -> Any:
            _, physical = made(
                name,
                f"Template format error: Unresolved resource dependencies [{name}] in the "
                "Resources block of the template",
            )
            return physical.ref

        def get_att(name: str, attribute: str) -> Any:
            resource, physical = made(
                name, f"Template error: instance of Fn::GetAtt references undefined resource {name}"
            )
            return RESOURCE_TYPES[resource.resource_type].get_att(physical, attribute)

        return Evaluator({**stack.pseudo, **stack.resolved}, ref, get_att)

    def _context(
        self,
        stack: Stack,
        logical_id: str,
        on_created: Callable[[Physical], None] | None = None,
        stack_tags: list[tuple[str, str]] | None = None,
    ) -> ResourceContext:
        if self.caller is None:
            raise RuntimeError("StackEngine.attach() was not called")
        context = ResourceContext(
            caller=self.caller,
            account=stack.account,
            region=stack.region,
            stack_name=stack.name,
            logical_id=logical_id,
            stack_tags=list(stack.tags if stack_tags is None else stack_tags),
            rollout_seconds=self.rollout_seconds,
        )
        if on_created is not None:
            context.on_created = on_created
        return context

    @staticmethod
    def _properties(
        evaluator: Evaluator, logical_id: str, definition: Mapping[str, Any]
    ) -> dict[str, Any]:
        try:
            value = evaluator.value(definition.get("Properties") or {})
        except TemplateError as exc:
            raise ResourceFailed(str(exc)) from exc
        if not isinstance(value, dict):
            raise ResourceFailed(
                f"Properties validation failed for resource {logical_id} with message: "
                "[#: expected type: JSONObject]"
            )
        return value

    @staticmethod
    def _outputs(stack: Stack, evaluator: Evaluator) -> list[dict[str, Any]]:
        outputs = []
        for key, body in (stack.template.get("Outputs") or {}).items():
            value = evaluator.value(body["Value"])
            text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            outputs.append({"OutputKey": key, "OutputValue": text})
        return outputs
