"""The queue's messages are defined once: what one side sends, the other parses back, and
anything else put on the queue is refused with the reason the worker logs."""

from __future__ import annotations

from typing import Any

import pytest

from producers.contract.dispatch import dispatch
from producers.contract.enums import Step
from producers.contract.messages import (
    CleanupMessage,
    MalformedMessageError,
    PlanMessage,
    StepMessage,
)
from producers.contract.names import STEP_TASKS, TASK_CLEANUP, TASK_PLAN


class Recorder:
    """A task sender that keeps what it was given."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, dict[str, Any]]] = []

    def send_task(self, name: str, args: Any = (), **options: Any) -> None:
        """Keep the message."""
        self.sent.append((name, args, options))


def test_each_message_parses_back_what_it_sends() -> None:
    """The wire form is positional JSON, as every version of Conveyor sends it."""
    step = StepMessage("d1", 3)
    assert step.args() == ["d1", 3]
    assert StepMessage.parse(step.args(), {}) == step
    plan = PlanMessage("p" * 32)
    assert (plan.TASK, plan.args()) == (TASK_PLAN, ["p" * 32])
    assert PlanMessage.parse(plan.args(), {}) == plan
    cleanup = CleanupMessage("web", 5, "arn:aws:iam::123456789012:role/deploy")
    assert (cleanup.TASK, cleanup.args()[-1]) == (TASK_CLEANUP, 0)
    assert CleanupMessage.parse(cleanup.args(), {}) == cleanup
    assert CleanupMessage.parse(cleanup.again().args(), {}).tries == 1


def test_dispatch_sends_the_step_message() -> None:
    """A step goes by its task name, with the step message's arguments."""
    sender = Recorder()
    dispatch(sender, "d1", Step.WATCH, 7, queue="fleet")
    ((name, args, options),) = sender.sent
    assert (name, args, options["queue"]) == (STEP_TASKS[Step.WATCH], ["d1", 7], "fleet.watch")


@pytest.mark.parametrize(
    ("args", "kwargs", "reason"),
    [
        (["d1"], {}, "expected arguments"),
        (["d1", "1"], {}, "expected arguments"),
        (["d1", True], {}, "expected arguments"),  # JSON true is not a seq
        ([1, 1], {}, "expected arguments"),
        (["d1", 1], {"x": 1}, "expected arguments"),
        (["", 1], {}, "bad deployment id"),
        (["d" * 129, 1], {}, "bad deployment id"),
    ],
)
def test_a_malformed_step_message_is_refused(
    args: list[Any], kwargs: dict[str, Any], reason: str
) -> None:
    """Wrong arguments never reach a step."""
    with pytest.raises(MalformedMessageError, match=reason):
        StepMessage.parse(args, kwargs)


@pytest.mark.parametrize(
    "args",
    [
        [],
        [""],
        ["p" * 65],
        [None],
        ["p", "q"],
    ],
)
def test_a_malformed_plan_message_is_refused(args: list[Any]) -> None:
    """A plan id is a short string, alone."""
    with pytest.raises(MalformedMessageError, match=r"\[plan_id\]"):
        PlanMessage.parse(args, {})


@pytest.mark.parametrize(
    "args",
    [
        ["web", 5, None],
        ["", 5, None, 0],
        ["w" * 256, 5, None, 0],
        ["web", 0, None, 0],
        ["web", True, None, 0],
        ["web", 5, 7, 0],
        ["web", 5, None, "0"],
    ],
)
def test_a_malformed_cleanup_message_is_refused(args: list[Any]) -> None:
    """A cleanup names a family, how many revisions to keep (at least one), a role or None,
    and its tries."""
    with pytest.raises(MalformedMessageError, match="family, keep, role, tries"):
        CleanupMessage.parse(args, {})
    with pytest.raises(MalformedMessageError):
        CleanupMessage.parse(["web", 5, None, 0], {"keep": 1})
