"""A time argument without a UTC offset, or a replay range that ends before it starts, ends the
command in one line with the usage exit code (README, "Exit codes": 2), before any service is
asked."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.main import app


@pytest.mark.parametrize(("args", "says"), [
    (["state", "--as-of", "2026-11-20T15:15:00"], "no UTC offset"),
    (["state", "--as-of", "2026-11-20"], "no UTC offset"),
    (["checkpoints", "create", "--as-of", "2026-11-20T15:15:00.000250"], "no UTC offset"),
    (["checkpoints", "prune", "--before", "2026-11-20 15:15"], "no UTC offset"),
    (["replay", "--dry-run", "--from-beginning", "--to-timestamp", "2026-11-20T15:15:00"], "no UTC offset"),
    (["replay", "--dry-run", "--from-timestamp", "2026-11-20T15:15:00.000001Z",
      "--to-timestamp", "2026-11-20T15:15:00Z"], "is before --from-timestamp"),
    (["state", "--as-of", "yesterday"], "not ISO-8601"),
])
def test_a_bad_time_argument_is_a_one_line_usage_error(args: list[str], says: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # nothing listens there: an answer that needed a service would be exit 3, not 2
    monkeypatch.setenv("BACKBONE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    monkeypatch.setenv("BACKBONE_DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0]
