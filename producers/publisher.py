"""Encode and produce backbone records: key = symbol, record timestamp = event time.

`EventPublisher` is the one place records become Kafka messages. `ValidatingPublisher` adds
the order state machine in front of it, so nothing that breaks an order's lifecycle is ever
published: such an event raises `InvalidOrderTransition` and the caller dead-letters it.
"""

from __future__ import annotations

from collections import Counter

from backbone.codec.avro import AvroCodec
from backbone.domain import order_state
from backbone.domain.events import MarketMark, OrderEvent
from backbone.domain.order_state import OrderState
from backbone.errors import InvalidOrderTransition, InvalidRecord
from backbone.kafka.partitioner import symbol_partition
from backbone.kafka.producer import KafkaProducer
from backbone.record_time import timestamp_ms
from backbone.settings import Settings

class EventPublisher:
    def __init__(self, settings: Settings, producer: KafkaProducer, codec: AvroCodec) -> None:
        self.settings, self.producer, self.codec = settings, producer, codec
        self._orders_topic, self._marks_topic = settings.topic_orders, settings.topic_marketdata
        # (event type or "MARK", symbol) -> records: one dict update per record on the hot path;
        # the per-type and per-partition summaries are derived from it when asked for
        self._counts: dict[tuple[str, str], int] = {}

    def publish(self, record: OrderEvent | MarketMark) -> None:
        if isinstance(record, OrderEvent):
            topic, kind = self._orders_topic, record.event_type
        else:
            topic, kind = self._marks_topic, "MARK"
        symbol = record.symbol
        self.producer.produce(topic, self.codec.encode(record), key=symbol.encode(),
                              timestamp_ms=timestamp_ms(record.event_time))
        key = (kind, symbol)
        self._counts[key] = self._counts.get(key, 0) + 1

    @property
    def by_type(self) -> Counter[str]:
        """Records published per event type ("MARK" for marks)."""
        counts: Counter[str] = Counter()
        for (kind, _symbol), n in self._counts.items():
            counts[str(kind)] += n
        return counts

    @property
    def by_partition(self) -> Counter[int]:
        """Records published per partition (murmur2 of the symbol, as the producer places them)."""
        partitions = self.settings.partitions
        of_symbol = {symbol: symbol_partition(symbol, partitions) for _kind, symbol in self._counts}
        counts: Counter[int] = Counter()
        for (_kind, symbol), n in self._counts.items():
            counts[of_symbol[symbol]] += n
        return counts

    def flush(self) -> None:
        self.producer.flush()


class ValidatingPublisher:
    """Publishes order events only when the order state machine accepts them."""

    def __init__(self, publisher: EventPublisher) -> None:
        self.publisher = publisher
        self.orders: dict[str, OrderState] = {}
        self.duplicates = 0

    def check(self, event: OrderEvent) -> bool:
        """Validate and remember; True if the event is new, False for a resend of one already
        accepted. Raises InvalidOrderTransition (an InvalidRecord) for anything the state machine refuses."""
        after = self._next(event)
        if after is None:
            return False
        self.orders[event.order_id] = after
        return True

    def _next(self, event: OrderEvent) -> OrderState | None:
        """The order after `event`, None for a resend of one already accepted (counted)."""
        try:
            return order_state.apply(self.orders.get(event.order_id), event)
        except InvalidOrderTransition as e:
            if e.rule != "duplicate_event":
                raise
            self.duplicates += 1
            return None

    def publish(self, record: object) -> None:
        """Publish a valid order event or mark; anything else raises InvalidRecord (or the codec's
        EncodeError) and nothing is produced or remembered."""
        if not isinstance(record, (OrderEvent, MarketMark)):
            raise InvalidRecord("unexpected_record", f"a {type(record).__name__} is not published by this "
                                "command (order events and marks only)")
        if timestamp_ms(record.event_time) < 1:
            # 0 asks the Kafka client for the current time, -1 is Kafka's "no timestamp"
            raise InvalidRecord("bad_value:event_time", f"event_time {record.event_time.isoformat()} is not after "
                                "1970-01-01T00:00:00Z, where Kafka record timestamps start")
        after = None
        if isinstance(record, OrderEvent):
            after = self._next(record)  # a resend is still published: downstream recognises it by event_id
        elif record.mark_price <= 0:
            raise InvalidRecord("bad_value:mark_price", f"{record.symbol}: mark price {record.mark_price} is not > 0")
        self.publisher.publish(record)  # encodes first: a record the codec refuses leaves no trace
        if after is not None:
            self.orders[record.order_id] = after


__all__ = ["EventPublisher", "ValidatingPublisher", "timestamp_ms"]
