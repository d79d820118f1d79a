"""Publish valid simulated events at a steady rate with event time = now (latency benchmark).

Run: python -m benchmarks.steady_producer RATE SECONDS [LINGER_MS]   (topics from BACKBONE_* settings;
     LINGER_MS: the producer's linger.ms, default 0)
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

from backbone.codec.avro import AvroCodec
from backbone.kafka.producer import KafkaProducer
from backbone.settings import Settings
from producers.publisher import EventPublisher
from producers.simulator import SimulationConfig, simulate


def main() -> None:
    rate, seconds = int(sys.argv[1]), int(sys.argv[2])
    settings = Settings()
    records = list(simulate(SimulationConfig(events=rate * seconds, seed=9)))  # generated before timing
    linger = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    with KafkaProducer(settings, **{"linger.ms": linger}) as producer:
        publisher = EventPublisher(settings, producer, AvroCodec())
        t0 = time.monotonic()
        sent = 0
        while sent < len(records):
            # Wake once a millisecond and publish what is due, not once an event: a sleep per
            # event (every 200 µs at 5k/s) kept this process at ~40 % of a core, on the two
            # cores the broker, Postgres and the projector share.
            due = min(len(records), int((time.monotonic() - t0) * rate) + 1)
            for record in records[sent:due]:
                publisher.publish(record.replace(event_time=datetime.now(tz=UTC)))
            sent = max(sent, due)
            producer.poll(0)
            time.sleep(0.001)


if __name__ == "__main__":
    main()
