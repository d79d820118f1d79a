"""Replay speed and the cost of `state --as-of` against the distance from the newest snapshot.

Run: python -m benchmarks.replay [--events 1000000] [--distances 0,1000,10000,100000] [--runs 3]
                                 [--processes 2]

On one simulated log in throwaway topics (and a throwaway database), measured in the same run:
  (a) full replay:  every record from offset 0, in memory, in this process: events/s; then
                    split between --processes processes (what `replay --from-beginning
                    --dry-run` does by default, projections.parallel);
  (b) as-of:        snapshots are taken at two points of the log (`checkpoints create --as-of`),
                    early (10 %) and late (60 %); then `state --as-of T` is timed for T at
                    several distances (in records) after each snapshot point, up to the rows
                    it prints, plus one full replay to the farthest cut without snapshots.
                    Snapshots are restored lazily (projections/snapshots.py): the header
                    now, each (account, symbol) section when the tail names it. Baseline in
                    the same run: the same snapshots restored eagerly. The tail read follows
                    the tail length, whether the snapshot is early or late in the log. Each
                    point is timed in this process alone and split between --processes
                    processes (projections.parallel, what the command does by default),
                    alternating.

The simulator publishes ~16 000-20 000 events/s on the 2-core machine (2026-12-02): the
default 1M events take about a minute to publish and the whole run about 5 minutes;
--events 200000 gives the picture in about one.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import time
from datetime import datetime

from backbone import db
from backbone.codec.avro import AvroCodec
from backbone.gc_policy import fewer_collections
from backbone.kafka.producer import KafkaProducer
from backbone.settings import Settings
from benchmarks.common import bench_settings, create_topics, delete_topics, fresh_database
from producers.publisher import EventPublisher
from producers.simulator import SimulationConfig, simulate
from projections import snapshots
from projections.parallel import PartitionWorkers, snapshot_as_of
from projections.read_model import open_order_rows, pnl_rows, position_rows
from projections.replay import Replayer
from projections.state import TradingState


def publish(settings: Settings, events: int) -> list[datetime]:
    """Publish the session; returns every record's event time, in log order."""
    times = []
    t0 = time.perf_counter()
    with KafkaProducer(settings) as producer:
        publisher = EventPublisher(settings, producer, AvroCodec())
        for i, record in enumerate(simulate(SimulationConfig(events=events, seed=11, symbols=40, accounts=20)), 1):
            publisher.publish(record)
            times.append(record.event_time)
            if i % 100_000 == 0:
                print(f"  published {i:,} ({i / (time.perf_counter() - t0):,.0f} ev/s)", flush=True)
        producer.flush()
    print(f"published {events:,} events in {time.perf_counter() - t0:.1f} s", flush=True)
    return times


def as_of(replayer: Replayer, when: datetime, *, use_snapshots: bool = True,
          workers: PartitionWorkers | None = None) -> tuple[float, int, float, float]:
    """(total seconds, records read, snapshot load seconds, read seconds) of one as-of query,
    up to the rows `state --as-of` prints (positions, P&L by account, open orders): in this
    process alone, or split with `workers`' helpers as the command does (load and read seconds
    are then the slowest process's)."""
    with fewer_collections():  # as `state --as-of` runs (cli/state.py)
        t0 = time.perf_counter()
        plans = replayer.plan_as_of(when, use_snapshots=use_snapshots)
        if workers is not None:
            rows = workers.fold(replayer, plans)
            return time.perf_counter() - t0, rows.records, rows.snapshot_seconds, rows.read_seconds
        result = replayer.run(plans)
        positions = position_rows(result.state)
        pnl_rows(positions)
        open_order_rows(result.state)
        return time.perf_counter() - t0, result.records, result.snapshot_seconds, result.read_seconds


