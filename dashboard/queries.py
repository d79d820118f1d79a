"""What the dashboard shows, read as the read-only role: plain rows of Decimals, no formatting.

Every P&L figure comes from the documented views, unrounded (positions_pnl_exact,
pnl_by_account_exact: what `backbone pnl --json` reads; the page rounds once), or, for the
intraday series, from the Python read model: the day's executions folded with
`backbone.domain.positions` (the projector's netting rule) and valued with
`projections.read_model.valuation` (the Python form of view positions_pnl). Nothing here
restates the P&L arithmetic. One `read` is one REPEATABLE READ transaction, so the totals, the
positions and the series on a page come from the same instant.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from backbone import db
from backbone.domain import positions as pos
from backbone.domain.events import Side
from backbone.errors import ConfigError
from backbone.settings import Settings
from projections.read_model import valuation

RECENT = 50  # rows of each "recent" table
MAX_POINTS = 400  # per account and series: a browser draws a few hundred points per line smoothly
_EXACT = decimal.Context(prec=pos.ARITHMETIC_PRECISION, traps=[decimal.Inexact, decimal.InvalidOperation])
_ZERO = Decimal(0)

READER_HINT = ("create a reader with `backbone db create-reader NAME` and set BACKBONE_READER_DATABASE_URL="
               "postgresql://NAME:PASSWORD@HOST:PORT/DATABASE")


def reader_engine(settings: Settings) -> Engine:
    """An engine on BACKBONE_READER_DATABASE_URL whose sessions are read-only as well
    (default_transaction_read_only): the role cannot write, and its sessions do not try."""
    url = settings.reader_database_url.get_secret_value()
    if not url:
        raise ConfigError(f"the dashboard reads as a login of the read-only role only: {READER_HINT}")
    return db.make_engine(settings, url, connect_args={"options": "-c default_transaction_read_only=on"},
                          pool_size=2, max_overflow=2)


_WRITABLE = """
    select current_user as role,
           exists (select 1 from pg_roles g where g.rolname = :group
                   and pg_has_role(current_user, g.oid, 'MEMBER')) as reader,
           (select string_agg(c.relname, ', ' order by c.relname) from pg_class c
            join pg_namespace n on n.oid = c.relnamespace
            where n.nspname = 'public' and c.relkind in ('r', 'p', 'v')
              and (has_table_privilege(c.oid, 'INSERT') or has_table_privilege(c.oid, 'UPDATE')
                   or has_table_privilege(c.oid, 'DELETE') or has_table_privilege(c.oid, 'TRUNCATE'))) as writable
"""


def check_read_only(engine: Engine, settings: Settings) -> str:
    """The role the engine logs in as, once it is known to be a member of the read-only group
    that may write no table or view; else ConfigError (a superuser may write everything)."""
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.text(_WRITABLE), {"group": settings.database_readonly_role}).one()
    except sa.exc.OperationalError as e:
        raise db.connection_error(e, engine.url.render_as_string(hide_password=True)) from e
    if row.writable:
        tables = row.writable.split(", ")
        named = ", ".join(tables[:3]) + (f" and {len(tables) - 3} more" if len(tables) > 3 else "")
        raise ConfigError(f"BACKBONE_READER_DATABASE_URL logs in as {row.role}, which may write {named}; "
                          f"the dashboard reads as a reader only: {READER_HINT}")
    if not row.reader:
        raise ConfigError(f"BACKBONE_READER_DATABASE_URL logs in as {row.role}, not a member of "
                          f"{settings.database_readonly_role}: {READER_HINT}")
    return str(row.role)


# == the rows ====================================================================================

@dataclass(frozen=True, slots=True)
class Point:
    """An account's total P&L and gross exposure after an event of the day."""

    time: datetime
    account: str
    total_pnl: Decimal
    gross_exposure: Decimal


@dataclass(frozen=True)
class Snapshot:
    """Everything one page shows, read in one transaction."""

    at: datetime
    pnl: list[dict[str, Any]]
    totals: dict[str, Any]
    positions: list[dict[str, Any]]
    exposure: list[dict[str, Any]]
    series: list[Point]
    fills: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    open_orders: int
    dead_letter_reasons: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]
    checkpoints: list[dict[str, Any]]
    alerts: list[dict[str, Any]] = field(default_factory=list)


