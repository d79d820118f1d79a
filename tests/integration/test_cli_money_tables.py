"""`positions`, `pnl` and `state --as-of` tables show money like money, on the real stack:
P&L to the cent (half-even) with thousands separators, prices to their significant decimals,
quantities exact, numbers right-aligned, the mark's time beside the mark; `--json` stays exact."""

from __future__ import annotations

import json
import re

import pytest
from support import export_env, publish
from tape import Tape
from typer.testing import CliRunner

from backbone.codec.json_form import format_datetime
from backbone.domain.events import MarketMark, Side
from backbone.settings import Settings
from cli.main import app

pytestmark = pytest.mark.integration


@pytest.fixture
def desk(created_topics: Settings, monkeypatch: pytest.MonkeyPatch) -> Tape:
    """Two positions of account DESK, with P&L figures worked out by hand in the tests."""
    export_env(created_topics, monkeypatch)
    t = Tape()
    t.order("O1", "DESK", "BIG", Side.BUY, 1000, price=800)
    t.fill("O1", 1000, 800, commission="12.345")
    t.order("O2", "DESK", "FRAC", Side.BUY, "1234568.5", price="10.00000001")
    t.fill("O2", "1234568.5", "10.00000001")
    t.order("O3", "DESK", "FRAC", Side.SELL, 1, price="10.5")
    t.fill("O3", 1, "10.5", commission="0.005")
    t.mark("BIG", "46.686523")
    t.mark("FRAC", "10.12345678")
    publish(created_topics, t.records)
    projected = _invoke("project", "run", "--until-caught-up", "--group", "money-tables", "--json")
    assert projected.exit_code == 0, projected.output
    return t


def _invoke(*args: str):  # noqa: ANN202 - typer's Result
    return CliRunner().invoke(app, list(args))


def _table(output: str, first_header: str) -> list[dict[str, str]]:
    """The rows of the rendered table whose header starts with `first_header`, each cell as
    printed (padding included), after checking every cell keeps its column's width."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"┃ {first_header} ", line))
    header = [c.strip() for c in lines[start].split("┃")[1:-1]]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("│"):
            break
        cells = line.split("│")[1:-1]
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def _right(cell: str) -> str:
    """The text of a right-aligned cell (its value flush against the column's right edge)."""
    text = cell.strip()
    assert cell == f" {text.rjust(len(cell) - 2)} ", f"not right-aligned: {cell!r}"
    return text


MONEY = ("qty", "avg_px", "mark_price", "realized_pnl", "unrealized_pnl", "commission", "total_pnl")
#: worked by hand: BIG, 1000 bought at 800 marked at 46.686523: unrealized (46.686523 - 800) × 1000 =
#: -753313.477, commission 12.345 (shown 12.34: half-even); FRAC, 1234568.5 bought at 10.00000001 and 1
#: sold at 10.5: realized (10.5 - 10.00000001) × 1 = 0.49999999, unrealized (10.12345678 - 10.00000001)
#: × 1234567.5 = 152415.715896975, commission 0.005 (shown 0.00); totals = realized + unrealized - commission
SHOWN = {"BIG": ("1,000", "800.00", "46.686523", "0.00", "-753,313.48", "12.34", "-753,325.82"),
         "FRAC": ("1,234,567.5", "10.00000001", "10.12345678", "0.50", "152,415.72", "0.00", "152,416.21")}
EXACT = {"BIG": ("1000", "800", "46.686523", "0", "-753313.477", "12.345", "-753325.822"),
         "FRAC": ("1234567.5", "10.00000001", "10.12345678", "0.49999999", "152415.715896975", "0.005",
                  "152416.210896965")}
PNL_SHOWN = {"open_positions": "2", "realized_pnl": "0.50", "unrealized_pnl": "-600,897.76",
             "commission": "12.35", "total_pnl": "-600,909.61"}
PNL_EXACT = {"account": "DESK", "open_positions": 2, "realized_pnl": "0.49999999",
             "unrealized_pnl": "-600897.761103025", "commission": "12.35", "total_pnl": "-600909.611103035",
             "missing_marks": False}


def _mark_times(tape: Tape) -> dict[str, str]:
    return {r.symbol: format_datetime(r.event_time) for r in tape.records if isinstance(r, MarketMark)}


def _check_positions(rows: list[dict[str, str]], mark_times: dict[str, str]) -> None:
    assert [(r["account"].strip(), r["symbol"].strip()) for r in rows] == [("DESK", "BIG"), ("DESK", "FRAC")]
    for r in rows:
        symbol = r["symbol"].strip()
        assert tuple(_right(r[c]) for c in MONEY) == SHOWN[symbol]
        assert r["mark_time"].strip() == mark_times[symbol]


def _check_pnl(rows: list[dict[str, str]]) -> None:
    (row,) = rows
    assert {c: _right(row[c]) for c in PNL_SHOWN} == PNL_SHOWN
    assert (row["account"].strip(), row["missing_marks"].strip()) == ("DESK", "no")


def test_positions_and_pnl_tables_show_money_and_json_stays_exact(desk: Tape) -> None:
    marks = _mark_times(desk)

    positions = _invoke("positions")
    assert positions.exit_code == 0, positions.output
    _check_positions(_table(positions.stdout, "account"), marks)
    pnl = _invoke("pnl")
    assert pnl.exit_code == 0, pnl.output
    _check_pnl(_table(pnl.stdout, "account"))

    # --json: every value exact, in the canonical form, as before
    exact = json.loads(_invoke("positions", "--json").stdout)
    assert {r["symbol"]: tuple(r[c] for c in MONEY) for r in exact} == EXACT
    assert {r["symbol"]: r["mark_time"] for r in exact} == marks
    assert json.loads(_invoke("pnl", "--json").stdout) == [PNL_EXACT]


def test_state_as_of_tables_show_money_and_json_stays_exact(desk: Tape) -> None:
    marks = _mark_times(desk)
    as_of = format_datetime(desk.clock)

    state = _invoke("state", "--as-of", as_of, "-q")
    assert state.exit_code == 0, state.output
    _check_positions(_table(state.stdout, "account"), marks)
    _check_pnl([_table(state.stdout.split("P&L by account", 1)[1], "account")[0]])

    exact = json.loads(_invoke("state", "--as-of", as_of, "--json").stdout)
    assert {r["symbol"]: tuple(r[c] for c in MONEY) for r in exact["positions"]} == EXACT
    assert exact["pnl_by_account"] == [PNL_EXACT]
