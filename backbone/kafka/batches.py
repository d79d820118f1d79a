"""Taking records from a confluent_kafka.Consumer in batches without waiting for full ones."""

from __future__ import annotations

from confluent_kafka import Consumer, Message


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
