"""Bad input to `conveyor` is refused with exit 2 naming the field, before anything is
enqueued; unreachable workers or Redis are exit 3. Run through CliRunner: no worker needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.cli_support import conveyor, point_at

EXAMPLE = Path(__file__).parents[2] / "deploy" / "examples" / "fargate-demo.yaml"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    point_at(monkeypatch, redis_url)


def test_invalid_input_is_refused_before_enqueueing() -> None:
    """Bad input exits 2 with the field named, without needing Redis or a worker."""
    result = conveyor("update", "--cluster", "demo", "--service", "web", "--image", "web")
    assert result.exit_code == 2
    assert "--image" in result.stderr
    assert "CONTAINER=IMAGE" in result.stderr
    result = conveyor(
        "update", "--cluster", "demo", "--service", "web", "--image", "web=:1", "--timeout", "5"
    )
    assert result.exit_code == 2
    assert "timeout_seconds" in result.stderr


def test_no_worker_or_no_redis_exits_3(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unreachable workers or Redis: exit 3 and nothing enqueued."""
    result = conveyor("update", "--cluster", "demo", "--service", "web", "--image", "web=:1.1.0")
    assert result.exit_code == 3, result.stderr
    assert "no Conveyor worker" in result.stderr
    monkeypatch.setenv("CONVEYOR_REDIS_URL", "redis://127.0.0.1:1/0")
    result = conveyor("update", "--cluster", "demo", "--service", "web", "--image", "web=:1.1.0")
    assert result.exit_code == 3
    assert "cannot reach Redis" in result.stderr


def test_a_bad_release_file_is_refused_before_anything_is_enqueued(tmp_path: Path) -> None:
    """Exit 2 naming the wave, entry and field; no worker or Redis needed."""
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump({"waves": [[{"service": "a", "images": {"app": ":1"}}]]}))
    result = conveyor("release", "-f", str(path))
    assert result.exit_code == 2
    assert "waves[0][0]: no cluster" in result.stderr


def _spec(tmp_path: Path, **overrides: Any) -> Path:
    spec: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    spec.update(overrides)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_spec_errors_exit_2_before_enqueueing(tmp_path: Path) -> None:
    """A link to a port the container does not have is refused by the CLI itself; render
    needs no AWS access."""
    path = _spec(
        tmp_path,
        load_balancers=[
            {"target_group": "demo-web", "container_name": "web", "container_port": 9999}
        ],
    )
    result = conveyor("fargate", "apply", "-f", str(path))
    assert result.exit_code == 2
    assert "has no port 9999" in result.stderr
    render = conveyor("fargate", "render", "-f", str(EXAMPLE))
    assert render.exit_code == 0
    assert json.loads(render.stdout)["Resources"]["Service"]["Type"] == "AWS::ECS::Service"


def test_a_bad_flag_value_is_a_usage_error_naming_the_flag() -> None:
    """click's own checks (a choice, a number) exit 2 too, naming the option."""
    result = conveyor("update", "--cluster", "c", "--service", "s", "--base", "nope")
    assert result.exit_code == 2
    assert "--base" in result.stderr
    result = conveyor("update", "--cluster", "c", "--service", "s", "--timeout", "soon")
    assert result.exit_code == 2
    assert "--timeout" in result.stderr


def test_env_flags_name_the_flag_never_the_value(tmp_path: Path) -> None:
    """A malformed --env or an unreadable --env-file exits 2 naming the flag; the value of a
    variable, which may be a secret, is never echoed."""
    result = conveyor(
        "update", "--cluster", "c", "--service", "s", "--env", "web=hunter2-secret-value"
    )
    assert result.exit_code == 2
    assert "--env" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    result = conveyor(
        "update", "--cluster", "c", "--service", "s", "--env-file", f"web={tmp_path}/none.env"
    )
    assert result.exit_code == 2
    assert "--env-file" in result.stderr


def test_wait_and_status_of_an_unknown_id_exit_2() -> None:
    """No record by that id, ever: exit 2 naming it."""
    for command in ("status", "wait"):
        result = conveyor(command, "nosuch-deployment")
        assert result.exit_code == 2, result.stderr
        assert "nosuch-deployment" in result.stderr


def test_the_version_and_help_answer_without_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """--help works even when the settings are invalid: nothing is read before a command."""
    monkeypatch.setenv("CONVEYOR_REDIS_RETRY_SECONDS", "-5")
    result = conveyor("update", "--help")
    assert result.exit_code == 0
    assert "--image CONTAINER=IMAGE" in result.stdout
    bad = conveyor("status", "some-id")
    assert bad.exit_code == 2
    assert "CONVEYOR_REDIS_RETRY_SECONDS" in bad.stderr or "redis_retry_seconds" in bad.stderr
