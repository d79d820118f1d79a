"""`backbone simulate` and `backbone publish FILE` against the real broker: what reaches which
topic, what is refused and why, and what the projector makes of it."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from typer.testing import CliRunner

from backbone.kafka import topics
from backbone.settings import Settings
from cli.main import app
from support import settings_env

pytestmark = pytest.mark.integration

DEFAULT_RETENTION_MS = Settings.model_fields["marketdata_retention_ms"].default


def use(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The CLI's environment for `settings`."""
    for key, value in settings_env(settings).items():
        if key.startswith("BACKBONE_"):
            monkeypatch.setenv(key, value)
    return settings


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def read_topic(settings: Settings, topic: str, timeout_s: float = 60) -> list[Message]:
    """Every record of `topic`, up to its end offsets when called, in partition then offset order."""
    consumer = Consumer(settings.kafka_config(**{"group.id": "unused", "enable.auto.commit": False}))
    try:
        ends = {p: topics.watermarks(consumer, TopicPartition(topic, p))[1] for p in range(settings.partitions)}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p, end in ends.items() if end > 0])
        out: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < sum(ends.values()):
            assert time.monotonic() < deadline, f"read {len(out)} of {sum(ends.values())} records of {topic}"
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                out.append(msg)
        return sorted(out, key=lambda m: (m.partition(), m.offset()))
    finally:
        consumer.close()


def test_simulate_without_start_dates_its_marks_inside_the_default_retention(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    use(settings.with_overrides(marketdata_retention_ms=DEFAULT_RETENTION_MS), monkeypatch)
    assert invoke("topics", "create").exit_code == 0
    before = datetime.now(tz=UTC)
    result = invoke("simulate", "-n", "400", "--json", "-q")
    assert result.exit_code == 0, result.output
    marks = read_topic(settings, settings.topic_marketdata)
    assert len(marks) == json.loads(result.stdout)["by_type"]["MARK"] > 0
    stamps = [datetime.fromtimestamp(m.timestamp()[1] / 1000, tz=UTC) for m in marks]
    # the broker deletes by record time: the first mark must be younger than the retention
    assert before - min(stamps) < timedelta(milliseconds=DEFAULT_RETENTION_MS)
    assert max(stamps) < before  # a session that has ended, never stamped ahead
