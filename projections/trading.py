"""The trading projection: orders, executions, positions (from `trading.orders`) and marks
(from `trading.marketdata`), driven by consumers.runtime.ProjectionLoop."""

from __future__ import annotations

from collections import Counter

import psycopg
from confluent_kafka import Message

from backbone.codec.avro import AvroCodec
from backbone.domain.events import MarketMark, OrderEvent
from backbone.domain.positions import PositionError
from backbone.errors import DecodeError, InvalidOrderTransition, coordinates
from backbone.settings import Settings
from producers.deadletter import DeadLetter
from projections import store
from projections.state import TradingState

NAME = "trading"


class TradingProjection:

    def __init__(self, settings: Settings, codec: AvroCodec | None = None, *, schema: str | None = None,
                 name: str = NAME) -> None:
        """`schema`: write into that schema's tables instead of public's (scratch, rebuild);
        `name`: the checkpoint key, so a rebuild's progress never mixes with the live one's."""
        self.settings = settings
        self.schema = schema
        self.name = name
        self.codec = codec or AvroCodec()
        self.state = TradingState()
        self.outcomes: Counter[str] = Counter()

    def topics(self) -> list[str]:
        return [self.settings.topic_orders, self.settings.topic_marketdata]

    def _split(self, tps: list[tuple[str, int]]) -> tuple[list[int], list[int]]:
        return ([p for t, p in tps if t == self.settings.topic_orders],
                [p for t, p in tps if t == self.settings.topic_marketdata])

    def load(self, conn: psycopg.Connection, assigned: list[tuple[str, int]]) -> None:
        orders, marks = self._split(assigned)
        store.load_partitions(conn, self.state, orders, marks, schema=self.schema)

    def drop(self, revoked: list[tuple[str, int]]) -> None:
        orders, marks = self._split(revoked)
        for p in orders:
            self.state.drop_partition(orders_partition=p)
        for p in marks:
            self.state.drop_partition(marks_partition=p)

    def apply(self, msg: Message) -> DeadLetter | None:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        try:
            record = self.codec.decode(msg.value() or b"")
        except DecodeError as e:
            return self._letter(msg, "decode_error", str(e))
        try:
            if topic == self.settings.topic_orders:
                if not isinstance(record, OrderEvent):
                    return self._letter(msg, "unexpected_record", f"{type(record).__name__} on the orders topic")
                outcome = self.state.apply_order_event(record, partition, offset)
            else:
                if not isinstance(record, MarketMark):
                    return self._letter(msg, "unexpected_record", f"{type(record).__name__} on the marketdata topic")
                if record.mark_price <= 0:
                    return self._letter(msg, "bad_value:mark_price", f"mark price {record.mark_price} is not > 0")
                outcome = self.state.apply_mark(record, partition)
        except InvalidOrderTransition as e:
            return self._letter(msg, e.rule, str(e))
        except PositionError as e:
            return self._letter(msg, "position", str(e))
        self.outcomes[outcome] += 1
        return None

    def _letter(self, msg: Message, reason: str, detail: str) -> DeadLetter:
        self.outcomes["dead_letter"] += 1
        where = coordinates(msg.topic(), msg.partition(), msg.offset())
        return DeadLetter(reason=reason, detail=f"{where}: {detail}", source=where, stage="project",
                          payload=msg.value() or b"", key=msg.key(), source_topic=msg.topic(),
                          source_partition=msg.partition(), source_offset=msg.offset(), projection=self.name,
                          timestamp_ms=msg.timestamp()[1])

    def write(self, conn: psycopg.Connection) -> int:
        return store.write_changes(conn, self.state, self.state.changes, schema=self.schema)

    def committed(self) -> None:
        self.state.take_changes()
