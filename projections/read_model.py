"""The read model: the documented views over the projection tables, the statuses that make an
order open, and the same rows computed in Python from an in-memory state (docs/pnl.md).

This module is the one definition every user of the views derives from:

- migrations create the views in `public` from `view_statements()` and `PUBLIC_VIEWS` (0009
  the current `open_orders` and its partial index, from `OPEN_ORDERS_SQL`; 0014 the others;
  0002 holds, verbatim, what it first ran);
- `projections.ddl` creates the same views in scratch and shadow schemas (`state --as-of
  --into`, `replay --into`, the rebuild's shadow);
- `state --as-of` prints `position_rows`, `pnl_rows` and `open_order_rows`, which value a
  position with `backbone.domain.positions.unrealized_pnl` / `total_pnl`, the Python form of the
  arithmetic of view positions_pnl_exact; `round_money` turns them into the rows of the
  rounded views positions_pnl and pnl_by_account.

`tests/integration/test_read_model_sql.py` runs generated positions, marks and orders through the
views on PostgreSQL and through the Python rows and requires equal values, exactly.

An open order is one that may still execute (`OrderState.is_terminal` false): a status that is
not terminal (`order_state.TERMINAL_STATUSES`), or a GTC or GTD order done for the day, which
works again the next day (`order_state.MULTI_DAY`).

Changing a view: databases have applied the migrations that created the views, so the SQL they
run must stay what it was (`tests/unit/projections/test_read_model.py` pins 0002 byte for
byte). Write the statements of the migrations that render from this module (0009, 0014) into
them as literal text first, then change this module and add a migration that recreates the
views (and their comments, projections.comments).
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from backbone.domain import positions as pos
from backbone.domain.events import MarketMark, OrderStatus
from backbone.domain.order_state import MULTI_DAY, TERMINAL_STATUSES
from projections.state import TradingState

#: Statuses of the orders in view open_orders, in the enum's order.
OPEN_STATUSES: tuple[str, ...] = tuple(s.value for s in OrderStatus if s not in TERMINAL_STATUSES)
#: The same as an SQL list: `status in <this>`.
OPEN_STATUSES_SQL = "(" + ",".join(f"'{s}'" for s in OPEN_STATUSES) + ")"
#: The orders that may still execute, as an SQL condition on table orders (`OrderState.is_terminal`).
OPEN_ORDERS_SQL = (f"status in {OPEN_STATUSES_SQL} or (status = '{OrderStatus.DONE_FOR_DAY.value}' and "
                   "time_in_force in (" + ",".join(f"'{t.value}'" for t in sorted(MULTI_DAY)) + "))")

#: Decimal places of the money the views show (P&L, commission, notional): the wire scale of
#: money, rounded half-even by the SQL function `round_half_even` (migration 0014) and by
#: `round_money` here. The tables, and the views named *_exact, keep exact values.
MONEY_PLACES = 8
_MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_PLACES)
#: The money columns each rounded view rounds (its _exact twin has them exact).
MONEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "positions_pnl": ("realized_pnl", "realized_commission", "open_commission", "commission", "net_realized_pnl",
                      "unrealized_pnl", "total_pnl"),
    "pnl_by_account": ("realized_pnl", "unrealized_pnl", "commission", "total_pnl"),
}
_COLUMNS = {
    "positions_pnl": ("account", "symbol", "qty", "avg_px", "realized_pnl", "realized_commission", "open_commission",
                      "commission", "net_realized_pnl", "mark_price", "mark_time", "unrealized_pnl", "total_pnl",
                      "fill_count", "last_fill_time"),
    "pnl_by_account": ("account", "open_positions", "realized_pnl", "unrealized_pnl", "commission", "total_pnl",
                       "missing_marks"),
}


def _rounded_view(name: str) -> str:
    """The view `name`: its _exact twin with the money columns rounded (same columns, same order)."""
    money = MONEY_COLUMNS[name]
    columns = ", ".join(f"round_half_even({c}, {MONEY_PLACES}) as {c}" if c in money else c for c in _COLUMNS[name])
    return f"\n        create view {{s}}{name} as\n        select {columns}\n        from {{s}}{name}_exact\n    "


# `{s}` is the schema qualifier: empty (the search path: `public`, as in the migration) or a
# quoted schema name and a dot. The exact views' layout, whitespace included, is the text
# migration 0002 ran for positions_pnl and pnl_by_account.
_VIEWS = {
    "positions_pnl_exact": """
        create view {s}positions_pnl_exact as
        select p.account, p.symbol, p.qty, p.avg_px,
               p.realized_pnl, p.realized_commission, p.open_commission, p.commission,
               p.realized_pnl - p.realized_commission as net_realized_pnl,
               m.mark_price, m.event_time as mark_time,
               case when m.mark_price is null then null else (m.mark_price - p.avg_px) * p.qty end
                   as unrealized_pnl,
               p.realized_pnl + coalesce((m.mark_price - p.avg_px) * p.qty, 0) - p.commission as total_pnl,
               p.fill_count, p.last_fill_time
        from {s}positions p left join {s}marks m on m.symbol = p.symbol
    """,
    "pnl_by_account_exact": """
        create view {s}pnl_by_account_exact as
        select account,
               count(*) filter (where qty <> 0) as open_positions,
               sum(realized_pnl) as realized_pnl,
               sum(unrealized_pnl) as unrealized_pnl,
               sum(commission) as commission,
               sum(total_pnl) as total_pnl,
               bool_or(qty <> 0 and mark_price is null) as missing_marks
        from {s}positions_pnl_exact group by account
    """,
    "positions_pnl": _rounded_view("positions_pnl"),
    "pnl_by_account": _rounded_view("pnl_by_account"),
    "open_orders": """
        create view {s}open_orders as
        select order_id, account, symbol, side, order_type, time_in_force, status, order_qty, price,
               cum_qty, leaves_qty, avg_px, first_event_time, last_event_time
        from {s}orders where """ + OPEN_ORDERS_SQL + """
    """,
    "exposure_by_symbol": """
        create view {s}exposure_by_symbol as
        select symbol,
               sum(qty) as net_qty,
               sum(qty) filter (where qty > 0) as long_qty,
               -sum(qty) filter (where qty < 0) as short_qty,
               max(mark_price) as mark_price,
               round_half_even(sum(qty * mark_price), 8) as net_notional,
               round_half_even(sum(abs(qty) * mark_price), 8) as gross_notional,
               count(*) filter (where qty <> 0) as accounts
        from {s}positions_pnl_exact group by symbol
    """,
    # a day is the exec time's UTC date; quotients of the exact sums, rounded once; realized:
    # the change of the position's realized P&L booked that day (position_days)
    "trades_daily": """
        create view {s}trades_daily as
        select t.*, round_half_even(r.realized, 8) as realized_pnl
        from (select account, symbol, (exec_time at time zone 'UTC')::date as trade_date,
                     count(*) as fills,
                     coalesce(sum(qty) filter (where side = 'BUY'), 0) as bought_qty,
                     coalesce(sum(qty) filter (where side <> 'BUY'), 0) as sold_qty,
                     round_half_even(coalesce(sum(qty * price) filter (where side = 'BUY'), 0), 8)
                         as bought_notional,
                     round_half_even(coalesce(sum(qty * price) filter (where side <> 'BUY'), 0), 8)
                         as sold_notional,
                     round_half_even(sum(qty * price) filter (where side = 'BUY')
                                     / sum(qty) filter (where side = 'BUY'), 8) as buy_vwap,
                     round_half_even(sum(qty * price) filter (where side <> 'BUY')
                                     / sum(qty) filter (where side <> 'BUY'), 8) as sell_vwap,
                     round_half_even(sum(commission), 8) as commission
              from {s}executions where not busted
              group by account, symbol, (exec_time at time zone 'UTC')::date) t
        left join (select account, symbol, day,
                          realized_pnl - coalesce(lag(realized_pnl) over (partition by account, symbol
                                                                          order by day), 0) as realized
                   from {s}position_days) r
            on r.account = t.account and r.symbol = t.symbol and r.day = t.trade_date
    """,
    # one row per period with every fill (liquidity ALL), and one per liquidity flag
    "symbol_stats": """
        create view {s}symbol_stats as
        select symbol, period, period_start,
               case when grouping(liquidity) = 1 then 'ALL' else coalesce(liquidity, 'NONE') end as liquidity,
               count(*) as fills,
               sum(qty) as volume,
               round_half_even(sum(qty * price), 8) as notional,
               round_half_even(sum(qty * price) / sum(qty), 8) as vwap,
               max(price) as high,
               min(price) as low,
               min(exec_time) as first_exec_time,
               max(exec_time) as last_exec_time
        from (select e.symbol, e.liquidity, e.qty, e.price, e.exec_time, p.period,
                     date_trunc(p.period, e.exec_time, 'UTC') as period_start
              from {s}executions e cross join (values ('day'), ('hour')) as p(period)
              where not e.busted) f
        group by grouping sets ((symbol, period, period_start), (symbol, period, period_start, liquidity))
    """,
    # each of an account's days (a day one of its positions changed): every position as it ended
    # the day (its latest change on or before it: an unchanged position carries forward), valued
    # at its symbol's last mark on or before that day; the day's figures are the change of the
    # cumulative ones since the account's previous day
    "pnl_daily": """
        create view {s}pnl_daily as
        with eod as (
            select d.account, d.day, p.qty, p.avg_px, p.realized_pnl, p.commission,
                   (select m.mark_price from {s}mark_days m where m.symbol = p.symbol and m.day <= d.day
                    order by m.day desc limit 1) as mark_price
            from (select distinct account, day from {s}position_days) d
            cross join lateral (
                select distinct on (symbol) symbol, qty, avg_px, realized_pnl, commission
                from {s}position_days p where p.account = d.account and p.day <= d.day
                order by symbol, last_offset desc
            ) p
        ), days as (
            select account, day,
                   count(*) filter (where qty <> 0) as open_positions,
                   sum(realized_pnl) as realized, sum(commission) as paid,
                   sum((mark_price - avg_px) * qty) as unrealized,
                   bool_or(qty <> 0 and mark_price is null) as missing_marks
            from eod group by account, day
        ), totals as (
            select *, realized + coalesce(unrealized, 0) - paid as cumulative from days
        )
        select account, day as trade_date, open_positions,
               round_half_even(realized - coalesce(lag(realized) over w, 0), 8) as realized_pnl,
               round_half_even(paid - coalesce(lag(paid) over w, 0), 8) as commission,
               round_half_even(unrealized, 8) as unrealized_pnl,
               round_half_even(cumulative - coalesce(lag(cumulative) over w, 0), 8) as total_pnl,
               round_half_even(cumulative, 8) as cumulative_pnl,
               missing_marks
        from totals window w as (partition by account order by day)
    """,
}
#: The documented views over the projection tables, in dependency order (a view after those it
#: reads): in `public` and in every scratch or shadow schema.
VIEWS: tuple[str, ...] = tuple(_VIEWS)

#: Views over the projector's bookkeeping, in `public` only (a scratch schema has no dead letters).
PUBLIC_VIEWS = {
    "dead_letters_summary": """
        create view dead_letters_summary as
        select projection, source_topic as topic, reason,
               count(*) as letters,
               min(created_at) as first_seen,
               max(created_at) as last_seen,
               count(*) filter (where relayed_offset is null) as unrelayed,
               (array_agg(source_partition order by id desc))[1] as sample_partition,
               (array_agg(source_offset order by id desc))[1] as sample_offset,
               (array_agg(detail order by id desc))[1] as sample_detail
        from dead_letters group by projection, source_topic, reason
    """,
}


def view_statements(schema: str | None = None) -> list[str]:
    """The `create view` statements of the documented views over the projection tables, in
    dependency order: unqualified (bound through the search path, as the migration runs them)
    or in and on `schema`."""
    prefix = "" if schema is None else '"' + schema.replace('"', '""') + '".'
    return [_VIEWS[name].format(s=prefix) for name in VIEWS]


# == the rows of the views, from an in-memory state (`state --as-of`) ===============================

@dataclass(frozen=True, slots=True)
class PositionSummary:
    """A position's figures without its fill history: what a positions_pnl row needs, and what a
    helper process hands back of a position (projections.parallel)."""

    account: str
    symbol: str
    qty: Decimal
    avg_px: Decimal
    realized_pnl: Decimal
    realized_commission: Decimal
    open_commission: Decimal
    commission: Decimal
    fill_count: int
    last_fill_time: datetime | None

    @classmethod
    def of(cls, p: pos.Position) -> PositionSummary:
        return cls(p.account, p.symbol, p.qty, p.avg_px, p.realized_pnl, p.realized_commission, p.open_commission,
                   p.commission, p.fill_count, p.last_fill_time)


_EXACT = decimal.Context(prec=pos.ARITHMETIC_PRECISION, traps=[decimal.Inexact, decimal.InvalidOperation])


def valuation(p: pos.Valued, mark_price: Decimal | None) -> tuple[Decimal | None, Decimal]:
    """`unrealized_pnl` and `total_pnl` of p's positions_pnl row. Without a mark the unrealized
    P&L is unknown (NULL) and the total counts it as 0, as the view's `coalesce(…, 0)`: the
    position valued at its own average price."""
    if mark_price is None:
        return None, pos.total_pnl(p, p.avg_px)
    return pos.unrealized_pnl(p, mark_price), pos.total_pnl(p, mark_price)


def position_rows(state: TradingState, *, account: str | None = None, symbol: str | None = None,
                  include_flat: bool = True) -> list[dict[str, Any]]:
    """The rows of view positions_pnl_exact, computed from a state."""
    return position_rows_of(state.positions, {sym: m.mark for sym, m in state.marks.items()}, account=account,
                            symbol=symbol, include_flat=include_flat)


def position_rows_of(positions: Mapping[tuple[str, str], pos.Position | PositionSummary],
                     marks: Mapping[str, MarketMark], *,
                     account: str | None = None, symbol: str | None = None,
                     include_flat: bool = True) -> list[dict[str, Any]]:
    """The rows of view positions_pnl_exact of these positions, valued at these marks (by symbol)."""
    out = []
    with decimal.localcontext(_EXACT):
        for (acc, sym), p in sorted(positions.items()):
            if (account and acc != account) or (symbol and sym != symbol) or (not include_flat and p.qty == 0):
                continue
            mark = marks.get(sym)
            mark_price = mark.mark_price if mark else None
            unrealized, total = valuation(p, mark_price)
            out.append({
                "account": acc, "symbol": sym, "qty": p.qty, "avg_px": p.avg_px, "realized_pnl": p.realized_pnl,
                "realized_commission": p.realized_commission, "open_commission": p.open_commission,
                "commission": p.commission, "net_realized_pnl": p.realized_pnl - p.realized_commission,
                "mark_price": mark_price, "mark_time": mark.event_time if mark else None,
                "unrealized_pnl": unrealized, "total_pnl": total,
                "fill_count": p.fill_count, "last_fill_time": p.last_fill_time,
            })
    return out


def pnl_rows(position_table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of view pnl_by_account_exact over the given positions_pnl_exact rows."""
    by: dict[str, list[dict[str, Any]]] = {}
    for row in position_table:
        by.setdefault(row["account"], []).append(row)
    out = []
    with decimal.localcontext(_EXACT):
        for acc in sorted(by):
            rows = by[acc]
            # SQL's sum() skips NULLs and is NULL when every value is.
            unreal = [r["unrealized_pnl"] for r in rows if r["unrealized_pnl"] is not None]
            out.append({
                "account": acc, "open_positions": sum(1 for r in rows if r["qty"] != 0),
                "realized_pnl": sum((r["realized_pnl"] for r in rows), Decimal(0)),
                "unrealized_pnl": sum(unreal, Decimal(0)) if unreal else None,
                "commission": sum((r["commission"] for r in rows), Decimal(0)),
                "total_pnl": sum((r["total_pnl"] for r in rows), Decimal(0)),
                "missing_marks": any(r["qty"] != 0 and r["mark_price"] is None for r in rows),
            })
    return out


