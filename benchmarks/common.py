"""What the benchmark scripts share: settings for throwaway topics, a fresh database, figures."""

from __future__ import annotations

import math
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from backbone import db
from backbone.kafka import topics
from backbone.local.process import stat_fields
from backbone.settings import Settings


def bench_settings(prefix: str, partitions: int = 12) -> Settings:
    """The configured cluster, with topics of this benchmark run only."""
    run = f"bench-{prefix}-{uuid.uuid4().hex[:8]}"
    return Settings().with_overrides(topic_orders=f"{run}.orders", topic_marketdata=f"{run}.marketdata",
                                     topic_deadletter=f"{run}.deadletter", topic_alerts=f"{run}.alerts",
                                     partitions=partitions,
                                     # simulated sessions are on past dates: keep their marks
                                     marketdata_retention_ms=-1)


def create_topics(settings: Settings) -> None:
    for report in topics.create_topics(settings):
        if report.problems:
            raise SystemExit(f"topic problem: {report.problems}")


def delete_topics(settings: Settings) -> None:
    admin = topics.admin_client(settings)
    for future in admin.delete_topics(settings.topic_names(), operation_timeout=30).values():
        future.result()


@contextmanager
def fresh_database(settings: Settings) -> Iterator[Settings]:
    """A migrated database of its own, dropped afterwards."""
    admin = make_url(settings.database_url_value)
    name = f"bench_{uuid.uuid4().hex[:10]}"
    plain = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = admin.set(database=name).render_as_string(hide_password=False)
    try:
        db.upgrade(settings, url=url)
        yield settings.with_overrides(database_url=url)
    finally:
        db.drop_database(plain, name)


def median_rate(runs: int, count: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    """Median of `runs` rates, each `count / seconds` of one call of `measure`."""
    rates = [count / measure() for _ in range(runs)]
    return statistics.median(rates), rates


def ratio(value: float) -> str:
    """A ratio with two significant digits at least, never in exponent form: a ratio far
    below 1 (a loaded machine) must not print as 0.00."""
    if value <= 0 or value >= 0.1:
        return f"{value:.2f}"
    return f"{value:.{1 - math.floor(math.log10(value))}f}"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU the process (all its threads) used so far; None when it is gone."""
    fields = stat_fields(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> set[int]:
    """The live child processes of `pid` (a postmaster's backends and workers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = stat_fields(int(entry.name))
            if fields is not None and fields[1] == str(pid):
                found.add(int(entry.name))
    return found


class CpuMeter:
    """Cores used over a window by named groups of local processes (Linux /proc): where the CPU of
    a shared machine went while a benchmark ran. A process that ends inside the window is not
    counted; one that starts inside it counts from its start."""

    def __init__(self, groups: dict[str, Callable[[], set[int]]]) -> None:
        self.groups = groups
        self._start: dict[int, float] = {}
        self._t0 = 0.0

    def _sample(self) -> dict[str, dict[int, float]]:
        """CPU seconds so far of each live process, by group."""
        out: dict[str, dict[int, float]] = {}
        for name, pids in self.groups.items():
            used = {pid: cpu_seconds(pid) for pid in pids()}
            out[name] = {pid: s for pid, s in used.items() if s is not None}
        return out

    @property
    def started(self) -> bool:
        return self._t0 > 0

    def start(self) -> None:
        self._start = {pid: s for group in self._sample().values() for pid, s in group.items()}
        self._t0 = time.monotonic()

    def stop(self) -> dict[str, float]:
        """Cores used by each group since `start` (CPU seconds / wall seconds)."""
        elapsed = time.monotonic() - self._t0
        return {name: sum(s - self._start.get(pid, 0.0) for pid, s in group.items()) / elapsed if elapsed > 0
                else 0.0 for name, group in self._sample().items()}


def local_service_pids(settings: Settings) -> dict[str, Callable[[], set[int]]]:
    """The local stack's broker and Postgres processes (`backbone local`), for a CpuMeter; empty
    groups against a remote cluster."""
    from backbone.local import kafka, postgres

    def broker() -> set[int]:
        pid = kafka.running(settings)
        return set() if pid is None else {pid}

    def server() -> set[int]:
        pid = postgres.running(settings)
        return set() if pid is None else {pid} | children(pid)

    return {"broker": broker, "postgres": server}
