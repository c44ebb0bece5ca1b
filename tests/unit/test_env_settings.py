"""Environment variables and secrets on update jobs: merging, masking, files, supersede."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from producers.contract.jobs import ContainerSettings, ImageUpdate, UpdateServiceJob
from producers.envfiles import EnvFileError, expand_env_files, read_env_file
from worker.domain.planning import apply_settings, plan_revision
from worker.kinds import covers

CURRENT = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"}]


@pytest.mark.parametrize(
    ("wanted", "replace", "merged", "diff"),
    [
        ({"B": "20", "D": "4"}, False, [("A", "1"), ("B", "20"), ("C", "3"), ("D", "4")],
         [("B", "changed"), ("D", "added")]),
        ({"B": "2"}, False, [("A", "1"), ("B", "2"), ("C", "3")], []),
        ({"B": "20", "D": "4"}, True, [("B", "20"), ("D", "4")],
         [("A", "removed"), ("B", "changed"), ("C", "removed"), ("D", "added")]),
        ({}, True, [], [("A", "removed"), ("B", "removed"), ("C", "removed")]),
    ],
)  # fmt: skip
def test_append_merges_by_name_and_replace_keeps_only_what_is_given(
    wanted: dict[str, str], replace: bool, merged: list[tuple[str, str]], diff: list[Any]
) -> None:
    """Same-named entries change in place; new ones come last; replace drops the rest."""
    out, changes = apply_settings(CURRENT, wanted, "value", replace=replace)
    assert [(e["name"], e["value"]) for e in out] == merged
    assert sorted(changes) == sorted(diff)


def test_a_new_revision_gets_the_settings_and_reports_names_only() -> None:
    """plan_revision sets environment and secrets of the named container, nothing else, and
    its change list carries no value."""
    base = {
        "family": "web",
        "taskDefinitionArn": "arn:aws:ecs:us-east-1:1:task-definition/web:1",
        "containerDefinitions": [
            {"name": "web", "image": "r/web:1", "environment": [{"name": "A", "value": "1"}]},
            {"name": "proxy", "image": "r/proxy:1"},
        ],
    }
    settings = (
        ContainerSettings(
            container="web",
            environment={"A": "s3cret-a", "B": "s3cret-b"},
            secrets={"DB": "arn:aws:secretsmanager:us-east-1:1:secret:db"},
        ),
    )
    plan = plan_revision(base, [], {}, "dep", settings=settings)
    web, proxy = plan.payload["containerDefinitions"]
    assert web["environment"] == [
        {"name": "A", "value": "s3cret-a"},
        {"name": "B", "value": "s3cret-b"},
    ]
    assert web["secrets"] == [
        {"name": "DB", "valueFrom": "arn:aws:secretsmanager:us-east-1:1:secret:db"}
    ]
    assert proxy == {"name": "proxy", "image": "r/proxy:1"}
    described = [str(c) for c in plan.setting_changes]
    assert described == [
        "web environment A changed",
        "web environment B added",
        "web secrets DB added",
    ]
    assert "s3cret" not in " ".join(described)


BOTH_KINDS = {
    "family": "web",
    "taskDefinitionArn": "arn:aws:ecs:us-east-1:1:task-definition/web:1",
    "containerDefinitions": [
        {
            "name": "web",
            "image": "r/web:1",
            "environment": [{"name": "OLD", "value": "1"}],
            "secrets": [{"name": "DB", "valueFrom": "arn:aws:ssm:us-east-1:1:parameter/db"}],
        }
    ],
}


def test_replace_with_environment_only_keeps_the_secrets() -> None:
    """`--replace-env --env` replaces the environment; the secrets, not given, stay as they are
    (they were all removed, so the next tasks started without their database password)."""
    settings = (ContainerSettings(container="web", mode="replace", environment={"NEW": "2"}),)
    plan = plan_revision(BOTH_KINDS, [], {}, "dep", settings=settings)
    (web,) = plan.payload["containerDefinitions"]
    assert web["environment"] == [{"name": "NEW", "value": "2"}]
    assert web["secrets"] == [{"name": "DB", "valueFrom": "arn:aws:ssm:us-east-1:1:parameter/db"}]
    assert sorted(map(str, plan.setting_changes)) == [
        "web environment NEW added",
        "web environment OLD removed",
    ]


def test_replace_with_secrets_only_keeps_the_environment() -> None:
    """The other way round: secrets given, environment not, so only the secrets are replaced."""
    arn = "arn:aws:ssm:us-east-1:1:parameter/api"
    settings = (ContainerSettings(container="web", mode="replace", secrets={"API": arn}),)
    plan = plan_revision(BOTH_KINDS, [], {}, "dep", settings=settings)
    (web,) = plan.payload["containerDefinitions"]
    assert web["environment"] == [{"name": "OLD", "value": "1"}]
    assert web["secrets"] == [{"name": "API", "valueFrom": arn}]


def test_replace_with_nothing_given_is_refused() -> None:
    """Replace with neither kind would change nothing: refused, naming the container, rather
    than silently leaving a list its author meant to empty."""
    with pytest.raises(ValueError, match="mode replace with no environment"):
        ContainerSettings(container="web", mode="replace")


def test_a_secrets_file_fills_the_secrets_and_inline_references_win(tmp_path: Path) -> None:
    """`secrets_file` in a release file (or a Fargate spec) reads NAME=REFERENCE lines beside
    the file; an empty file under mode replace is refused, as it would empty nothing."""
    (tmp_path / "web.secrets").write_text(
        "# references, not values\nDB=arn:aws:ssm:us-east-1:1:parameter/db\nAPI=x\n"
    )
    data = {
        "settings": [
            {
                "container": "web",
                "mode": "replace",
                "secrets_file": "web.secrets",
                "secrets": {"API": "arn:aws:ssm:us-east-1:1:parameter/api"},
            }
        ]
    }
    (entry,) = expand_env_files(data, tmp_path)["settings"]
    assert entry == {
        "container": "web",
        "mode": "replace",
        "secrets": {
            "DB": "arn:aws:ssm:us-east-1:1:parameter/db",
            "API": "arn:aws:ssm:us-east-1:1:parameter/api",
        },
    }
    ContainerSettings.model_validate(entry)
    (tmp_path / "empty.env").write_text("# nothing yet\n")
    emptied = {
        "settings": [
            {
                "container": "web",
                "mode": "replace",
                "environment_file": "empty.env",
                "secrets": {"DB": "arn:aws:ssm:us-east-1:1:parameter/db"},
            }
        ]
    }
    with pytest.raises(EnvFileError, match="mode replace replaces only a kind that is given"):
        expand_env_files(emptied, tmp_path)


def test_records_get_masked_values() -> None:
    """redacted() keeps names and masks every value and reference."""
    job = UpdateServiceJob(
        cluster="c",
        service="s",
        images=(),
        settings=(
            ContainerSettings(container="web", environment={"A": "x"}, secrets={"B": "arn:y"}),
        ),
    )
    masked = job.redacted()["settings"][0]
    assert masked["environment"] == {"A": "***"}
    assert masked["secrets"] == {"B": "***"}
    assert job.restart is False  # settings alone make a new revision


def test_env_files_are_read_and_errors_name_the_line_not_the_value(tmp_path: Path) -> None:
    """Comments, blank lines, export, quotes; a bad line is named by number."""
    good = tmp_path / "app.env"
    good.write_text("# comment\n\nexport A=1\nB='two words'\nC=\"x=y\"\n")
    assert read_env_file(good) == {"A": "1", "B": "two words", "C": "x=y"}
    bad = tmp_path / "bad.env"
    bad.write_text("A=1\nnot a line with s3cret\n")
    with pytest.raises(EnvFileError) as info:
        read_env_file(bad)
    assert f"{bad}:2" in str(info.value)
    assert "s3cret" not in str(info.value)
    data = {
        "settings": [{"container": "web", "environment_file": "app.env", "environment": {"A": "9"}}]
    }
    expanded = expand_env_files(data, tmp_path)
    assert expanded["settings"][0]["environment"] == {"A": "9", "B": "two words", "C": "x=y"}


def test_an_unquoted_comment_is_not_part_of_the_value(tmp_path: Path) -> None:
    """`A=1 # note` is 1, as docker compose and python-dotenv read it; a '#' without a space
    before it stays in the value; values are literal (no ${X} expansion)."""
    path = tmp_path / "app.env"
    path.write_text("A=1 # note\nB=x#y\nC=${HOME}/x\nD='$literal'\n")
    assert read_env_file(path) == {"A": "1", "B": "x#y", "C": "${HOME}/x", "D": "$literal"}


def test_an_unterminated_quote_is_refused_naming_its_line_not_its_value(tmp_path: Path) -> None:
    """A quote left open was kept as part of the value; it is now refused, naming the file and
    the line where the statement starts (after blank lines and comments), never the value."""
    path = tmp_path / "app.env"
    path.write_text('A=1\n\n# the password\nPASSWORD="s3cret-value\nB=2\n')
    with pytest.raises(EnvFileError) as info:
        read_env_file(path)
    assert str(info.value).startswith(f"{path}:4: ")
    assert "s3cret" not in str(info.value)
    assert "PASSWORD" not in str(info.value)


def test_a_quoted_multiline_value_is_one_variable(tmp_path: Path) -> None:
    """A base64 line ending in '=' inside a quoted multi-line value is part of the value, not a
    variable whose name (a piece of the secret) would be shown in plans and records."""
    path = tmp_path / "app.env"
    path.write_text('CERT="MIIBs3cret\nQUJDREVGR0g=\n"\nNEXT=1\n')
    assert read_env_file(path) == {"CERT": "MIIBs3cret\nQUJDREVGR0g=\n", "NEXT": "1"}


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("A=1\nl0ng-s3cret-line\n", 2),
        ("A=1\r\n\r\nnot a line with s3cret\r\n", 3),
        ("A=1\ns3cret+/piece=\n", 2),
        ("A='s3cret' trailing\n", 1),
    ],
)
def test_what_the_parser_cannot_read_is_refused_without_its_text(
    tmp_path: Path, text: str, line: int
) -> None:
    """A line without '=', text after a quoted value, or a name that is no variable name is
    refused with file and line; the text of the line never appears in the error."""
    path = tmp_path / "app.env"
    path.write_bytes(text.encode())
    with pytest.raises(EnvFileError) as info:
        read_env_file(path)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert "s3cret" not in str(info.value)


def test_a_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are refused naming the file, not shown."""
    path = tmp_path / "app.env"
    path.write_bytes(b"A=\xff\xfe\n")
    with pytest.raises(EnvFileError, match="not UTF-8"):
        read_env_file(path)


