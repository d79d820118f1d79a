"""Every producing/projecting/reading command through typer's CliRunner, on the real stack."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from support import publish, rows, settings_env
from tape import Tape
from typer.testing import CliRunner

from backbone.codec import json_form
from backbone.domain.events import Alert, AlertKind, AlertSeverity, Side
from backbone.settings import Settings
from cli.main import app
from producers.simulator import SimulationConfig, simulate
from projections.rebuild import psycopg_url

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_env(created_topics: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in settings_env(created_topics).items():
        if key.startswith("BACKBONE_"):
            monkeypatch.setenv(key, value)
    return created_topics


def invoke(*args: str) -> object:
    return CliRunner().invoke(app, list(args))


def test_simulate_project_and_read_back(cli_env: Settings) -> None:
    result = invoke("simulate", "-n", "3000", "--seed", "3", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["produced"] == 3000
    assert sum(summary["by_type"].values()) == 3000 and summary["by_type"]["MARK"] > 0
    assert sum(summary["by_partition"].values()) == 3000

    projected = invoke("project", "run", "--until-caught-up", "--group", "cli-test", "--json")
    assert projected.exit_code == 0, projected.output
    stats = json.loads(projected.stdout)
    assert stats["events"] == 3000 and stats["dead_letters"] == 0
    assert stats["lag"] == 0  # caught up: nothing behind the end offsets

    positions = invoke("positions", "--json")
    assert positions.exit_code == 0, positions.output
    rows_ = json.loads(positions.stdout)
    assert rows_ and all(isinstance(r["qty"], str) and Decimal(r["qty"]) != 0 for r in rows_)
    one = rows_[0]
    filtered = json.loads(invoke("positions", "--account", one["account"], "--symbol", one["symbol"], "--json").stdout)
    assert filtered == [one]

    pnl = json.loads(invoke("pnl", "--json").stdout)
    db_total = rows(cli_env, "select sum(total_pnl) as t from pnl_by_account_exact")[0]["t"]
    assert sum(Decimal(r["total_pnl"]) for r in pnl) == db_total

    canceled = json.loads(invoke("orders", "--status", "CANCELED", "--json", "--limit", "5").stdout)
    assert canceled and all(o["status"] == "CANCELED" for o in canceled)
    assert invoke("orders", "--status", "NOPE").exit_code == 2  # typer's bad-parameter exit
    table = invoke("pnl")
    assert table.exit_code == 0 and "total_pnl" in table.output


def test_simulate_same_seed_gives_identical_events() -> None:
    a = list(simulate(SimulationConfig(events=1500, seed=11)))
    b = list(simulate(SimulationConfig(events=1500, seed=11)))
    c = list(simulate(SimulationConfig(events=1500, seed=12)))
    assert a == b and a != c


def test_publish_reports_each_bad_line_and_dead_letters_it(cli_env: Settings, tmp_path: Path) -> None:
    tape = Tape()
    tape.order("P1", "ACC1", "FILE", "BUY", 100, price=10)
    tape.fill("P1", 100, 10)
    tape.mark("FILE", 11)
    good = [json_form.dumps(r) for r in tape.records]
    fill = json.loads(good[2])
    mark = json.loads(good[3])
    alert = json_form.dumps(Alert("a1", AlertKind.LAG_RISING, AlertSeverity.WARNING, tape.clock, "g", "lag"))
    lines = [
        good[0],
        "{not json",                                                   # 2: bad JSON
        json.dumps({k: v for k, v in fill.items() if k != "account"}),  # 3: missing field
        good[1],
        json.dumps(fill | {"last_px": "ten"}),                         # 5: bad decimal
        json.dumps(fill | {"side": "SIDEWAYS"}),                       # 6: unknown enum
        good[2],
        json.dumps(fill | {"event_id": "again", "seq": 4, "exec_id": "X9"}),  # 8: state machine (overfill)
        good[3],
        alert,                                                         # 10: not publishable here
        json.dumps(mark | {"source": "\ud800"}),                      # 11: valid JSON, not encodable as Avro
        json.dumps(mark | {"event_time": "1970-01-01T00:00:00Z"}),     # 12: Kafka's "now" timestamp
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(app, ["publish", str(path), "--json"])
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert (summary["published"], summary["rejected"]) == (4, 8)
    for lineno in (2, 3, 5, 6, 8, 10, 11, 12):
        assert f"events.jsonl:{lineno}:" in result.stderr
    for reason in ("unexpected_record", "invalid_field:source", "bad_value:event_time"):
        assert reason in result.stderr
    projected = invoke("project", "run", "--until-caught-up", "--group", "pub-test", "--json")
    assert json.loads(projected.stdout)["events"] == 4
    (pos,) = rows(cli_env, "select qty, avg_px from positions")
    assert (pos["qty"], pos["avg_px"]) == (Decimal(100), Decimal(10))


def test_schemas_check_passes_on_the_shipped_schemas() -> None:
    result = invoke("schemas", "check")
    assert result.exit_code == 0, result.output
    assert "backward compatible" in result.output


def test_demo_runs_end_to_end(cli_env: Settings) -> None:
    result = invoke("demo", "-n", "2000", "--seed", "4")
    assert result.exit_code == 0, result.output
    assert "P&L by account" in result.output and "psql as read-only role" in result.output
    assert rows(cli_env, "select count(*) as n from orders")[0]["n"] > 0


def test_reading_commands_print_values_verbatim_and_refuse_bad_input(cli_env: Settings) -> None:
    settings = cli_env
    t = Tape()
    t.order("O[/]", "ACC[/]", "[red]X", Side.BUY, 10, price=5)   # rich markup, if it were read as such
    t.fill("O[/]", 4, 5)
    t.order("O2", "ACC[/]", "[red]X", Side.BUY, 1, price=5)
    t.mark("[red]X", 6)
    publish(settings, t.records)
    assert invoke("project", "run", "--until-caught-up", "--group", "cli-verbatim", "--json").exit_code == 0

    positions = invoke("positions")
    assert positions.exit_code == 0, positions.output
    assert "ACC[/]" in positions.stdout and "[red]X" in positions.stdout
    orders = invoke("orders", "--limit", "1", "--json")
    assert orders.exit_code == 0
    assert [o["order_id"] for o in json.loads(orders.stdout)] == ["O2"]  # newest first, cut to one
    assert "more than 1 rows: showing the first 1" in orders.stderr
    assert "more than" not in invoke("orders", "--json").stderr

    as_of = t.clock.isoformat()
    for args, message, code in (
            (["state", "--as-of", "1969-12-31T23:59:59.999Z"], "before 1970-01-01T00:00:00Z", 2),
            (["state", "--as-of", "9999-12-31T23:00:00-05:00"], "outside the years 1..9999 in UTC", 2),
            (["state", "--as-of", as_of, "--into", "rebuild_20261120101500"], "belong to `backbone rebuild`", 1),
            (["state", "--as-of", as_of, "--into", "pg_mine"], "not pg_", 1),
            (["state", "--as-of", as_of, "--into", "scratch", "--account", "ACC[/]"], "filter with SQL", 1),
            (["simulate", "-n", "5", "--start", "yesterday"], "not ISO-8601", 2)):
        refused = invoke(*args)
        assert refused.exit_code == code, (args, refused.output)
        assert message in refused.stderr, (args, refused.stderr)

    into = invoke("state", "--as-of", as_of, "--into", "user", "--json")  # a reserved word, quoted
    try:
        assert into.exit_code == 0, into.output
        assert rows(settings, 'select account, qty from "user".positions_pnl') == [{"account": "ACC[/]",
                                                                                    "qty": Decimal(4)}]
    finally:
        with psycopg.connect(psycopg_url(settings), autocommit=True) as conn:
            conn.execute('drop schema if exists "user" cascade')

    started = invoke("simulate", "-n", "5", "--start", "2026-11-20T09:30:00.5-05:00", "--json", "-q")
    assert started.exit_code == 0, started.output
