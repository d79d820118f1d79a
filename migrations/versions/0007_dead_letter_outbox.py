"""The dead-letter topic is an outbox relay of `dead_letters`: each row says where it went.

Producing a batch's dead letters to the topic before its transaction commits produces them
again on every failed attempt of the batch (44 topic records for 5 rows after a batch that
failed on every restart, before this revision). From this revision on, rows are relayed after
their batch commits;
`relay_partition` and `relay_from` (the dead-letter topic's partition and its end offset,
recorded before the row is produced) bound where a relay that crashed may have left a row,
`relayed_offset` says where it is (NULL: not yet). `source_time` keeps the record's timestamp,
which the relayed record carries. Rows written before this revision were produced by then:
their `relayed_offset` is -1 (relayed, offset not recorded).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("dead_letters", sa.Column("source_time", sa.TIMESTAMP(timezone=True)))
    op.add_column("dead_letters", sa.Column("relay_partition", sa.Integer))
    op.add_column("dead_letters", sa.Column("relay_from", sa.BigInteger))
    op.add_column("dead_letters", sa.Column("relayed_offset", sa.BigInteger))
    op.execute("update dead_letters set relayed_offset = -1")
    op.create_index("dead_letters_unrelayed_idx", "dead_letters", ["projection", "source_topic", "source_partition"],
                    postgresql_where=sa.text("relayed_offset is null"))


def downgrade() -> None:
    op.drop_index("dead_letters_unrelayed_idx", table_name="dead_letters")
    for column in ("relayed_offset", "relay_from", "relay_partition", "source_time"):
        op.drop_column("dead_letters", column)
