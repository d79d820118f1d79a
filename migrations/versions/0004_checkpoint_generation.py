"""A generation on every projection checkpoint, so a rebuild's swap fences every running
projector, idle partitions included.

The compare-and-set of a batch's offsets also requires the generation the projector loaded;
`backbone rebuild` writes the swapped-in checkpoints with the next generation. Offsets alone
could not fence a partition where the live projection was idle at the log end (its offset is
the same before and after the swap), so a running projector kept its old in-memory state there.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("projection_checkpoints", sa.Column(
        "generation", sa.BigInteger, nullable=False, server_default="0",
        comment="bumped by each rebuild swap; a projector that loaded another generation is fenced"))


def downgrade() -> None:
    op.drop_column("projection_checkpoints", "generation")
