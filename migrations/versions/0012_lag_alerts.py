"""The lag monitor's alerts: `lag_alerts` holds one row per alert whose condition holds (pending
or firing), so a restarted monitor goes on from there instead of firing again; `lag_alert_history`
every transition (fired, resolved); `lag_alert_deliveries` when each transition reached each sink
(the outbox: a row without `delivered_at` is retried on later passes). See docs/sql.md.
The read-only role may SELECT.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_TABLES = ("lag_alerts", "lag_alert_history", "lag_alert_deliveries")


def _reader_role() -> str:
    return context.config.attributes.get("readonly_role", "backbone_reader")


def upgrade() -> None:
    op.create_table(
        "lag_alerts",
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("group_id", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("phase", sa.Text, nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("severity", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("rule", "group_id", "topic"),
        sa.CheckConstraint("phase in ('pending', 'firing')", name="lag_alerts_phase"),
    )
    op.create_table(
        "lag_alert_history",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("group_id", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("severity", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("kind in ('firing', 'resolved')", name="lag_alert_history_kind"),
    )
    op.create_index("lag_alert_history_key", "lag_alert_history", ["group_id", "topic", "rule", "at"])
    op.create_table(
        "lag_alert_deliveries",
        sa.Column("history_id", sa.BigInteger, sa.ForeignKey("lag_alert_history.id", ondelete="cascade"),
                  nullable=False),
        sa.Column("sink", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text),
        sa.PrimaryKeyConstraint("history_id", "sink"),
    )
    op.create_index("lag_alert_deliveries_pending", "lag_alert_deliveries", ["next_attempt_at"],
                    postgresql_where=sa.text("delivered_at is null"))
    role = _reader_role()
    for table in _TABLES:
        op.execute(f"grant select on {table} to {role}")


def downgrade() -> None:
    for table in reversed(_TABLES):
        op.drop_table(table)
