"""`conveyor release --plan` and version ranges: bad input is refused (exit 2) before Conveyor
talks to Redis, the workers or AWS."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from producers.cli import main
from producers.contract.releases import ReleaseJob
from producers.planfile import plan_file

REPO = "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo/web"


def test_a_bad_range_in_a_release_file_names_the_field_and_the_fix(tmp_path: Path) -> None:
    """Exit 2; the message names the container's image field and how to write the range."""
    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "cluster": "demo",
                "services": [{"service": "web", "images": {"web": f"{REPO}:{{(1.4)}}"}}],
            }
        )
    )
    for command in (["release", "-f", str(path)], ["plan", "-f", str(path)]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2, result.output
        assert "  waves[0][0] (web).images.web: " in result.output
        assert "write it as '[1.4]'" in result.output


def test_release_needs_a_file_or_a_plan(tmp_path: Path) -> None:
    """Neither -f nor --plan: exit 2 saying both ways; a file that is not a plan: exit 2 saying
    how to write one; --plan with --dry-run, and --out with --tag-only: exit 2."""
    result = CliRunner().invoke(main, ["release"])
    assert result.exit_code == 2
    assert "-f RELEASE.yaml, or --plan FILE" in result.output
    junk = tmp_path / "junk.json"
    junk.write_text("{}")
    result = CliRunner().invoke(main, ["release", "--plan", str(junk)])
    assert result.exit_code == 2
    assert "conveyor plan -f RELEASE --out FILE" in result.output
    result = CliRunner().invoke(main, ["release", "--plan", str(junk), "--dry-run"])
    assert result.exit_code == 2
    release = tmp_path / "r.yaml"
    release.write_text(yaml.safe_dump({"cluster": "demo", "services": [{"service": "web",
                                       "images": {"web": ":1"}}]}))  # fmt: skip
    result = CliRunner().invoke(
        main, ["plan", "-f", str(release), "--out", str(tmp_path / "p.json"), "--tag-only"]
    )
    assert result.exit_code == 2
    assert "drop --tag-only" in result.output


def test_a_plan_with_settings_is_refused_without_its_release_file(tmp_path: Path) -> None:
    """The plan file holds *** for values: deploying it alone is refused, never sent."""
    release = ReleaseJob.model_validate(
        {
            "cluster": "demo",
            "services": [
                {
                    "service": "web",
                    "images": {"web": f"{REPO}:1.1.0@sha256:{'a' * 64}"},
                    "settings": [{"container": "web", "environment": {"TOKEN": "v"}}],
                }
            ],
        }
    )
    plans = [{"cluster": "demo", "service": "web", "current_task_definition": "web:1",
              "task_definition": {"base": "web:1"}}]  # fmt: skip
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan_file(release, plans, "r.yaml")))
    result = CliRunner().invoke(main, ["release", "--plan", str(path)])
    assert result.exit_code == 2
    assert "demo/web set environment variables or secrets" in result.output
