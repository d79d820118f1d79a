"""Relays a projection's dead letters from the `dead_letters` table to the dead-letter topic,
each exactly once, however often the relaying process crashes.

The table is the truth: a batch's dead letters commit with its rows and offsets. The relay
then moves them to the topic (an outbox), in two steps per round:

1. Plan: rows never relayed get their partition of the dead-letter topic (the source partition
   modulo its partition count: a symbol's letters stay together) and that partition's end
   offset, committed before anything is produced. A row can only be in the topic at or after
   that offset.
2. Relay, holding the rows' locks (another relay skips them): read each partition from the
   lowest planned offset to its end and take the rows found there (a relay that crashed after
   producing them); produce the others and wait for their acknowledgements; record every row's
   offset in the topic, and commit.

A crash before 2 commits leaves the rows unrelayed and planned: the next round finds what the
crashed one produced and produces only the rest. The relay never stops the projection: a
failure is logged and the rows wait for the next round.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from sqlalchemy.exc import OperationalError

from backbone import deadletters
from backbone.errors import KafkaError
from backbone.kafka.batches import partitions_of
from backbone.kafka.consumer import consumer_config
from backbone.kafka.producer import KafkaProducer
from backbone.kafka.reader import read_range
from backbone.settings import Settings

log = logging.getLogger(__name__)

TP = tuple[str, int]
T = TypeVar("T")

#: Every delivery reports back: its offset is what the row records.
_EVERY_DELIVERY_REPORTS: dict[str, Any] = {"delivery.report.only.error": False}


@dataclass
class RelayRound:
    relayed: int = 0  # produced by this round
    found: int = 0  # already in the topic (a crashed round produced them)
    failed: str | None = None  # why the round stopped; its rows wait for the next one


class DeadLetterRelay:
    """The outbox relay of one projection's dead letters. Not thread-safe; no hidden threads."""

    def __init__(self, settings: Settings, projection: str,
                 transaction: Callable[[], AbstractContextManager[psycopg.Connection]]) -> None:
        """`transaction()`: a connection in a transaction of its own, committed at the block's end."""
        self.settings, self.projection, self.transaction = settings, projection, transaction
        self.topic = settings.topic_deadletter
        self._producer: KafkaProducer | None = None
        self._consumer: Consumer | None = None  # metadata and end offsets only; never reads

    def relay(self, tps: Sequence[TP]) -> RelayRound:
        """Relay the unrelayed rows of the source partitions `tps`."""
        done = RelayRound()
        try:
            if self._run(lambda conn: self._plan(conn, tps)):
                self._run(lambda conn: self._relay(conn, tps, done))
        except (KafkaError, OperationalError, psycopg.OperationalError) as e:
            done.failed = str(e).splitlines()[0]
            log.warning("dead letters not relayed to %s yet (%s); they stay in dead_letters and are relayed "
                        "on the next round", self.topic, done.failed)
        return done

    def _run(self, work: Callable[[psycopg.Connection], T]) -> T:
        with self.transaction() as conn:
            return work(conn)

    # Step 1
    def _plan(self, conn: psycopg.Connection, tps: Sequence[TP]) -> bool:
        rows = deadletters.pending(conn, self.projection, tps, lock=True)
        fresh = [r for r in rows if r.relay_from is None]
        if fresh:
            count = len(partitions_of(self._consumer_(), self.topic))
            parts = {r.id: (r.letter.source_partition or 0) % count for r in fresh}
            ends = {p: self._end(p) for p in set(parts.values())}
            deadletters.plan_relay(conn, [(i, p, ends[p]) for i, p in parts.items()])
        return bool(rows)

    # Step 2
    def _relay(self, conn: psycopg.Connection, tps: Sequence[TP], done: RelayRound) -> None:
        rows = [r for r in deadletters.pending(conn, self.projection, tps, lock=True) if r.relay_from is not None]
        if not rows:
            return
        placed: dict[int, int] = {}  # row id: offset in the topic
        starts: dict[int, int] = {}  # relay partition: the lowest offset a crashed round may have used
        for r in rows:
            if r.relay_partition is not None and r.relay_from is not None:
                starts[r.relay_partition] = min(r.relay_from, starts.get(r.relay_partition, r.relay_from))
        for partition, start in sorted(starts.items()):
            by_source = {(r.letter.source_topic, r.letter.source_partition, r.letter.source_offset): r.id
                         for r in rows if r.relay_partition == partition}
            for msg in read_range(self.settings, self.topic, partition, start, self._end(partition)):
                source = deadletters.source_of(msg.headers())
                if source is not None and source[0] == self.projection and source[1:] in by_source:
                    placed.setdefault(by_source[source[1:]], msg.offset())
        done.found = len(placed)
        producer = self._producer_()
        for r in rows:
            if r.id not in placed:
                deadletters.send(producer, self.topic, r.letter, partition=r.relay_partition,
                                 on_delivery=_placer(placed, r.id))
        producer.flush(30)
        deadletters.mark_relayed(conn, sorted(placed.items()))
        done.relayed = len(rows) - done.found

    def _end(self, partition: int) -> int:
        try:
            return self._consumer_().get_watermark_offsets(TopicPartition(self.topic, partition), timeout=10,
                                                           cached=False)[1]
        except KafkaException as e:
            raise KafkaError(f"cannot read the end offset of {self.topic}[{partition}]: {e.args[0].str()}") from e

    def _producer_(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(self.settings, **_EVERY_DELIVERY_REPORTS)
        return self._producer

    def _consumer_(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(consumer_config(self.settings, **{
                "group.id": f"backbone-relay-{uuid.uuid4().hex}"}))  # never joined, never committed
        return self._consumer

    def close(self) -> None:
        if self._producer is not None:
            self._producer.abandon()  # a round flushes what it produced; anything left was not recorded
            self._producer = None
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def _placer(placed: dict[int, int], row: int) -> Callable[[object, Message], bool]:
    def on_delivery(err: object, msg: Message) -> bool:
        offset = msg.offset()
        if err is None and offset is not None:  # a delivered record has its offset
            placed[row] = offset
        return False  # a failure is raised by the flush: the round stops, the row stays unrelayed
    return on_delivery
