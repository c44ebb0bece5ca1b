"""List the deployments that failed or were rolled back lately, as `conveyor list` would.

CONVEYOR_REDIS_URL=redis://127.0.0.1:6379/0 python docs/examples/recent_failures.py
"""

from __future__ import annotations

from config.settings import Settings
from producers.client import ConveyorClient


def main() -> int:
    """Print one line per recent failed or rolled-back deployment; return how many."""
    client = ConveyorClient(Settings())
    failed = client.list_deployments(states=("failed", "rolled_back"), limit=50)
    for record in failed:
        print(
            f"{record.id}  {record.cluster}/{record.service}  {record.state.value}  {record.reason}"
        )
    return len(failed)


if __name__ == "__main__":
    print(f"{main()} failed")
