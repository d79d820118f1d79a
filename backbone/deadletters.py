"""Dead letters: anything that could not be accepted goes to `trading.deadletter` with the
reason in headers, never silently dropped. The type and its SQL live here, once, for the
producers (publish) and the consumers (projections) alike.

Headers: `reason` (short stable id), `detail` (human text), `source` (where it came from:
`file.jsonl:17`, `topic[partition]@offset`), `stage` (publish | project), and, when the
record came from Kafka, `source_topic`, `source_partition`, `source_offset`, `projection`.
The value is the original bytes, untouched, so the record can be inspected and replayed.

A projection's dead letters are rows of `dead_letters` first, written in the transaction of
their batch; the topic is an outbox relay of that table (consumers.deadletter_relay). The
relay columns say where each row went: `relay_partition` and `relay_from` (the partition of
the dead-letter topic and its end offset, recorded before the row is produced: the range in
which a crashed relay may have left it) and `relayed_offset` (where it is; NULL: not yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from backbone.errors import coordinates
from backbone.kafka.producer import KafkaProducer

TP = tuple[str, int]


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    detail: str
    source: str
    stage: str
    payload: bytes
    key: bytes | None = None
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    projection: str | None = None
    timestamp_ms: int = 0

    def headers(self) -> list[tuple[str, bytes]]:
        pairs = [("reason", self.reason), ("detail", self.detail), ("source", self.source), ("stage", self.stage)]
        optional = [("source_topic", self.source_topic), ("source_partition", self.source_partition),
                    ("source_offset", self.source_offset), ("projection", self.projection)]
        pairs += [(k, str(v)) for k, v in optional if v is not None]
        return [(k, v.encode()) for k, v in pairs]


def send(producer: KafkaProducer, topic: str, letter: DeadLetter, **kwargs: Any) -> None:
    """Produce `letter`; `kwargs` go to `KafkaProducer.produce` (partition, on_delivery)."""
    producer.produce(topic, letter.payload, key=letter.key, timestamp_ms=letter.timestamp_ms,
                     headers=letter.headers(), **kwargs)


def source_of(headers: Sequence[tuple[str, bytes | None]] | None) -> tuple[str, str, int, int] | None:
    """(projection, topic, partition, offset) of a dead-letter record a projection relayed, from
    its headers; None for any other record (a publish's, or not a dead letter)."""
    found = {k: v for k, v in headers or () if v is not None}
    try:
        return (found["projection"].decode(), found["source_topic"].decode(),
                int(found["source_partition"]), int(found["source_offset"]))
    except (KeyError, ValueError, UnicodeDecodeError):
        return None


_COLUMNS = "projection, source_topic, source_partition, source_offset, reason, detail, record_key, payload, source_time"


def insert(conn: psycopg.Connection, letters: Sequence[DeadLetter], *, table: str = "dead_letters") -> None:
    """Insert a projection's dead letters (once each: the coordinates are unique). `table` is
    written as given (a caller's schema-qualified name, never user input)."""
    if not letters:
        return
    with conn.cursor() as cur:
        cur.executemany(f"insert into {table} ({_COLUMNS}) values "
                        "(%s, %s, %s, %s, %s, %s, %s, %s, to_timestamp(%s / 1000.0)) "
                        "on conflict (projection, source_topic, source_partition, source_offset) do nothing",
                        [(d.projection, d.source_topic, d.source_partition, d.source_offset, d.reason, d.detail,
                          d.key, d.payload, d.timestamp_ms if d.timestamp_ms >= 0 else None) for d in letters])


@dataclass(frozen=True)
class Pending:
    """A row not yet relayed to the topic."""

    id: int
    letter: DeadLetter
    relay_partition: int | None
    relay_from: int | None


def pending(conn: psycopg.Connection, projection: str, tps: Sequence[TP], *, lock: bool) -> list[Pending]:
    """The rows of `tps` not yet relayed, oldest first; with `lock`, locked for this transaction
    (rows another relay holds are skipped: it is relaying them)."""
    if not tps:
        return []
    rows = conn.execute(
        "select id, source_topic, source_partition, source_offset, reason, detail, record_key, payload, "
        "relay_partition, relay_from, round(extract(epoch from source_time) * 1000)::bigint from dead_letters "
        "where projection = %s and relayed_offset is null "
        "and (source_topic, source_partition) in (select * from unnest(%s::text[], %s::int[])) order by id"
        + (" for update skip locked" if lock else ""),
        (projection, [t for t, _ in tps], [p for _, p in tps])).fetchall()
    out = []
    for id_, t, p, o, reason, detail, key, payload, rpart, rfrom, ms in rows:
        letter = DeadLetter(reason, detail, coordinates(t, p, o), "project", bytes(payload),
                            None if key is None else bytes(key), t, p, o, projection, -1 if ms is None else ms)
        out.append(Pending(id_, letter, rpart, rfrom))
    return out


def plan_relay(conn: psycopg.Connection, marks: Sequence[tuple[int, int, int]]) -> None:
    """Record (id, relay_partition, relay_from) of rows about to be relayed for the first time."""
    conn.cursor().executemany("update dead_letters set relay_partition = %s, relay_from = %s "
                              "where id = %s and relay_from is null", [(p, f, i) for i, p, f in marks])


def mark_relayed(conn: psycopg.Connection, relayed: Sequence[tuple[int, int]]) -> None:
    """Record (id, offset in the relay partition) of rows now in the topic."""
    conn.cursor().executemany("update dead_letters set relayed_offset = %s where id = %s",
                              [(o, i) for i, o in relayed])
