"""Sampling against the real broker and database: a plain confluent-kafka group committing to
Kafka, a projection's checkpoints in Postgres, lag in records and in seconds from the records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from factories import make_market_mark
from lag_support import SYMBOLS, commit_plain
from support import project, publish

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
