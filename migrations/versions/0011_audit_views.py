"""Views over the audit archive: `audit_order_events` (every archived order event with the
order's status before and after it) and `audit_executions` (every applied fill with its busts
and corrections and the mark in force at its event time). See docs/audit.md#sql-views.

Quantities and prices stay in the records' bytes (Avro): the views give coordinates, ids, times
and statuses; `backbone audit order` and `backbone audit trades` decode the values. An order
event is a row with an `event_type` (marks have none); a mark, a row of a symbol without one.
The read-only role may SELECT.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-10
"""

from __future__ import annotations

from alembic import context, op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_VIEWS = {
    # lag() over the order's own rows: a filter on order_id is pushed below the window (its
    # partition key), so `where order_id = ...` reads the order_id index
    "audit_order_events": """
        select order_id, topic, kafka_partition, kafka_offset, kafka_timestamp_ms, event_id, event_type,
               cl_ord_id, orig_cl_ord_id, exec_id, exec_ref_id, account, symbol, event_time, ingest_time,
               lag(status_after) over (partition by order_id order by kafka_partition, kafka_offset)
                   as status_before,
               status_after, dead_letter_reason, dead_letter_detail
        from audit_records
        where order_id is not null and event_type is not null
    """,
    # restated_by: the corrections and busts naming the fill, or naming a correction of it
    "audit_executions": """
        select f.order_id, f.exec_id, f.cl_ord_id, f.account, f.symbol, f.event_time, f.ingest_time,
               f.topic, f.kafka_partition, f.kafka_offset, f.status_after as status_after_fill,
               coalesce(r.busted, false) as busted, coalesce(r.corrected, false) as corrected,
               coalesce(r.restated_by, '{}') as restated_by,
               m.kafka_partition as mark_partition, m.kafka_offset as mark_offset, m.event_time as mark_time
        from audit_records f
        left join lateral (
            with recursive restating(exec_id, event_type, kafka_offset) as (
                select a.exec_id, a.event_type, a.kafka_offset from audit_records a
                where a.exec_ref_id = f.exec_id and a.order_id = f.order_id and a.dead_letter_reason is null
                  and a.event_type in ('TRADE_CORRECTED', 'TRADE_CANCELED')
                union
                select a.exec_id, a.event_type, a.kafka_offset from audit_records a
                join restating s on a.exec_ref_id = s.exec_id
                where a.order_id = f.order_id and a.dead_letter_reason is null
                  and a.event_type in ('TRADE_CORRECTED', 'TRADE_CANCELED')
            )
            select array_agg(exec_id order by kafka_offset) as restated_by,
                   bool_or(event_type = 'TRADE_CANCELED') as busted,
                   bool_or(event_type = 'TRADE_CORRECTED') as corrected
            from restating
        ) r on true
        left join lateral (
            select k.kafka_partition, k.kafka_offset, k.event_time from audit_records k
            where k.symbol = f.symbol and k.event_time <= f.event_time and k.event_type is null
              and k.dead_letter_reason is null
            order by k.event_time desc, k.kafka_offset desc
            limit 1
        ) m on true
        where f.event_type = 'FILLED' and f.dead_letter_reason is null
    """,
}


def _reader_role() -> str:
    return context.config.attributes.get("readonly_role", "backbone_reader")


def upgrade() -> None:
    role = _reader_role()
    for name, body in _VIEWS.items():
        op.execute(f"create view {name} as {body}")
        op.execute(f"grant select on {name} to {role}")


def downgrade() -> None:
    for name in reversed(_VIEWS):
        op.execute(f"drop view {name}")
