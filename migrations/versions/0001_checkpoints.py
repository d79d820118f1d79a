"""Projection checkpoints: the next offset of every (projection, topic, partition).

Postgres, not Kafka, is the source of truth for projection progress: these rows are written
in the same transaction as the projected rows they describe.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projection_checkpoints",
        sa.Column("projection", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("projection", "topic", "partition"),
        sa.CheckConstraint("next_offset >= 0", name="next_offset_non_negative"),
        sa.CheckConstraint("partition >= 0", name="partition_non_negative"),
    )


def downgrade() -> None:
    op.drop_table("projection_checkpoints")
