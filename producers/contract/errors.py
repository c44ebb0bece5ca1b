"""The root of every error that Conveyor's producer side raises to its caller.

The tree (the CLI maps each branch to an exit code, see ``producers/cli/exit_codes.py``)::

    ProducerError
    ├── ConveyorUnavailableError   producers.client: Redis or the workers cannot be reached
    ├── DeploymentNotFoundError    producers.client: no such deployment or release
    ├── DeploymentLostError        producers.client: its record is gone or unreadable
    ├── VersionRuleError           contract.versions: a version rule is malformed or matches
    │                              nothing (also a ValueError, for pydantic validators)
    ├── ImageReferenceError        contract.images: not an image reference (also a ValueError)
    ├── SpecError                  contract.fargate_spec: a spec or release file is unusable
    ├── UnreadableRecordError      contract.store: a stored record does not validate
    ├── NewerRecordError           contract.store: a record written by a newer Conveyor
    ├── EnvFileError               producers.envfiles: an env or secret file is unusable
    ├── PlanFileError              producers.planfile: a plan file is unusable or stale
    └── DashboardConfigError       producers.dashboard: the dashboard cannot serve as asked

``except ProducerError`` catches every one of them; nothing else in the producer side raises
an error of its own. The worker's errors have their own root (``worker.domain.errors``).
"""

from __future__ import annotations


class ProducerError(Exception):
    """Raised (as a subclass) for every failure the producer side reports to its caller."""


class FrozenError(ProducerError):
    """Refused: a freeze window is in force, and the job did not override it (nothing was
    enqueued). Also raised when the freeze file cannot be read."""
