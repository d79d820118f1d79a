"""Postgres side of the trading projection: load a partition's state and write changed rows.

All statements run on the caller's connection inside the caller's transaction: the runtime
writes rows, dead letters and checkpoints in one transaction (see consumers.runtime; the
checkpoints themselves are consumers.checkpoints').
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, get_type_hints

import orjson
import psycopg
from psycopg.types.json import set_json_loads

from backbone.compiled import compiled
from backbone.domain import positions
from backbone.domain.events import Liquidity, MarketMark, Side
from backbone.domain.order_state import OrderState
from backbone.domain.plain import builder, decoder_for, encoder_for
from backbone.domain.positions import Position
from backbone.errors import InvariantViolation
from consumers.checkpoints import FencedError
from consumers.projection import Pipelined, Tail
from projections.read_model import OPEN_ORDERS_SQL
from projections.state import (
    Changes,
    Execution,
    HistoryOf,
    MarkRow,
    TradingState,
    deferred,
    new_execution,
    positions_from_executions,
)

ORDER_COLS = ("order_id", "kafka_partition", "account", "symbol", "side", "order_type", "time_in_force",
              "cl_ord_id", "status", "order_qty", "price", "stop_price", "cum_qty", "leaves_qty", "avg_px",
              "seq", "first_event_time", "last_event_time", "state")
EXEC_COLS = ("exec_id", "order_id", "kafka_partition", "source_offset", "account", "symbol", "side", "qty",
             "price", "commission", "currency", "liquidity", "exec_time", "busted", "corrected",
             "original_qty", "original_price", "last_event_id", "updated_at")
POSITION_COLS = ("account", "symbol", "kafka_partition", "qty", "avg_px", "realized_pnl", "realized_commission",
                 "open_commission", "commission", "fill_count", "last_fill_time")
MARK_COLS = ("symbol", "kafka_partition", "mark_price", "bid", "ask", "last", "event_time", "event_id", "source")


@functools.cache
def _upsert(table: str, cols: tuple[str, ...], keys: tuple[str, ...], schema: str | None = None) -> str:
    return (f"insert into {_target(table, schema)} ({', '.join(cols)}) values ({', '.join(['%s'] * len(cols))})"
            + _on_conflict(table, cols, keys, schema))


def _target(table: str, schema: str | None) -> str:
    # quoted: a valid schema name may be a reserved word (`user`); ddl.check_schema_name admits
    # no character that needs escaping inside the quotes
    return f'"{schema}".{table}' if schema else table


def _on_conflict(table: str, cols: tuple[str, ...], keys: tuple[str, ...], schema: str | None) -> str:
    """The upsert's conflict clause. `orders` is keyed by an id the events carry, not by the
    symbol, so nothing stops a record on one partition from naming an order another partition
    owns: an orders row is only ever updated from its own partition, a row of another partition
    is left alone (and the writer is told, see `ForeignKeysError`) instead of being overwritten,
    whoever owns that partition. `executions` needs no guard of its own: its key starts with the
    order_id, and a batch that writes an execution writes its order too, so the order's refusal
    abandons the batch. No keys: none, a table only ever inserted into (the audit archive, where
    a row already there is an error, and an UPDATE, even one never taken, is refused)."""
    if not keys:
        return ""
    updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in keys)
    guard = f" where {_target(table, schema)}.kafka_partition = excluded.kafka_partition" if table == "orders" else ""
    return f" on conflict ({', '.join(keys)}) do update set {updates}{guard}"


#: The fields of an order's state-machine state that have no column of their own: the `state`
#: column holds only these (the others are the row's columns, one copy of each value).
ORDER_HISTORY = ("fills", "prior_status", "event_ids", "exec_ids", "cancel_request", "replace_request")
_ORDER_HINTS = get_type_hints(OrderState)
_plain_fills, _plain_status, _plain_ids = (encoder_for(_ORDER_HINTS[f]) for f in ORDER_HISTORY[:3])
_fills_from_plain, _status_from_plain, _ids_from_plain = (decoder_for(_ORDER_HINTS[f]) for f in ORDER_HISTORY[:3])
_order_from_plain = decoder_for(OrderState)  # a state written before migration 0006: every field
_new_order = builder(OrderState)
_side, _order_type, _time_in_force, _status = (decoder_for(_ORDER_HINTS[f])
                                               for f in ("side", "order_type", "time_in_force", "status"))


def _order_row(order: OrderState, partition: int) -> tuple[Any, ...]:
    return (order.order_id, partition, order.account, order.symbol, order.side.value, order.order_type.value,
            order.time_in_force.value, order.cl_ord_id, order.status.value, order.order_qty, order.price,
            order.stop_price, order.cum_qty, order.leaves_qty, order.avg_px, order.seq, order.first_event_time,
            order.last_event_time, orjson.dumps({
                "fills": _plain_fills(order.fills), "prior_status": _plain_status(order.prior_status),
                "event_ids": _plain_ids(order.event_ids), "exec_ids": _plain_ids(order.exec_ids),
                "cancel_request": order.cancel_request, "replace_request": order.replace_request}).decode())


def _order(order_id: str, account: str, symbol: str, side: str, order_type: str, time_in_force: str,
           cl_ord_id: str, status: str, order_qty: Decimal, price: Decimal | None, stop_price: Decimal | None,
           cum_qty: Decimal, leaves_qty: Decimal, avg_px: Decimal, seq: int, first_event_time: datetime,
           last_event_time: datetime, state: dict[str, Any]) -> OrderState:
    """An orders row (ORDER_COLS but kafka_partition, in order) as the OrderState it stores.

    NUMERIC keeps a decimal's digits and scale, so the state's decimals come back as they were
    (not a positive exponent or a negative zero, which the order machine never produces from
    Avro decimals of fixed scale); times come back in UTC, as the decoder gives them."""
    if "order_id" in state:  # written before migration 0006 (which rewrites them): the whole state
        return _order_from_plain(state)
    return _new_order(order_id, account, symbol, _side(side), _order_type(order_type),
                      _time_in_force(time_in_force), cl_ord_id, _status(status), order_qty, price,
                      stop_price, cum_qty, leaves_qty, avg_px, seq, first_event_time.astimezone(UTC),
                      last_event_time.astimezone(UTC), _fills_from_plain(state["fills"]),
                      _status_from_plain(state["prior_status"]), _ids_from_plain(state["event_ids"]),
                      _ids_from_plain(state["exec_ids"]),
                      # open requests' ClOrdIDs, absent from rows written before they were kept
                      state.get("cancel_request"), state.get("replace_request"))


def _exec_row(x: Execution) -> tuple[Any, ...]:
    return (x.exec_id, x.order_id, x.kafka_partition, x.source_offset, x.account, x.symbol, x.side.value, x.qty,
            x.price, x.commission, x.currency, x.liquidity.value if x.liquidity else None, x.exec_time, x.busted,
            x.corrected, x.original_qty, x.original_price, x.last_event_id, x.updated_at)


def _position_row(p: Position, partition: int) -> tuple[Any, ...]:
    return (p.account, p.symbol, partition, p.qty, p.avg_px, p.realized_pnl, p.realized_commission,
            p.open_commission, p.commission, p.fill_count, p.last_fill_time)


def _mark_row(m: MarkRow) -> tuple[Any, ...]:
    k = m.mark
    return (m.symbol, m.kafka_partition, k.mark_price, k.bid, k.ask, k.last, k.event_time, k.event_id, k.source)


#: One table's changed rows: (table, columns, conflict keys, rows), rows in key order; no
#: conflict keys: plain inserts.
TableRows = tuple[str, tuple[str, ...], tuple[str, ...], list[tuple[Any, ...]]]


def change_rows(state: TradingState, changes: Changes) -> list[TableRows]:
    """The rows `changes` names, as they are in `state` now, for every table that has any.

    Always in this table order: `backbone rebuild` freezes the tables in the same order, so the
    writer and the rebuild never deadlock (projections.rebuild, swap step a)."""
    tables: list[TableRows] = [
        ("orders", ORDER_COLS, ("order_id",),
         [_order_row(state.orders[o], state.order_partition[o]) for o in sorted(changes.orders)]),
        ("executions", EXEC_COLS, ("order_id", "exec_id"),
         [_exec_row(state.executions[k]) for k in sorted(changes.executions)]),
        ("positions", POSITION_COLS, ("account", "symbol"),
         [_position_row(state.positions[k], state.position_partition[k]) for k in sorted(changes.positions)]),
        ("marks", MARK_COLS, ("symbol",), [_mark_row(state.marks[s]) for s in sorted(changes.marks)]),
        *day_rows(changes),
    ]
    return [t for t in tables if t[3]]


POSITION_DAY_COLS = ("account", "symbol", "day", "kafka_partition", "last_offset", "qty", "avg_px", "realized_pnl",
                     "realized_commission", "commission")
MARK_DAY_COLS = ("symbol", "day", "kafka_partition", "mark_price", "event_time", "event_id")


def day_rows(changes: Changes) -> list[TableRows]:
    """The history tables' rows of `changes` (state.Changes.position_days, mark_days), after the
    other tables: `backbone rebuild` freezes those, not these. A day goes as its ISO text, which
    the text parameter carries (`_rows_text`)."""
    return [
        ("position_days", POSITION_DAY_COLS, ("account", "symbol", "day"),
         [(account, symbol, day.isoformat(), *at)
          for (account, symbol, day), at in sorted(changes.position_days.items())]),
        ("mark_days", MARK_DAY_COLS, ("symbol", "day"),
         [(symbol, day.isoformat(), m.kafka_partition, m.mark.mark_price, m.mark.event_time, m.mark.event_id)
          for (symbol, day), m in sorted(changes.mark_days.items(), key=lambda item: item[0])]),
    ]


def write_changes(conn: psycopg.Connection, state: TradingState, changes: Changes,
                  schema: str | None = None, tail: Tail | None = None) -> int:
    """Upsert every row `changes` names and wait for the results; returns the rows written.
    `send_rows` then its check, in one go."""
    return send_rows(conn, change_rows(state, changes), schema, tail)()


def send_rows(conn: psycopg.Connection, tables: list[TableRows], schema: str | None = None,
              tail: Tail | None = None) -> Callable[[], int]:
    """Send the upserts of `tables` (plain inserts for a table without conflict keys) without
    waiting for the server to run them; the returned check waits for every result, raises if a
    row was refused (`ForeignKeysError`) or the `tail`'s check fails, and returns the number of
    rows written. Until the check has run, the connection is in pipeline mode and must not be
    used otherwise.

    A table's rows go as one statement with one text parameter (`_rows_text`: up to
    _TEXT_CHUNK rows, fields and rows separated by control characters), which the server splits
    and casts to the columns' types; rows with a value that text cannot hold go as a statement
    each. The upserts, in table order, and the `tail` (the projector's dead letters and
    checkpoint compare-and-set) go in one pipeline: one round trip for all of it, and the server
    works on it while the caller goes on (the projector folds its next batch meanwhile)."""
    if not tables and tail is None:
        return lambda: 0
    sent_for: list[str] = []  # the table of each statement: its row count is the rows that table took

    def upserts(cursor: Callable[[], psycopg.Cursor]) -> None:
        for table, cols, keys, rows in tables:
            for at in range(0, len(rows), _TEXT_CHUNK):
                chunk = rows[at:at + _TEXT_CHUNK]
                text = _rows_text(chunk)
                sent_for.append(table)
                if text is not None:
                    cursor().execute(_text_upsert(table, cols, keys, schema), (text,))
                else:
                    cursor().executemany(_upsert(table, cols, keys, schema), chunk)

    sent = Pipelined(conn, upserts, tail)

    def check() -> int:
        written = dict.fromkeys((table for table, _c, _k, _r in tables), 0)
        for table, count in zip(sent_for, sent.wait(), strict=True):
            written[table] += count
        refused = [table for table, _c, _k, rows in tables if written[table] < len(rows)]
        if refused:
            orders = next((rows for table, _c, _k, rows in tables if table == "orders"), [])
            foreign = _foreign_orders(conn, orders, schema) if refused == ["orders"] else {}
            if not foreign:
                raise InvariantViolation(f"upserts into {', '.join(refused)} took fewer rows than given, yet no "
                                         "order id belongs to another partition")
            raise ForeignKeysError(foreign)
        sent.check_tail()
        return sum(len(rows) for _t, _c, _k, rows in tables)

    return check


def _foreign_orders(conn: psycopg.Connection, rows: list[tuple[Any, ...]],
                    schema: str | None) -> dict[str, tuple[int, int]]:
    """The refused orders rows: those whose order_id's row has another partition (columns 0 and
    1 of an orders row)."""
    ours = {row[0]: row[1] for row in rows}
    found = conn.execute(f"select order_id, kafka_partition from {_target('orders', schema)} "
                         "where order_id = any(%s)", (list(ours),)).fetchall()
    return {k: (ours[k], p) for k, p in found if p != ours[k]}


#: Rows a statement at most: a rebuild's seed writes every row of the state.
_TEXT_CHUNK = 5000

#: The SQL type of every column, in the order of the table's *_COLS (a test checks them against
#: the tables): the text parameter's fields are cast to them.
COLUMN_TYPES = {
    "orders": ("text", "int4", "text", "text", "text", "text", "text", "text", "text", "numeric", "numeric",
               "numeric", "numeric", "numeric", "numeric", "int4", "timestamptz", "timestamptz", "json"),
    "executions": ("text", "text", "int4", "int8", "text", "text", "text", "numeric", "numeric", "numeric", "text",
                   "text", "timestamptz", "bool", "bool", "numeric", "numeric", "text", "timestamptz"),
    "positions": ("text", "text", "int4", "numeric", "numeric", "numeric", "numeric", "numeric", "numeric", "int4",
                  "timestamptz"),
    "marks": ("text", "int4", "numeric", "numeric", "numeric", "numeric", "timestamptz", "text", "text"),
    "position_days": ("text", "text", "date", "int4", "int8", "numeric", "numeric", "numeric", "numeric", "numeric"),
    "mark_days": ("text", "date", "int4", "numeric", "timestamptz", "text"),
    # projections.audit's RECORD_COLS and GAP_COLS
    "audit_records": ("text", "int4", "int8", "int8", "bytea", "bytea", "bytea", "text", "text", "text", "text",
                      "text", "text", "text", "text", "text", "timestamptz", "timestamptz", "text", "text", "text",
                      "bytea"),
    "audit_gaps": ("text", "int4", "int8", "int8", "text"),
}

# The text parameter: fields separated by \x1f, rows by \x1e, NULL a field that is a lone \x1d.
_FIELD_SEP, _ROW_SEP, _NULL_FIELD = "\x1f", "\x1e", "\x1d"
_NOT_PLAIN_TEXT = re.compile("[\x00\x1d\x1e\x1f]")


@functools.cache  # a statement a table and schema: built once, not per batch
def _text_upsert(table: str, cols: tuple[str, ...], keys: tuple[str, ...], schema: str | None) -> str:
    fields = ", ".join(f"f[{i}]::{kind}" for i, kind in enumerate(COLUMN_TYPES[table], 1))
    return (f"insert into {_target(table, schema)} ({', '.join(cols)}) select {fields} "
            "from unnest(string_to_array(%s::text, E'\\x1e')) line, string_to_array(line, E'\\x1f', E'\\x1d') f"
            + _on_conflict(table, cols, keys, schema))


def _rows_text_python(rows: list[tuple[Any, ...]]) -> str | None:
    """The rows as the text parameter of `_text_upsert` (each value as it is, no escapes; bytes
    in bytea's hex form), or None when a value cannot be written so: a text holding a separator
    or a NUL, a decimal that is not finite, a time without a zone, any other type. Those rows go
    as a statement each."""
    lines = []
    for row in rows:
        fields = []
        for v in row:
            kind = type(v)
            if v is None:
                fields.append(_NULL_FIELD)
            elif kind is str:
                if _NOT_PLAIN_TEXT.search(v):
                    return None
                fields.append(v)
            elif kind is bool:
                fields.append("t" if v else "f")
            elif kind is int:
                fields.append(str(v))
            elif kind is Decimal and v.is_finite():
                fields.append(str(v))
            elif kind is datetime and v.utcoffset() is not None:
                fields.append(v.isoformat(" "))
            elif kind is bytes:
                fields.append("\\x" + v.hex())
            else:
                return None
        lines.append(_FIELD_SEP.join(fields))
    return _ROW_SEP.join(lines)


# The compiled twin (backbone/_speedups.c) writes the same text for the plain values and hands
# anything else to the Python path; psycopg's per-row dumping was ~4 µs an orders row, ~3 an
# executions row.
def _through(twin: Callable[..., str | None]) -> Callable[[list[tuple[Any, ...]]], str | None]:
    return lambda rows: twin(rows, Decimal, _rows_text_python)


_compiled_rows_text = compiled("rows_text")
_rows_text = _rows_text_python if _compiled_rows_text is None else _through(_compiled_rows_text)


def load_partitions(conn: psycopg.Connection, state: TradingState, orders_partitions: Iterable[int],
                    marks_partitions: Iterable[int], schema: str | None = None, *,
                    history_of: HistoryOf | None = None) -> None:
    """Load the projected rows of the given partitions into `state` (replacing what it held).

    `history_of`: load the open book only (docs/live-state.md): the orders that may still
    execute and their executions, and each position's summary row, its fills loaded on a
    restatement's first read from `history_of(partition, summary)()`. Its cost follows the open
    book, not the history."""
    prefix = f'"{schema}".' if schema else ""
    op, mp = sorted(set(orders_partitions)), sorted(set(marks_partitions))
    state.drop_partitions(op, mp)
    with conn.cursor() as cur:
        if op:
            # the state column parsed by orjson, not the json module: fetching 216k orders went from
            # ~19 % to ~9 % of a reload under py-spy
            set_json_loads(orjson.loads, cur)
            open_only = f" and ({OPEN_ORDERS_SQL})" if history_of is not None else ""
            cur.execute(f"select {', '.join(c for c in ORDER_COLS if c != 'kafka_partition')}, kafka_partition "
                        f"from {prefix}orders where kafka_partition = any(%s){open_only}", (op,))
            for *cols, partition in cur:
                order = _order(*cols)
                state.orders[order.order_id] = order
                state.order_partition[order.order_id] = partition
            if history_of is not None:
                cur.execute(f"select {', '.join('x.' + c for c in EXEC_COLS)} from {prefix}executions x "
                            f"join {prefix}orders o using (order_id) where o.kafka_partition = any(%s){open_only}",
                            (op,))
            else:
                cur.execute(f"select {', '.join(EXEC_COLS)} from {prefix}executions "
                            "where kafka_partition = any(%s)", (op,))
            executions = [_execution(*row) for row in cur]
            for x in executions:
                state.executions[(x.order_id, x.exec_id)] = x
            refolded = positions_from_executions(executions) if history_of is None else {}
            if history_of is not None:
                # Not refolded here: what every fold keeps exact (the fill count, the net quantity
                # and the commission are the sums of the live executions) is checked in SQL, the
                # rest on the first restatement (`position_history`).
                cur.execute(f"select {', '.join('p.' + c for c in POSITION_COLS)}, count(x.exec_id), "
                            "coalesce(sum(case when x.side = 'BUY' then x.qty else -x.qty end), 0), "
                            f"coalesce(sum(x.commission), 0) from {prefix}positions p "
                            f"left join {prefix}executions x on x.kafka_partition = p.kafka_partition "
                            "and x.account = p.account and x.symbol = p.symbol and not x.busted "
                            "where p.kafka_partition = any(%s) group by p.account, p.symbol", (op,))
            else:
                cur.execute(f"select {', '.join(POSITION_COLS)} from {prefix}positions "
                            "where kafka_partition = any(%s)", (op,))
            for row in cur:
                stored = dict(zip(POSITION_COLS, row, strict=False))
                key = (stored["account"], stored["symbol"])
                if history_of is not None:
                    position = _summary(stored)
                    _check_sums(position, *row[len(POSITION_COLS):])
                    position = deferred(position, history_of(stored["kafka_partition"], position))
                else:
                    position = refolded.get(key) or positions.empty_position(*key)
                    _check_reload(position, stored)
                state.positions[key] = position
                state.position_partition[key] = stored["kafka_partition"]
        if mp:
            cur.execute(f"select {', '.join(MARK_COLS)} from {prefix}marks where kafka_partition = any(%s)", (mp,))
            for row in cur:
                r = dict(zip(MARK_COLS, row, strict=True))
                mark = MarketMark(r["event_id"], r["symbol"], r["event_time"], r["mark_price"], r["bid"], r["ask"],
                                  r["last"], r["source"])
                state.marks[r["symbol"]] = MarkRow(r["symbol"], r["kafka_partition"], mark)


def _summary(stored: dict[str, Any]) -> Position:
    """A positions row as a Position without its fills (`deferred` gives it its history)."""
    return positions.Position(stored["account"], stored["symbol"], stored["qty"], stored["avg_px"],
                              stored["realized_pnl"], stored["realized_commission"], stored["open_commission"],
                              stored["commission"], stored["last_fill_time"], stored["fill_count"], ())


def _check_sums(position: Position, fill_count: int, qty: Decimal, commission: Decimal) -> None:
    for name, folded in (("qty", qty), ("commission", commission), ("fill_count", fill_count)):
        if getattr(position, name) != folded:
            raise InvariantViolation(f"position {position.account}/{position.symbol}: stored {name}="
                                     f"{getattr(position, name)} but its executions fold to {folded}")


#: An executions row as a JSON array (`fetch_orders`): numerics as text, so that their digits and
#: scale come back as NUMERIC keeps them, not as floats.
_EXEC_JSON = ", ".join(f"e.{c}::text" if c in ("qty", "price", "commission", "original_qty", "original_price")
                       else f"e.{c}" for c in EXEC_COLS)
_NUMERIC_AT = tuple(i for i, c in enumerate(EXEC_COLS) if c in ("qty", "price", "commission", "original_qty",
                                                                 "original_price"))
_TIME_AT = tuple(i for i, c in enumerate(EXEC_COLS) if c in ("exec_time", "updated_at"))


@dataclass(frozen=True, slots=True)
class Fetched:
    """What `fetch_orders` read, of one moment: the orders found (with the partition of their
    row), their executions, and the checkpoints they were committed with (the fence)."""

    orders: list[tuple[OrderState, int]]
    executions: list[Execution]
    offsets: dict[int, int]  # next offset of each partition of `topic` in projection_checkpoints
    generation: int


def fetch_orders(conn: psycopg.Connection, order_ids: Iterable[str], *, projection: str, topic: str,
                 schema: str | None = None) -> Fetched:
    """The orders of `order_ids` that Postgres holds, with their executions and the checkpoints
    of `projection` on `topic`, in one statement (one round trip, one snapshot): what a late
    event on an order evicted from memory folds onto, and what says whose rows they are."""
    prefix = f'"{schema}".' if schema else ""
    with conn.cursor() as cur:
        set_json_loads(orjson.loads, cur)
        cur.execute(
            f"select c.generation, c.offsets, x.execs, "
            f"{', '.join('o.' + c for c in ORDER_COLS if c != 'kafka_partition')}, o.kafka_partition "
            "from (select coalesce(max(generation), 0) as generation, coalesce(json_object_agg(partition, "
            "next_offset) filter (where topic = %(topic)s), '{}') as offsets from projection_checkpoints "
            "where projection = %(projection)s) c "
            f"left join {prefix}orders o on o.order_id = any(%(ids)s) "
            f"left join lateral (select json_agg(json_build_array({_EXEC_JSON})) as execs "
            f"from {prefix}executions e where e.order_id = o.order_id) x on true",
            {"topic": topic, "projection": projection, "ids": list(order_ids)})
        found = cur.fetchall()
    orders: list[tuple[OrderState, int]] = []
    executions: list[Execution] = []
    for _generation, _offsets, execs, *cols, partition in found:
        if cols[0] is not None:  # else no order found: the row of the checkpoints alone
            orders.append((_order(*cols), partition))
            executions.extend(_execution_of_json(row) for row in execs or ())
    generation, offsets = found[0][:2]
    return Fetched(orders, executions, {int(p): o for p, o in offsets.items()}, generation)


def _execution_of_json(row: list[Any]) -> Execution:
    for i in _NUMERIC_AT:
        if row[i] is not None:
            row[i] = Decimal(row[i])
    for i in _TIME_AT:
        row[i] = datetime.fromisoformat(row[i])
    return _execution(*row)


def position_history(conn: psycopg.Connection, partition: int, summary: Position,
                     schema: str | None = None) -> Position:
    """The position `summary` describes, refolded from its first `fill_count` live executions
    in Postgres (those it had when its history left memory; later ones have higher offsets),
    and checked against the summary: a restatement's history, read on demand."""
    prefix = f'"{schema}".' if schema else ""
    with conn.cursor() as cur:
        cur.execute(f"select {', '.join(EXEC_COLS)} from {prefix}executions where kafka_partition = %s "
                    "and account = %s and symbol = %s and not busted order by source_offset limit %s",
                    (partition, summary.account, summary.symbol, summary.fill_count))
        executions = [_execution(*row) for row in cur]
    key = (summary.account, summary.symbol)
    position = positions_from_executions(executions).get(key) or positions.empty_position(*key)
    _check_reload(position, {**{f: getattr(summary, f) for f in POSITION_COLS if f != "kafka_partition"},
                             "account": summary.account, "symbol": summary.symbol})
    return position


_SIDES = {s.value: s for s in Side}
_LIQUIDITIES = {x.value: x for x in Liquidity}


def _execution(exec_id: str, order_id: str, kafka_partition: int, source_offset: int, account: str, symbol: str,
               side: str, qty: Decimal, price: Decimal, commission: Decimal, currency: str | None,
               liquidity: str | None, exec_time: datetime, busted: bool, corrected: bool,
               original_qty: Decimal | None, original_price: Decimal | None, last_event_id: str,
               updated_at: datetime) -> Execution:
    """An executions row (EXEC_COLS, in order) as the Execution it stores; an unknown side or
    liquidity is refused like Side(...) and Liquidity(...) refuse it."""
    return new_execution(exec_id, order_id, kafka_partition, source_offset, account, symbol,
                         _SIDES.get(side) or Side(side), qty, price, commission, currency,
                         (_LIQUIDITIES.get(liquidity) or Liquidity(liquidity)) if liquidity else None, exec_time,
                         busted, corrected, original_qty, original_price, last_event_id, updated_at)


def _check_reload(position: Position, stored: dict[str, Any]) -> None:
    """The stored row must equal the fold of its live executions: anything else is a bug."""
    for name in ("qty", "avg_px", "realized_pnl", "realized_commission", "open_commission", "commission",
                 "fill_count"):
        if Decimal(getattr(position, name)) != Decimal(stored[name]):
            raise InvariantViolation(f"position {stored['account']}/{stored['symbol']}: stored {name}="
                                     f"{stored[name]} but its executions fold to {getattr(position, name)}")


# -- refusals ------------------------------------------------------------------------------------

class ForeignKeysError(FencedError):
    """Orders rows the batch would have written belong to another Kafka partition: an event
    reused the order_id of an order another partition owns. The transaction is abandoned; the
    projection refuses those order ids on this partition when it folds the records again.

    `order_ids`: {order_id: (the partition that wrote the batch, the partition that owns the row)}."""

    def __init__(self, order_ids: dict[str, tuple[int, int]]) -> None:
        self.order_ids = order_ids
        named = ", ".join(f"{k} (partition {theirs}, not {ours})" for k, (ours, theirs) in order_ids.items())
        super().__init__(f"order ids that belong to another partition: {named}")
