"""A GTC or GTD order done for the day is open: it works again the next day.

View `open_orders` and the partial index `orders_open_idx` now take the orders that may still
execute as the order state machine says (`OrderState.is_terminal`, rendered by
`projections.read_model.OPEN_ORDERS_SQL`): the statuses that are not terminal, and
DONE_FOR_DAY of a GTC or GTD order, which keeps its leaves quantity. The comment of
`orders.state` says what the column has held since 0006.

The view is replaced in place (`create or replace`: same columns), so the read-only role keeps
its grant.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from projections import read_model

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

#: open_orders as 0002 created it, verbatim (the downgrade puts it back).
_OPEN_ORDERS_0002 = (
    "\n        create or replace view open_orders as\n        select order_id, account, symbol, side, order_type, "
    "time_in_force, status, order_qty, price,\n               cum_qty, leaves_qty, avg_px, first_event_time, "
    "last_event_time\n        from orders where status in ('PENDING_NEW','NEW','PARTIALLY_FILLED','PENDING_CANCEL',"
    "'PENDING_REPLACE')\n    ")
_OPEN_STATUSES_0002 = "status in ('PENDING_NEW','NEW','PARTIALLY_FILLED','PENDING_CANCEL','PENDING_REPLACE')"
_STATE_COMMENT = ("what the order state machine keeps beyond the columns (fills, open requests, ids seen), "
                  "for reload")
_STATE_COMMENT_0002 = "full state-machine state, for reload"


def _open_orders() -> str:
    (statement,) = [s for s in read_model.view_statements() if s.split()[2] == "open_orders"]
    return statement.replace("create view", "create or replace view", 1)


def _index(where: str) -> None:
    op.drop_index("orders_open_idx", table_name="orders")
    op.create_index("orders_open_idx", "orders", ["account"], postgresql_where=sa.text(where))


def upgrade() -> None:
    op.execute(_open_orders())
    _index(read_model.OPEN_ORDERS_SQL)
    op.alter_column("orders", "state", existing_type=sa.JSON, comment=_STATE_COMMENT,
                    existing_comment=_STATE_COMMENT_0002)


def downgrade() -> None:
    op.alter_column("orders", "state", existing_type=sa.JSON, comment=_STATE_COMMENT_0002,
                    existing_comment=_STATE_COMMENT)
    _index(_OPEN_STATUSES_0002)
    op.execute(_OPEN_ORDERS_0002)