def test_a_newer_job_must_set_every_name_the_older_sets() -> None:
    """Supersede by names: a newer job carrying fewer variables, or appending where the older
    replaced, does not carry the older's change."""
    kind = "update-existing"

    def job(mode: str = "append", **env: str) -> dict[str, Any]:
        settings = (ContainerSettings(container="web", mode=mode, environment=env),)  # type: ignore[arg-type]
        return UpdateServiceJob(
            cluster="c",
            service="s",
            images=(ImageUpdate(container="web", image=":2"),),
            settings=settings,
        ).redacted()

    assert covers(kind, job(A="2", B="2"), kind, job(A="1"))
    assert not covers(kind, job(B="2"), kind, job(A="1"))
    assert not covers(kind, job(A="2"), kind, job("replace", A="1"))
    assert covers(kind, job("replace", A="2"), kind, job("replace", A="1"))


def test_a_fargate_spec_takes_an_environment_file(tmp_path: Path) -> None:
    """`conveyor fargate render` reads a container's environment_file beside the spec, and the
    variables written inline win over the file's."""
    import yaml
    from click.testing import CliRunner

    from localaws.devstack import ROOT
    from producers.cli import main

    spec = yaml.safe_load((ROOT / "deploy" / "examples" / "fargate-demo.yaml").read_text())
    spec["containers"][0]["environment_file"] = "web.env"
    (tmp_path / "web.env").write_text("FEATURE_X=on\nLOG_LEVEL=debug\n")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    rendered = CliRunner().invoke(main, ["fargate", "render", "-f", str(path)])
    assert rendered.exit_code == 0, rendered.stderr
    assert "FEATURE_X" in rendered.stdout
    assert "debug" not in rendered.stdout  # LOG_LEVEL: info, inline, wins
    (tmp_path / "web.env").write_text("broken line\n")
    refused = CliRunner().invoke(main, ["fargate", "render", "-f", str(path)])
    assert refused.exit_code == 2
    assert "web.env:1" in refused.stderr


