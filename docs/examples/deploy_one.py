"""Deploy one service from Python and act on the verdict.

CONVEYOR_REDIS_URL=redis://127.0.0.1:6379/0 python docs/examples/deploy_one.py demo web web :1.1.0
"""

from __future__ import annotations

import sys

from config.settings import Settings
from producers.client import ConveyorClient
from producers.contract.jobs import ImageUpdate, UpdateServiceJob


def main(cluster: str, service: str, container: str, image: str) -> int:
    """Enqueue one update, print progress while it runs, return 0 only if it succeeded."""
    client = ConveyorClient(Settings())
    record = client.enqueue(
        UpdateServiceJob(
            cluster=cluster,
            service=service,
            images=(ImageUpdate(container=container, image=image),),
        )
    )
    print(f"enqueued {record.id}")
    final = client.wait(
        record.id,
        timeout=1800,
        on_progress=lambda r: print(
            f"  {r.state.value} {r.step.value} {r.progress.running}/{r.progress.desired}"
        ),
    )
    print(f"{final.state.value}: {final.reason}")
    return 0 if final.state.value == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
