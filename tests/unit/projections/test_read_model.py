"""The read model without services: the SQL that migration 0002 runs from it, the open statuses,
the scratch-schema views, and the rows `state --as-of` prints. Its SQL and its Python rows are
compared on PostgreSQL in tests/integration/test_read_model.py."""

from __future__ import annotations

import hashlib
import io
from decimal import Decimal

import pytest
from alembic import command
from alembic.ddl.impl import DefaultImpl
from lifecycles import done_for_the_day
from sqlalchemy import TextClause
from tape import Tape

from backbone.db import alembic_config
from backbone.domain.events import OrderStatus, Side, TimeInForce
from backbone.domain.order_state import TERMINAL_STATUSES
from projections import read_model
from projections.read_model import open_order_rows, pnl_rows, position_rows
from projections.state import TradingState

D = Decimal

# sha256 of the statements migration 0002 hands to PostgreSQL, exactly as they were before the
# views came from the read model. Databases have applied 0002: what it runs must never change.
MIGRATION_0002 = {
    "upgrade": "8769c8773ae4088fec838b30efcd43cd3df3e24e0ff94f2acfc758183179b8d9",
    "downgrade": "4becbfe6197009ec432e444a6c8a09d8f747b04ac7c3c8f346446390b15b2dbf",
}


def migration_statements(monkeypatch: pytest.MonkeyPatch, direction: str, step: tuple[str, str] = ("0001", "0002")
                         ) -> list[str]:
    """The text of every statement a migration step executes (offline mode: no database)."""
    executed: list[str] = []
    run = DefaultImpl._exec

    def record(self: DefaultImpl, construct: object, *args: object, **kwargs: object) -> object:
        executed.append(construct if isinstance(construct, str) else construct.text
                        if isinstance(construct, TextClause) else str(construct.compile(dialect=self.dialect)))
        return run(self, construct, *args, **kwargs)

    monkeypatch.setattr(DefaultImpl, "_exec", record)
    config = alembic_config("postgresql+psycopg://offline@localhost/offline", readonly_role="backbone_reader")
    config.output_buffer = io.StringIO()
    before, after = step
    if direction == "upgrade":
        command.upgrade(config, f"{before}:{after}", sql=True)
    else:
        command.downgrade(config, f"{after}:{before}", sql=True)
    return executed


@pytest.mark.parametrize("direction", ["upgrade", "downgrade"])
def test_migration_0002_runs_byte_for_byte_what_it_always_ran(monkeypatch: pytest.MonkeyPatch,
                                                              direction: str) -> None:
    statements = migration_statements(monkeypatch, direction)
    digest = hashlib.sha256("\x00".join(statements).encode()).hexdigest()
    assert digest == MIGRATION_0002[direction], (
        "migration 0002 now runs other SQL: databases have applied it. Write its former statements "
        "into it as literal text and change the views in a new migration (projections/read_model.py)")
    if direction == "upgrade":  # its views compute what the read model's exact views compute
        exact = read_model.view_statements()
        for name in ("positions_pnl", "pnl_by_account"):
            (old,) = [s for s in statements if s.split()[2:3] == [name]]
            assert old.replace(f"view {name} ", f"view {name}_exact ").replace(
                "from positions_pnl ", "from positions_pnl_exact ") in exact


def test_migration_0014_creates_every_view_but_open_orders_from_the_read_model(
        monkeypatch: pytest.MonkeyPatch) -> None:
    statements = migration_statements(monkeypatch, "upgrade", ("0013", "0014"))
    for view in read_model.view_statements():
        assert (view in statements) is (view.split()[2] != "open_orders")
    for view in read_model.PUBLIC_VIEWS.values():
        assert view in statements
    undone = migration_statements(monkeypatch, "downgrade", ("0013", "0014"))
    for old in migration_statements(monkeypatch, "upgrade"):
        if old.split()[2:3] in (["positions_pnl"], ["pnl_by_account"], ["exposure_by_symbol"]):
            assert old in undone


def test_migration_0009_creates_open_orders_and_its_index_from_the_read_model(
        monkeypatch: pytest.MonkeyPatch) -> None:
    statements = migration_statements(monkeypatch, "upgrade", ("0008", "0009"))
    (view,) = [v for v in read_model.view_statements() if v.split()[2] == "open_orders"]
    assert view.replace("create view", "create or replace view") in statements
    (index,) = [s for s in statements if s.startswith("CREATE INDEX orders_open_idx")]
    assert index.endswith(f"WHERE {read_model.OPEN_ORDERS_SQL}")
    undone = migration_statements(monkeypatch, "downgrade", ("0008", "0009"))
    (old,) = [s for s in migration_statements(monkeypatch, "upgrade") if s.split()[2:3] == ["open_orders"]]
    assert old.replace("create view", "create or replace view") in undone


def test_open_statuses_are_the_statuses_that_are_not_terminal() -> None:
    assert set(read_model.OPEN_STATUSES) == {s.value for s in OrderStatus} - {s.value for s in TERMINAL_STATUSES}
    assert read_model.OPEN_STATUSES_SQL == "('PENDING_NEW','NEW','PARTIALLY_FILLED','PENDING_CANCEL','PENDING_REPLACE')"