_ROUND = decimal.Context(prec=pos.ARITHMETIC_PRECISION, rounding=decimal.ROUND_HALF_EVEN,
                         traps=[decimal.InvalidOperation])


def round_money(rows: list[dict[str, Any]], view: str) -> list[dict[str, Any]]:
    """The rows of view `view` (positions_pnl, pnl_by_account) from the rows of its _exact twin
    (`position_rows`, `pnl_rows`): the money columns rounded half-even to MONEY_PLACES, as
    SQL's round_half_even does; NULL stays NULL."""
    money = MONEY_COLUMNS[view]
    return [{k: (v.quantize(_MONEY_QUANTUM, context=_ROUND) if k in money and v is not None else v)
             for k, v in row.items()} for row in rows]


def open_order_rows(state: TradingState, *, account: str | None = None,
                    symbol: str | None = None) -> list[dict[str, Any]]:
    """The rows of view open_orders, newest first."""
    out = []
    for o in state.orders.values():
        if o.is_terminal or (account and o.account != account) or (
                symbol and o.symbol != symbol):
            continue
        out.append({"order_id": o.order_id, "account": o.account, "symbol": o.symbol, "side": o.side.value,
                    "order_type": o.order_type.value, "time_in_force": o.time_in_force.value,
                    "status": o.status.value, "order_qty": o.order_qty, "price": o.price, "cum_qty": o.cum_qty,
                    "leaves_qty": o.leaves_qty, "avg_px": o.avg_px, "first_event_time": o.first_event_time,
                    "last_event_time": o.last_event_time})
    sort_open_orders(out)
    return out


def sort_open_orders(rows: list[dict[str, Any]]) -> None:
    """open_orders rows newest first (last event time, then order id, descending)."""
    rows.sort(key=lambda r: (r["last_event_time"], r["order_id"]), reverse=True)
