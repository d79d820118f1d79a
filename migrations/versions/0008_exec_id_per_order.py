"""Executions are keyed by (order_id, exec_id): an exec id is unique within its order only.

FIX makes an ExecID unique per sell side, not across venues: two orders routed to two venues
(two symbols, two Kafka partitions) can report the same exec id, and both fills are genuine.
Keyed by exec_id alone, the second one to be folded took the row of the first (or was
refused), whichever partition happened to be folded first. Rows written before this revision
already have distinct exec ids, so the new key holds for them. `executions_order_idx` (on
order_id) goes: the new primary key starts with order_id.

The comments of `original_qty` and `original_price` now say what the projector has always
kept there: the values from before the first correction.

The downgrade restores the exec_id key, and refuses while two orders share an exec id (that
key cannot hold them both: delete or rename one first).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backbone.errors import BackboneError

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

NUM = sa.Numeric()
_ORIGINAL = ("original_qty", "original_price")


def upgrade() -> None:
    op.drop_constraint("executions_pkey", "executions", type_="primary")
    op.create_primary_key("executions_pkey", "executions", ["order_id", "exec_id"])
    op.drop_index("executions_order_idx", table_name="executions")
    for column in _ORIGINAL:
        op.alter_column("executions", column, existing_type=NUM, comment="before the first correction",
                        existing_comment="before the latest correction")


def downgrade() -> None:
    shared = op.get_bind().execute(sa.text(
        "select exec_id, string_agg(order_id, ', ' order by order_id) from executions group by exec_id "
        "having count(*) > 1 order by exec_id limit 5")).fetchall()
    if shared:
        named = "; ".join(f"{exec_id} (orders {orders})" for exec_id, orders in shared)
        raise BackboneError(f"cannot downgrade below 0008: executions keyed by exec_id alone cannot hold an exec id "
                            f"that several orders share: {named}")
    for column in _ORIGINAL:
        op.alter_column("executions", column, existing_type=NUM, comment="before the latest correction",
                        existing_comment="before the first correction")
    op.create_index("executions_order_idx", "executions", ["order_id"])
    op.drop_constraint("executions_pkey", "executions", type_="primary")
    op.create_primary_key("executions_pkey", "executions", ["exec_id"])
