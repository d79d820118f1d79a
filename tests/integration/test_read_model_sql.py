"""The read model's SQL and its Python rows agree, exactly, on PostgreSQL: generated positions,
marks and orders are written to `public` (views created by the migrations) and to a scratch
schema (views created by projections.ddl), and every view row equals the row `state --as-of`
computes from the same state (projections.read_model): the exact views' rows as they are, the
rounded views' through `round_money`. The values include ties at the 9th decimal place, where
rounding half-even and PostgreSQL's round() (half away from zero) differ."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from psycopg.rows import dict_row
from sqlalchemy.engine import make_url
from tape import Tape

from backbone.domain.events import MarketMark, OrderStatus, Side, TimeInForce
from backbone.domain.positions import Position
from backbone.settings import Settings
from projections import ddl, read_model, store
from projections.replay import full_changes
from projections.state import MarkRow, TradingState

pytestmark = pytest.mark.integration
SCRATCH = "read_model_pin"
T0 = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)
ACCOUNTS, SYMBOLS = ("ACC1", "ACC2", "ACC3"), ("GOLD", "SILV", "OIL", "CORN")


def places(places: int, low: int, high: int) -> st.SearchStrategy[Decimal]:
    """Decimals with exactly `places` decimal places (as the columns and the domain carry them)."""
    return st.integers(low, high).map(lambda n: Decimal(n).scaleb(-places))


times = st.integers(0, 10**12).map(lambda us: T0 + timedelta(microseconds=us))


def ties(low: int, high: int) -> st.SearchStrategy[Decimal]:
    """Decimals halfway between two multiples of 1E-8: n.nnnnnnnn5, of either sign."""
    return st.integers(low, high).map(lambda n: Decimal(10 * n + 5).scaleb(-9))


@st.composite
def positions(draw: st.DrawFn, account: str, symbol: str) -> Position:
    qty = draw(st.one_of(st.just(Decimal("0E-8")), places(8, -10**14, 10**14)))
    flat = qty == 0
    # whole prices against qty with 8 places: unrealized and total P&L fall on ties too
    avg_px = Decimal("0E-12") if flat else draw(st.one_of(places(12, 1, 10**18), places(0, 1, 10**6)))
    realized_commission = draw(st.one_of(places(8, 0, 10**12), ties(0, 10**12)))
    open_commission = Decimal("0E-8") if flat else draw(places(8, 0, 10**12))
    realized = draw(st.one_of(places(20, -10**28, 10**28), ties(-10**15, 10**15)))
    return Position(account, symbol, qty, avg_px, realized, realized_commission,
                    open_commission, realized_commission + open_commission, draw(st.one_of(st.none(), times)),
                    draw(st.integers(0, 10**6)), ())


@st.composite
def states(draw: st.DrawFn) -> TradingState:
    state = TradingState()
    keys = draw(st.lists(st.sampled_from([(a, s) for a in ACCOUNTS for s in SYMBOLS]), unique=True, max_size=12))
    for key in keys:
        state.positions[key] = draw(positions(*key))
        state.position_partition[key] = 0
    for symbol in draw(st.lists(st.sampled_from(SYMBOLS), unique=True)):
        mark = MarketMark(f"M-{symbol}", symbol, draw(times),
                          draw(st.one_of(places(8, 1, 10**16), places(1, 1, 10**7))))
        state.marks[symbol] = MarkRow(symbol, 0, mark)
    template = order_template()
    for i, (status, tif, account, symbol, when) in enumerate(draw(st.lists(st.tuples(
            st.sampled_from(OrderStatus), st.sampled_from(TimeInForce), st.sampled_from(ACCOUNTS),
            st.sampled_from(SYMBOLS), times), max_size=12))):
        order_id = f"O{i}"
        state.orders[order_id] = dataclasses.replace(template, order_id=order_id, account=account, symbol=symbol,
                                                     status=status, time_in_force=tif, last_event_time=when)
        state.order_partition[order_id] = 0
    return state


def order_template() -> Any:
    tape = Tape()
    tape.order("O", "ACC1", "GOLD", Side.BUY, 100, price=10)
    tape.fill("O", 40, "10.5", commission="1")
    return tape.states["O"]


def view(conn: psycopg.Connection, schema: str, name: str, key: tuple[str, ...]) -> dict[Any, dict[str, Any]]:
    rows = conn.cursor(row_factory=dict_row).execute(f'select * from "{schema}".{name}').fetchall()
    return by_key(rows, key)


def by_key(rows: list[dict[str, Any]], key: tuple[str, ...]) -> dict[Any, dict[str, Any]]:
    out = {tuple(r[k] for k in key): r for r in rows}
    assert len(out) == len(rows)
    return out


def check(conn: psycopg.Connection, state: TradingState) -> None:
    position_rows = read_model.position_rows(state)
    summaries = {k: read_model.PositionSummary.of(p) for k, p in state.positions.items()}
    marks = {s: m.mark for s, m in state.marks.items()}
    assert read_model.position_rows_of(summaries, marks) == position_rows  # what helper processes hand back
    pnl_rows = read_model.pnl_rows(position_rows)
    expected = {
        "positions_pnl_exact": by_key(position_rows, ("account", "symbol")),
        "pnl_by_account_exact": by_key(pnl_rows, ("account",)),
        "positions_pnl": by_key(read_model.round_money(position_rows, "positions_pnl"), ("account", "symbol")),
        "pnl_by_account": by_key(read_model.round_money(pnl_rows, "pnl_by_account"), ("account",)),
        "open_orders": by_key(read_model.open_order_rows(state), ("order_id",)),
    }
    for schema in ("public", SCRATCH):
        for name, key in (("positions_pnl_exact", ("account", "symbol")), ("pnl_by_account_exact", ("account",)),
                          ("positions_pnl", ("account", "symbol")), ("pnl_by_account", ("account",)),
                          ("open_orders", ("order_id",))):
            got = view(conn, schema, name, key)
            assert got == expected[name], f"{schema}.{name}"
            columns = [c.name for c in conn.execute(f'select * from "{schema}".{name} limit 0').description]
            assert all(list(row) == columns for row in expected[name].values()), f"{schema}.{name}: columns"


def test_views_and_as_of_rows_agree_exactly(settings: Settings) -> None:
    url = make_url(settings.database_url_value).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as conn:
        with conn.transaction():
            ddl.create_schema(conn, SCRATCH)

        @hypothesis_settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(states())
        def agree(state: TradingState) -> None:
            with conn.transaction(force_rollback=True):
                for schema in (None, SCRATCH):
                    store.write_changes(conn, state, full_changes(state), schema=schema)
                check(conn, state)

        agree()

