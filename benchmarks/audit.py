"""The audit's speed, side by side in one run: the audit projection against the trading
projector over the same log, `audit order` with and without `--verify`, `audit trades` for one
account-day, `audit verify`.

Run: python -m benchmarks.audit --events N [--orders 1000] [--trade-runs 3] [--seed 1]

On one simulated log (benchmarks.project's session: 40 symbols, 20 accounts) in throwaway
topics and a throwaway database, in this order:
  (a) the trading projector alone (`project run`'s ProjectionLoop) to catch-up: events/s;
  (b) the audit projection (`project run --projection audit`) to catch-up over the same log, in
      a group of its own: events/s, with the CPU Postgres spent per archived row (this
      database's backends; the server's shared WAL writer, checkpointer and background writer
      beside it, which other databases on the server also use) and the ceiling that row cost
      sets. For both, the rates are also given from the first batch committed to the last,
      leaving out the group join and the first batch, and the CPU is counted over that window;
  then ANALYZE of the archive and `orders`, as autovacuum does soon after a bulk load;
  (c) `audit order ID --json` for --orders random orders of the archive, timed as the command
      runs it (a REPEATABLE READ connection from the pool, `resolve_order`, `order_lineage`,
      with `--verify` also `verify_order`, then the JSON form), without and with `--verify`,
      each on a sample of its own: p50, p99, max. The first --warm-up orders of each are
      timed and left out. Process start-up, the engine and the codec are made once;
  (d) `audit trades --account A --from D --to D+1 --format jsonl` for the account-day with
      the most fills (the worst case): a warm-up run, then the median of --trade-runs;
  (e) `audit verify`: every partition of both topics, one pass over the archive and the log,
      records/s (no warm-up: it reads the whole archive once).
Postgres's CPU is read from /proc, so it is only counted against the local stack
(`backbone local up`).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import signal
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import sqlalchemy as sa

from backbone import db
from backbone.codec.avro import AvroCodec
from backbone.db import psycopg_connection
from backbone.local.process import cmdline
from backbone.settings import Settings
from benchmarks.common import (
    CpuMeter,
    bench_settings,
    create_topics,
    delete_topics,
    fresh_database,
    local_service_pids,
    percentile,
)
from benchmarks.project import publish
from cli import lineage as view
from consumers.config import LoopConfig
from consumers.projection import Projection
from consumers.runtime import ProjectionLoop
from projections import audit_queries as aq
from projections.audit import AuditProjection
from projections.audit_verify import verify
from projections.trading import TradingProjection

#: the server's processes that write for every database: their CPU is shown, not charged to a row
SHARED_WRITERS = ("walwriter", "checkpointer", "background writer")


def postgres_groups(settings: Settings) -> dict[str, Callable[[], set[int]]]:
    """The local Postgres's processes split in two: the backends (and autovacuum workers) of
    this run's database, and the writers every database shares."""
    server = local_service_pids(settings)["postgres"]
    name = sa.make_url(settings.database_url_value).database

    def named(match: Callable[[str], bool]) -> Callable[[], set[int]]:
        return lambda: {pid for pid in server() if match(cmdline(pid) or "")}

    return {"postgres": named(lambda line: f" {name} " in f"{line} "),
            "postgres shared writers": named(lambda line: line.removeprefix("postgres: ") in SHARED_WRITERS)}


