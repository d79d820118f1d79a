"""Reading bounded ranges of partitions, and the one policy every reader of the project (the
projector, a rebuild's shadow, replays) applies to what a poll hands over (`sort`).

`LogReader` reads offset ranges with `Consumer.assign()`, never joining a group; it also finds
where records are by time (`offsets_for_times`) and the highest timestamp below an offset."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, cast

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from confluent_kafka import KafkaError as RdKafkaError

from backbone.errors import KafkaError
from backbone.kafka.batches import refetch
from backbone.kafka.consumer import consumer_config
from backbone.kafka.health import FoldingLog
from backbone.record_time import timestamp_ms
from backbone.settings import Settings

log = logging.getLogger(__name__)

TP = tuple[str, int]
_OUT_OF_RANGE = (RdKafkaError._AUTO_OFFSET_RESET, RdKafkaError.OFFSET_OUT_OF_RANGE)


class Record(Protocol):
    """A message `sort` passed on: it carries a record, not an error, so its coordinates are set
    (confluent-kafka types them as optional for the error case)."""

    def topic(self) -> str: ...

    def partition(self) -> int: ...

    def offset(self) -> int: ...

    def key(self) -> bytes | None: ...

    def value(self) -> bytes | None: ...

    def headers(self) -> list[tuple[str, bytes | None]] | None: ...

    def timestamp(self) -> tuple[int, int]: ...


def sort(messages: Iterable[Message], *, on_eof: Callable[[TP, int], None],
         on_out_of_range: Callable[[TP, int], None]) -> list[Record]:
    """The records among `messages`, in order; the events go to the caller: a partition's end
    (`on_eof(tp, end offset)`), an offset the broker refused because it left the log
    (`on_out_of_range(tp, offset)`: retention or a recreated topic; the consumers run with
    auto.offset.reset=error, so it is never a silent jump). A fatal client error raises; any
    other error librdkafka retries by itself, and it is logged."""
    records: list[Message] = []
    for msg in messages:
        err = msg.error()
        if err is None:
            records.append(msg)
            continue
        tp = (msg.topic(), msg.partition())
        code = err.code()
        if code == RdKafkaError._PARTITION_EOF:
            on_eof(*_partition_event(msg))
        elif code in _OUT_OF_RANGE:
            on_out_of_range(*_partition_event(msg))
        elif err.fatal():
            raise KafkaError(f"fatal consumer error on {tp[0]}[{tp[1]}]: {err.str()}", code=code)
        else:
            log.warning("consumer error on %s[%s]: %s", tp[0], tp[1], err.str())
    return cast("list[Record]", records)  # without an error, a message names its record


def _partition_event(msg: Message) -> tuple[TP, int]:
    """The partition and offset of a partition's end or of a refused offset (these events name
    both; other errors may name neither)."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    if topic is None or partition is None or offset is None:
        raise KafkaError(f"consumer event without its partition and offset: {msg.error()}")
    return (topic, partition), offset


def offset_at(found: int, high: int) -> int:
    """An `offsets_for_times` answer as an offset: -1 ("no record stamped that late") is the
    end of the partition."""
    return high if found < 0 else min(found, high)


