"""The producers for release tooling: the Python API examples and the CI examples, run."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml

from localaws.devstack import ROOT, VENV_BIN, Worker
from producers.contract.releases import ReleaseJob
from tests.integration.conftest import Stack

EXAMPLES = ROOT / "docs" / "examples"


def run(stack: Stack, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run a command with the stack's environment and the venv first on PATH."""
    env = {**stack.env, "PATH": f"{VENV_BIN}:{stack.env.get('PATH', '')}", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        list(argv), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_the_python_examples_run_and_tell_the_truth(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """deploy_one succeeds on a good image and exits 1 on a broken one (rolled back); release
    deploys two waves; recent_failures lists the rolled-back deployment."""
    start_worker("w1")
    python = str(VENV_BIN / "python")
    good = run(stack, python, str(EXAMPLES / "deploy_one.py"), "demo", "web", "web", ":1.1.0")
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.strip().splitlines()[-1].startswith("succeeded:")
    bad = run(stack, python, str(EXAMPLES / "deploy_one.py"), "demo", "web", "web", ":fail-1")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert bad.stdout.strip().splitlines()[-1].startswith("rolled_back:")
    release = run(stack, python, str(EXAMPLES / "release.py"), "demo", "api", "web", ":1.2.0")
    assert release.returncode == 0, release.stdout + release.stderr
    assert "api: succeeded" in release.stdout
    assert "web: succeeded" in release.stdout
    failures = run(stack, python, str(EXAMPLES / "recent_failures.py"))
    assert failures.returncode == 0, failures.stderr
    assert "demo/web  rolled_back" in failures.stdout
    assert failures.stdout.strip().endswith("1 failed")


def test_the_plan_then_release_example_shows_the_plan_and_deploys_it(
    stack: Stack, start_worker: Callable[[str], Worker]
) -> None:
    """plan_then_release: the plan names the resolved version and the variable by name; the
    release then deploys exactly that version with the variable."""
    start_worker("w1")
    repo = "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo/web"
    python = str(VENV_BIN / "python")
    out = run(stack, python, str(EXAMPLES / "plan_then_release.py"), "demo", "web", repo)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"version web: {repo}:1.2.0@sha256:" in out.stdout
    assert "web environment FEATURE_X added" in out.stdout
    assert out.stdout.strip().endswith("succeeded")
    service = stack.ecs().describe_services(cluster="demo", services=["web"])["services"][0]
    definition = stack.ecs().describe_task_definition(taskDefinition=service["taskDefinition"])
    web = next(
        c for c in definition["taskDefinition"]["containerDefinitions"] if c["name"] == "web"
    )
    assert web["image"].startswith(f"{repo}:1.2.0@sha256:")
    assert f"version web: {web['image']}\n" in out.stdout  # what was planned was deployed
    assert {"name": "FEATURE_X", "value": "on"} in web["environment"]


def test_the_ci_shell_example_exits_with_the_verdict(
    stack: Stack, start_worker: Callable[[str], Worker], tmp_path: Path
) -> None:
    """deploy/ci/release.sh: 0 and a succeeded summary for a good release, 1 for a release
    whose rollout fails, 2 for an invalid file (nothing enqueued)."""
    start_worker("w1")
    script = str(ROOT / "deploy" / "ci" / "release.sh")

    def release(name: str, tag: str) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "release": name,
                    "cluster": "demo",
                    "services": [{"service": "api", "images": {"api": tag}}],
                }
            )
        )
        return path

    summary = tmp_path / "good.json"
    good = run(stack, script, str(release("good", ":1.1.0")), str(summary))
    assert good.returncode == 0, good.stdout + good.stderr
    assert json.loads(summary.read_text())["state"] == "succeeded"
    assert re.search(r"wave 1  demo/api  succeeded", good.stdout)

    bad = run(stack, script, str(release("bad", ":fail-2")), str(tmp_path / "bad.json"))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "demo/api  rolled_back" in bad.stdout

    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("release: x\nservices: []\n")
    refused = run(stack, script, str(invalid), str(tmp_path / "invalid.json"))
    assert refused.returncode == 2
    assert "services" in refused.stderr or "waves" in refused.stderr


def test_the_github_workflow_writes_a_valid_release_and_runs_the_ci_script() -> None:
    """The workflow's release file, with a version filled in, is a valid release; its deploy
    step runs deploy/ci/release.sh with the Redis URL from a secret, and no AWS credentials."""
    workflow = yaml.safe_load((ROOT / "deploy" / "ci" / "github-actions.yml").read_text())
    steps = workflow["jobs"]["deploy"]["steps"]
    write = next(s for s in steps if s.get("name") == "Write the release file")
    heredoc = write["run"].split("<<YAML\n", 1)[1].rsplit("YAML", 1)[0]
    release = yaml.safe_load(heredoc.replace("${VERSION}", "2.4.0"))
    job = ReleaseJob.model_validate(release)
    assert [[j.service for j in wave] for wave in job.waves] == [["api"], ["web"]]
    deploy = next(s for s in steps if s.get("name") == "Deploy")
    assert deploy["run"].startswith("deploy/ci/release.sh release.yaml")
    assert deploy["env"] == {"CONVEYOR_REDIS_URL": "${{ secrets.CONVEYOR_REDIS_URL }}"}
    assert not any("AWS_" in json.dumps(s) for s in steps)
