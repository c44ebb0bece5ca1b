"""Every error the producer side raises to its caller shares one root, ProducerError."""

from __future__ import annotations

import pytest

from producers.client import (
    ConveyorUnavailableError,
    DeploymentLostError,
    DeploymentNotFoundError,
)
from producers.contract.errors import ProducerError
from producers.contract.fargate_spec import SpecError
from producers.contract.images import ImageReferenceError
from producers.contract.versions import VersionRuleError
from producers.dashboard import DashboardConfigError
from producers.envfiles import EnvFileError
from producers.planfile import PlanFileError

ERRORS = [
    ConveyorUnavailableError,
    DeploymentNotFoundError,
    DeploymentLostError,
    VersionRuleError,
    ImageReferenceError,
    SpecError,
    EnvFileError,
    PlanFileError,
    DashboardConfigError,
]


@pytest.mark.parametrize("error", ERRORS)
def test_one_except_catches_every_producer_error(error: type[Exception]) -> None:
    """`except ProducerError` catches each of them, with its message intact."""
    with pytest.raises(ProducerError, match="why"):
        raise error("why")


@pytest.mark.parametrize(
    "error", [VersionRuleError, ImageReferenceError, SpecError, EnvFileError, PlanFileError]
)
def test_input_errors_stay_value_errors(error: type[Exception]) -> None:
    """Pydantic validators turn a ValueError into a field error: the input errors stay one."""
    assert issubclass(error, ValueError)


def test_the_tree_in_the_docstring_names_every_error() -> None:
    """The module docstring draws the tree; a new error must be added to it."""
    import producers.contract.errors as errors

    for error in ERRORS:
        assert error.__name__ in (errors.__doc__ or "")