def _rows(conn: Connection, sql: str, **params: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]


def read(engine: Engine, *, recent: int = RECENT) -> Snapshot:
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            at: datetime = conn.execute(sa.text("select now()")).scalar_one()
            pnl = _rows(conn, "select account, open_positions, realized_pnl, unrealized_pnl, commission, total_pnl, "
                              "missing_marks from pnl_by_account_exact order by account")
            positions = _rows(conn, "select account, symbol, qty, avg_px, mark_price, mark_time, realized_pnl, "
                                    "unrealized_pnl, commission, total_pnl from positions_pnl_exact where qty <> 0 "
                                    "order by account, symbol")
            fills = _rows(conn, "select account, symbol, order_id, exec_id, side, qty, price, commission, exec_time "
                                "from executions where not busted order by kafka_partition, source_offset")
            marks = _rows(conn, "select symbol, mark_price, event_time from marks")
            snapshot = Snapshot(
                at=at, pnl=pnl, totals=totals(pnl), positions=with_exposure(positions),
                exposure=_rows(conn, "select symbol, net_qty, mark_price, net_notional, gross_notional, accounts "
                                     "from exposure_by_symbol where accounts > 0 "
                                     "order by gross_notional desc nulls last, symbol"),
                series=intraday(fills, {r["symbol"]: r["mark_price"] for r in marks},
                                max((r["event_time"] for r in marks), default=None)),
                fills=_rows(conn, "select exec_time, account, symbol, side, qty, price, commission, liquidity, "
                                  "order_id, exec_id, busted, corrected from executions "
                                  "order by exec_time desc, order_id, exec_id limit :n", n=recent),
                orders=_rows(conn, "select last_event_time, order_id, account, symbol, side, order_type, status, "
                                   "order_qty, price, cum_qty, leaves_qty, avg_px from orders "
                                   "order by last_event_time desc, order_id limit :n", n=recent),
                open_orders=conn.execute(sa.text("select count(*) from open_orders")).scalar_one(),
                dead_letter_reasons=_rows(conn, "select reason, count(*) as count, max(created_at) as last "
                                                "from dead_letters group by reason order by 2 desc, reason"),
                dead_letters=_rows(conn, "select created_at, reason, source_topic, source_partition, source_offset, "
                                         "detail from dead_letters order by id desc limit :n", n=recent),
                checkpoints=_rows(conn, "select projection, topic, partition, next_offset, updated_at "
                                        "from projection_checkpoints order by projection, topic, partition"),
                alerts=_rows(conn, "select rule, group_id, topic, phase, severity, value, since, fired_at "
                                   "from lag_alerts order by group_id, topic, rule"),
            )
    return snapshot


