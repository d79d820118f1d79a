"""Reads one after another with the same `LogReader`, over partitions an earlier read finished
(and so paused): each starts fetching at once. librdkafka keeps a partition's pause across
unassign/assign, and a resume() does not wake the thread that fetches from the broker: a
partition still paused when it is assigned again waited out that thread's idle poll, 1 s, before
its first fetch (the lag sampler reads record times round after round like this)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import TopicPartition

from backbone.kafka.producer import KafkaProducer
from backbone.kafka.reader import LogReader, ReadRange, Record
from backbone.settings import Settings

pytestmark = pytest.mark.integration

# A read of a few records costs ~50 ms (one consume timeout); the idle poll it must not wait
# out is 1 000 ms.
_BOUND_S = 0.8
_READS = 8


def _publish(settings: Settings, per_partition: int) -> None:
    with KafkaProducer(settings) as producer:
        for p in (0, 1):
            for i in range(per_partition):
                producer.produce(settings.topic_orders, b"x", key=b"k", partition=p, timestamp_ms=1_700_000_000_000 + i)


def _never_gone(tp: tuple[str, int], at: int, _limit: int) -> int:
    raise AssertionError(f"{tp} refused offset {at}")


def _timed_reads(reader: LogReader, topic: str, *, between: str) -> list[float]:
    """`_READS` reads of one record of partition 0 (and of 1 every other read), each at an
    offset of its own; `between` each: what else touches the consumer."""
    seconds = []
    for k in range(_READS):
        offset = 10 + 20 * k
        ranges = {(topic, p): ReadRange(offset, offset + 1) for p in ((0, 1) if k % 2 else (0,))}
        got: list[tuple[int, int]] = []

        def collect(msg: Record, tp: tuple[str, int], at: int, got: list[tuple[int, int]] = got) -> None:
            got.append((tp[1], at))

        t0 = time.monotonic()
        ended = reader.read(ranges, collect, _never_gone)
        seconds.append(time.monotonic() - t0)
        assert sorted(got) == sorted((p, offset) for _t, p in ranges), got
        assert ended == {tp: offset + 1 for tp in ranges}
        if between == "pause":  # a caller that paused the partitions of the shared consumer
            reader.consumer.pause([TopicPartition(topic, p) for p in (0, 1)])
        # the other work of a caller between two reads (the sampler asks for offsets), time in
        # which the fetching thread goes idle: the state the next read starts from
        reader.watermarks([(topic, 0), (topic, 1)])
        time.sleep(0.3)
    return seconds


@pytest.mark.parametrize("between", ["nothing", "pause"])
def test_each_read_starts_fetching_at_once(created_topics: Settings, between: str) -> None:
    settings = created_topics
    _publish(settings, 200)
    with LogReader(settings, idle_timeout_s=10) as reader:
        seconds = _timed_reads(reader, settings.topic_orders, between=between)
    assert max(seconds) < _BOUND_S, [round(s, 3) for s in seconds]
