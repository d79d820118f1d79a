"""Avro events/s produced with acks=all and idempotence, against the client's raw limit.

Run: python -m benchmarks.produce [--events 200000] [--runs 3]

Side by side in one run, on throwaway topics of the configured cluster:
  (a) avro: encode each simulated OrderEvent/MarketMark with the codec and produce it
      (key = symbol, timestamp = event time) — the production path of EventPublisher;
  (b) raw:  produce the same number of pre-serialized bytes (the same payloads, encoded
      beforehand) with the same producer settings — the client's limit on the host that runs it.
Each run ends with flush() (every record acknowledged). Prints medians and the ratio.
"""

from __future__ import annotations

import argparse
import time

from backbone.codec.avro import AvroCodec
from backbone.gc_policy import fewer_collections
from backbone.kafka.producer import KafkaProducer
from benchmarks.common import bench_settings, create_topics, delete_topics
from producers.publisher import EventPublisher, timestamp_ms
from producers.simulator import SimulationConfig, simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    settings = bench_settings("produce")
    create_topics(settings)
    print(f"generating {args.events:,} simulated records (not timed)…", flush=True)
    records = list(simulate(SimulationConfig(events=args.events, seed=1)))
    codec = AvroCodec()
    encoded = [(settings.topic_orders if hasattr(r, "order_id") else settings.topic_marketdata,
                r.symbol.encode(), codec.encode(r), timestamp_ms(r.event_time)) for r in records]
    avg_bytes = sum(len(v) for _t, _k, v, _ts in encoded) / len(encoded)
    try:
        def avro() -> float:
            with fewer_collections(), KafkaProducer(settings) as producer:  # as `backbone simulate`
                publisher = EventPublisher(settings, producer, codec)
                t0 = time.perf_counter()
                for record in records:
                    publisher.publish(record)
                producer.flush()
                return time.perf_counter() - t0

        def raw() -> float:
            with fewer_collections(), KafkaProducer(settings) as producer:
                t0 = time.perf_counter()
                for topic, key, value, ts in encoded:
                    producer.produce(topic, value, key=key, timestamp_ms=ts)
                producer.flush()
                return time.perf_counter() - t0

        avro_rates, raw_rates = [], []
        for _ in range(args.runs):  # interleaved, so both see the same machine load
            avro_rates.append(args.events / avro())
            raw_rates.append(args.events / raw())
        avro_med = sorted(avro_rates)[len(avro_rates) // 2]
        raw_med = sorted(raw_rates)[len(raw_rates) // 2]
        print(f"records: {args.events:,} (avg {avg_bytes:.0f} bytes), runs: {args.runs}, acks=all, idempotence on, lz4")
        print(f"avro encode+produce: median {avro_med:,.0f} events/s   runs {[round(r) for r in avro_rates]}")
        print(f"raw bytes produce:   median {raw_med:,.0f} events/s   runs {[round(r) for r in raw_rates]}")
        print(f"ratio avro/raw: {avro_med / raw_med:.2f}")
    finally:
        delete_topics(settings)


if __name__ == "__main__":
    main()