def totals(pnl: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The pnl_by_account rows added up (SQL's sum: NULLs skipped, NULL when all are)."""
    rows = list(pnl)
    out: dict[str, Any] = {"account": "total", "open_positions": sum(r["open_positions"] for r in rows),
                           "missing_marks": any(r["missing_marks"] for r in rows)}
    with decimal.localcontext(_EXACT):
        for column in ("realized_pnl", "unrealized_pnl", "commission", "total_pnl"):
            values = [r[column] for r in rows if r[column] is not None]
            out[column] = sum(values, _ZERO) if values else None
    return out


def with_exposure(positions: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """positions_pnl rows with `exposure` = qty × mark (None without a mark)."""
    with decimal.localcontext(_EXACT):
        return [{**r, "exposure": None if r["mark_price"] is None else r["qty"] * r["mark_price"]}
                for r in positions]


def intraday(fills: Sequence[Mapping[str, Any]], marks: Mapping[str, Decimal], marked_at: datetime | None,
             max_points: int = MAX_POINTS) -> list[Point]:
    """Each account's total P&L and gross exposure (Σ |qty| × price) after each fill of the day
    of the latest fill (UTC), and last at the marks, at the latest of the last fill and
    `marked_at` (the newest mark's time).

    `fills`: the live executions in the projector's order (partition, offset), so each position
    is netted exactly as the projector netted it. The marks table keeps each symbol's latest mark
    only, so between fills a symbol is valued at its latest fill price (any account's); the last
    point uses the marks, as the views do, and equals pnl_by_account_exact's total_pnl."""
    if not fills:
        return []
    steps: list[tuple[datetime, int, pos.Position, Decimal]] = []
    built: dict[tuple[str, str], pos.Position] = {}
    shown_at: dict[tuple[str, str], datetime] = {}
    for seq, r in enumerate(fills):
        key = (r["account"], r["symbol"])
        fill = pos.Fill(r["order_id"], r["exec_id"], r["account"], r["symbol"], Side(r["side"]), r["qty"],
                        r["price"], r["commission"], r["exec_time"])
        built[key] = pos.apply_fill(built.get(key) or pos.empty_position(*key), fill, exec_id_is_new=True)
        # a late-reported fill keeps its position's steps in their order on the time axis
        shown = max(r["exec_time"].astimezone(UTC), shown_at.get(key, r["exec_time"].astimezone(UTC)))
        shown_at[key] = shown
        steps.append((shown, seq, built[key], r["price"]))
    steps.sort(key=lambda s: (s[0], s[1]))
    day_start = datetime.combine(steps[-1][0].date(), time(0), tzinfo=UTC)

    held: dict[tuple[str, str], pos.Position] = {}
    value: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
    holders: dict[str, set[tuple[str, str]]] = {}
    account_value: dict[str, list[Decimal]] = {}
    last_price: dict[str, Decimal] = {}
    points: dict[str, list[Point]] = {}

    def revalue(key: tuple[str, str], price: Decimal | None) -> None:
        p = held[key]
        total = valuation(p, price)[1]
        exposure = abs(p.qty) * (price if price is not None else last_price[p.symbol])
        before = value.get(key, (_ZERO, _ZERO))
        value[key] = (total, exposure)
        acc = account_value.setdefault(p.account, [_ZERO, _ZERO])
        acc[0] += total - before[0]
        acc[1] += exposure - before[1]

    with decimal.localcontext(_EXACT):
        for shown, _, position, price in steps:
            key = (position.account, position.symbol)
            held[key] = position
            last_price[position.symbol] = price
            holders.setdefault(position.symbol, set()).add(key)
            for other in holders[position.symbol]:
                revalue(other, price)
            if shown >= day_start:
                for account in sorted({a for a, _ in holders[position.symbol]}):
                    total, exposure = account_value[account]
                    points.setdefault(account, []).append(Point(shown, account, total, exposure))
        for key in sorted(held):
            revalue(key, marks.get(key[1]))
        end = max(steps[-1][0], marked_at.astimezone(UTC) if marked_at else steps[-1][0])
        for account, (total, exposure) in sorted(account_value.items()):
            points.setdefault(account, []).append(Point(end, account, total, exposure))
    return [p for account in sorted(points) for p in _thin(points[account], max_points)]


def _thin(points: list[Point], most: int) -> list[Point]:
    """At most `most` points, evenly spaced by index, the first and the last kept."""
    if len(points) <= most:
        return points
    step = (len(points) - 1) / (most - 1)
    return [points[round(i * step)] for i in range(most)]


def rates(previous: Mapping[tuple[str, str, int], tuple[int, datetime]],
          checkpoints: Iterable[Mapping[str, Any]], at: datetime) -> dict[tuple[str, str, int], float | None]:
    """Events/s of each (projection, topic, partition) since the `previous` read: the checkpoint
    offset's advance over the time between the two reads; None on the first read."""
    out: dict[tuple[str, str, int], float | None] = {}
    for r in checkpoints:
        key = (r["projection"], r["topic"], r["partition"])
        before = previous.get(key)
        seconds = (at - before[1]).total_seconds() if before else 0.0
        out[key] = (r["next_offset"] - before[0]) / seconds if before and seconds > 0 else None
    return out
