"""Per-table, per-partition checksums of a projection's rows, to compare old and new."""

from __future__ import annotations

import hashlib

import psycopg
from psycopg import sql

from backbone.settings import Settings
from projections.rebuild.model import LETTER_COLS, TABLES, TP, TableChecksum
from projections.trading import NAME as TRADING

_ROW_HASH = "coalesce(sum(('x' || left(md5({row}::text), 16))::bit(64)::bigint), 0)"


def partition_sums(conn: psycopg.Connection, schema: str, settings: Settings) -> dict[str, dict[TP, tuple[int, int]]]:
    """Per table and Kafka partition: (rows, sum of 64-bit row hashes): order-independent, streaming."""
    topic_of = {"orders": settings.topic_orders, "executions": settings.topic_orders,
                "positions": settings.topic_orders, "marks": settings.topic_marketdata}
    out: dict[str, dict[TP, tuple[int, int]]] = {}
    s = sql.Identifier(schema)
    for table in TABLES:
        # orders.state is json, kept as written: rows from before migration 0005 hold jsonb's
        # spelling of the same value, so the row is hashed as jsonb (canonical: one spelling a value)
        row = "to_jsonb(t)" if table == "orders" else "t"
        query = sql.SQL("select kafka_partition, count(*), " + _ROW_HASH.format(row=row) +
                        " from {}.{} t group by 1").format(s, sql.Identifier(table))
        out[table] = {(topic_of[table], p): (n, int(h)) for p, n, h in conn.execute(query)}
    row = f"row({', '.join('t.' + c.strip() for c in LETTER_COLS.split(','))})"
    query = sql.SQL("select source_topic, source_partition, count(*), " + _ROW_HASH.format(row=row) +
                    " from {}.dead_letters t where projection = %s group by 1, 2").format(s)
    out["dead_letters"] = {(t, p): (n, int(h)) for t, p, n, h in conn.execute(query, (TRADING,))}
    return out


def table_checksum(parts: dict[TP, tuple[int, int]]) -> TableChecksum:
    text = ";".join(f"{t}:{p}:{n}:{h}" for (t, p), (n, h) in sorted(parts.items()))
    return TableChecksum(sum(n for n, _h in parts.values()), hashlib.md5(text.encode()).hexdigest()[:16])