def project(settings: Settings, projection: Projection, events: int) -> float:
    """Run one projection to catch-up and print its rate and the CPU it cost per record;
    returns the rate after the first batch."""
    meter = CpuMeter({**postgres_groups(settings), "broker": local_service_pids(settings)["broker"],
                      "projector": lambda: {os.getpid()}})
    window = {"rows": 0, "first": 0.0, "last": 0.0}

    def on_commit(records: list, committed_at: float) -> None:
        if not meter.started:  # the first batch: the group joined, the partitions loaded
            meter.start()
            window["first"] = time.monotonic()
        else:
            window["rows"] += len(records)
        window["last"] = time.monotonic()

    engine = db.make_engine(settings)
    try:
        loop = ProjectionLoop(settings, projection, engine,
                              LoopConfig(group_id=f"bench-{projection.name}-{time.time_ns()}"), on_commit=on_commit)
        t0 = time.perf_counter()
        stats = loop.run(until_caught_up=True)
        elapsed = time.perf_counter() - t0
        span = time.monotonic() - window["first"]
        cores = meter.stop() if meter.started else {}
    finally:
        engine.dispose()
    assert stats.events == events, (stats.events, events)
    rows, seconds = int(window["rows"]), window["last"] - window["first"]
    print(f"{projection.name} projection: {events / elapsed:,.0f} events/s ({elapsed:.1f} s, group join and "
          f"first batch included)", flush=True)
    if rows == 0 or seconds <= 0:
        print(f"{projection.name} projection: one batch only, no steady window", flush=True)
        return events / elapsed
    # cores over the meter's window, times its length: CPU seconds
    per_row = {group: used * span / rows * 1e6 for group, used in cores.items()}
    print(f"{projection.name} projection, after the first batch: {rows / seconds:,.0f} events/s over {rows:,} "
          f"records; CPU per record: " + "  ".join(f"{g} {us:.1f} µs" for g, us in per_row.items()), flush=True)
    if projection.name == "audit":
        own, every, machine = per_row["postgres"], sum(per_row.values()), os.cpu_count() or 1
        if own == 0:  # /proc counts CPU in ticks (10 ms): a short run may see none
            print("audit projection ceiling from the row cost: unknown, Postgres's CPU below the clock tick",
                  flush=True)
        else:
            print(f"audit projection ceiling from the row cost: {1e6 / own:,.0f} events/s with Postgres on a core "
                  f"of its own; {machine} cores / all CPU per record {machine * 1e6 / every:,.0f} events/s",
                  flush=True)
    return rows / seconds


def analyze(engine: sa.Engine) -> None:
    """Table statistics, as autovacuum gathers them soon after a bulk load: before them, the
    planner guesses the freshly filled archive's sizes (`audit trades` took 788 ms instead of
    160 ms, one after the other on a 50,000-record archive)."""
    with engine.begin() as conn:
        conn.exec_driver_sql("analyze audit_records, orders")


def order_ids(conn: psycopg.Connection, topic: str) -> list[str]:
    return [r[0] for r in conn.execute("select distinct order_id from audit_records where topic = %s "
                                       "and order_id is not null order by 1", (topic,))]


def audit_order(engine: sa.Engine, settings: Settings, codec: AvroCodec, order_id: str,
                check: bool) -> tuple[float, int]:
    """Seconds of one `audit order ID --json [--verify]` as `cli/audit.py` runs it, and its
    number of --verify findings."""
    t0 = time.perf_counter()
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as sa_conn:
        conn = psycopg_connection(sa_conn)
        found = aq.resolve_order(conn, settings.topic_orders, order_id=order_id)
        lineage = aq.order_lineage(conn, settings, codec, found)
        findings = aq.verify_order(settings, conn, lineage) if check else None
    view.lineage_json(lineage, findings)
    return time.perf_counter() - t0, len(findings or [])


def orders(engine: sa.Engine, settings: Settings, args: argparse.Namespace) -> None:
    codec = AvroCodec()
    with engine.connect() as sa_conn:
        known = order_ids(psycopg_connection(sa_conn), settings.topic_orders)
    per_sample = args.warm_up + args.orders
    picked = random.Random(args.seed).sample(known, min(len(known), 2 * per_sample))
    for check, sample in ((False, picked[:per_sample]), (True, picked[per_sample:])):
        seconds, findings = [], 0
        for oid in sample:
            took, found = audit_order(engine, settings, codec, oid, check)
            seconds.append(took)
            findings += found
        timed = seconds[args.warm_up:] or seconds
        label = "audit order --verify" if check else "audit order"
        print(f"{label}: {len(timed):,} random orders of {len(known):,} (after {len(seconds) - len(timed)} "
              f"warm-up): p50 {percentile(timed, 50) * 1000:.1f} ms  p99 {percentile(timed, 99) * 1000:.1f} ms  "
              f"max {max(timed) * 1000:.1f} ms" + (f"; findings {findings}" if check else ""), flush=True)


