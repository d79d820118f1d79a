"""What the benchmark scripts share: settings for throwaway topics, a fresh database, figures."""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from backbone import db
from backbone.kafka import topics
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


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]
