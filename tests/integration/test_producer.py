"""The producer wrapper against the real broker: failures surface, a full queue waits."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, TopicPartition

from backbone.errors import DeliveryError, KafkaError
from backbone.kafka.producer import KafkaProducer
from backbone.settings import Settings

pytestmark = pytest.mark.integration


def test_delivery_failure_is_raised_on_flush(created_topics: Settings, names) -> None:
    producer = KafkaProducer(created_topics, **{"message.timeout.ms": 3000})
    producer.produce(names.topic("does-not-exist"), b"lost?", key=b"K")  # auto-create is off
    with pytest.raises(DeliveryError, match="does-not-exist"):
        producer.flush(30)


def test_full_local_queue_applies_backpressure_instead_of_dropping(created_topics: Settings) -> None:
    settings = created_topics
    with KafkaProducer(settings, **{"queue.buffering.max.messages": 20, "linger.ms": 50}) as producer:
        for i in range(2000):
            producer.produce(settings.topic_alerts, f"r{i}".encode(), key=b"K")
    consumer = Consumer(settings.kafka_config(**{"group.id": "unused"}))
    try:
        total = 0
        for p in range(settings.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(settings.topic_alerts, p), timeout=30)
            total += high - low
    finally:
        consumer.close()
    assert total == 2000  # every record made it, none was dropped with BufferError


def test_queue_full_for_too_long_raises(created_topics: Settings, names) -> None:
    unreachable = created_topics.with_overrides(kafka_bootstrap_servers="127.0.0.1:1")
    producer = KafkaProducer(unreachable, max_block_s=1.0, **{"queue.buffering.max.messages": 5, "log_level": 0})
    with pytest.raises(KafkaError, match="queue full"):
        for i in range(50):
            producer.produce(names.topic("x"), b"v", key=str(i).encode())
    assert producer.abandon() == 5
    del producer
