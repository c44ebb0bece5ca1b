"""Plan a release, then run it: a version rule, an environment variable and cleanup.

    CONVEYOR_REDIS_URL=redis://127.0.0.1:6379/0 python docs/examples/plan_then_release.py \\
        demo web 123456789012.dkr.ecr.us-east-1.amazonaws.com/demo/web
"""

from __future__ import annotations

import sys

from config.settings import Settings
from producers.client import ConveyorClient
from producers.contract.releases import ReleaseJob


def main(cluster: str, service: str, repository: str) -> int:
    """Print the plan of one service's release, deploy it, and return 0 if it succeeded."""
    job = ReleaseJob.model_validate(
        {
            "release": "example-plan",
            "cluster": cluster,
            "keep_revisions": 3,  # then deregister older revisions no service uses
            "services": [
                {
                    "service": service,
                    "images": {service: f"{repository}:{{~=1.1}}"},  # the newest 1.x >= 1.1
                    "settings": [{"container": service, "environment": {"FEATURE_X": "on"}}],
                }
            ],
        }
    )
    client = ConveyorClient(Settings())
    # Resolve the rule once: the plan and the release then name the same TAG@DIGEST, even if
    # a newer 1.x is pushed in between.
    job = client.resolve_versions(job)
    for plan in client.plan(job):
        print(f"{plan['cluster']}/{plan['service']} runs {plan['current_task_definition']}")
        for field in plan["task_definition"]["fields"]:
            print(f"  {field['field']}: {field.get('before', '…')} -> {field.get('after', '…')}")
        for change in plan["task_definition"]["settings"]:
            print(f"  {change}")
        for version in plan["versions"]:
            print(f"  version {version['container']}: {version['image']}")
    release = client.release(job)
    final = client.wait_release(release.id, timeout=1800)
    print(f"release {final.id}: {final.state.value}")
    return 0 if final.state.value == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
