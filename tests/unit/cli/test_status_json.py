"""`--json` of the commands that need no service: `schemas check` and `local down`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from schemas import SCHEMAS_DIR


def test_schemas_check_json_lists_the_records_and_versions_checked() -> None:
    result = CliRunner().invoke(app, ["schemas", "check", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["problems"] == []
    assert report["directory"] == str(SCHEMAS_DIR)
    shipped = {d.name for d in SCHEMAS_DIR.iterdir() if d.is_dir() and list(d.glob("v*.avsc"))}
    assert set(report["records"]) == shipped
    assert all(versions == list(range(1, len(versions) + 1)) for versions in report["records"].values())


def test_schemas_check_json_reports_each_problem_and_exits_1(tmp_path: Path) -> None:
    schemas = tmp_path / "schemas"
    shutil.copytree(SCHEMAS_DIR, schemas, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    record = next(d for d in sorted(schemas.iterdir()) if d.is_dir())
    (record / "v7.avsc").write_text("{not json")
    result = CliRunner().invoke(app, ["schemas", "check", "--dir", str(schemas), "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["problems"]
    problem = report["problems"][0]
    assert problem["record"] == record.name and problem["kind"] and problem["text"].startswith(record.name)


def test_local_down_json_names_what_it_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKBONE_STATE_DIR", str(tmp_path))  # a stack that never ran: nothing to stop
    result = CliRunner().invoke(app, ["local", "down", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"stopped": []}
