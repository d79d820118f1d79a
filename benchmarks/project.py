"""Events/s projected from Kafka into Postgres with exactly-once checkpoints, against limits.

Run: python -m benchmarks.project [--events 100000] [--naive-events 3000]
     python -m benchmarks.project --latency [--rate 5000] [--seconds 30] [--linger-ms 5,0]

Throughput mode, on one simulated log in throwaway topics, measured in the same run:
  (a) raw:       consume + decode every record (the limit: no projection, no database);
  (b) projector: ProjectionLoop, one Postgres transaction per batch with rows + offsets;
  (c) naive:     the same projection committing one transaction per event (rows + offset),
                 measured on the first --naive-events records.
Prints the three rates and the ratios b/a and b/c.

Latency mode: a producer process publishes valid events at a steady --rate with event time =
now; this process runs the projector and records, per event, commit time − event time.
Prints p50/p99/max, once per producer linger.ms in --linger-ms, each on fresh topics: 5 ms is
the project producer's default (backbone.kafka.producer), 0 sends every record in a request of
its own, which on the 2-core machine kept the broker busy for ~0.65 of a core at 5k/s (~0.4
with 5 ms), CPU the projector and Postgres then waited for. Also prints the cores each of the
broker, Postgres (local stack), the producer and the projector used from the tenth event to the
ninth tenth: the machine's cores are shared by all four, and what they leave decides the tail.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime

from confluent_kafka import Consumer

from backbone import db
from backbone.codec.avro import AvroCodec
from backbone.kafka.batches import partitions_of
from backbone.kafka.consumer import consumer_config
from backbone.kafka.producer import PRODUCER_DEFAULTS, KafkaProducer
from backbone.settings import Settings
from benchmarks.common import (
    CpuMeter,
    bench_settings,
    create_topics,
    delete_topics,
    fresh_database,
    local_service_pids,
    percentile,
    ratio,
)
from consumers.checkpoints import advance_checkpoints
from consumers.config import LoopConfig
from consumers.runtime import ProjectionLoop
from producers.publisher import EventPublisher
from producers.simulator import SimulationConfig, simulate
from projections.trading import TradingProjection


def publish(settings: Settings, events: int) -> None:
    with KafkaProducer(settings) as producer:
        publisher = EventPublisher(settings, producer, AvroCodec())
        for record in simulate(SimulationConfig(events=events, seed=5, symbols=40, accounts=20)):
            publisher.publish(record)


def raw_consume(settings: Settings, events: int) -> float:
    decode = AvroCodec().decoder()  # the projection's own decode path
    # The projector's consumer settings (backbone.kafka.consumer) without partition-EOF events,
    # which the projector needs (--until-caught-up) but which made a subscribed consumer's reads
    # ~2x slower here (2026-12-02: 124-160k vs 243-323k records/s, consume + decode): (a) is the limit.
    consumer = Consumer(consumer_config(settings, **{"group.id": f"raw-{time.time_ns()}",
                                                     "auto.offset.reset": "earliest",
                                                     "enable.partition.eof": False}))
    consumer.subscribe([settings.topic_orders, settings.topic_marketdata])
    seen, t0 = 0, None
    while seen < events:
        for msg in consumer.consume(num_messages=5000, timeout=1.0):
            if msg.error() is None:
                if t0 is None:
                    t0 = time.perf_counter()
                decode(msg.value())
                seen += 1
    elapsed = time.perf_counter() - (t0 or time.perf_counter())
    consumer.close()
    return events / elapsed


def projector(settings: Settings, events: int) -> float:
    with fresh_database(settings) as dbs:
        engine = db.make_engine(dbs)
        loop = ProjectionLoop(dbs, TradingProjection(dbs), engine, LoopConfig(group_id=f"proj-{time.time_ns()}"))
        t0 = time.perf_counter()
        stats = loop.run(until_caught_up=True)
        elapsed = time.perf_counter() - t0
        engine.dispose()
    assert stats.events == events, (stats.events, events)
    return events / elapsed


def projector_processes(settings: Settings, events: int, processes: int) -> float:
    """`processes` projector processes sharing the partitions in one consumer group."""
    import json
    import os

    with fresh_database(settings) as dbs:
        env = {**os.environ, **{f"BACKBONE_{k.upper()}": v for k, v in dbs.display().items()
                                if v and "password" not in k and k != "database_url"},
               "BACKBONE_DATABASE_URL": dbs.database_url_value}
        group = f"procs-{time.time_ns()}"
        t0 = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-m", "cli.main", "project", "run", "--group", group,
                                   "--until-caught-up", "--json"], env=env, stdout=subprocess.PIPE, text=True)
                 for _ in range(processes)]
        outs = [json.loads(p.communicate()[0]) for p in procs]
        elapsed = time.perf_counter() - t0
    done = sum(o["events"] for o in outs)
    assert done >= events, (done, events)
    return events / elapsed


def naive(settings: Settings, limit: int) -> float:
    """One transaction per event: apply, write the rows, advance the checkpoint, commit."""
    codec = AvroCodec()
    with fresh_database(settings) as dbs:
        projection = TradingProjection(dbs, codec)
        engine = db.make_engine(dbs)
        consumer = Consumer(consumer_config(dbs, **{"group.id": f"naive-{time.time_ns()}",
                                                    "auto.offset.reset": "earliest"}))
        consumer.subscribe([dbs.topic_orders, dbs.topic_marketdata])
        projection.place({t: len(partitions_of(consumer, t)) for t in projection.topics()})
        done, t0, positions = 0, None, {}
        while done < limit:
            msg = consumer.poll(1.0)
            if msg is None or msg.error() is not None:
                continue
            if t0 is None:
                t0 = time.perf_counter()
            projection.apply(msg)
            tp = (msg.topic(), msg.partition())
            with engine.begin() as sa_conn:
                conn = sa_conn.connection.driver_connection
                batch = projection.write(conn)
                advance_checkpoints(conn, "naive", {tp: (positions.get(tp), msg.offset() + 1)})
            projection.committed(batch)
            positions[tp] = msg.offset() + 1
            done += 1
        elapsed = time.perf_counter() - (t0 or time.perf_counter())
        consumer.close()
        engine.dispose()
    return limit / elapsed


def throughput(args: argparse.Namespace) -> None:
    settings = bench_settings("project")
    create_topics(settings)
    try:
        print(f"publishing {args.events:,} simulated records…", flush=True)
        publish(settings, args.events)
        a = raw_consume(settings, args.events)
        print(f"(a) raw consume+decode: {a:,.0f} events/s", flush=True)
        b = projector(settings, args.events)
        print(f"(b) projector (batch txn, exactly-once checkpoints): {b:,.0f} events/s", flush=True)
        b2 = projector_processes(settings, args.events, 2)
        print(f"(b2) two projector processes in one group (wall clock incl. start-up): {b2:,.0f} events/s",
              flush=True)
        c = naive(settings, min(args.naive_events, args.events))
        print(f"(c) naive (one txn per event, first {min(args.naive_events, args.events):,}): {c:,.0f} events/s")
        print(f"ratios: b/a = {ratio(b / a)}   b/c = {b / c:.1f}x   b2/b = {ratio(b2 / b)}")
    finally:
        delete_topics(settings)


def latency(args: argparse.Namespace) -> None:
    for linger_ms in [int(v) for v in args.linger_ms.split(",")]:
        latency_run(args, linger_ms)


def latency_run(args: argparse.Namespace, linger_ms: int) -> None:
    settings = bench_settings("latency")
    create_topics(settings)
    latencies: list[float] = []
    total = args.rate * args.seconds
    meter: CpuMeter | None = None
    cores: dict[str, float] = {}

    def on_commit(records: list, committed_at: float) -> None:
        for msg in records:
            latencies.append(committed_at - msg.timestamp()[1] / 1000)
        # CPU over the steady part: from the tenth event to the ninth tenth (the producer alive)
        if meter is not None and not cores:
            if not meter.started and len(latencies) >= total // 10:
                meter.start()
            elif meter.started and len(latencies) >= total * 9 // 10:
                cores.update(meter.stop())

    try:
        with fresh_database(settings) as dbs:
            env_overrides = {f"BACKBONE_{k.upper()}": v for k, v in dbs.display().items()
                             if k.startswith("topic_") or k == "partitions"}
            producer = subprocess.Popen([sys.executable, "-m", "benchmarks.steady_producer", str(args.rate),
                                         str(args.seconds), str(linger_ms)],
                                        env={**os.environ, **env_overrides})
            meter = CpuMeter({**local_service_pids(dbs), "producer": lambda: {producer.pid},
                              "projector": lambda: {os.getpid()}})
            engine = db.make_engine(dbs)
            holder: dict[str, ProjectionLoop] = {}

            def finished() -> bool:  # the producer is done and every partition is caught up
                loop = holder["loop"]
                return producer.poll() is not None and bool(loop.assigned) and loop.assigned <= loop.at_end

            holder["loop"] = ProjectionLoop(
                dbs, TradingProjection(dbs), engine,
                LoopConfig(group_id=f"lat-{time.time_ns()}", batch_size=5000),  # the defaults of `project run`
                stop_requested=finished, on_commit=on_commit)
            holder["loop"].run(max_seconds=args.seconds + 600)
            engine.dispose()
        steady = latencies[len(latencies) // 10:]  # drop the warm-up tenth
        print(f"producer linger.ms {linger_ms}, rate {args.rate}/s for {args.seconds}s: {len(latencies):,} events "
              "projected")
        print(f"latency event time -> row committed: p50 {percentile(steady, 50) * 1000:.1f} ms  "
              f"p99 {percentile(steady, 99) * 1000:.1f} ms  max {max(steady) * 1000:.1f} ms")
        if cores:
            print(f"cores used (of {os.cpu_count()}), events {total // 10:,}-{total * 9 // 10:,}: "
                  + "  ".join(f"{name} {used:.2f}" for name, used in cores.items())
                  + f"  all {sum(cores.values()):.2f}")
    finally:
        delete_topics(settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--naive-events", type=int, default=3000)
    parser.add_argument("--latency", action="store_true")
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--linger-ms", default=f"{PRODUCER_DEFAULTS['linger.ms']},0",
                        help="producer linger.ms values, comma-separated: one latency run each")
    args = parser.parse_args()
    print(f"started {datetime.now(tz=UTC):%Y-%m-%d %H:%M:%S} UTC", flush=True)
    latency(args) if args.latency else throughput(args)


if __name__ == "__main__":
    main()
