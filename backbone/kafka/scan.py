"""Reading one bounded range of one partition with a throwaway consumer (never joins a group,
never commits): for small look-ups such as where a relay left its records."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from confluent_kafka import KafkaError as RdKafkaError

from backbone.errors import KafkaError
from backbone.kafka.consumer import consumer_config
from backbone.settings import Settings


def read_range(settings: Settings, topic: str, partition: int, start: int, end: int, *,
               timeout_s: float = 30.0) -> Iterator[Message]:
    """The records of `topic[partition]` at offsets `start` <= offset < `end`, in order.
    Raises KafkaError if they are not all read within `timeout_s` (or the range left the log)."""
    if start >= end:
        return
    consumer = Consumer(consumer_config(settings, **{"group.id": f"backbone-scan-{uuid.uuid4().hex}",
                                                     "fetch.wait.max.ms": 10}))
    where = f"{topic}[{partition}] {start}..{end - 1}"
    try:
        consumer.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + timeout_s
        nxt = start
        while nxt < end:
            if time.monotonic() > deadline:
                raise KafkaError(f"reading {where}: stopped at {nxt} after {timeout_s:.0f}s")
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == RdKafkaError._PARTITION_EOF:
                    return  # nothing more to read (`end` may lie on a transaction marker)
                raise KafkaError(f"reading {where}: {err.str()}", code=err.code())
            if msg.offset() >= end:
                return
            nxt = msg.offset() + 1
            yield msg
    except KafkaException as e:
        raise KafkaError(f"reading {where}: {e.args[0].str()}", code=e.args[0].code()) from e
    finally:
        consumer.close()
