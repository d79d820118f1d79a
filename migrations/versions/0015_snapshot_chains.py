"""Snapshots that hold what changed: `projection_snapshots.base_next_offset`.

A snapshot row may be a change on an earlier snapshot of the same projection and partition
(format 3, projections.snapshots): `base_next_offset` is that snapshot's next_offset, null for a
whole snapshot. The foreign key keeps every chain whole: a snapshot another one grows from
cannot be deleted on its own (`checkpoints prune` keeps the chains of the snapshots it keeps).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from backbone.db import psycopg_connection
from projections import comments

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("projection_snapshots", sa.Column("base_next_offset", sa.BigInteger))
    op.create_foreign_key("projection_snapshots_base_fkey", "projection_snapshots", "projection_snapshots",
                          ["projection", "topic", "partition", "base_next_offset"],
                          ["projection", "topic", "partition", "next_offset"])
    op.create_check_constraint("snapshot_base_before_it", "projection_snapshots",
                               "base_next_offset is null or base_next_offset < next_offset")
    if context.is_offline_mode():
        return
    comments.write_comments(psycopg_connection(op.get_bind()), "public", ("projection_snapshots",))


def downgrade() -> None:
    op.execute("delete from projection_snapshots where base_next_offset is not null")
    op.drop_constraint("snapshot_base_before_it", "projection_snapshots")
    op.drop_constraint("projection_snapshots_base_fkey", "projection_snapshots")
    op.drop_column("projection_snapshots", "base_next_offset")