def busiest_account_day(conn: psycopg.Connection, topic: str) -> tuple[str, datetime, int]:
    row = conn.execute("select account, date_trunc('day', event_time at time zone 'UTC'), count(*) "
                       "from audit_records where topic = %s and event_type = 'FILLED' and dead_letter_reason is null "
                       "group by 1, 2 order by 3 desc, 1 limit 1", (topic,)).fetchone()
    assert row is not None, "no applied fill in the archive"
    return row[0], row[1].replace(tzinfo=UTC), row[2]


def trades(engine: sa.Engine, settings: Settings, runs: int) -> None:
    with engine.connect() as sa_conn:
        account, day, fills = busiest_account_day(psycopg_connection(sa_conn), settings.topic_orders)
    start, end = day, day + timedelta(days=1) - timedelta(microseconds=1)

    def once() -> tuple[float, int, int]:
        t0 = time.perf_counter()
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as sa_conn:
            lineages = aq.trade_lineages(psycopg_connection(sa_conn), settings, AvroCodec(), start, end,
                                         account=account)
        rows = view.trade_rows(lineages, start, end)
        view.trades_jsonl(rows)
        return time.perf_counter() - t0, len(rows), len(lineages)

    once()  # warm-up
    timed = [once() for _ in range(runs)]
    took = statistics.median(t for t, _, _ in timed)
    _, rows, lineages = timed[0]
    print(f"audit trades, account {account} on {day:%Y-%m-%d} ({rows:,} fills of {lineages:,} orders; "
          f"{fills:,} applied FILLED records): median {took * 1000:,.0f} ms of {runs} (after 1 warm-up), "
          f"max {max(t for t, _, _ in timed) * 1000:,.0f} ms; {took / max(rows, 1) * 1e6:,.0f} µs a fill",
          flush=True)


def verify_all(engine: sa.Engine, settings: Settings) -> None:
    t0 = time.perf_counter()
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as sa_conn:
        reports = verify(settings, psycopg_connection(sa_conn))
    elapsed = time.perf_counter() - t0
    checked = sum(r.checked for r in reports)
    bad = [str(r.divergence) for r in reports if r.divergence is not None]
    print(f"audit verify: {checked / elapsed:,.0f} records/s ({checked:,} records, {len(reports)} partitions, "
          f"{elapsed:.1f} s; {'OK' if not bad else 'DIVERGES ' + '; '.join(bad)})", flush=True)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still delete the topics and the database
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--orders", type=int, default=1000, help="random orders timed, with and without --verify")
    parser.add_argument("--warm-up", type=int, default=20, help="orders timed first and left out, per sample")
    parser.add_argument("--trade-runs", type=int, default=3, help="timed runs of `audit trades` (median)")
    parser.add_argument("--seed", type=int, default=1, help="of the random orders")
    args = parser.parse_args()
    print(f"started {datetime.now(tz=UTC):%Y-%m-%d %H:%M:%S} UTC", flush=True)
    settings = bench_settings("audit")
    create_topics(settings)
    try:
        with fresh_database(settings) as run:
            t0 = time.perf_counter()
            publish(run, args.events)
            print(f"published {args.events:,} simulated records in {time.perf_counter() - t0:.1f} s", flush=True)
            trading = project(run, TradingProjection(run), args.events)
            audit = project(run, AuditProjection(run), args.events)
            print(f"audit / trading projection, after the first batch: {audit / trading:.2f}", flush=True)
            # What the projection runs leave in reference cycles waits for a full collection, which
            # fell inside a timed `audit trades` run at 200,000 events (1.6 s, 777k objects held
            # before it, 173k after): the commands run in processes of their own, without it.
            gc.collect()
            engine = db.make_engine(run)
            try:
                analyze(engine)
                orders(engine, run, args)
                trades(engine, run, args.trade_runs)
                verify_all(engine, run)
            finally:
                engine.dispose()
    finally:
        delete_topics(settings)


if __name__ == "__main__":
    main()
