"""The messages Conveyor puts on the queue, typed, defined once for both sides.

On the wire each is a Celery task message with positional JSON arguments (``args()``), the
form every version of Conveyor sends and reads; the task name says which message it is. A
receiver rebuilds the message with ``parse``, which trusts nothing: a message put on the queue
by hand with the wrong arguments raises MalformedMessageError, and the worker drops it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from producers.contract.ids import is_release_id
from producers.contract.names import (
    TASK_CLEANUP,
    TASK_PLAN,
    TASK_RELEASE_ADVANCE,
    TASK_RELEASE_GATE,
)

# The longest deployment id a step message may carry (ids are 32 hex characters).
MAX_DEPLOYMENT_ID = 128
# The longest plan id (32 hex characters) and task definition family (ECS: 255).
MAX_PLAN_ID = 64
MAX_FAMILY = 255


class MalformedMessageError(ValueError):
    """Raised when a message's arguments are not those of its task."""

    def __init__(self, reason: str, *, log_event: str) -> None:
        super().__init__(reason)
        self.reason = reason
        # What the worker logs when it drops the message.
        self.log_event = log_event


def _no_keywords(kwargs: Mapping[str, Any], expected: str, what: str) -> None:
    if kwargs:
        raise MalformedMessageError(expected, log_event=f"malformed {what} message dropped")


@dataclass(frozen=True, slots=True)
class StepMessage:
    """Run the step the task name says of deployment ``deployment_id``, fenced by ``seq``."""

    deployment_id: str
    seq: int

    def args(self) -> list[Any]:
        """The message's positional arguments on the wire."""
        return [self.deployment_id, self.seq]

    @classmethod
    def parse(cls, args: Sequence[Any], kwargs: Mapping[str, Any]) -> StepMessage:
        """The message these task arguments carry; MalformedMessageError otherwise."""
        expected = "expected arguments [deployment_id, seq]"
        _no_keywords(kwargs, expected, "step")
        if len(args) != 2 or not isinstance(args[0], str) or type(args[1]) is not int:
            raise MalformedMessageError(expected, log_event="malformed step message dropped")
        deployment_id, seq = args
        if not deployment_id or len(deployment_id) > MAX_DEPLOYMENT_ID:
            raise MalformedMessageError(
                "bad deployment id", log_event="malformed deployment id dropped"
            )
        return cls(deployment_id, seq)


@dataclass(frozen=True, slots=True)
class PlanMessage:
    """Compute the plan of the job a producer left under the plan key of ``plan_id``."""

    plan_id: str

    TASK: ClassVar[str] = TASK_PLAN

    def args(self) -> list[Any]:
        """The message's positional arguments on the wire."""
        return [self.plan_id]

    @classmethod
    def parse(cls, args: Sequence[Any], kwargs: Mapping[str, Any]) -> PlanMessage:
        """The message these task arguments carry; MalformedMessageError otherwise."""
        expected = "expected arguments [plan_id]"
        _no_keywords(kwargs, expected, "plan")
        if len(args) != 1 or not isinstance(args[0], str) or not 0 < len(args[0]) <= MAX_PLAN_ID:
            raise MalformedMessageError(expected, log_event="malformed plan message dropped")
        return cls(args[0])


@dataclass(frozen=True, slots=True)
class GateMessage:
    """Take measurement ``index`` of the gate of wave ``wave`` of release ``release_id``.

    The index fences the message: once that measurement is recorded, a copy of the message
    (redelivered, or re-sent by the sweeper) finds a later index and is dropped.
    """

    release_id: str
    wave: int
    index: int

    TASK: ClassVar[str] = TASK_RELEASE_GATE

    def args(self) -> list[Any]:
        """The message's positional arguments on the wire."""
        return [self.release_id, self.wave, self.index]

    @classmethod
    def parse(cls, args: Sequence[Any], kwargs: Mapping[str, Any]) -> GateMessage:
        """The message these task arguments carry; MalformedMessageError otherwise."""
        expected = "expected arguments [release_id, wave, index]"
        _no_keywords(kwargs, expected, "gate")
        if (
            len(args) != 3
            or not isinstance(args[0], str)
            or not is_release_id(args[0])
            or type(args[1]) is not int
            or type(args[2]) is not int
            or args[1] < 0
            or args[2] < 0
        ):
            raise MalformedMessageError(expected, log_event="malformed gate message dropped")
        return cls(args[0], args[1], args[2])


@dataclass(frozen=True, slots=True)
class AdvanceMessage:
    """Move release ``release_id`` on now: a producer recorded an answer or a cancel request.

    Only a worker advances a release. A producer that changed one sends this so that the
    change takes effect at once; an advance is safe to repeat, so a copy changes nothing, and
    the sweeper advances every active release, so a message lost on the way (or dropped as
    unknown by a worker of an earlier Conveyor) only delays the advance by a sweep.
    """

    release_id: str

    TASK: ClassVar[str] = TASK_RELEASE_ADVANCE

    def args(self) -> list[Any]:
        """The message's positional arguments on the wire."""
        return [self.release_id]

    @classmethod
    def parse(cls, args: Sequence[Any], kwargs: Mapping[str, Any]) -> AdvanceMessage:
        """The message these task arguments carry; MalformedMessageError otherwise."""
        expected = "expected arguments [release_id]"
        _no_keywords(kwargs, expected, "release advance")
        if len(args) != 1 or not isinstance(args[0], str) or not is_release_id(args[0]):
            raise MalformedMessageError(
                expected, log_event="malformed release advance message dropped"
            )
        return cls(args[0])


@dataclass(frozen=True, slots=True)
class CleanupMessage:
    """Deregister the old revisions of ``family`` beyond the newest ``keep``, with the
    credentials of ``role`` (None: the workers' own); ``tries`` counts earlier attempts."""

    family: str
    keep: int
    role: str | None = None
    tries: int = 0

    TASK: ClassVar[str] = TASK_CLEANUP

    def args(self) -> list[Any]:
        """The message's positional arguments on the wire."""
        return [self.family, self.keep, self.role, self.tries]

    def again(self) -> CleanupMessage:
        """The same cleanup, tried once more."""
        return CleanupMessage(self.family, self.keep, self.role, self.tries + 1)

    @classmethod
    def parse(cls, args: Sequence[Any], kwargs: Mapping[str, Any]) -> CleanupMessage:
        """The message these task arguments carry; MalformedMessageError otherwise."""
        expected = "expected arguments [family, keep, role, tries]"
        _no_keywords(kwargs, expected, "cleanup")
        if (
            len(args) != 4
            or not isinstance(args[0], str)
            or not 0 < len(args[0]) <= MAX_FAMILY
            or type(args[1]) is not int
            or args[1] < 1
            or not (args[2] is None or isinstance(args[2], str))
            or type(args[3]) is not int
        ):
            raise MalformedMessageError(expected, log_event="malformed cleanup message dropped")
        family, keep, role, tries = args
        return cls(family, keep, role, tries)
