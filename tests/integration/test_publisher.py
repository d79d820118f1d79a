"""The publisher's size limit and its per-record refusals, against the real broker."""

from __future__ import annotations

import base64
import random

import pytest
from support import read_topic, set_topic_config
from tape import Tape

from backbone.codec import json_form
from backbone.codec.avro import AvroCodec
from backbone.errors import KafkaError
from backbone.kafka.producer import KafkaProducer
from backbone.settings import Settings
from producers.publisher import FileImport, RefusedLine, record_limit

pytestmark = pytest.mark.integration

LIBRDKAFKA_RECORD_FRAMING = 36  # RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD: what its size check adds to key and value


def noise(size: int, seed: int = 1) -> bytes:
    """Text lz4 cannot shrink: librdkafka then sends the batch uncompressed."""
    return base64.b64encode(random.Random(seed).randbytes(size))[:size]


def test_a_record_at_the_limit_is_delivered_and_one_byte_more_is_refused_at_once(created_topics: Settings) -> None:
    settings = created_topics
    set_topic_config(settings, settings.topic_marketdata, {"max.message.bytes": "20000"})
    limit = record_limit(settings)
    assert limit == 20_000 - 61
    key = b"K"
    with KafkaProducer(settings, **{"message.max.bytes": limit}) as producer:
        producer.produce(settings.topic_marketdata, noise(limit - LIBRDKAFKA_RECORD_FRAMING - len(key)), key=key)
        with pytest.raises(KafkaError) as info:
            producer.produce(settings.topic_marketdata, noise(limit - LIBRDKAFKA_RECORD_FRAMING), key=key)
        assert "too large" in str(info.value)
    # flushed without a delivery error: alone in its batch, the largest record still fits the topic
    (delivered,) = read_topic(settings, settings.topic_marketdata)
    assert len(delivered.value()) == limit - LIBRDKAFKA_RECORD_FRAMING - len(key)


def test_a_record_the_broker_refuses_is_refused_alone_on_its_line(created_topics: Settings) -> None:
    """A limit that was right when publishing started and is not any more: the broker's refusal
    (MSG_SIZE_TOO_LARGE in the delivery report) refuses that line only."""
    settings = created_topics
    set_topic_config(settings, settings.topic_marketdata, {"max.message.bytes": "20000"})
    tape = Tape()
    for price in (10, 11, 12):
        tape.mark("M", price)
    lines = [json_form.dumps(m).encode() for m in tape.records]
    lines[1] = json_form.dumps(tape.records[1].replace(source=noise(21_000).decode())).encode()
    with KafkaProducer(settings) as producer:  # message.max.bytes 1,000,000: above the topic's limit
        job = FileImport(settings, producer, AvroCodec(), "marks.jsonl", 1_000_000)
        refused = []
        for lineno, raw in enumerate(lines, start=1):
            refused += job.line(lineno, raw)
            producer.flush()  # a batch per line: the broker refuses whole batches
        refused += job.finish()
    (line,) = refused
    assert isinstance(line, RefusedLine) and (line.line, line.reason) == (2, "oversize")
    assert line.detail.startswith(f"{settings.topic_marketdata}: the broker refused the batch holding this record")
    assert line.detail.endswith("max.message.bytes: Broker: Message size too large")
    assert job.publisher.by_type == {"MARK": 2}  # counted when produced, uncounted when refused
    codec = AvroCodec()
    assert [codec.decode(m.value()) for m in read_topic(settings, settings.topic_marketdata)] == [
        tape.records[0], tape.records[2]]
    (letter,) = read_topic(settings, settings.topic_deadletter)
    assert dict(letter.headers())["source"] == b"marks.jsonl:2" and letter.value() == lines[1]
