"""What every flow is: one step of a deployment of its kind, run against a gateway.

Each job kind has one flow (``update_flow.py``, ``fargate_flow.py``); :mod:`worker.kinds` says
which, and :func:`worker.steps.execute` runs it. A flow never decides what happens after a
failure or a cancel: those are the kind's policies in :mod:`worker.kinds`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from producers.contract.enums import JobKind, Step
from producers.contract.records import DeploymentRecord
from worker.domain.errors import InvalidJobError
from worker.services.transitions import Transition


class Flow(Protocol):
    """Runs the steps of one kind of deployment."""

    async def run(
        self,
        record: DeploymentRecord,
        payload: dict[str, Any] | None = None,
        *,
        rerun: bool = True,
    ) -> Transition:
        """Run the record's current step; ``payload`` is the full job when stored apart.

        ``rerun`` False says the step never acted before (a flow may skip looking for what an
        earlier attempt did). A step that is not one of the kind's raises InvalidJobError.
        """
        ...


H = TypeVar("H", bound=Callable[..., Awaitable[Transition]])


def handler_for(handlers: Mapping[Step, H], record: DeploymentRecord, kind: JobKind) -> H:
    """The handler of the record's step; InvalidJobError when the kind has no such step.

    A record at a step its kind does not have was written by another version or edited by
    hand: the deployment cannot go on, and every flow says so the same way.
    """
    handler = handlers.get(record.step)
    if handler is None:
        steps = ", ".join(s.value for s in handlers)
        raise InvalidJobError(
            f"step {record.step.value!r} is not a step of the job kind {kind.value!r} (its "
            f"steps: {steps}); the record was written by another version or edited by hand"
        )
    return handler
