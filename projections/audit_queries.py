"""Reading the audit archive for `backbone audit order` and `backbone audit trades`: the rows
of an order, the marks in force, the executions of a window; and `--verify`'s checks against
the log and the projected `orders` row (docs/audit.md#order-lineage). The assembly itself is
pure: `projections.audit_lineage`.

Every query runs on the caller's connection, in its snapshot (the CLI opens a REPEATABLE READ
transaction), and reads indexed columns: `order_id`, `cl_ord_id`, `orig_cl_ord_id`, `exec_id`,
`exec_ref_id`, `(account, symbol, event_time)`, `(symbol, event_time)`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg

from backbone.codec.avro import AvroCodec
from backbone.codec.json_form import format_decimal
from backbone.domain.events import MarketMark, OrderEvent
from backbone.domain.order_state import OrderState
from backbone.errors import BackboneError, DecodeError
from backbone.kafka.reader import LogReader, ReadRange, Record
from backbone.settings import Settings
from projections.audit import as_bytes
from projections.audit_lineage import Archived, Lineage, Mark, Marks, assemble, is_fill

TP = tuple[str, int]
_COLS = ("topic, kafka_partition, kafka_offset, kafka_timestamp_ms, record_key, record_value, status_after, "
         "dead_letter_reason, dead_letter_detail, event_time, ingest_time")
#: the `orders` columns a refold is compared with (OrderState attributes of the same name)
ORDER_COLUMNS = ("account", "symbol", "side", "order_type", "time_in_force", "cl_ord_id", "status", "order_qty",
                 "price", "stop_price", "cum_qty", "leaves_qty", "avg_px", "seq")


class LineageError(BackboneError):
    """An id the archive does not know, or one that names several orders."""


def resolve_order(conn: psycopg.Connection, topic: str, *, order_id: str | None = None,
                  cl_ord_id: str | None = None, exec_id: str | None = None) -> str:
    """The order an id names: an order id, a ClOrdID (its own or as OrigClOrdID), or an ExecID
    (of a fill, a bust or a correction, or named by one as ExecRefID)."""
    if order_id is not None:
        sql, params, what = "select 1 from audit_records where order_id = %s and topic = %s limit 1", \
            (order_id, topic), f"order {order_id}"
        if conn.execute(sql, params).fetchone() is None:
            raise LineageError(f"no {what} in the archive")
        return order_id
    if cl_ord_id is not None:
        column, value, what = ("cl_ord_id", "orig_cl_ord_id"), cl_ord_id, f"ClOrdID {cl_ord_id}"
    elif exec_id is not None:
        column, value, what = ("exec_id", "exec_ref_id"), exec_id, f"ExecID {exec_id}"
    else:
        raise LineageError("give an order id, --cl-ord-id or --exec-id")
    found = sorted({r[0] for col in column for r in conn.execute(
        f"select distinct order_id from audit_records where {col} = %s and topic = %s and order_id is not null",
        (value, topic))})
    if not found:
        raise LineageError(f"no order with {what} in the archive")
    if len(found) > 1:
        raise LineageError(f"{what} names {len(found)} orders ({', '.join(found[:5])}): give the order id")
    return found[0]


def _decode(codec: AvroCodec, value: bytes | None, kind: type) -> Any:
    if not value:
        return None
    try:
        record = codec.decode(value)
    except DecodeError:
        return None
    return record if isinstance(record, kind) else None


def order_records(conn: psycopg.Connection, codec: AvroCodec, topic: str,
                  order_ids: Iterable[str]) -> dict[str, list[Archived]]:
    """Every archived record of the orders topic naming each order, decoded, in log order."""
    out: dict[str, list[Archived]] = {}
    for row in conn.execute(f"select order_id, {_COLS} from audit_records where order_id = any(%s) and topic = %s "
                            "order by kafka_partition, kafka_offset", (list(order_ids), topic)):
        oid, t, p, o, ts, key, value, status, reason, detail, event_time, ingest_time = row
        value = as_bytes(value)
        out.setdefault(oid, []).append(Archived(t, p, o, ts, _decode(codec, value, OrderEvent), status, reason, detail,
                                                as_bytes(key), value, (event_time, ingest_time)))
    return out


def marks_in_force(conn: psycopg.Connection, codec: AvroCodec, topic: str,
                   at: Iterable[tuple[str, datetime]]) -> Marks:
    """The marks in force at each (symbol, event time): per point, the latest applied mark of the
    symbol at or before it (the index on (symbol, event_time) finds each)."""
    points = sorted(set(at))
    if not points:
        return Marks(())
    # The planner prices the lateral walk of every point high enough to JIT-compile the query:
    # ~140 ms of compiling for a query of index look-ups (EXPLAIN ANALYZE, 8,078 points).
    # SET LOCAL: for the rest of the caller's read-only transaction.
    conn.execute("set local jit = off")
    rows = conn.execute(
        "select m.kafka_partition, m.kafka_offset, a.record_value from (select distinct l.kafka_partition, "
        "  l.kafka_offset from unnest(%s::text[], %s::timestamptz[]) as p(symbol, at) "
        "  cross join lateral (select kafka_partition, kafka_offset from audit_records a "
        "    where a.symbol = p.symbol and a.event_time <= p.at and a.topic = %s and a.dead_letter_reason is null "
        "    order by a.event_time desc, a.kafka_offset desc limit 1) l) m "
        "join audit_records a on a.topic = %s and (a.kafka_partition, a.kafka_offset) = (m.kafka_partition, "
        "m.kafka_offset)",
        ([s for s, _ in points], [t for _, t in points], topic, topic)).fetchall()
    marks = []
    for partition, offset, value in rows:
        mark = _decode(codec, as_bytes(value), MarketMark)
        if mark is not None:
            marks.append(Mark(topic, partition, offset, mark))
    return Marks(marks)


def _context_points(records: Iterable[Archived]) -> list[tuple[str, datetime]]:
    return [(r.event.symbol, r.event.event_time) for r in records if r.event is not None]


def order_lineage(conn: psycopg.Connection, settings: Settings, codec: AvroCodec, order_id: str) -> Lineage:
    records = order_records(conn, codec, settings.topic_orders, [order_id]).get(order_id, [])
    marks = marks_in_force(conn, codec, settings.topic_marketdata, _context_points(records))
    return assemble(order_id, records, marks)


def trade_lineages(conn: psycopg.Connection, settings: Settings, codec: AvroCodec, start: datetime, end: datetime,
                   *, account: str | None = None, symbol: str | None = None) -> list[Lineage]:
    """The lineage of every order with an applied fill whose event time is in [start, end],
    with the mark in force at its fills only (`assemble`'s `fills_only`)."""
    where = ["topic = %s", "event_type = 'FILLED'", "dead_letter_reason is null", "event_time >= %s",
             "event_time <= %s"]
    params: list[Any] = [settings.topic_orders, start, end]
    for column, value in (("account", account), ("symbol", symbol)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    order_ids = [r[0] for r in conn.execute(
        f"select distinct order_id from audit_records where {' and '.join(where)} order by 1", params)]
    by_order = order_records(conn, codec, settings.topic_orders, order_ids)
    marks = marks_in_force(conn, codec, settings.topic_marketdata,
                           _context_points(r for rs in by_order.values() for r in rs if is_fill(r)))
    return [assemble(oid, by_order.get(oid, []), marks, fills_only=True) for oid in order_ids]


# -- --verify ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Finding:
    """One disagreement `--verify` found: where, and what."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


#: an order's records of one partition closer than this are read in one pass: the records between
#: cost ~2-3 µs each to skip, a read of its own 15-50 ms of round trips (assign, fetch)
READ_SPAN = 5000


def read_passes(offsets: Iterable[tuple[TP, int]], span: int = READ_SPAN) -> list[dict[TP, ReadRange]]:
    """The reads that cover `offsets`: each partition's offsets cut into ranges no wider than
    `span`, the i-th range of every partition in the i-th read (a read takes one range a
    partition)."""
    runs: dict[TP, list[ReadRange]] = {}
    for tp, offset in sorted(set(offsets)):
        mine = runs.setdefault(tp, [])
        if mine and offset - mine[-1].start < span:
            mine[-1] = ReadRange(mine[-1].start, offset + 1)
        else:
            mine.append(ReadRange(offset, offset + 1))
    return [{tp: mine[i] for tp, mine in runs.items() if i < len(mine)}
            for i in range(max((len(mine) for mine in runs.values()), default=0))]


def check_log(settings: Settings, records: list[Archived]) -> list[Finding]:
    """Each record read again from Kafka at its coordinates; its timestamp, key and value must
    equal the archived ones."""
    if not records:
        return []
    findings: list[Finding] = []
    wanted: set[tuple[TP, int]] = set()
    got: dict[tuple[TP, int], Record] = {}

    def keep(msg: Record, tp: TP, offset: int) -> None:
        if (tp, offset) in wanted:
            got[(tp, offset)] = msg

    with LogReader(settings) as reader:
        bounds = reader.watermarks(sorted({(r.topic, r.partition) for r in records}))
        wanted.update(((r.topic, r.partition), r.offset) for r in records
                      if bounds[(r.topic, r.partition)][0] <= r.offset < bounds[(r.topic, r.partition)][1])
        passes = read_passes(wanted)
        # a read's consume waits for a batch or 50 ms: a batch the width of the widest range
        # comes at once, where the reader's default (5,000) waits at a partition's end
        reader.batch = max((r.end - r.start for ranges in passes for r in ranges.values()), default=1)
        for ranges in passes:
            reader.read(ranges, keep, on_gone=lambda _tp, _at, limit: limit)
        for tp, offset in sorted(wanted - got.keys()):  # deleted while read: each alone, to tell which
            reader.read({tp: ReadRange(offset, offset + 1)}, keep, on_gone=lambda _tp, _at, limit: limit)
    for r in records:
        tp = (r.topic, r.partition)
        if (tp, r.offset) not in wanted:
            low, high = bounds[tp]
            findings.append(Finding(r.where, f"not in the log (it holds offsets {low}..{high - 1})"))
            continue
        msg = got.get((tp, r.offset))
        if msg is None:
            findings.append(Finding(r.where, "not in the log (deleted while read)"))
            continue
        differ = [name for name, a, b in (("timestamp", r.timestamp_ms, msg.timestamp()[1]),
                                          ("key", r.key, msg.key()), ("value", r.value, msg.value())) if a != b]
        if differ:
            verb = "differs" if len(differ) == 1 else "differ"
            findings.append(Finding(r.where, f"the archived {' and '.join(differ)} {verb} from the log's"))
    return findings


def orders_row(conn: psycopg.Connection, order_id: str) -> dict[str, Any] | None:
    cur = conn.execute(f"select {', '.join(ORDER_COLUMNS)} from orders where order_id = %s", (order_id,))
    row = cur.fetchone()
    return None if row is None else dict(zip(ORDER_COLUMNS, row, strict=True))


def check_orders_row(order_id: str, state: OrderState | None, row: dict[str, Any] | None) -> list[Finding]:
    """The refolded state against the projected `orders` row, column by column."""
    where = f"orders row {order_id}"
    if state is None and row is None:
        return []
    if state is None:
        return [Finding(where, "projected, yet no archived event of the order applies")]
    if row is None:
        return [Finding(where, f"missing: the archive folds to status {state.status} seq {state.seq}")]
    out = []
    for column in ORDER_COLUMNS:
        folded, projected = _comparable(getattr(state, column)), _comparable(row[column])
        if folded != projected:
            out.append(Finding(where, f"{column} is {projected}, the archive folds to {folded}"))
    return out


def _comparable(value: Any) -> str | None:
    """A column's value as text: decimals in their canonical form (32.00000000 is 32)."""
    if value is None:
        return None
    return format_decimal(value) if isinstance(value, Decimal) else str(value)


def verify_order(settings: Settings, conn: psycopg.Connection, lineage: Lineage) -> list[Finding]:
    """`--verify`: every record of the order read again from the log; the domain code's refold
    of its applied events, which must take each of them, against the projected `orders` row."""
    findings = check_log(settings, [s.record for s in lineage.steps])
    findings += [Finding(r.where, f"archived as applied, refused by the domain code: {why}")
                 for r, why in lineage.folded.refused]
    return findings + check_orders_row(lineage.order_id, lineage.folded.state, orders_row(conn, lineage.order_id))
