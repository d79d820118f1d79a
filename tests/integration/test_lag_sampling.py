"""Sampling against the real broker and database: a plain confluent-kafka group committing to
Kafka, a projection's checkpoints in Postgres, lag in records and in seconds from the records."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from confluent_kafka import Producer
from factories import make_market_mark
from lag_support import SYMBOLS, commit_plain
from support import project, publish, settings_env

from backbone.kafka.producer import KafkaProducer
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


def test_record_times_across_markers_aborted_records_and_far_apart_offsets(created_topics: Settings, names) -> None:
    """The time of a committed offset is that of its record, or of the first record after it
    when the offset holds a transaction marker or an aborted record; offsets of one partition
    more than 2,000 apart are read in rounds of their own, one after the other."""
    settings = created_topics
    topic, base = settings.topic_marketdata, 1_700_000_000_000
    with KafkaProducer(settings) as producer:  # offsets 0-4
        for i in range(5):
            producer.produce(topic, b"x", key=b"k", partition=0, timestamp_ms=base + i)
    tx = Producer(settings.kafka_config(**{"transactional.id": f"{names.prefix}-tx", "enable.idempotence": True}))
    tx.init_transactions(30)
    tx.begin_transaction()  # offsets 5-6, the commit marker at 7
    for i in range(2):
        tx.produce(topic, b"x", key=b"k", partition=0, timestamp=base + 100 + i)
    tx.commit_transaction(30)
    tx.begin_transaction()  # an aborted record at 8, its marker at 9
    tx.produce(topic, b"x", key=b"k", partition=0, timestamp=base + 150)
    tx.flush(30)
    tx.abort_transaction(30)
    with KafkaProducer(settings) as producer:  # offsets 10-2609
        for i in range(2600):
            producer.produce(topic, b"x", key=b"k", partition=0, timestamp_ms=base + 1000 + i)
    groups = {"at-record": 3, "at-commit-marker": 7, "at-aborted": 8, "far": 2500}
    for name, offset in groups.items():
        commit_plain(settings, names.group(name), {0: offset})
    now = datetime.now(tz=UTC)
    with Sampler(settings, topics=[topic], groups=[names.group(g) for g in groups]) as sampler:
        samples = {s.group: s for s in sampler.sample(now) if s.partition == 0}
    assert sampler.problems == []

    def lag_at(ms: int) -> Decimal:
        return (Decimal(int(now.timestamp() * 1_000_000) - ms * 1000) / 1_000_000).quantize(Decimal("0.000001"))

    expected = {"at-record": base + 3, "at-commit-marker": base + 1000, "at-aborted": base + 1000,
                "far": base + 1000 + 2500 - 10}
    for name, ms in expected.items():
        sample = samples[names.group(name)]
        assert (sample.error, sample.log_end, sample.lag_seconds) == (None, 2610, lag_at(ms)), (name, sample)
