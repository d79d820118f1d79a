"""`backbone audit export`'s arguments (issue #25, point 7): what cannot make a pack is a one-line
usage error (exit 2) before any service is asked."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app


def _cli(*args: str):
    return CliRunner().invoke(app, ["audit", "export", *args])


@pytest.mark.parametrize(("args", "message"), [
    (["--account", "A1", "--from", "2026-11-20T14:30:00", "--to", "2026-11-20T15:00:00Z"], "no UTC offset"),
    (["--account", "A1", "--from", "2026-11-20T15:00:00Z", "--to", "2026-11-20T14:30:00Z"],
     "--to 2026-11-20T14:30:00+00:00 is before --from 2026-11-20T15:00:00+00:00"),
    (["--account", "A1", "--from", "2026-11-20T15:00:00Z"], "--account needs both --from and --to"),
    (["O1", "--account", "A1"], "not both"),
    (["O1", "--from", "2026-11-20T15:00:00Z"], "--from and --to go with --account"),
    ([], "give an ORDER_ID or --account"),
])
def test_bad_arguments_are_usage_errors_before_any_service(args: list[str], message: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKBONE_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # nothing answers there: never asked
    result = _cli(*args, "--out", str(tmp_path / "pack"))
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_an_out_directory_with_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("evidence")
    result = _cli("O1", "--out", str(tmp_path))
    assert result.exit_code == 2 and "is not an empty directory" in result.output, result.output


def test_a_pack_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    from projections.audit_export import ExportRefused, write

    (tmp_path / "file").write_text("")
    with pytest.raises(ExportRefused, match="cannot write the pack to .*/file/pack: "):
        write(tmp_path / "file" / "pack", {"a": b""}, {})
