"""Sampling against the real broker and database: a plain confluent-kafka group committing to
Kafka, a projection's checkpoints in Postgres, lag in records and in seconds from the records."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from factories import make_market_mark
from lag_support import SYMBOLS, commit_plain
from support import project, publish, settings_env

from backbone.settings import Settings
from consumers.config import default_group_id
from monitoring.sampling import Sampler


def marks(start: datetime, n: int) -> list:
    """`n` marks one millisecond apart from `start`, spread over the symbols."""
    return [make_market_mark(symbol=SYMBOLS[i % len(SYMBOLS)], event_time=start + timedelta(milliseconds=i),
                             mark_price=Decimal("100") + i)
            for i in range(n)]


def test_a_plain_group_and_a_projection_are_sampled(created_topics: Settings, names) -> None:
    settings = created_topics
    sent_at = datetime.now(tz=UTC) - timedelta(seconds=30)
    publish(settings, marks(sent_at, 80))
    project(settings, names.group("proj"))
    projection = default_group_id("trading", [settings.topic_orders, settings.topic_marketdata])
    with Sampler(settings) as sampler:
        ends = {s.partition: s.log_end for s in sampler.sample() if s.source == "postgres"
                and s.topic == settings.topic_marketdata}
        assert sum(e for e in ends.values() if e) == 80
        plain = names.group("plain")
        commit_plain(settings, plain, {p: 0 for p in ends})
        samples = sampler.sample()
    by = {(s.group, s.source, s.topic, s.partition): s for s in samples}
    for p, end in ends.items():
        projected = by[(projection, "postgres", settings.topic_marketdata, p)]
        assert (projected.error, projected.lag_records, projected.lag_seconds) == (None, 0, Decimal(0))
        assert projected.last_commit is not None or end == 0
        mirror = by[(names.group("proj"), "kafka", settings.topic_marketdata, p)]
        assert mirror.lag_records == 0 or end == 0
        behind = by[(plain, "kafka", settings.topic_marketdata, p)]
        assert behind.error is None and behind.committed == 0 and behind.lag_records == end
        if end:
            # the first record of each partition was stamped at most 80 ms after sent_at
            assert Decimal(29) < behind.lag_seconds < Decimal(120), behind
    assert sampler.problems == []


def test_lag_shows_both_sources_of_a_projection_and_a_plain_group(created_topics: Settings, names) -> None:
    """`backbone lag --json` (two samples) and `--watch --json` (a line a redraw)."""
    settings = created_topics
    publish(settings, marks(datetime.now(tz=UTC) - timedelta(seconds=10), 40))
    projection = default_group_id("trading", [settings.topic_orders, settings.topic_marketdata])
    project(settings, projection)
    commit_plain(settings, names.group("plain"), {p: 0 for p in range(settings.partitions)})
    done = subprocess.run([sys.executable, "-m", "cli.main", "lag", "--json", "--interval", "0.2", "--topic",
                           "marketdata"], env=settings_env(settings), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["problems"] == []
    by = {(g["group"], g["source"]): g for g in out["groups"]}
    assert set(by) == {(projection, "postgres"), (projection, "kafka"), (names.group("plain"), "kafka")}
    assert by[(projection, "postgres")]["authoritative"] and by[(projection, "postgres")]["status"] == "OK"
    assert by[(projection, "postgres")]["lag_records"] == 0
    plain = by[(names.group("plain"), "kafka")]
    assert plain["lag_records"] > 0 and Decimal(plain["lag_seconds"]) >= 9
    assert sum(p["lag_records"] for p in plain["partitions"]) == 40
    watch = subprocess.Popen([sys.executable, "-m", "cli.main", "lag", "--watch", "--json", "--interval", "0.2"],
                             env=settings_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert watch.stdout is not None
        lines = [json.loads(watch.stdout.readline()) for _ in range(3)]
        assert all({g["group"] for g in line["groups"]} >= {projection, names.group("plain")} for line in lines)
    finally:
        watch.send_signal(signal.SIGINT)
        _out, err = watch.communicate(timeout=30)
    assert watch.returncode == 0 and "Traceback" not in err, err