def test_command_line_files_and_flags_make_one_entry_where_a_flag_wins(tmp_path: Path) -> None:
    """--env-file and --secret-file fill a container's entry; --env and --secret given for the
    same names win over the files, as inline values win in release files; an empty file under
    --replace-env exits 2 naming the flag."""
    from producers.cli.deploy import container_settings as _container_settings

    (tmp_path / "web.env").write_text("A=from-file\nB=file-only\n")
    (tmp_path / "web.secrets").write_text("DB=arn:aws:ssm:us-east-1:1:parameter/file\n")
    (entry,) = _container_settings(
        ("web:A=from-flag",),
        (f"web={tmp_path / 'web.env'}",),
        ("web:DB=arn:aws:ssm:us-east-1:1:parameter/flag",),
        secret_files=(f"web={tmp_path / 'web.secrets'}",),
        replace=True,
    )
    assert entry.mode == "replace"
    assert entry.environment == {"A": "from-flag", "B": "file-only"}
    assert entry.secrets == {"DB": "arn:aws:ssm:us-east-1:1:parameter/flag"}
    (tmp_path / "empty.secrets").write_text("\n")
    with pytest.raises(SystemExit) as exited:
        _container_settings(
            ("web:A=1",), (), (), secret_files=(f"web={tmp_path / 'empty.secrets'}",), replace=True
        )
    assert exited.value.code == 2
