"""Deploy a release (two waves) from Python, and print one line per service.

CONVEYOR_REDIS_URL=redis://127.0.0.1:6379/0 python docs/examples/release.py demo api web :1.1.0
"""

from __future__ import annotations

import sys

from config.settings import Settings
from producers.client import ConveyorClient
from producers.contract.releases import ReleaseJob


def main(cluster: str, first: str, second: str, tag: str) -> int:
    """Release ``first`` then ``second`` (each container named like its service) at ``tag``."""
    job = ReleaseJob.model_validate(
        {
            "release": f"example-{tag.lstrip(':')}",
            "cluster": cluster,
            "waves": [
                [{"service": first, "images": {first: tag}}],
                [{"service": second, "images": {second: tag}}],
            ],
        }
    )
    client = ConveyorClient(Settings())
    release = client.release(job)
    final = client.wait_release(release.id, timeout=3600)
    for deployment in client.release_deployments(final):
        if deployment is not None:
            print(f"{deployment.service}: {deployment.state.value}")
    print(f"release {final.id}: {final.state.value}")
    return 0 if final.state.value == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
