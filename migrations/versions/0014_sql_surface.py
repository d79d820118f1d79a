"""A documented SQL surface: money at 8 places, comments on everything, read models with history.

- `round_half_even(numeric, integer)`: PostgreSQL's `round` rounds half away from zero; money
  in the views is rounded half-even, as the domain rounds (backbone.domain.positions).
- positions_pnl and pnl_by_account round their money to 8 places; positions_pnl_exact and
  pnl_by_account_exact keep it exact (what `backbone positions --json` and `pnl --json` read);
  exposure_by_symbol rounds its notionals.
- History: `position_days` (each position as it ended each day it changed) and `mark_days`
  (each symbol's last mark of each day), written by the trading projector beside the positions
  and marks (projections.state); started here from the positions and marks as they are, each
  booked on its last fill's (mark's) day. View pnl_daily reads them.
- New views: trades_daily, symbol_stats (over executions), pnl_daily, dead_letters_summary.
- `COMMENT ON` every table, view and column (projections.comments); the comment of
  `projection_snapshots.state` says what format 2 holds.

Every view of the read model is dropped and created again from projections/read_model.py
(open_orders, created by 0009, stays); the read-only role may SELECT each. The comments are
written from the catalog's columns, so an offline run (`alembic upgrade --sql`) leaves them out.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import context, op

from backbone.db import psycopg_connection
from projections import comments, read_model

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

ROUND_HALF_EVEN = """
    create or replace function round_half_even(v numeric, places integer) returns numeric
    language sql immutable strict parallel safe as $$
        select case when abs(v * power(10::numeric, places) - trunc(v * power(10::numeric, places))) = 0.5
                         and mod(trunc(v * power(10::numeric, places)), 2) = 0
                    then trunc(v, places) else round(v, places) end
    $$
"""
_REPLACED = ("exposure_by_symbol", "pnl_by_account", "positions_pnl")  # 0002's, in drop order
_HISTORY = ("position_days", "mark_days")
_TABLES = ("orders", "executions", "positions", "marks", "dead_letters", "projection_checkpoints",
           "projection_snapshots", "alembic_version", "audit_records", "audit_gaps", "lag_alerts",
           "lag_alert_history", "lag_alert_deliveries", *_HISTORY)
NUM = sa.Numeric()
_OLD_VIEWS = ("audit_order_events", "audit_executions", "open_orders")


def _reader_role() -> str:
    return context.config.attributes.get("readonly_role", "backbone_reader")


def _new_views() -> list[tuple[str, str]]:
    """(name, create statement) of every view this revision creates, in dependency order."""
    views = [(s.split()[2], s) for s in read_model.view_statements() if s.split()[2] != "open_orders"]
    return views + list(read_model.PUBLIC_VIEWS.items())


def _history_tables() -> None:
    op.create_table(
        "position_days",
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("kafka_partition", sa.Integer, nullable=False),
        sa.Column("last_offset", sa.BigInteger, nullable=False),
        sa.Column("qty", NUM, nullable=False),
        sa.Column("avg_px", NUM, nullable=False),
        sa.Column("realized_pnl", NUM, nullable=False),
        sa.Column("realized_commission", NUM, nullable=False),
        sa.Column("commission", NUM, nullable=False),
        sa.PrimaryKeyConstraint("account", "symbol", "day"),
    )
    op.create_table(
        "mark_days",
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("kafka_partition", sa.Integer, nullable=False),
        sa.Column("mark_price", NUM, nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("symbol", "day"),
    )
    # history starts from what the tables hold: offset -1, before every record still to come
    op.execute("insert into position_days select account, symbol, "
               "(coalesce(last_fill_time, now()) at time zone 'UTC')::date, kafka_partition, -1, qty, avg_px, "
               "realized_pnl, realized_commission, commission from positions")
    op.execute("insert into mark_days select symbol, (event_time at time zone 'UTC')::date, kafka_partition, "
               "mark_price, event_time, event_id from marks")


def upgrade() -> None:
    _history_tables()
    op.execute(ROUND_HALF_EVEN)
    op.execute("comment on function round_half_even(numeric, integer) is "
               "'v rounded to places decimal places, half to even (round() rounds half away from zero)'")
    for view in _REPLACED:
        op.execute(f"drop view {view}")
    role = _reader_role()
    for table in _HISTORY:
        op.execute(f"grant select on {table} to {role}")
    for name, statement in _new_views():
        op.execute(statement)
        op.execute(f"grant select on {name} to {role}")
    if context.is_offline_mode():
        return
    comments.write_comments(psycopg_connection(op.get_bind()),
                            "public", (*_TABLES, *_OLD_VIEWS, *(name for name, _s in _new_views())))


def _revision_0002_views() -> tuple[str, ...]:
    """The views as 0002 created them (its module holds them verbatim)."""
    path = Path(__file__).with_name("0002_projections.py")
    spec = importlib.util.spec_from_file_location("migration_0002", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(s for s in module._VIEWS if s.split()[2] in _REPLACED)


def downgrade() -> None:
    for name, _statement in reversed(_new_views()):
        op.execute(f"drop view {name}")
    role = _reader_role()
    for statement in _revision_0002_views():
        op.execute(statement)
        op.execute(f"grant select on {statement.split()[2]} to {role}")
    # the views of scratch schemas (replay --into, state --as-of --into) may use it: then it stays
    op.execute("do $$ begin drop function round_half_even(numeric, integer); "
               "exception when dependent_objects_still_exist then null; end $$")
    for table in reversed(_HISTORY):
        op.drop_table(table)
    # comments stay: they describe the tables as they still are