def test_view_statements_in_a_schema_name_it_on_every_view_and_table() -> None:
    public, scratch = read_model.view_statements(), read_model.view_statements("user")
    assert [s.split()[2] for s in public] == list(read_model.VIEWS)
    assert [s.split()[2] for s in scratch] == [f'"user".{v}' for v in read_model.VIEWS]
    for plain, qualified in zip(public, scratch, strict=True):
        assert qualified.replace('"user".', "") == plain
        for table in ("positions", "marks", "orders", "executions", "positions_pnl_exact", "pnl_by_account_exact",
                      "position_days", "mark_days"):
            assert f" {table} " not in qualified.replace("create view ", "")
    assert read_model.view_statements('a"b')[0].split()[2] == '"a""b".positions_pnl_exact'


def test_round_money_rounds_the_money_columns_half_even_to_8_places() -> None:
    rows = [{"account": "A", "open_positions": 1, "realized_pnl": D("0.000000005"), "unrealized_pnl": None,
             "commission": D("-0.000000015"), "total_pnl": D("1.123456785000001"), "missing_marks": True}]
    (row,) = read_model.round_money(rows, "pnl_by_account")
    assert row == {"account": "A", "open_positions": 1, "realized_pnl": D("0E-8"), "unrealized_pnl": None,
                   "commission": D("-0.00000002"), "total_pnl": D("1.12345679"), "missing_marks": True}
    assert str(row["realized_pnl"]) == "0E-8"  # the views' scale: 8 places


# -- the rows printed by `state --as-of` ---------------------------------------------------------------

def golden_state() -> TradingState:
    t = Tape()
    t.order("O1", "ACC1", "GOLD", Side.BUY, 100, price=10)
    t.fill("O1", 100, 10, commission="1")
    t.order("O2", "ACC1", "GOLD", Side.SELL, 60, price=12)
    t.fill("O2", 60, 12, commission="0.6")
    t.order("O3", "ACC2", "GOLD", Side.SELL_SHORT, 30, price=30)
    t.fill("O3", 10, 30)
    t.order("O4", "ACC2", "SILV", Side.BUY, 5, price=3)
    t.mark("GOLD", 25)
    state = TradingState()
    for offset, r in enumerate(t.records):
        if r.__class__.__name__ == "MarketMark":
            state.apply_mark(r, 0)
        else:
            state.apply_order_event(r, 0, offset)
    return state


def test_position_and_pnl_rows_follow_the_views() -> None:
    state = golden_state()
    positions = {(r["account"], r["symbol"]): r for r in position_rows(state)}
    acc1 = positions[("ACC1", "GOLD")]
    assert (acc1["qty"], acc1["avg_px"], acc1["realized_pnl"]) == (D(40), D(10), D(120))
    assert (acc1["mark_price"], acc1["unrealized_pnl"]) == (D(25), D(600))
    assert acc1["net_realized_pnl"] == D(120) - acc1["realized_commission"]
    assert acc1["total_pnl"] == D(120) + D(600) - D("1.6")
    acc2 = positions[("ACC2", "GOLD")]
    assert (acc2["qty"], acc2["unrealized_pnl"], acc2["total_pnl"]) == (D(-10), D(50), D(50))
    pnl = {r["account"]: r for r in pnl_rows(position_rows(state))}
    assert pnl["ACC1"]["total_pnl"] == acc1["total_pnl"] and pnl["ACC1"]["open_positions"] == 1
    assert pnl["ACC2"]["missing_marks"] is False
    assert [r["symbol"] for r in position_rows(state, account="ACC2")] == ["GOLD"]
    assert position_rows(state, symbol="NONE") == []


def test_a_multi_day_order_done_for_the_day_is_open_a_day_order_is_not() -> None:
    state = done_for_the_day({"GTC1": TimeInForce.GTC, "GTD1": TimeInForce.GTD, "DAY1": TimeInForce.DAY})
    rows = {o["order_id"]: o for o in open_order_rows(state)}
    assert sorted(rows) == ["GTC1", "GTD1"]
    assert {(o["status"], o["leaves_qty"]) for o in rows.values()} == {("DONE_FOR_DAY", D(60))}
    assert state.orders["DAY1"].leaves_qty == 0


def test_missing_marks_and_open_orders() -> None:
    state = golden_state()
    state.marks.clear()
    (row,) = position_rows(state, account="ACC1")
    assert row["unrealized_pnl"] is None and row["total_pnl"] == row["realized_pnl"] - row["commission"]
    (acc1,) = pnl_rows([row])
    assert acc1["unrealized_pnl"] is None and acc1["missing_marks"] is True
    orders = open_order_rows(state)
    assert {o["order_id"] for o in orders} == {"O3", "O4"}
    assert orders[0]["order_id"] == "O4"  # newest first
    assert [o["order_id"] for o in open_order_rows(state, symbol="GOLD", account="ACC2")] == ["O3"]
