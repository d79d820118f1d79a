"""The audit projection: every record of `trading.orders` and `trading.marketdata`, refused ones
included, archived once in `audit_records` with its hash-chain link (docs/audit.md).

Run by the same `ProjectionLoop` as the trading projection, in its own consumer group and under
its own checkpoints (`projection = 'audit'`): a batch's rows and its offsets commit together,
so a record is archived exactly once, whatever crashes. It never refuses a record (the loop
would dead-letter it a second time): the trading rules' verdict goes in the row instead.

The order status after each event and the dead-letter reason come from the trading
projection's own fold (`TradingProjection.apply_at` over an in-memory `TradingState`), never
from rules of its own; nothing is written to the trading tables. On (re)assignment the fold's
state of an orders partition is rebuilt by folding that partition's archived records again,
from their bytes, in offset order: the same records in the same order give the same state.

Offsets per partition are contiguous: this relies on the topics being written by
non-transactional producers (no transaction markers) under delete retention (no compaction),
so consecutive records have consecutive offsets. A record past the next expected offset is a
gap: on `trading.orders` the projector stops (`AuditGapError`); on `trading.marketdata`, whose
marks expire by design, the missing range goes to `audit_gaps`, and the chain goes on over it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from backbone.codec.avro import AvroCodec
from backbone.codec.wire import HEADER_SIZE, MAGIC
from backbone.deadletters import DeadLetter
from backbone.domain.events import OrderEvent
from backbone.errors import BackboneError, InvariantViolation, coordinates
from backbone.kafka.reader import Record
from backbone.settings import Settings
from consumers.checkpoints import read_checkpoints
from consumers.projection import Tail
from projections.audit_chain import GENESIS, link_hash
from projections.store import TableRows, send_rows
from projections.trading import TradingProjection

NAME = "audit"
TP = tuple[str, int]

RECORD_COLS = ("topic", "kafka_partition", "kafka_offset", "kafka_timestamp_ms", "record_key", "record_value",
               "schema_fingerprint", "event_id", "event_type", "order_id", "cl_ord_id", "orig_cl_ord_id", "exec_id",
               "exec_ref_id", "account", "symbol", "event_time", "ingest_time", "status_after",
               "dead_letter_reason", "dead_letter_detail", "chain_hash")
GAP_COLS = ("topic", "kafka_partition", "first_offset", "last_offset", "reason")
#: the decoded record's attributes copied into columns of the same name (absent: NULL)
_EVENT_FIELDS = ("event_id", "order_id", "cl_ord_id", "orig_cl_ord_id", "exec_id", "exec_ref_id", "account",
                 "symbol", "event_time", "ingest_time")
_event_fields = operator.attrgetter(*_EVENT_FIELDS)


class AuditGapError(BackboneError):
    """Records of a topic that may not expire are missing between two archived offsets."""


@dataclass(frozen=True, slots=True)
class Head:
    """Where a partition's chain stands: the next offset to archive and the last link's hash."""

    next_offset: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class ArchivedRecord:
    """An archived record as a `Record`, to fold it again from its bytes."""

    _topic: str
    _partition: int
    _offset: int
    _timestamp_ms: int
    _key: bytes | None
    _value: bytes | None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes | None]] | None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp_ms)  # TIMESTAMP_CREATE_TIME: what the producers set


@dataclass
class Batch:
    """Rows and gaps archived since the last `prepare`."""

    records: list[tuple[Any, ...]] = field(default_factory=list)
    gaps: list[tuple[Any, ...]] = field(default_factory=list)


class AuditProjection:
    """`consumers.projection.Projection` writing the audit archive."""

    def __init__(self, settings: Settings, codec: AvroCodec | None = None) -> None:
        self.settings = settings
        self.name = NAME
        self.duplicates = 0  # resends are archived like any record
        codec = codec or AvroCodec()
        decode = codec.decoder()
        # What the trading fold decoded the current record to (None: nothing): the archive's
        # columns come from the same decode as the verdict. A list, not an attribute: a decoder
        # that held the projection would make a reference cycle, and keep the projection and
        # its whole state alive after it is dropped, until a full collection finds them.
        decoded: list[object] = [None]
        self._decoded = decoded

        def decode_and_keep(value: bytes) -> object:
            decoded[0] = record = decode(value)
            return record

        # the trading rules, folded in memory only: their verdict and the status after each event
        self._trading = TradingProjection(settings, codec, name=NAME, snapshots=False, decode=decode_and_keep)
        self._heads: dict[TP, Head] = {}
        self._batch = Batch()

    def topics(self) -> list[str]:
        return self._trading.topics()

    def expiring(self, topic: str) -> bool:
        return self._trading.expiring(topic)

    def place(self, counts: dict[str, int]) -> None:
        self._trading.place(counts)

    def load(self, conn: psycopg.Connection, assigned: list[TP]) -> None:
        """Each partition's chain head from the archive, checked against the checkpoint it was
        committed with; the trading fold's state of the orders partitions, refolded from the
        archived bytes."""
        self.drop(assigned)
        checkpoints = read_checkpoints(conn, self.name)
        for tp in assigned:
            self._heads[tp] = _head(conn, tp, checkpoints.get(tp))
        for topic, partition in sorted(assigned):
            if topic == self.settings.topic_orders:
                self._refold(conn, topic, partition)

    def _refold(self, conn: psycopg.Connection, topic: str, partition: int) -> None:
        # a server-side cursor: a partition's archive need not fit in memory at once
        with conn.cursor(name=f"audit_refold_{partition}") as cur:
            cur.itersize = 5000
            cur.execute("select kafka_offset, kafka_timestamp_ms, record_key, record_value from audit_records "
                        "where topic = %s and kafka_partition = %s order by kafka_offset", (topic, partition))
            for offset, ts, key, value in cur:
                self._trading.apply_at(ArchivedRecord(topic, partition, offset, ts, as_bytes(key), as_bytes(value)),
                                       topic, partition, offset)
        self._trading.state.take_changes()  # nothing of it is written anywhere

    def drop(self, revoked: list[TP]) -> None:
        for tp in revoked:
            self._heads.pop(tp, None)
        self._trading.drop(revoked)

    def apply_at(self, msg: Record, topic: str, partition: int, offset: int) -> DeadLetter | None:
        """Archive one record: its chain link, its fields, the trading rules' verdict. Returns
        None always: a refused record is archived with its reason, not dead-lettered again."""
        tp = (topic, partition)
        head = self._heads.get(tp) or Head(0, GENESIS)
        if offset != head.next_offset:
            self._gap(topic, partition, head.next_offset, offset)
        self._decoded[0] = None  # a record the fold refuses before decoding it (no value, oversize) has none
        letter = self._trading.apply_at(msg, topic, partition, offset)
        ts, key, value = msg.timestamp()[1], msg.key(), msg.value()
        chained = link_hash(head.hash, topic, partition, offset, ts, key, value)
        self._batch.records.append((topic, partition, offset, ts, key, value,
                                    *self._fields(value, self._decoded[0], letter), chained))
        self._heads[tp] = Head(offset + 1, chained)
        return None

    def _gap(self, topic: str, partition: int, expected: int, offset: int) -> None:
        where = f"{topic}[{partition}]"
        if offset < expected:
            raise InvariantViolation(f"{coordinates(topic, partition, offset)} handed over again: {where} is "
                                     f"archived up to {expected - 1}")
        if not self.expiring(topic):
            raise AuditGapError(f"{where}: records {expected}..{offset - 1} are missing from the log before "
                                f"{offset}; the audit archive keeps every offset of this topic and stops here: "
                                "restore them to the topic")
        self._batch.gaps.append((topic, partition, expected, offset - 1, "expired: deleted by retention before "
                                                                          "it was archived"))

    def _fields(self, value: bytes | None, record: Any, letter: DeadLetter | None) -> tuple[Any, ...]:
        """The columns between the record's bytes and its chain hash; `record`: what the bytes
        decoded to (None: nothing, the letter says why)."""
        fingerprint = value[len(MAGIC):HEADER_SIZE] if value and value[:len(MAGIC)] == MAGIC else None
        event: Sequence[Any]
        if letter is None and type(record) is OrderEvent:
            # applied: none of its texts holds a NUL, the trading rules refuse those (nul_character)
            event = _event_fields(record)
        else:
            event = [_text(getattr(record, f, None)) for f in _EVENT_FIELDS]
        event_type = status = None
        if isinstance(record, OrderEvent):
            event_type = record.event_type.value
            order = self._trading.state.orders.get(record.order_id)
            status = None if order is None else order.status.value
        return (fingerprint, event[0], event_type, *event[1:], status,
                None if letter is None else letter.reason, None if letter is None else letter.detail)

    def prepare(self) -> Batch:
        self._trading.state.take_changes()  # the rows the fold changed: the audit writes none of them
        batch, self._batch = self._batch, Batch()
        return batch

    def send(self, conn: psycopg.Connection, batch: Batch, tail: Tail | None = None) -> Callable[[], int]:
        """The batch's rows and gaps (plain inserts, as `store.send_rows` sends a table's rows),
        then `tail`, in one pipeline."""
        tables: list[TableRows] = [("audit_records", RECORD_COLS, (), batch.records), ("audit_gaps", GAP_COLS, (),
                                                                                       batch.gaps)]
        return send_rows(conn, [t for t in tables if t[3]], tail=tail)

    def committed(self, batch: Batch) -> None:
        pass  # the heads moved when the records were applied; an abandoned batch reloads them

    def abandon(self) -> None:
        self._batch = Batch()


def _text(value: Any) -> Any:
    """A decoded field as Postgres text can hold it (a NUL escaped: the bytes keep the original)."""
    return value.replace("\x00", "\\x00") if isinstance(value, str) else value


def as_bytes(data: bytes | memoryview | None) -> bytes | None:
    return None if data is None else bytes(data)


def archive_head(conn: psycopg.Connection, tp: TP) -> tuple[int, bytes] | None:
    """The offset and chain hash of a partition's last archived record (None: none archived)."""
    row = conn.execute("select kafka_offset, chain_hash from audit_records where topic = %s and kafka_partition = %s "
                       "order by kafka_offset desc limit 1", tp).fetchone()
    return None if row is None else (row[0], bytes(row[1]))


def _head(conn: psycopg.Connection, tp: TP, checkpoint: int | None) -> Head:
    """A partition's chain head, or the genesis. The archive's last offset (or gap) and the
    checkpoint commit together: anything else is rows written or removed behind the projector."""
    topic, partition = tp
    row = archive_head(conn, tp)
    gap = conn.execute("select max(last_offset) from audit_gaps where topic = %s and kafka_partition = %s",
                       tp).fetchone()
    last = max(-1 if row is None else row[0], -1 if gap is None or gap[0] is None else gap[0])
    if (checkpoint or 0) != last + 1:
        raise InvariantViolation(f"{topic}[{partition}]: the audit archive ends at offset {last} but its checkpoint "
                                 f"is {checkpoint}: the archive was changed behind the projector "
                                 "(run `backbone audit verify`)")
    return Head(last + 1, GENESIS if row is None else row[1])
