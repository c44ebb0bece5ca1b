"""Third-party tools work unmodified against the local AWS (optional: needs ecs-deploy).

``ecs-deploy`` (PyPI) is not a dependency of Conveyor; point ``ECS_DEPLOY_BIN`` at its ``ecs``
command (for instance from a separate virtualenv) to run this test, otherwise it is skipped.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from localaws.seed import seed_demo
from tests.localaws.conftest import Aws

ECS_DEPLOY = os.environ.get("ECS_DEPLOY_BIN", "")


@pytest.mark.skipif(
    not (ECS_DEPLOY and Path(ECS_DEPLOY).exists()),
    reason="set ECS_DEPLOY_BIN to the `ecs` command of the ecs-deploy package",
)
def test_ecs_deploy_reports_what_ecs_would_make_it_report(aws: Aws) -> None:
    """ecs-deploy deploys a new tag to the seeded demo world and succeeds; given a broken tag it
    also says "successful" once the circuit breaker has rolled back (its known bug, fabfuel #185),
    which shows the local AWS behaves like ECS where tools get it wrong."""
    seed_demo(aws.url)
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": aws.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }

    def ecs_deploy(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ECS_DEPLOY, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    good = ecs_deploy("deploy", "demo", "web", "--tag", "1.1.0", "--timeout", "60")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Deployment successful" in good.stdout
    bad = ecs_deploy("deploy", "demo", "api", "--tag", "fail-2.0.0", "--timeout", "60")
    assert "Deployment successful" in bad.stdout
    (api,) = aws.ecs.describe_services(cluster="demo", services=["api"])["services"]
    assert api["taskDefinition"].endswith(":task-definition/api:1")
