"""Snapshots of the trading projection's state, one Kafka partition at a time.

A snapshot says: folding the records [0, next_offset) of topic[partition] gives this state.
Keys are symbols, so one partition's state never depends on another's, and a snapshot of
partition p of `trading.orders` is complete on its own:

* orders-topic partition: its orders (the full state-machine state, `to_plain`), its
  executions, and the keys and summary of its positions. Positions are not stored with their
  fills: restoring refolds them from the executions with `positions_from_executions` (exactly
  what a restarting projector does with the `executions` table) and checks the refold against
  the stored summary, so a snapshot that does not agree with itself is refused;
* marketdata-topic partition: its marks (the newest mark per symbol).

The payload is zlib-compressed JSON (`{"v": 1, "kind": …, "partition": …, …}`), lossless:
decimals as strings with their exponent, times ISO-8601 with offset (backbone.domain.plain).

Pure functions build and read payloads; the I/O helpers below take the caller's psycopg
connection and run inside the caller's transaction (the projector writes snapshots in the
transaction that moves the offsets they describe).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import orjson
import psycopg

from backbone.domain import positions
from backbone.domain.events import MarketMark
from backbone.domain.order_state import OrderState
from backbone.domain.plain import decoder_for, encoder_for, to_plain
from backbone.errors import InvariantViolation, coordinates
from backbone.settings import Settings
from projections.state import Execution, MarkRow, TradingState, positions_from_executions

FORMAT = 1
Kind = Literal["orders", "marks"]


def kind_of(settings: Settings, topic: str) -> Kind:
    """What a snapshot of a partition of `topic` holds: orders-topic state, or marks."""
    return "orders" if topic == settings.topic_orders else "marks"
POSITION_FIELDS = ("qty", "avg_px", "realized_pnl", "realized_commission", "open_commission", "commission",
                   "fill_count", "last_fill_time")
COMPRESSION_LEVEL = 3  # cheap on the projector path; JSON of repetitive rows still shrinks ~8x


# -- pure: state <-> payload ----------------------------------------------------------------------

def _orders_body(state: TradingState, partition: int, order_ids: Iterable[str], exec_ids: Iterable[str],
                 position_keys: Iterable[tuple[str, str]]) -> dict[str, Any]:
    executions = sorted((state.executions[e] for e in exec_ids), key=lambda x: (x.source_offset, x.exec_id))
    order_plain = encoder_for(OrderState)
    return {
        "v": FORMAT, "kind": "orders", "partition": partition,
        "orders": [order_plain(state.orders[o]) for o in sorted(order_ids)],
        "executions": list(map(encoder_for(Execution), executions)),
        "positions": [{"account": k[0], "symbol": k[1],
                       **{f: to_plain(getattr(state.positions[k], f)) for f in POSITION_FIELDS}}
                      for k in sorted(position_keys)],
    }


def _marks_body(state: TradingState, partition: int, symbols: Iterable[str]) -> dict[str, Any]:
    return {"v": FORMAT, "kind": "marks", "partition": partition,
            "marks": [encoder_for(MarketMark)(state.marks[s].mark) for s in sorted(symbols)]}


def _pack(body: dict[str, Any]) -> bytes:
    return zlib.compress(orjson.dumps(body), COMPRESSION_LEVEL)


def serialize(state: TradingState, kind: Kind, partition: int) -> bytes:
    """The payload of one partition's state (the rest of `state` is ignored)."""
    return serialize_many(state, [(kind, partition)])[(kind, partition)]


def serialize_many(state: TradingState, wanted: Iterable[tuple[Kind, int]]) -> dict[tuple[Kind, int], bytes]:
    """Payloads of several partitions with one pass over the state (the projector's path)."""
    wanted = set(wanted)
    order_parts = {p for k, p in wanted if k == "orders"}
    mark_parts = {p for k, p in wanted if k == "marks"}
    orders: dict[int, list[str]] = {p: [] for p in order_parts}
    execs: dict[int, list[str]] = {p: [] for p in order_parts}
    pos: dict[int, list[tuple[str, str]]] = {p: [] for p in order_parts}
    marks: dict[int, list[str]] = {p: [] for p in mark_parts}
    if order_parts:
        for order_id, p in state.order_partition.items():
            if p in orders:
                orders[p].append(order_id)
        for exec_id, x in state.executions.items():
            if x.kafka_partition in execs:
                execs[x.kafka_partition].append(exec_id)
        for key, p in state.position_partition.items():
            if p in pos:
                pos[p].append(key)
    if mark_parts:
        for symbol, m in state.marks.items():
            if m.kafka_partition in marks:
                marks[m.kafka_partition].append(symbol)
    out: dict[tuple[Kind, int], bytes] = {}
    for p in order_parts:
        out[("orders", p)] = _pack(_orders_body(state, p, orders[p], execs[p], pos[p]))
    for p in mark_parts:
        out[("marks", p)] = _pack(_marks_body(state, p, marks[p]))
    return out


