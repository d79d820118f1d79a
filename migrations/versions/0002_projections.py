"""Projection tables (orders, executions, positions, marks, dead letters), the documented
views, and the read-only analyst role.

Every projected row carries `kafka_partition`: a symbol's events live in one partition, so a
projector that is assigned a partition loads exactly the rows with that partition number.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql as pg

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NUM = sa.Numeric()  # unconstrained NUMERIC: exact, any scale
TS = sa.DateTime(timezone=True)


def _reader_role() -> str:
    return context.config.attributes.get("readonly_role", "backbone_reader")


#: The views as this revision created them, verbatim: databases have run exactly these; the
#: views of today come from projections/read_model.py and later revisions (0009).
_VIEWS = (
    ('\n'
     '        create view positions_pnl as\n'
     '        select p.account, p.symbol, p.qty, p.avg_px,\n'
     '               p.realized_pnl, p.realized_commission, p.open_commission, p.commission,\n'
     '               p.realized_pnl - p.realized_commission as net_realized_pnl,\n'
     '               m.mark_price, m.event_time as mark_time,\n'
     '               case when m.mark_price is null then null else (m.mark_price - p.avg_px) * p.qty end\n'
     '                   as unrealized_pnl,\n'
     '               p.realized_pnl + coalesce((m.mark_price - p.avg_px) * p.qty, 0) - p.commission as total_pnl,\n'
     '               p.fill_count, p.last_fill_time\n'
     '        from positions p left join marks m on m.symbol = p.symbol\n'
     '    '),
    ('\n'
     '        create view pnl_by_account as\n'
     '        select account,\n'
     '               count(*) filter (where qty <> 0) as open_positions,\n'
     '               sum(realized_pnl) as realized_pnl,\n'
     '               sum(unrealized_pnl) as unrealized_pnl,\n'
     '               sum(commission) as commission,\n'
     '               sum(total_pnl) as total_pnl,\n'
     '               bool_or(qty <> 0 and mark_price is null) as missing_marks\n'
     '        from positions_pnl group by account\n'
     '    '),
    ('\n'
     '        create view open_orders as\n'
     '        select order_id, account, symbol, side, order_type, time_in_force, status, order_qty, price,\n'
     '               cum_qty, leaves_qty, avg_px, first_event_time, last_event_time\n'
     "        from orders where status in ('PENDING_NEW','NEW','PARTIALLY_FILLED','PENDING_CANCEL','PENDING_REPLACE')\n"
     '    '),
    ('\n'
     '        create view exposure_by_symbol as\n'
     '        select symbol,\n'
     '               sum(qty) as net_qty,\n'
     '               sum(qty) filter (where qty > 0) as long_qty,\n'
     '               -sum(qty) filter (where qty < 0) as short_qty,\n'
     '               max(mark_price) as mark_price,\n'
     '               sum(qty * mark_price) as net_notional,\n'
     '               sum(abs(qty) * mark_price) as gross_notional,\n'
     '               count(*) filter (where qty <> 0) as accounts\n'
     '        from positions_pnl group by symbol\n'
     '    '),
)
#: The open orders' partial index as this revision created it.
_OPEN_STATUSES_SQL = "('PENDING_NEW','NEW','PARTIALLY_FILLED','PENDING_CANCEL','PENDING_REPLACE')"

def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("order_id", sa.Text, primary_key=True),
        sa.Column("kafka_partition", sa.Integer, nullable=False),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("side", sa.Text, nullable=False),
        sa.Column("order_type", sa.Text, nullable=False),
        sa.Column("time_in_force", sa.Text, nullable=False),
        sa.Column("cl_ord_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("order_qty", NUM, nullable=False),
        sa.Column("price", NUM),
        sa.Column("stop_price", NUM),
        sa.Column("cum_qty", NUM, nullable=False),
        sa.Column("leaves_qty", NUM, nullable=False),
        sa.Column("avg_px", NUM, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("first_event_time", TS, nullable=False),
        sa.Column("last_event_time", TS, nullable=False),
        sa.Column("state", pg.JSONB, nullable=False, comment="full state-machine state, for reload"),
    )
    op.create_index("orders_account_idx", "orders", ["account", "symbol"])
    op.create_index("orders_symbol_idx", "orders", ["symbol"])
    op.create_index("orders_partition_idx", "orders", ["kafka_partition"])
    op.create_index("orders_open_idx", "orders", ["account"],
                    postgresql_where=sa.text(f"status in {_OPEN_STATUSES_SQL}"))

    op.create_table(
        "executions",
        sa.Column("exec_id", sa.Text, primary_key=True),
        sa.Column("order_id", sa.Text, nullable=False),
        sa.Column("kafka_partition", sa.Integer, nullable=False),
        sa.Column("source_offset", sa.BigInteger, nullable=False, comment="offset of the fill event"),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("side", sa.Text, nullable=False),
        sa.Column("qty", NUM, nullable=False),
        sa.Column("price", NUM, nullable=False),
        sa.Column("commission", NUM, nullable=False),
        sa.Column("currency", sa.Text),
        sa.Column("liquidity", sa.Text),
        sa.Column("exec_time", TS, nullable=False),
        sa.Column("busted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("corrected", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("original_qty", NUM, comment="before the latest correction"),
        sa.Column("original_price", NUM, comment="before the latest correction"),
        sa.Column("last_event_id", sa.Text, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("executions_order_idx", "executions", ["order_id"])
    op.create_index("executions_account_symbol_idx", "executions", ["account", "symbol"])
    op.create_index("executions_partition_idx", "executions", ["kafka_partition", "source_offset"])

    op.create_table(
        "positions",
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("kafka_partition", sa.Integer, nullable=False),
        sa.Column("qty", NUM, nullable=False, comment="signed: > 0 long, < 0 short"),
        sa.Column("avg_px", NUM, nullable=False, comment="average open price; 0 when flat"),
        sa.Column("realized_pnl", NUM, nullable=False, comment="gross, prices only"),
        sa.Column("realized_commission", NUM, nullable=False),
        sa.Column("open_commission", NUM, nullable=False),
        sa.Column("commission", NUM, nullable=False, comment="total paid"),
        sa.Column("fill_count", sa.Integer, nullable=False),
        sa.Column("last_fill_time", TS),
        sa.PrimaryKeyConstraint("account", "symbol"),
    )
    op.create_index("positions_symbol_idx", "positions", ["symbol"])
    op.create_index("positions_partition_idx", "positions", ["kafka_partition"])

    op.create_table(
        "marks",
        sa.Column("symbol", sa.Text, primary_key=True),
        sa.Column("kafka_partition", sa.Integer, nullable=False),
        sa.Column("mark_price", NUM, nullable=False),
        sa.Column("bid", NUM),
        sa.Column("ask", NUM),
        sa.Column("last", NUM),
        sa.Column("event_time", TS, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("source", sa.Text),
    )
    op.create_index("marks_partition_idx", "marks", ["kafka_partition"])

    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("projection", sa.Text, nullable=False),
        sa.Column("source_topic", sa.Text, nullable=False),
        sa.Column("source_partition", sa.Integer, nullable=False),
        sa.Column("source_offset", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("record_key", sa.LargeBinary),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("projection", "source_topic", "source_partition", "source_offset",
                            name="dead_letters_source_key"),
    )
    op.create_index("dead_letters_reason_idx", "dead_letters", ["reason"])

    for statement in _VIEWS:
        op.execute(statement)

    role = _reader_role()
    op.execute(f"""
        do $$ begin
            if not exists (select from pg_roles where rolname = '{role}') then
                create role {role} nologin;
            end if;
        end $$
    """)
    op.execute(f"grant usage on schema public to {role}")
    op.execute(f"grant select on all tables in schema public to {role}")
    op.execute(f"alter default privileges in schema public grant select on tables to {role}")


def downgrade() -> None:
    role = _reader_role()
    op.execute(f"alter default privileges in schema public revoke select on tables from {role}")
    op.execute(f"revoke select on all tables in schema public from {role}")
    op.execute(f"revoke usage on schema public from {role}")
    for view in ("exposure_by_symbol", "open_orders", "pnl_by_account", "positions_pnl"):
        op.execute(f"drop view if exists {view}")
    for table in ("dead_letters", "marks", "positions", "executions", "orders"):
        op.drop_table(table)
