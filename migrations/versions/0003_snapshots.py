"""Projection snapshots: the state of one partition of a projection at a checkpoint offset.

A snapshot row says "folding records [0, next_offset) of topic[partition] gives this state";
`state` is the zlib-compressed JSON of that partition's state (projections.snapshots). The
projector writes snapshots in the same transaction as the checkpoint offsets they describe, so
a snapshot never runs ahead of committed rows. `backbone state --as-of` and `backbone replay`
start from the newest snapshot at or before their cut and replay only the tail.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _reader_role() -> str:
    return context.config.attributes.get("readonly_role", "backbone_reader")


def upgrade() -> None:
    op.create_table(
        "projection_snapshots",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("projection", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("next_offset", sa.BigInteger, nullable=False,
                  comment="the state folds every record of the partition below this offset"),
        sa.Column("max_timestamp", TS, comment="highest record timestamp covered; null if none"),
        sa.Column("events_covered", sa.BigInteger, nullable=False,
                  comment="records folded into the state (applied, duplicate or dead-lettered)"),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("state", sa.LargeBinary, nullable=False, comment="zlib-compressed JSON, projections.snapshots"),
        # The unique index also answers "the newest snapshot at or before offset X" of a
        # partition: an index range scan backwards from (projection, topic, partition, X).
        sa.UniqueConstraint("projection", "topic", "partition", "next_offset",
                            name="projection_snapshots_offset_key"),
        sa.CheckConstraint("next_offset >= 0", name="snapshot_next_offset_non_negative"),
        sa.CheckConstraint("partition >= 0", name="snapshot_partition_non_negative"),
        sa.CheckConstraint("events_covered >= 0", name="snapshot_events_covered_non_negative"),
    )
    # "The newest snapshot covering nothing after time T" (listing and pruning by business time).
    op.create_index("projection_snapshots_time_idx", "projection_snapshots",
                    ["projection", "topic", "partition", "max_timestamp"])
    op.execute(f"grant select on projection_snapshots to {_reader_role()}")


def downgrade() -> None:
    op.execute(f"revoke select on projection_snapshots from {_reader_role()}")
    op.drop_index("projection_snapshots_time_idx", table_name="projection_snapshots")
    op.drop_table("projection_snapshots")