def decode(payload: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(zlib.decompress(payload))
    except (zlib.error, orjson.JSONDecodeError) as e:
        raise InvariantViolation(f"snapshot payload is not zlib-compressed JSON: {e}") from e
    if not isinstance(body, dict) or body.get("v") != FORMAT or body.get("kind") not in ("orders", "marks"):
        version = body.get("v") if isinstance(body, dict) else "?"
        raise InvariantViolation(f"snapshot payload of unknown format {version}")
    return body


def restore(state: TradingState, kind: Kind, partition: int, payload: bytes, *, where: str = "snapshot") -> None:
    """Load one partition's payload into `state`, replacing what it held of that partition.

    `where` names the snapshot in error messages (e.g. ``topic[p]@next_offset``)."""
    body = decode(payload)
    if body["kind"] != kind or body["partition"] != partition:
        raise InvariantViolation(f"{where}: holds {body['kind']} partition {body['partition']}, "
                                 f"expected {kind} partition {partition}")
    if kind == "marks":
        state.drop_partitions(marks_partitions=(partition,))
        for plain in body["marks"]:
            mark = decoder_for(MarketMark)(plain)
            state.marks[mark.symbol] = MarkRow(mark.symbol, partition, mark)
        return
    state.drop_partitions(orders_partitions=(partition,))
    order_of = decoder_for(OrderState)
    for plain in body["orders"]:
        order = order_of(plain)
        state.orders[order.order_id] = order
        state.order_partition[order.order_id] = partition
    executions = list(map(decoder_for(Execution), body["executions"]))
    for x in executions:
        if x.kafka_partition != partition:
            raise InvariantViolation(f"{where}: execution {x.exec_id} belongs to partition {x.kafka_partition}")
        state.executions[x.exec_id] = x
    refolded = positions_from_executions(executions)
    for stored in body["positions"]:
        key = (stored["account"], stored["symbol"])
        position = refolded.get(key) or positions.empty_position(*key)
        for f in POSITION_FIELDS:
            mine, theirs = getattr(position, f), stored[f]
            if not _same(mine, theirs):
                raise InvariantViolation(f"{where}: position {key[0]}/{key[1]}: stored {f}={theirs} but its "
                                         f"executions fold to {mine}")
        state.positions[key] = position
        state.position_partition[key] = partition


def _same(mine: Any, theirs: Any) -> bool:
    if mine is None or theirs is None:
        return mine is None and theirs is None
    if isinstance(mine, datetime):
        return mine == datetime.fromisoformat(theirs)
    if isinstance(mine, Decimal):
        return mine == Decimal(theirs)
    return bool(mine == theirs)


# -- rows ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SnapshotMeta:
    """A snapshot row without its payload."""

    id: int
    projection: str
    topic: str
    partition: int
    next_offset: int
    max_timestamp: datetime | None
    events_covered: int
    created_at: datetime
    size: int  # compressed payload bytes

    @property
    def where(self) -> str:
        return f"snapshot {self.id} of {coordinates(self.topic, self.partition, self.next_offset)}"


@dataclass(frozen=True)
class NewSnapshot:
    projection: str
    topic: str
    partition: int
    next_offset: int
    max_timestamp: datetime | None
    events_covered: int
    state: bytes


_META = "id, projection, topic, partition, next_offset, max_timestamp, events_covered, created_at, length(state)"


def _meta(row: Sequence[Any]) -> SnapshotMeta:
    return SnapshotMeta(*row)


def insert(conn: psycopg.Connection, snapshots: Sequence[NewSnapshot]) -> int:
    """Insert snapshots; one that already exists at the same offset is kept (same state by
    construction: the fold of the same records). Returns how many rows were new."""
    if not snapshots:
        return 0
    new = 0
    with conn.cursor() as cur:
        for s in snapshots:
            cur.execute("insert into projection_snapshots (projection, topic, partition, next_offset, max_timestamp, "
                        "events_covered, state) values (%s, %s, %s, %s, %s, %s, %s) "
                        "on conflict on constraint projection_snapshots_offset_key do nothing",
                        (s.projection, s.topic, s.partition, s.next_offset, s.max_timestamp, s.events_covered,
                         s.state))
            new += cur.rowcount
    return new


def newest_at_or_before(conn: psycopg.Connection, projection: str, topic: str, partition: int,
                        offset: int | None = None) -> SnapshotMeta | None:
    """The snapshot with the highest next_offset <= `offset` (any offset when None)."""
    with conn.cursor() as cur:
        cur.execute(f"select {_META} from projection_snapshots where projection = %s and topic = %s "
                    "and partition = %s and next_offset <= %s order by next_offset desc limit 1",
                    (projection, topic, partition, 2**63 - 1 if offset is None else offset))
        row = cur.fetchone()
    return None if row is None else _meta(row)


def list_snapshots(conn: psycopg.Connection, projection: str | None = None, topic: str | None = None,
                   partition: int | None = None) -> list[SnapshotMeta]:
    clauses, params = [], []
    for col, value in (("projection", projection), ("topic", topic), ("partition", partition)):
        if value is not None:
            clauses.append(f"{col} = %s")
            params.append(value)
    where = f" where {' and '.join(clauses)}" if clauses else ""
    with conn.cursor() as cur:
        cur.execute(f"select {_META} from projection_snapshots{where} "
                    "order by projection, topic, partition, next_offset", params)
        return [_meta(r) for r in cur]


def payload(conn: psycopg.Connection, snapshot_id: int) -> bytes:
    with conn.cursor() as cur:
        cur.execute("select state from projection_snapshots where id = %s", (snapshot_id,))
        row = cur.fetchone()
    if row is None:
        raise InvariantViolation(f"snapshot {snapshot_id} disappeared (pruned while in use?)")
    return bytes(row[0])


def delete(conn: psycopg.Connection, ids: Sequence[int]) -> int:
    if not ids:
        return 0
    with conn.cursor() as cur:
        cur.execute("delete from projection_snapshots where id = any(%s)", (list(ids),))
        return cur.rowcount


def table_exists(conn: psycopg.Connection) -> bool:
    """False on a database migrated only to before 0003 (snapshots are then not taken)."""
    return conn.execute("select to_regclass('projection_snapshots')").fetchone()[0] is not None


def events_covered_at(base: SnapshotMeta | None, next_offset: int) -> int:
    """Records a state at `next_offset` covers, counted from the snapshot it grew from (offsets,
    so transaction markers count too)."""
    return (base.events_covered if base else 0) + next_offset - (base.next_offset if base else 0)


def hand_over(conn: psycopg.Connection, source: str, target: str) -> tuple[int, int]:
    """A rebuild's swap: `target`'s snapshots (folded by the code it replaces) are deleted and
    `source`'s (the shadow's) take its name. Returns (deleted, renamed)."""
    if not table_exists(conn):
        return 0, 0
    with conn.cursor() as cur:
        cur.execute("delete from projection_snapshots where projection = %s", (target,))
        deleted = cur.rowcount
        cur.execute("update projection_snapshots set projection = %s where projection = %s", (target, source))
        return deleted, cur.rowcount


def delete_projection(conn: psycopg.Connection, projection: str) -> int:
    """Every snapshot of one projection (an abandoned rebuild's shadow)."""
    if not table_exists(conn):
        return 0
    with conn.cursor() as cur:
        cur.execute("delete from projection_snapshots where projection = %s", (projection,))
        return cur.rowcount


def prune_candidates(snapshots: Sequence[SnapshotMeta], *, keep: int,
                     before: datetime | None = None) -> list[SnapshotMeta]:
    """What `checkpoints prune` deletes (pure): per (projection, topic, partition), every
    snapshot but the `keep` newest; with `before`, only those among them that cover nothing
    at or after `before` (max_timestamp < before, or no records at all)."""
    if keep < 0:
        raise ValueError("keep must be >= 0")
    groups: dict[tuple[str, str, int], list[SnapshotMeta]] = {}
    for s in snapshots:
        groups.setdefault((s.projection, s.topic, s.partition), []).append(s)
    out = []
    for key in sorted(groups):
        ordered = sorted(groups[key], key=lambda s: s.next_offset, reverse=True)
        for s in ordered[keep:]:
            if before is None or s.max_timestamp is None or s.max_timestamp < before:
                out.append(s)
    return out
