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
        for i, record in enumerate(records):
            ahead = t0 + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            publisher.publish(record.replace(event_time=datetime.now(tz=UTC)))
            if i % 50 == 0:
                producer.poll(0)


if __name__ == "__main__":
    main()
