"""Dead letters: anything that could not be accepted goes to `trading.deadletter` with the
reason in headers, never silently dropped.

Headers: `reason` (short stable id), `detail` (human text), `source` (where it came from:
`file.jsonl:17`, `topic[partition]@offset`), `stage` (publish | project), and, when the
record came from Kafka, `source_topic`, `source_partition`, `source_offset`, `projection`.
The value is the original bytes, untouched, so the record can be inspected and replayed.
"""

from __future__ import annotations

from dataclasses import dataclass

from backbone.kafka.producer import KafkaProducer


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    detail: str
    source: str
    stage: str
    payload: bytes
    key: bytes | None = None
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    projection: str | None = None
    timestamp_ms: int = 0

    def headers(self) -> list[tuple[str, bytes]]:
        pairs = [("reason", self.reason), ("detail", self.detail), ("source", self.source), ("stage", self.stage)]
        optional = [("source_topic", self.source_topic), ("source_partition", self.source_partition),
                    ("source_offset", self.source_offset), ("projection", self.projection)]
        pairs += [(k, str(v)) for k, v in optional if v is not None]
        return [(k, v.encode()) for k, v in pairs]


def send(producer: KafkaProducer, topic: str, letter: DeadLetter) -> None:
    producer.produce(topic, letter.payload, key=letter.key, timestamp_ms=letter.timestamp_ms,
                     headers=letter.headers())
