"""The audit archive: `audit_records` (one row per record of trading.orders and
trading.marketdata, refused ones included, with its hash-chain link) and `audit_gaps` (offset
ranges deleted from the log before they were archived). See docs/audit.md.

Append-only twice over: the owner (the role that runs the migrations, which the projector uses)
and PUBLIC lose UPDATE, DELETE, TRUNCATE, REFERENCES and TRIGGER, and a statement trigger
refuses UPDATE, DELETE and TRUNCATE from anyone, superusers included, unless triggers are off
(`session_replication_role = replica`, a superuser's act, which `backbone audit verify` exposes).
The read-only role may SELECT.

Not partitioned: the chain and the contiguity check rest on the primary key (topic, partition,
offset), and a time-partitioned table could not keep that key unique across partitions.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
_TABLES = ("audit_records", "audit_gaps")


def _reader_role() -> str:
    return context.config.attributes.get("readonly_role", "backbone_reader")


def upgrade() -> None:
    op.create_table(
        "audit_records",
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("kafka_partition", sa.Integer, primary_key=True),
        sa.Column("kafka_offset", sa.BigInteger, primary_key=True),
        sa.Column("kafka_timestamp_ms", sa.BigInteger, nullable=False, comment="the record's Kafka timestamp, ms"),
        sa.Column("record_key", sa.LargeBinary, comment="NULL: the record had no key"),
        sa.Column("record_value", sa.LargeBinary, comment="the record's bytes; NULL: a tombstone"),
        sa.Column("schema_fingerprint", sa.LargeBinary, comment="CRC-64-AVRO of the writer schema (header bytes)"),
        sa.Column("event_id", sa.Text),
        sa.Column("event_type", sa.Text),
        sa.Column("order_id", sa.Text),
        sa.Column("cl_ord_id", sa.Text),
        sa.Column("orig_cl_ord_id", sa.Text),
        sa.Column("exec_id", sa.Text),
        sa.Column("exec_ref_id", sa.Text),
        sa.Column("account", sa.Text),
        sa.Column("symbol", sa.Text),
        sa.Column("event_time", TS),
        sa.Column("ingest_time", TS),
        sa.Column("status_after", sa.Text, comment="the order's status after the event (unchanged if refused)"),
        sa.Column("dead_letter_reason", sa.Text, comment="NULL: applied; else why the trading rules refuse it"),
        sa.Column("dead_letter_detail", sa.Text),
        sa.Column("chain_hash", sa.LargeBinary, nullable=False, comment="docs/audit.md#the-hash-chain"),
        sa.Column("archived_at", TS, nullable=False, server_default=sa.text("now()")),
    )
    for name, cols in (("order_id", ["order_id"]), ("cl_ord_id", ["cl_ord_id"]),
                       ("orig_cl_ord_id", ["orig_cl_ord_id"]), ("exec_id", ["exec_id"]),
                       ("exec_ref_id", ["exec_ref_id"])):
        op.create_index(f"audit_records_{name}_idx", "audit_records", cols,
                        postgresql_where=sa.text(f"{cols[0]} is not null"))
    op.create_index("audit_records_account_idx", "audit_records", ["account", "symbol", "event_time"])
    op.create_index("audit_records_symbol_idx", "audit_records", ["symbol", "event_time"])

    op.create_table(
        "audit_gaps",
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("kafka_partition", sa.Integer, primary_key=True),
        sa.Column("first_offset", sa.BigInteger, primary_key=True),
        sa.Column("last_offset", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("detected_at", TS, nullable=False, server_default=sa.text("now()")),
    )

    op.execute("""
        create function audit_append_only() returns trigger language plpgsql as $$
        begin
            raise exception 'the audit archive is append-only: % on % refused', tg_op, tg_table_name
                using errcode = 'insufficient_privilege';
        end $$
    """)
    role = _reader_role()
    for table in _TABLES:
        op.execute(f"create trigger {table}_append_only before update or delete or truncate on {table} "
                   "for each statement execute function audit_append_only()")
        op.execute(f"revoke update, delete, truncate, references, trigger on {table} from public, current_user")
        op.execute(f"grant select on {table} to {role}")


def downgrade() -> None:
    for table in reversed(_TABLES):
        op.drop_table(table)  # drops its trigger with it; dropping needs ownership, not a privilege
    op.execute("drop function audit_append_only()")
