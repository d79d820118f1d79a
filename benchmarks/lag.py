"""The lag monitor's cost: one evaluation pass over many groups, and the monitor's CPU.

Run: python -m benchmarks.lag [--groups 50] [--partitions 12] [--records 2000] [--passes 10]
                              [--cpu-seconds 60] [--interval 10]

In throwaway topics (orders and market data, --partitions each, --records records in every
partition, stamped now) and a throwaway database, --groups consumer groups commit offsets to
Kafka on every partition of both topics, each group at offsets of its own (so the record times
to read differ from group to group). Then:
  (a) one evaluation pass of the monitor (`Monitor.run_pass`: sample every group's offsets, the
      last stable offsets and the timestamp of the record at each committed offset, judge the
      window, step the default rules, persist): the first pass (nothing cached), then the
      median of --passes passes where a tenth of the groups moved their offsets since the pass
      before (their new record times are read, the others come from the cache);
  (b) `backbone lag monitor --interval S` as a process over --cpu-seconds at least: its CPU
      (user + system, all threads) over that span as a fraction of one core, from its first
      pass to its last.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from confluent_kafka import Consumer, TopicPartition

from backbone.kafka.producer import KafkaProducer
from backbone.record_time import timestamp_ms
from backbone.settings import Settings
from benchmarks.common import bench_settings, cpu_seconds, create_topics, delete_topics, fresh_database
from monitoring.monitor import Monitor
from monitoring.rules import load_rules


def publish(settings: Settings, partitions: int, records: int) -> None:
    stamp = timestamp_ms(datetime.now(tz=UTC))
    with KafkaProducer(settings) as producer:
        for topic in (settings.topic_orders, settings.topic_marketdata):
            for p in range(partitions):
                for i in range(records):
                    producer.produce(topic, b"x" * 64, key=b"k", partition=p, timestamp_ms=stamp + i)


def commit(settings: Settings, group: str, offsets: dict[tuple[str, int], int]) -> None:
    consumer = Consumer(settings.kafka_config(**{"group.id": group, "enable.auto.commit": False}))
    try:
        consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()


def offsets(settings: Settings, g: int, partitions: int, records: int, shift: int = 0) -> dict[tuple[str, int], int]:
    """Group g's offsets: spread over the log, one of its own per group, never at the end."""
    return {(t, p): (g * 37 + p * 11 + k * 5 + shift) % records
            for k, t in enumerate((settings.topic_orders, settings.topic_marketdata)) for p in range(partitions)}


def evaluation(settings: Settings, args: argparse.Namespace, groups: list[str]) -> None:
    monitor = Monitor(settings, load_rules(None), sinks=[], interval=timedelta(seconds=1),
                      window=timedelta(seconds=0.5))
    try:
        first = monitor.run_pass()
        reads = monitor.sampler.reads
        time.sleep(0.6)  # past the monitor's first window: the passes timed below step the alerts too
        seconds = []
        moved = max(len(groups) // 10, 1)
        for n in range(args.passes):
            for g in range(moved):  # a tenth of the groups committed since the pass before
                index = (n * moved + g) % len(groups)
                commit(settings, groups[index], offsets(settings, index, args.partitions, args.records, n + 1))
            report = monitor.run_pass()
            assert not report.warming_up and not report.problems, report.line()
            seconds.append(report.seconds)
        judged = sum(len(g.partitions) for g in first.groups)
        print(f"(a) first pass (nothing cached): {first.seconds:.3f} s for {judged:,} partitions of "
              f"{len(first.groups):,} group-topics, {reads:,} records read for their times", flush=True)
        median = statistics.median(seconds)
        print(f"(a) one pass, {moved} of {len(groups)} groups moved since the last: median {median:.3f} s "
              f"over {len(seconds)} passes (min {min(seconds):.3f}, max {max(seconds):.3f})", flush=True)
    finally:
        monitor.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--passes", type=int, default=10)
    parser.add_argument("--cpu-seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=10.0)
    args = parser.parse_args()
    print(f"started {datetime.now(tz=UTC):%Y-%m-%d %H:%M:%S} UTC", flush=True)
    settings = bench_settings("lag", partitions=args.partitions)
    create_topics(settings)
    try:
        with fresh_database(settings) as settings:
            t0 = time.perf_counter()
            publish(settings, args.partitions, args.records)
            groups = [f"bench-lag-{settings.topic_orders}-{g}" for g in range(args.groups)]
            for g, group in enumerate(groups):
                commit(settings, group, offsets(settings, g, args.partitions, args.records))
            print(f"{2 * args.partitions * args.records:,} records in {2 * args.partitions} partitions, "
                  f"{len(groups)} groups committed, in {time.perf_counter() - t0:.1f} s", flush=True)
            evaluation(settings, args, groups)
            cpu(settings, args)
    finally:
        delete_topics(settings)


def cpu(settings: Settings, args: argparse.Namespace) -> None:
    """`backbone lag monitor` as a process: its CPU from its first pass to the last one past
    --cpu-seconds, as a fraction of one core."""
    env = {**os.environ, **{f"BACKBONE_{k.upper()}": v for k, v in settings.display().items()
                            if v != "" and k != "database_url" and "password" not in k},
           "BACKBONE_DATABASE_URL": settings.database_url_value}
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "lag", "monitor", "--interval", str(args.interval)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        first = proc.stdout.readline()
        if not first:
            raise SystemExit(f"the monitor ended: {proc.stderr.read() if proc.stderr else ''}")
        start_cpu, start = cpu_seconds(proc.pid), time.monotonic()
        passes = 0
        while time.monotonic() - start < args.cpu_seconds:
            if not proc.stdout.readline():
                raise SystemExit(f"the monitor ended: {proc.stderr.read() if proc.stderr else ''}")
            passes += 1
        end_cpu, end = cpu_seconds(proc.pid), time.monotonic()
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    assert start_cpu is not None and end_cpu is not None
    print(f"(b) lag monitor at a {args.interval:g} s interval: {(end_cpu - start_cpu) / (end - start):.4f} of a core "
          f"over {end - start:.0f} s ({passes} passes after the first, {end_cpu - start_cpu:.2f} s CPU)", flush=True)


if __name__ == "__main__":
    main()
