"""Projection tables and views in a schema of their own (scratch `--into`, rebuild shadows).

`public` gets its tables from the Alembic migrations; a scratch or shadow schema copies their
definitions (`create table … (like public.… including all)`) so both can never drift, and gets
the same documented views, bound to its own tables.
"""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

TABLES = ("orders", "executions", "positions", "marks")
OPEN_STATUSES = "('PENDING_NEW','NEW','PARTIALLY_FILLED','PENDING_CANCEL','PENDING_REPLACE')"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# The views of migration 0002, with the schema left open. Keep them identical to it.
VIEWS = {
    "positions_pnl": """
        select p.account, p.symbol, p.qty, p.avg_px,
               p.realized_pnl, p.realized_commission, p.open_commission, p.commission,
               p.realized_pnl - p.realized_commission as net_realized_pnl,
               m.mark_price, m.event_time as mark_time,
               case when m.mark_price is null then null else (m.mark_price - p.avg_px) * p.qty end
                   as unrealized_pnl,
               p.realized_pnl + coalesce((m.mark_price - p.avg_px) * p.qty, 0) - p.commission as total_pnl,
               p.fill_count, p.last_fill_time
        from {s}.positions p left join {s}.marks m on m.symbol = p.symbol""",
    "pnl_by_account": """
        select account,
               count(*) filter (where qty <> 0) as open_positions,
               sum(realized_pnl) as realized_pnl,
               sum(unrealized_pnl) as unrealized_pnl,
               sum(commission) as commission,
               sum(total_pnl) as total_pnl,
               bool_or(qty <> 0 and mark_price is null) as missing_marks
        from {s}.positions_pnl group by account""",
    "open_orders": """
        select order_id, account, symbol, side, order_type, time_in_force, status, order_qty, price,
               cum_qty, leaves_qty, avg_px, first_event_time, last_event_time
        from {s}.orders where status in """ + OPEN_STATUSES,
    "exposure_by_symbol": """
        select symbol,
               sum(qty) as net_qty,
               sum(qty) filter (where qty > 0) as long_qty,
               -sum(qty) filter (where qty < 0) as short_qty,
               max(mark_price) as mark_price,
               sum(qty * mark_price) as net_notional,
               sum(abs(qty) * mark_price) as gross_notional,
               count(*) filter (where qty <> 0) as accounts
        from {s}.positions_pnl group by symbol""",
}


def check_schema_name(name: str) -> str:
    if not _SCHEMA_NAME.match(name) or name in ("public", "information_schema") or name.startswith("pg_"):
        raise ValueError(f"schema name {name!r}: use lower-case letters, digits and _ (not public, not pg_…)")
    return name


def create_schema(conn: psycopg.Connection, schema: str, *, reader_role: str | None = None) -> None:
    """A fresh schema with empty projection tables and the views; fails if it exists."""
    check_schema_name(schema)
    ident = sql.Identifier(schema)
    conn.execute(sql.SQL("create schema {}").format(ident))
    for table in TABLES:
        conn.execute(sql.SQL("create table {}.{} (like public.{} including all)").format(
            ident, sql.Identifier(table), sql.Identifier(table)))
    create_views(conn, schema)
    if reader_role:
        conn.execute(sql.SQL("grant usage on schema {} to {}").format(ident, sql.Identifier(reader_role)))
        conn.execute(sql.SQL("grant select on all tables in schema {} to {}").format(
            ident, sql.Identifier(reader_role)))


def create_views(conn: psycopg.Connection, schema: str) -> None:
    # Quoted: a valid name may still be a reserved word (`user`, `order`); check_schema_name
    # allows no character that would need escaping inside the quotes.
    quoted = f'"{check_schema_name(schema)}"'
    for name, body in VIEWS.items():  # dependency order: positions_pnl first
        conn.execute(f"create or replace view {quoted}.{name} as {body.format(s=quoted)}")


def drop_schema(conn: psycopg.Connection, schema: str) -> None:
    conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(check_schema_name(schema))))
