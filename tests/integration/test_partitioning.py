"""Symbols land where Java Kafka producers would put them (murmur2), in order, per partition."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from backbone.codec.avro import AvroCodec
from backbone.domain.events import MarketMark
from backbone.kafka.partitioner import symbol_partition
from backbone.kafka.producer import KafkaProducer
from backbone.local import kafka as local_kafka
from backbone.settings import Settings
from producers.publisher import EventPublisher

pytestmark = pytest.mark.integration
JAVA_SOURCE = Path(__file__).parent / "java" / "JavaPartitions.java"


def java_partitions(settings: Settings, symbols: list[str], partitions: int) -> dict[str, int]:
    libs = local_kafka.resolve_jars(settings)
    out = subprocess.run(["java", "-cp", f"{libs}/*", str(JAVA_SOURCE), str(partitions), *symbols],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    return {sym: int(p) for sym, p in (line.split() for line in out.splitlines())}


def consume_all(settings: Settings, topic: str, group: str, expected: int, timeout_s: float = 90) -> list:
    consumer = Consumer(settings.kafka_config(**{"group.id": group, "auto.offset.reset": "earliest",
                                                 "enable.auto.commit": False}))
    consumer.subscribe([topic])
    out: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=1.0):
                if msg.error() is None:
                    out.append(msg)
    finally:
        consumer.close()
    return out


def test_symbols_land_on_the_java_murmur2_partition_in_order(created_topics: Settings, names) -> None:
    settings = created_topics
    symbols = [f"S{i:03d}.{chr(65 + i % 26)}" for i in range(300)] + ["AAPL", "BRK.B", "ÆØÅ", "7203.T"]
    java = java_partitions(settings, symbols, settings.partitions)
    assert all(java[s] == symbol_partition(s, settings.partitions) for s in symbols)
    codec = AvroCodec()
    t0 = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)
    with KafkaProducer(settings) as producer:
        publisher = EventPublisher(settings, producer, codec)
        for round_ in range(3):  # three marks per symbol, in event-time order
            for i, symbol in enumerate(symbols):
                when = t0 + timedelta(seconds=round_, microseconds=i)
                publisher.publish(MarketMark(f"{symbol}-{round_}", symbol, when, Decimal(100 + round_)))
    records = consume_all(settings, settings.topic_marketdata, names.group(), 3 * len(symbols))
    assert len(records) == 3 * len(symbols)
    seen: dict[str, list[int]] = {}
    for msg in records:
        mark = codec.decode(msg.value())
        assert msg.key() == mark.symbol.encode()
        assert msg.partition() == java[mark.symbol], mark.symbol
        assert msg.timestamp()[1] == int(mark.event_time.timestamp() * 1000)  # CreateTime = event time
        seen.setdefault(mark.symbol, []).append(int(mark.mark_price))
    assert all(prices == [100, 101, 102] for prices in seen.values())  # per-symbol order kept
