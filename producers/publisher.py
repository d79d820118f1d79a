"""Encode and produce backbone records: key = symbol, record timestamp = event time.

`EventPublisher` is the one place records become Kafka messages. `ValidatingPublisher` adds
the checks a record from outside gets before it is published (see its docstring), and
`FileImport` publishes the lines of a JSON Lines file through it, refusing a bad line on its
own: `backbone publish FILE`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import Message
from confluent_kafka.admin import AdminClient

from backbone import deadletters
from backbone.codec import json_form
from backbone.codec.avro import AvroCodec, EncodeError
from backbone.deadletters import DeadLetter
from backbone.domain import order_state
from backbone.domain.events import MarketMark, OrderEvent
from backbone.domain.order_state import OrderState
from backbone.errors import InvalidOrderTransition, InvalidRecord, KafkaError
from backbone.kafka import topics
from backbone.kafka.partitioner import symbol_partition
from backbone.kafka.producer import PRODUCER_DEFAULTS, KafkaProducer
from backbone.record_time import timestamp_ms
from backbone.settings import Settings

#: librdkafka's own default of `message.max.bytes`, which PRODUCER_DEFAULTS leaves alone.
LIBRDKAFKA_MESSAGE_MAX_BYTES = 1_000_000
#: The smallest `message.max.bytes` librdkafka takes.
LIBRDKAFKA_MESSAGE_MAX_BYTES_MIN = 1_000
#: The header of a record batch (format v2): the broker counts it against `max.message.bytes`,
#: librdkafka's size check of a single record does not.
RECORD_BATCH_OVERHEAD = 61
#: librdkafka's worst-case framing of one record (36 bytes) plus two length varints per header.
DEAD_LETTER_FRAMING = 128
#: Characters of a refusal's detail kept (an encoder's message may quote a huge value).
DETAIL_MAX = 1_000

OnRefused = Callable[[InvalidRecord], None]


def record_limit(settings: Settings, admin: AdminClient | None = None) -> int:
    """The largest record (key, value, headers and librdkafka's framing) publishing sends.

    The producer's `message.max.bytes`, lowered so that a record alone in its batch fits the
    `max.message.bytes` of each topic it writes (orders, market data, dead letters) as the
    broker reports it. librdkafka refuses a larger record at once (MSG_SIZE_TOO_LARGE) and
    never builds a batch beyond it (a batch it cannot compress goes uncompressed), so the
    broker's own refusal is left for a topic limit lowered while publishing: it refuses whole
    batches, and each of their records is refused then."""
    names = [settings.topic_orders, settings.topic_marketdata, settings.topic_deadletter]
    configs = topics.topic_configs(admin or topics.admin_client(settings), names)
    limits = [int(PRODUCER_DEFAULTS.get("message.max.bytes", LIBRDKAFKA_MESSAGE_MAX_BYTES))]
    limits += [int(configs[name]["max.message.bytes"]) - RECORD_BATCH_OVERHEAD for name in names]
    return max(LIBRDKAFKA_MESSAGE_MAX_BYTES_MIN, min(limits))


class EventPublisher:
    def __init__(self, settings: Settings, producer: KafkaProducer, codec: AvroCodec, *,
                 record_limit: int | None = None) -> None:
        self.settings, self.producer, self.codec = settings, producer, codec
        self.record_limit = record_limit  # the producer's message.max.bytes, when the caller set it
        self._orders_topic, self._marks_topic = settings.topic_orders, settings.topic_marketdata
        # (event type or "MARK", symbol) -> records: one dict update per record on the hot path;
        # the per-type and per-partition summaries are derived from it when asked for
        self._counts: dict[tuple[str, str], int] = {}

    def publish(self, record: OrderEvent | MarketMark, on_refused: OnRefused | None = None) -> None:
        """Produce `record`. One too large for Kafka raises InvalidRecord("oversize") when the
        client refuses it; given `on_refused`, one the broker refuses later is handed to it
        (and uncounted) instead of failing the next produce or flush."""
        kind: str
        if isinstance(record, OrderEvent):
            topic, kind = self._orders_topic, record.event_type
        else:
            topic, kind = self._marks_topic, "MARK"
        symbol = record.symbol
        value, key = self.codec.encode(record), symbol.encode()
        on_delivery = None if on_refused is None else partial(self._broker_refused, on_refused, topic, kind, symbol,
                                                           len(value) + len(key))
        try:
            self.producer.produce(topic, value, key=key, timestamp_ms=timestamp_ms(record.event_time),
                                  on_delivery=on_delivery)
        except KafkaError as e:
            if e.code != RdKafkaError.MSG_SIZE_TOO_LARGE:
                raise
            limit = "the producer's message.max.bytes" if self.record_limit is None else f"{self.record_limit:,} bytes"
            raise InvalidRecord("oversize", f"{topic}: a record of {len(value) + len(key):,} bytes (Avro value and "
                                            f"key) does not fit the limit of one record, {limit} with Kafka's "
                                            "framing") from e
        counts_key = (kind, symbol)
        self._counts[counts_key] = self._counts.get(counts_key, 0) + 1

    def _broker_refused(self, on_refused: OnRefused, topic: str, kind: str, symbol: str, size: int,
                        err: RdKafkaError | None, _msg: Message) -> bool:
        if err is None or err.code() != RdKafkaError.MSG_SIZE_TOO_LARGE:
            return False
        self._counts[(kind, symbol)] -= 1
        # The broker judges the whole batch: records produced just before or after this one may
        # share its fate (librdkafka does not split a refused batch).
        on_refused(InvalidRecord("oversize", f"{topic}: the broker refused the batch holding this record of "
                                             f"{size:,} bytes (Avro value and key) as too large for the topic's "
                                             f"max.message.bytes: {err.str()}"))
        return True

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
    """Publishes order events and marks from outside after the checks each can be given here.

    - The record alone: an order event or a mark, an event time Kafka can stamp, a positive
      mark price, values the Avro schema carries, a size Kafka takes.
    - The order state machine, for an order the input holds from its first event (seq 1): each
      of its events is checked against the ones before it in the input.
    - An order the input continues (the first event of it seen here has seq > 1: its start is
      already in the log) is not checked against a state, since only the log holds it: the
      projector checks it against the whole log and dead-letters what breaks its lifecycle.
      Such orders are `continued`. Checking them against the projected state in Postgres
      instead would refuse them wrongly whenever the projector lags behind the log.
    """

    def __init__(self, publisher: EventPublisher) -> None:
        self.publisher = publisher
        self.orders: dict[str, OrderState] = {}
        self.continued: set[str] = set()
        self.duplicates = 0

    def _next(self, event: OrderEvent) -> OrderState | None:
        """The order after `event`; None for an order the input continues and for a resend of an
        event already accepted (counted)."""
        state = self.orders.get(event.order_id)
        if state is None and (event.seq > 1 or event.order_id in self.continued):
            self.continued.add(event.order_id)
            return None
        try:
            return order_state.apply(state, event)
        except InvalidOrderTransition as e:
            if e.rule != "duplicate_event":
                raise
            self.duplicates += 1
            return None

    def publish(self, record: object, on_refused: OnRefused | None = None) -> None:
        """Publish a valid order event or mark; anything else raises InvalidRecord (or the codec's
        EncodeError) and nothing is produced or remembered. `on_refused`: see EventPublisher."""
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
        # Encodes and produces first: a record the codec or the client refuses leaves no trace. One
        # the broker refuses later has moved its order on here; the projector dead-letters the
        # order's later events then (sequence_gap).
        self.publisher.publish(record, on_refused)
        if after is not None:
            self.orders[after.order_id] = after


@dataclass(frozen=True)
class RefusedLine:
    line: int
    reason: str
    detail: str


class FileImport:
    """Publishes the lines of a JSON Lines file in the canonical JSON form, each on its own.

    A line that cannot be published is refused alone: dead-lettered (its bytes, with reason,
    detail and ``<file>:<line>`` in the headers; cut to what the dead-letter topic takes when
    it is too large for it) and listed in `refused`; the lines after it go on.
    """

    def __init__(self, settings: Settings, producer: KafkaProducer, codec: AvroCodec, name: str,
                 record_limit: int) -> None:
        self.settings, self.producer, self.name, self.record_limit = settings, producer, name, record_limit
        self.publisher = EventPublisher(settings, producer, codec, record_limit=record_limit)
        self.validating = ValidatingPublisher(self.publisher)
        self.refused: list[RefusedLine] = []
        self._late: list[tuple[int, bytes, InvalidRecord]] = []  # told by the broker, during a poll or flush

    def line(self, lineno: int, raw: bytes) -> list[RefusedLine]:
        """Publish line `lineno`; returns the lines refused since the last call (this one, or an
        earlier one the broker has refused meanwhile)."""
        before = len(self.refused)
        if raw.strip():
            try:
                record = json_form.loads(raw.decode("utf-8"))
                self.validating.publish(record, partial(self._refused_late, lineno, raw))
            except UnicodeDecodeError as e:
                self._refuse(lineno, raw, "invalid_json", f"not UTF-8: {e}")
            except json_form.JsonFormError as e:
                self._refuse(lineno, raw, "invalid_json" if e.field is None else f"invalid_field:{e.field}", str(e))
            except InvalidRecord as e:
                self._refuse(lineno, raw, e.reason, str(e))
            except EncodeError as e:  # valid JSON the Avro schema cannot carry (a lone surrogate, ...)
                self._refuse(lineno, raw, "encode_error" if e.field is None else f"invalid_field:{e.field}", str(e))
        self._settle_late()
        return self.refused[before:]

    def finish(self) -> list[RefusedLine]:
        """Wait for every record; returns the lines the broker refused meanwhile."""
        before = len(self.refused)
        self.producer.flush()
        while self._late:  # their dead letters are produced, and waited for, in turn
            self._settle_late()
            self.producer.flush()
        return self.refused[before:]

    def _refused_late(self, lineno: int, raw: bytes, refusal: InvalidRecord) -> None:
        self._late.append((lineno, raw, refusal))  # not produced from inside the client's callback

    def _settle_late(self) -> None:
        while self._late:
            lineno, raw, refusal = self._late.pop(0)
            self._refuse(lineno, raw, refusal.reason, str(refusal))

    def _refuse(self, lineno: int, raw: bytes, reason: str, detail: str) -> None:
        if len(detail) > DETAIL_MAX:
            detail = detail[:DETAIL_MAX - 1] + "…"
        letter = DeadLetter(reason=reason, detail=detail, source=f"{self.name}:{lineno}", stage="publish",
                            payload=raw.rstrip(b"\n"), timestamp_ms=timestamp_ms(datetime.now(tz=UTC)))
        deadletters.send(self.producer, self.settings.topic_deadletter, fitting(letter, self.record_limit))
        self.refused.append(RefusedLine(lineno, reason, detail))

    @property
    def rejected_by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(r.reason for r in self.refused).items()))


def fitting(letter: DeadLetter, limit: int) -> DeadLetter:
    """`letter` with its payload cut to what one record of `limit` bytes holds beside its
    headers (a line refused as oversize cannot go whole to the dead-letter topic either); the
    detail says so."""
    used = DEAD_LETTER_FRAMING + len(letter.key or b"") + sum(len(k) + len(v) for k, v in letter.headers())
    room = limit - used
    if len(letter.payload) <= room:
        return letter
    note = f" (dead letter: the first {room:,} of the {len(letter.payload):,} bytes)"
    room = max(0, room - len(note.encode()))
    note = f" (dead letter: the first {room:,} of the {len(letter.payload):,} bytes)"
    return dataclasses.replace(letter, detail=letter.detail + note, payload=letter.payload[:room])


__all__ = ["EventPublisher", "FileImport", "RefusedLine", "ValidatingPublisher", "fitting", "record_limit",
           "timestamp_ms"]