def eager_load(replayer: Replayer, when: datetime) -> float:
    """Seconds to restore the snapshots an as-of query at `when` starts from, eagerly (every
    row decoded and every position refolded: how format 1 was always restored)."""
    plans = [p for p in replayer.plan_as_of(when) if p.snapshot is not None]
    with replayer.engine.connect() as sa_conn:
        conn = sa_conn.connection.driver_connection
        chains = [(p, snapshots.read_chain(conn, p.snapshot)) for p in plans if p.snapshot is not None]
    state = TradingState()
    with fewer_collections():
        t0 = time.perf_counter()
        for plan, chain in chains:
            snapshots.restore_chain(state, replayer.kind(plan.topic), plan.partition, snapshots.links_of(chain))
        return time.perf_counter() - t0


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still delete the topics and the database
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--distances", default=None, help="records after the snapshot point, comma-separated "
                                                          "(default: 0 and 0.1 %%, 1 %%, 10 %% of --events)")
    parser.add_argument("--runs", type=int, default=3, help="as-of timings per point (median)")
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--processes", type=int, default=2, help="processes of the split as-of timings "
                                                                  "(1: this process only)")
    args = parser.parse_args()
    n = args.events
    distances = ([int(d) for d in args.distances.split(",")] if args.distances
                 else [0, max(n // 1000, 1), max(n // 100, 1), max(n // 10, 1)])

    settings = bench_settings("replay", partitions=args.partitions)
    create_topics(settings)
    try:
        with fresh_database(settings) as run:
            times = publish(run, n)
            # before this process's Kafka clients: the helper is forked, not spawned (projections.parallel)
            with PartitionWorkers(run, args.processes, projection="trading") as workers:
                run_benchmarks(args, run, times, distances, workers)
    finally:
        delete_topics(settings)


def run_benchmarks(args: argparse.Namespace, run: Settings, times: list[datetime], distances: list[int],
                   workers: PartitionWorkers) -> None:
    n = args.events
    engine = db.make_engine(run)
    try:
        with Replayer(run, engine) as replayer:
            # (a) full in-memory replay from offset 0
            plans = replayer.plan_replay(from_beginning=True)
            t0 = time.perf_counter()
            full = replayer.run(plans)
            elapsed = time.perf_counter() - t0
            print(f"\n(a) full replay of {full.records:,} records: {full.records / elapsed:,.0f} events/s "
                  f"({elapsed:.1f} s; {full.events_per_s():,.0f} events/s while reading)")
            del full
            if args.processes > 1:  # what `replay --from-beginning --dry-run` does by default
                t0 = time.perf_counter()
                folded = workers.fold(replayer, replayer.plan_replay(from_beginning=True))
                elapsed = time.perf_counter() - t0
                print(f"(a) the same replay split between {folded.processes} processes: "
                      f"{folded.records / elapsed:,.0f} events/s ({elapsed:.1f} s)")

            # (b) snapshots at two points, then as-of at distances from each
            points = {"early (10%)": int(n * 0.10), "late (60%)": int(n * 0.60)}
            for label, index in points.items():
                t0 = time.perf_counter()
                # as `checkpoints create --as-of` does by default: split between the processes
                taken, _ = snapshot_as_of(replayer, times[index - 1],
                                          fold=workers.fold if args.processes > 1 else None)
                size = sum(t.size for t in taken if t.action == "created")
                print(f"snapshot {label} at record {index:,}: {len(taken)} partitions, "
                      f"{size / 1e6:.1f} MB compressed, built in {time.perf_counter() - t0:.1f} s "
                      f"by {args.processes} process(es)")
            print(f"\n(b) state --as-of T, T = the time of the record `distance` records after the "
                  f"snapshot point; log of {n:,} records; median of {args.runs}")
            print(f"{'snapshot':>12} {'distance':>9} {'records read':>13} {'load snap s':>12} "
                  f"{'read s':>8} {'total s':>8}" + (f" {f'{args.processes} procs s':>13}"
                                                     if args.processes > 1 else ""))
            eager = {label: statistics.median(eager_load(replayer, times[index - 1])
                                              for _ in range(args.runs)) for label, index in points.items()}
            for label, index in points.items():
                for d in distances:
                    i = min(index - 1 + d, n - 1)
                    runs, split = [], []
                    for k in range(args.runs):  # alternating, so that both see the same machine
                        for w in ((None, workers) if k % 2 == 0 else (workers, None)):
                            if w is None:
                                runs.append(as_of(replayer, times[i]))
                            elif args.processes > 1:
                                split.append(as_of(replayer, times[i], workers=w))
                    total = statistics.median(r[0] for r in runs)
                    load = statistics.median(r[2] for r in runs)
                    read = statistics.median(r[3] for r in runs)
                    both = f" {statistics.median(r[0] for r in split):>13.3f}" if split else ""
                    print(f"{label:>12} {d:>9,} {runs[0][1]:>13,} {load:>12.3f} {read:>8.3f} {total:>8.3f}"
                          + both, flush=True)
            for label in points:
                print(f"{label:>12}: the same snapshots restored eagerly (every row decoded, every position "
                      f"refolded) take {eager[label]:.3f} s (median of {args.runs})")
            far = times[min(points["late (60%)"] - 1 + distances[-1], n - 1)]
            total, read, _load, _ = as_of(replayer, far, use_snapshots=False)
            print(f"{'none':>12} {'(full)':>9} {read:>13,} {0:>12.3f} {total:>8.3f} {total:>8.3f}"
                  "   <- the farthest late cut without snapshots")
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
