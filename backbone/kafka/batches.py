"""What the projector and rebuild's shadow do with their confluent_kafka.Consumer alike: take
records in batches without waiting for full ones, read a partition's log bounds, and restart a
partition's fetch after the broker refused its offset."""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from backbone.errors import KafkaError


def next_batch(consumer: Consumer, size: int, timeout_s: float) -> list[Message]:
    """Wait up to `timeout_s` for the first record (or event), then take what is already
    fetched, up to `size`.

    `consume(n, timeout)` alone returns only when it has n records or the timeout expired: below
    `size` records per timeout, every batch, and so every event, waited the whole timeout (the
    projector measured p50 554 ms at 5 000 events/s with its defaults; 18 ms this way)."""
    first = consumer.poll(timeout_s)
    if first is None or size == 1:
        return [] if first is None else [first]
    return [first, *consumer.consume(num_messages=size - 1, timeout=0)]


def refetch(consumer: Consumer, tp: tuple[str, int], resume: int, start_of: Callable[[tuple[str, int]], int]) -> None:
    """Restart fetching `tp` at `resume` after the broker refused its offset ("out of range").

    librdkafka leaves such a partition in an error state that refuses seek(), so the assignment
    is given again: every other partition at the position already handed to the application
    (records of the current batch stay valid), or `start_of` it when none was handed over yet."""
    assignment = consumer.position(consumer.assignment())
    for part in assignment:
        key = (part.topic, part.partition)
        if key == tp:
            part.offset = resume
        elif part.offset < 0:
            part.offset = start_of(key)
    consumer.assign(assignment)


def watermarks(consumer: Consumer, topic: str, partition: int) -> tuple[int, int]:
    """The partition's (low, high) offsets, asked of the broker (not the cached ones)."""
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=15, cached=False)
    except KafkaException as e:
        raise KafkaError(f"cannot read the offsets of {topic}[{partition}]: {e.args[0].str()}") from e


def partitions_of(client: Consumer, topic: str) -> list[int]:
    """The topic's partition numbers, as the broker reports them."""
    try:
        meta = client.list_topics(topic, timeout=15).topics.get(topic)
    except KafkaException as e:
        raise KafkaError(f"cannot read the metadata of {topic}: {e.args[0].str()}") from e
    if meta is None or meta.error is not None or not meta.partitions:
        raise KafkaError(f"topic {topic} does not exist (run `backbone topics create`)")
    return sorted(meta.partitions)