def max_timestamps_below(targets: dict[TP, tuple[int, int | None]],
                         first_offsets_after: Callable[[dict[TP, int]], dict[TP, int]],
                         *, ceiling_ms: int) -> dict[TP, int | None]:
    """The highest record timestamp among offsets [0, next_offset) of each partition, found by
    bisection with `first_offsets_after({tp: ms})` (the first offset stamped > ms, the end of the
    partition when none: `offset_at(offsets_for_times(ms + 1), high)`), all partitions in step.

    targets: tp -> (next_offset, a timestamp known to be covered, or None). Uses only that
    "first offset stamped > M" does not decrease with M; answers None when no retained record
    lies below next_offset. About log2(range) lookups."""
    out: dict[TP, int | None] = {}
    lo: dict[TP, int] = {}  # predicate false: some record below next_offset is stamped > lo
    hi: dict[TP, int] = {}  # predicate true: every record below next_offset is stamped <= hi
    for tp, (nxt, known) in targets.items():
        if nxt <= 0:
            out[tp] = None
        else:
            lo[tp] = -1 if known is None else known - 1
            hi[tp] = max(ceiling_ms, -1 if known is None else known)

    def pred(points: dict[TP, int]) -> dict[TP, bool]:
        found = first_offsets_after(points)
        return {tp: found[tp] >= targets[tp][0] for tp in points}

    # Make sure `hi` holds (a record stamped in the far future moves it up).
    unsure = dict(hi)
    while unsure:
        ok = pred(unsure)
        unsure = {}
        for tp, good in ok.items():
            if not good:
                lo[tp] = hi[tp]
                if hi[tp] >= 2**62:
                    out[tp] = None
                    del lo[tp], hi[tp]
                else:
                    hi[tp] = min(2 * hi[tp] + 1, 2**62)
                    unsure[tp] = hi[tp]
    while True:
        mids = {tp: (lo[tp] + hi[tp]) // 2 for tp in lo if hi[tp] - lo[tp] > 1}
        if not mids:
            break
        for tp, good in pred(mids).items():
            if good:
                hi[tp] = mids[tp]
            else:
                lo[tp] = mids[tp]
    # hi = 0 with lo = -1 never asked about -1: "every retained record below next_offset is
    # stamped <= -1" holds only when there is none (retention deleted them all), not 0 ms.
    unasked = {tp: -1 for tp in lo if hi[tp] == 0 and lo[tp] == -1}
    if unasked:
        for tp, good in pred(unasked).items():
            if good:
                hi[tp] = -1
    for tp in lo:
        out[tp] = None if hi[tp] < 0 else hi[tp]
    return out


@dataclass(frozen=True)
class ReadRange:
    """Offsets [start, end) of a partition; with `stop`, the first record at or after
    `stop_from` for which `stop(record)` holds ends the range before it."""

    start: int
    end: int
    stop_from: int = 0
    stop: Callable[[Record], bool] | None = None

class LogReader:
    """Reads offset ranges with `Consumer.assign()`: a throwaway group id that never joins a
    group and never commits, read_committed like the projector, and no silent offset reset
    (a range that disappears under it is an error, not a jump)."""

    def __init__(self, settings: Settings, *, idle_timeout_s: float = 60.0, batch: int = 5000,
                 timeout_s: float = 30.0, log: FoldingLog | None = None) -> None:
        self.settings = settings
        self.group_id = f"backbone-replay-{uuid.uuid4().hex}"
        self.idle_timeout_s, self.batch, self.timeout_s = idle_timeout_s, batch, timeout_s
        self._partitions: dict[str, list[int]] = {}
        self.consumer = Consumer(consumer_config(settings, log, **{
            "group.id": self.group_id,
            # A broker answers one request per connection at a time: a fetch long-polling for
            # more data (default up to 500 ms) would hold up the next offsets lookup.
            "fetch.wait.max.ms": 10,
        }))

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.consumer.close()

    def _kafka(self, what: str, e: KafkaException) -> KafkaError:
        err = e.args[0] if e.args else None
        if isinstance(err, RdKafkaError):
            return KafkaError(f"{what}: {err.str()}", code=err.code())
        return KafkaError(f"{what}: {e}", code=None)

    def partitions(self, topic: str) -> list[int]:
        """The topic's partition numbers (asked once per reader: a metadata round trip can take
        a few hundred ms, and partitions are never removed)."""
        if topic not in self._partitions:
            try:
                meta = self.consumer.list_topics(topic, timeout=self.timeout_s)
            except KafkaException as e:
                raise self._kafka(f"metadata of {topic}", e) from e
            t = meta.topics.get(topic)
            if t is None or t.error is not None or not t.partitions:
                raise KafkaError(f"topic {topic} does not exist; run `backbone topics create`")
            self._partitions[topic] = sorted(t.partitions)
        return self._partitions[topic]

    def watermarks(self, tps: Iterable[TP]) -> dict[TP, tuple[int, int]]:
        """(log start, end) of each partition, in two batched ListOffsets requests (EARLIEST = -2,
        LATEST = -1; the end is the last stable offset under read_committed). One
        get_watermark_offsets per partition costs a round trip each."""
        tps = list(tps)
        low = self.offsets_for_times({tp: -2 for tp in tps})
        high = self.offsets_for_times({tp: -1 for tp in tps})
        return {tp: (low[tp], high[tp]) for tp in tps}

    def offsets_for_times(self, points: dict[TP, int]) -> dict[TP, int]:
        """{tp: ms} -> {tp: earliest offset stamped >= ms, or -1 when none}."""
        if not points:
            return {}
        try:
            found = self.consumer.offsets_for_times([TopicPartition(t, p, ms) for (t, p), ms in points.items()],
                                                    timeout=self.timeout_s)
        except KafkaException as e:
            raise self._kafka("offsets_for_times", e) from e
        out = {}
        for tp in found:
            if tp.error is not None:
                raise KafkaError(f"offsets_for_times {tp.topic}[{tp.partition}]: {tp.error.str()}")
            out[(tp.topic, tp.partition)] = tp.offset
        return out

    def first_offsets_after(self, points: dict[TP, int], highs: dict[TP, int]) -> dict[TP, int]:
        """{tp: ms} -> {tp: first offset stamped > ms (the end when none)}."""
        found = self.offsets_for_times({tp: ms + 1 for tp, ms in points.items()})
        return {tp: offset_at(found[tp], highs[tp]) for tp in points}

    def max_timestamps_below(self, targets: dict[TP, tuple[int, int | None]]) -> dict[TP, int | None]:
        """See `max_timestamps_below`: the exact highest timestamp below each next offset."""
        if not targets:
            return {}
        highs = {tp: h for tp, (_low, h) in self.watermarks(targets).items()}
        ceiling = timestamp_ms(datetime.now(tz=UTC)) + 86_400_000
        return max_timestamps_below(targets, lambda pts: self.first_offsets_after(pts, highs), ceiling_ms=ceiling)

    def read(self, ranges: dict[TP, ReadRange], on_message: Callable[[Record, TP, int], None],
             on_gone: Callable[[TP, int, int], int]) -> dict[TP, int]:
        """Deliver every record in [start, end) of each partition, in offset order per
        partition, to `on_message(msg, (topic, partition), offset)`, and return where each
        partition's range ended (exclusive).
        With `stop`, a record at or after `stop_from` that `stop` holds for ends the range there
        (not delivered). Offset gaps (transaction markers, aborted records,
        compaction) are fine: a partition is done at its last offset, at the first record
        beyond it, or at the end of the partition.
        Records deleted while they are read (the broker refuses the offset): `on_gone(tp, offset,
        limit)` decides, and raises or answers where the partition goes on (`limit` at most:
        there, its range is done)."""
        ended = {tp: r.start for tp, r in ranges.items()}
        pending = {tp: r.end for tp, r in ranges.items() if r.start < r.end}
        if not pending:
            return ended
        assigned = [TopicPartition(t, p, ranges[(t, p)].start) for t, p in pending]
        # librdkafka keeps a partition's pause across unassign/assign, so a partition paused when
        # it is assigned is resumed first: assign() wakes the thread that fetches from the
        # broker, a resume() does not, and a partition resumed after its assign() could wait out
        # that thread's idle poll (1 s) before its first fetch.
        self.consumer.resume(assigned)
        self.consumer.assign(assigned)
        last_progress = time.monotonic()

        def done(tp: TP, at: int) -> None:
            ended[tp] = at
            del pending[tp]
            self.consumer.pause([TopicPartition(*tp)])

        ends: list[tuple[TP, int]] = []  # of the batch at hand
        gone: list[tuple[TP, int]] = []
        try:
            while pending:
                # consume() waits until it has `batch` records or the timeout passed: keep the
                # timeout short, so the tail of a small range does not wait for records that never come.
                messages = self.consumer.consume(num_messages=self.batch, timeout=0.05)
                if not messages and time.monotonic() - last_progress > self.idle_timeout_s:
                    stuck = ", ".join(f"{t}[{p}] (end {e})" for (t, p), e in sorted(pending.items()))
                    raise KafkaError(f"replay stalled: no record for {self.idle_timeout_s:.0f} s before the end of "
                                     f"{stuck}")
                # the end of a partition and a refused offset come after the records before them
                ends.clear()
                gone.clear()
                delivered = False
                for msg in sort(messages, on_eof=lambda tp, at: ends.append((tp, at)),
                                on_out_of_range=lambda tp, at: gone.append((tp, at))):
                    tp = (msg.topic(), msg.partition())
                    end = pending.get(tp)
                    if end is None:
                        continue  # prefetched past a finished partition
                    offset = msg.offset()
                    if offset >= end:
                        done(tp, end)
                        continue
                    r = ranges[tp]
                    if r.stop is not None and offset >= r.stop_from and r.stop(msg):
                        done(tp, offset)
                        continue
                    on_message(msg, tp, offset)
                    delivered = True
                    if offset == end - 1:
                        done(tp, end)
                for tp, at in ends:
                    if tp in pending and at >= pending[tp]:
                        done(tp, pending[tp])
                for tp, at in gone:
                    if tp not in pending:
                        continue
                    r = ranges[tp]
                    at = at if at >= 0 else self._position(tp, r.start)
                    # past stop_from, the records read so far are in the state: it ends there at the latest
                    limit = r.end if r.stop is None else max(r.stop_from, at)
                    resume = on_gone(tp, at, limit)
                    if resume >= limit:
                        done(tp, limit)
                    else:
                        refetch(self.consumer, tp, resume, lambda key: ranges[key].start)
                if delivered:  # once per batch, not per record
                    last_progress = time.monotonic()
        finally:
            self.consumer.resume(assigned)  # before unassign(), as above: the next read starts at once
            self.consumer.unassign()
        return ended

    def _position(self, tp: TP, otherwise: int) -> int:
        """The offset after the last record handed over of `tp`, or `otherwise` when none was."""
        (part,) = self.consumer.position([TopicPartition(*tp)])
        return part.offset if part.offset >= 0 else otherwise


def read_range(settings: Settings, topic: str, partition: int, start: int, end: int, *,
               timeout_s: float = 30.0) -> Iterator[Record]:
    """The records of `topic[partition]` at offsets `start` <= offset < `end`, in order, with a
    throwaway consumer (for small look-ups such as where a relay left its records). Raises
    KafkaError if they are not all read within `timeout_s`, or the range left the log."""
    if start >= end:
        return
    where = f"{topic}[{partition}] {start}..{end - 1}"
    ended: list[int] = []  # the partition's end was reached (`end` may lie on a transaction marker)

    def refused(_tp: TP, at: int) -> None:
        raise KafkaError(f"reading {where}: offset {at} is no longer in the log")

    consumer = Consumer(consumer_config(settings, **{"group.id": f"backbone-scan-{uuid.uuid4().hex}",
                                                     "fetch.wait.max.ms": 10}))
    try:
        consumer.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + timeout_s
        nxt = start
        while nxt < end and not ended:
            if time.monotonic() > deadline:
                raise KafkaError(f"reading {where}: stopped at {nxt} after {timeout_s:.0f}s")
            for msg in sort(consumer.consume(num_messages=500, timeout=0.2),
                            on_eof=lambda _tp, at: ended.append(at), on_out_of_range=refused):
                if msg.offset() >= end:
                    return
                nxt = msg.offset() + 1
                yield msg
    except KafkaException as e:
        raise KafkaError(f"reading {where}: {e.args[0].str()}", code=e.args[0].code()) from e
    finally:
        consumer.close()
