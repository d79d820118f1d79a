"""The projector's costs against the length of the history it has folded.

Run: python -m benchmarks.history [--sizes 1000000,3000000,5000000] [--modes bounded,everything]
                                  [--rate 20000] [--seconds 30] [--extra 100000]

Per size and mode, in a process of its own (so the memory figures are that run's only), on fresh
topics and a fresh database: publish a simulated log of that many events, project it
(events/s), then print

  * the state held: orders and executions in memory, and the process's resident memory;
  * snapshot: serializing the largest orders partition as the projector does when one is due
    (seconds, compressed bytes): whole; and, bounded, a change on it after --extra more events
    are published and projected (what the snapshot process builds between two whole ones);
  * reload: loading every orders partition as a new owner does on assignment (seconds per
    partition);
  * latency, event time -> row committed, p50/p99/max, while a producer publishes at --rate
    events/s for --seconds and the projector goes on from that history (0 seconds: skipped).

Modes: `bounded` keeps the open book in memory (`BACKBONE_BOUNDED_STATE=true`, the default;
docs/live-state.md), `everything` every row (`false`, as before it).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from backbone import db
from backbone.codec.avro import AvroCodec
from backbone.db import psycopg_connection
from backbone.kafka.producer import KafkaProducer
from backbone.kafka.reader import LogReader
from backbone.settings import Settings
from benchmarks.common import bench_settings, create_topics, delete_topics, fresh_database, percentile
from benchmarks.project import publish
from consumers.config import LoopConfig
from consumers.runtime import ProjectionLoop
from producers.publisher import EventPublisher
from producers.simulator import DEFAULT_START, SimulationConfig, simulate
from projections import snapshot_jobs, snapshots
from projections.trading import TradingProjection

MODES = {"bounded": True, "everything": False}


def resident_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def change_snapshot(settings: Settings, engine: Any, group: str, partition: int, extra: int) -> dict[str, Any]:
    """Publish `extra` more events (other order ids, a day later), project them, and snapshot
    `partition` again: a change on the whole snapshot taken before (seconds, bytes, records)."""
    with KafkaProducer(settings) as producer:
        publisher = EventPublisher(settings, producer, AvroCodec())
        for record in simulate(SimulationConfig(events=extra, seed=6, symbols=40, accounts=20,
                                                start=DEFAULT_START + timedelta(days=1))):
            publisher.publish(record)
    ProjectionLoop(settings, TradingProjection(settings), engine, LoopConfig(group_id=group)).run(until_caught_up=True)
    t0 = time.perf_counter()
    with LogReader(settings) as reader:
        (taken,) = snapshot_jobs.snapshot_live(settings, engine, reader, only={(settings.topic_orders, partition)})
    seconds = time.perf_counter() - t0
    assert taken.change_on is not None, taken
    return {"change_s": seconds, "change_bytes": taken.size, "change_records": taken.next_offset - taken.change_on}


def one(size: int, mode: str, rate: int, seconds: int, extra: int) -> dict[str, Any]:
    settings = bench_settings("history").with_overrides(bounded_state=MODES[mode])
    create_topics(settings)
    out: dict[str, Any] = {"size": size, "mode": mode}
    try:
        publish(settings, size)
        with fresh_database(settings) as dbs:
            engine = db.make_engine(dbs)
            group = f"history-{time.time_ns()}"
            projection = TradingProjection(dbs)
            loop = ProjectionLoop(dbs, projection, engine, LoopConfig(group_id=group))
            t0 = time.perf_counter()
            stats = loop.run(until_caught_up=True)
            out["events_per_s"] = stats.events / (time.perf_counter() - t0)
            gc.collect()
            out["orders_held"], out["executions_held"] = len(projection.state.orders), len(projection.state.executions)
            out["resident_mb"] = resident_mb()
            parts = sorted({p for p in projection.state.position_partition.values()})
            with engine.connect() as sa_conn, sa_conn.begin():
                conn = psycopg_connection(sa_conn)
                biggest = max(parts, key=lambda p: sum(1 for q in projection.state.position_partition.values()
                                                       if q == p))
                t0 = time.perf_counter()
                if projection.bounded:  # what the snapshot process does, from the tables
                    with engine.begin() as other:  # one at this checkpoint would be kept, not built
                        psycopg_connection(other).execute("delete from projection_snapshots where topic = %s "
                                                          "and partition = %s", (dbs.topic_orders, biggest))
                    t0 = time.perf_counter()
                    with LogReader(dbs) as reader:
                        taken = snapshot_jobs.snapshot_live(dbs, engine, reader, only={(dbs.topic_orders, biggest)})
                    size = taken[0].size
                else:  # what a due snapshot serializes inside the batch
                    size = len(snapshots.serialize(projection.state, "orders", biggest))
                out["snapshot_s"], out["snapshot_bytes"] = time.perf_counter() - t0, size
                reloaded = TradingProjection(dbs)
                reloaded.attach_reader(lambda work, **_: work(conn), engine)
                t0 = time.perf_counter()
                reloaded.load(conn, [(dbs.topic_orders, p) for p in parts])
                out["reload_s_per_partition"] = (time.perf_counter() - t0) / len(parts)
            if projection.bounded and extra:
                out.update(change_snapshot(dbs, engine, group, biggest, extra))
            if seconds:
                out.update(latency(dbs, engine, group, rate, seconds))
            engine.dispose()
    finally:
        delete_topics(settings)
    return out


def latency(settings: Settings, engine: Any, group: str, rate: int, seconds: int) -> dict[str, float]:
    """p50/p99/max of event time -> row committed, the projector going on from the history."""
    env = {**os.environ, **{f"BACKBONE_{k.upper()}": v for k, v in settings.display().items()
                            if k.startswith("topic_") or k == "partitions"}}
    producer = subprocess.Popen([sys.executable, "-m", "benchmarks.steady_producer", str(rate), str(seconds), "5"],
                                env=env)
    latencies: list[float] = []

    def on_commit(records: list, committed_at: float) -> None:
        latencies.extend(committed_at - msg.timestamp()[1] / 1000 for msg in records)

    holder: dict[str, ProjectionLoop] = {}

    def finished() -> bool:
        loop = holder["loop"]
        return producer.poll() is not None and bool(loop.assigned) and loop.assigned <= loop.at_end

    holder["loop"] = ProjectionLoop(settings, TradingProjection(settings), engine,
                                    LoopConfig(group_id=group, batch_size=5000), stop_requested=finished,
                                    on_commit=on_commit)
    holder["loop"].run(max_seconds=seconds + 600)
    steady = latencies[len(latencies) // 10:] or [0.0]
    return {"p50_ms": percentile(steady, 50) * 1000, "p99_ms": percentile(steady, 99) * 1000,
            "max_ms": max(steady) * 1000, "latency_events": len(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,3000000,5000000")
    parser.add_argument("--modes", default="bounded,everything")
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--extra", type=int, default=100_000, help="events after the whole snapshot that the "
                        "change snapshot covers (bounded mode; 0: skipped)")
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(int(args.one[0]), args.one[1], args.rate, args.seconds, args.extra)), flush=True)
        return
    print(f"started {datetime.now(tz=UTC):%Y-%m-%d %H:%M:%S} UTC", flush=True)
    print("size       mode        ev/s    orders  execs   RSS MB  snap s  snap MB  change s  change KB  records  "
          "reload s/p  p50 ms  p99 ms  max ms", flush=True)
    for size in [int(s) for s in args.sizes.split(",")]:
        for mode in args.modes.split(","):
            done = subprocess.run([sys.executable, "-m", "benchmarks.history", "--one", str(size), mode,
                                   "--rate", str(args.rate), "--seconds", str(args.seconds), "--extra",
                                   str(args.extra)],
                                  capture_output=True, text=True, check=True)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{size:<10,} {mode:<10} {r['events_per_s']:>7,.0f} {r['orders_held']:>8,} "
                  f"{r['executions_held']:>7,} "
                  f"{r['resident_mb']:>7,.0f} {r['snapshot_s']:>7.2f} {r['snapshot_bytes'] / 1e6:>8.1f} "
                  f"{r.get('change_s', 0):>9.2f} {r.get('change_bytes', 0) / 1e3:>10.1f} "
                  f"{r.get('change_records', 0):>8,} "
                  f"{r['reload_s_per_partition']:>11.3f} {r.get('p50_ms', 0):>7.1f} {r.get('p99_ms', 0):>7.1f} "
                  f"{r.get('max_ms', 0):>7.1f}", flush=True)


if __name__ == "__main__":
    main()
