"""Every record the projector can read has a defined outcome, and each dead letter reaches the
dead-letter topic exactly once, whatever crashes (issue: tombstones, wrong partitions)."""

from __future__ import annotations

import signal
from collections import Counter

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from conftest import TEST_PARTITIONS
from support import TABLE_KEYS, project, publish, rows, settings_env, spawn_projector, table_dump
from tape import Tape
from typer.testing import CliRunner

from backbone import db, deadletters
from backbone.codec.avro import AvroCodec
from backbone.domain.events import Side
from backbone.kafka.partitioner import symbol_partition
from backbone.settings import Settings
from cli.main import app
from consumers.config import LoopConfig
from consumers.runtime import ProjectionLoop
from projections.trading import TradingProjection

pytestmark = pytest.mark.integration

LIMIT = 4096  # BACKBONE_MAX_RECORD_BYTES of these tests


def _other_partition(symbol: str) -> int:
    return (symbol_partition(symbol, TEST_PARTITIONS) + 1) % TEST_PARTITIONS


def _raw_producer(settings: Settings) -> Producer:
    """A plain librdkafka producer, as a third-party gateway would use (explicit partitions)."""
    return Producer(settings.kafka_config(**{"enable.idempotence": True, "acks": "all"}))


def _dead_letter_topic(settings: Settings) -> list:
    """Every record of the dead-letter topic (read to the end of each partition)."""
    consumer = Consumer(settings.kafka_config(**{"group.id": f"read-{settings.topic_deadletter}",
                                                 "enable.partition.eof": True, "enable.auto.commit": False}))
    out = []
    try:
        parts = consumer.list_topics(settings.topic_deadletter, timeout=15).topics[settings.topic_deadletter].partitions
        ends = {}
        for p in parts:
            low, high = consumer.get_watermark_offsets(TopicPartition(settings.topic_deadletter, p), timeout=15)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(settings.topic_deadletter, p, 0) for p in ends])
        while ends:
            msg = consumer.poll(30)
            assert msg is not None, f"the dead-letter topic did not deliver up to {ends}"
            if msg.error() is not None:
                continue
            out.append(msg)
            if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                ends.pop(msg.partition(), None)
    finally:
        consumer.close()
    return out


def _exactly_once(settings: Settings) -> Counter:
    """The projection's dead-letter rows and the topic's relayed records are the same, once each."""
    table = rows(settings, "select source_topic, source_partition, source_offset, reason, relay_partition, "
                           "relayed_offset from dead_letters")
    relayed = Counter()
    where = {}
    for msg in _dead_letter_topic(settings):
        source = deadletters.source_of(msg.headers())
        if source is not None:
            relayed[source[1:]] += 1
            where[source[1:]] = (msg.partition(), msg.offset())
    coords = [(r["source_topic"], r["source_partition"], r["source_offset"]) for r in table]
    assert sorted(relayed) == sorted(coords), "table and topic disagree"
    assert set(relayed.values()) == {1}, f"relayed more than once: {[k for k, n in relayed.items() if n > 1]}"
    for r in table:  # each row records where its record is
        assert where[(r["source_topic"], r["source_partition"], r["source_offset"])] == \
            (r["relay_partition"], r["relayed_offset"])
    return Counter(r["reason"] for r in table)


def _bad_log(settings: Settings) -> dict[str, int]:
    """A valid tape with one record of every kind the projector must refuse; returns the
    expected count per reason."""
    codec = AvroCodec()
    tape = Tape()
    tape.order("O1", "A1", "AAPL", Side.BUY, 100, price=10)
    tape.fill("O1", 60, 10)
    tape.mark("AAPL", 11)
    tape.order("P1", "A1", "PEP", Side.BUY, 50, price=20)
    tape.fill("P1", 50, 20)
    publish(settings, tape.records)
    # a gateway with librdkafka's default partitioner: PEP's next order on another partition
    stray = Tape(start=tape.clock)
    stray.order("P2", "A1", "PEP", Side.BUY, 10, price=20)
    stray.fill("P2", 10, 20)
    aapl = symbol_partition("AAPL", TEST_PARTITIONS)
    producer = _raw_producer(settings)
    for r in stray.records:
        producer.produce(settings.topic_orders, codec.encode(r), key=b"PEP", partition=_other_partition("PEP"))
    producer.produce(settings.topic_orders, None, key=b"AAPL", partition=aapl)  # a tombstone
    producer.produce(settings.topic_orders, b"", key=b"AAPL", partition=aapl)
    producer.produce(settings.topic_orders, b"\x00" * (LIMIT + 1), key=b"AAPL", partition=aapl)
    later = Tape(start=stray.clock)
    later.order("O2", "A1", "AAPL", Side.SELL, 5, price=12)
    producer.produce(settings.topic_orders, codec.encode(later.records[0]), key=b"MSFT", partition=aapl)
    producer.produce(settings.topic_marketdata, codec.encode(later.mark("AAPL", 12)), key=b"AAPL",
                     partition=_other_partition("AAPL"))
    producer.produce(settings.topic_marketdata, None, key=b"AAPL", partition=aapl)
    assert producer.flush(30) == 0
    return {"wrong_partition": 4, "null_value": 2, "empty_value": 1, "oversize": 1, "key_not_symbol": 1}


@pytest.fixture
def limited(created_topics: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    settings = created_topics.with_overrides(max_record_bytes=LIMIT)
    for key, value in settings_env(settings).items():
        if key.startswith("BACKBONE_"):
            monkeypatch.setenv(key, value)
    return settings


def test_every_record_has_an_outcome_and_live_equals_as_of(limited: Settings, names) -> None:
    settings = limited
    expected = _bad_log(settings)
    stats = project(settings, names.group())
    assert stats.dead_letters == sum(expected.values())
    assert stats.dead_letters_relayed == sum(expected.values())
    assert _exactly_once(settings) == expected
    positions = {(r["account"], r["symbol"]): (r["qty"], r["kafka_partition"])
                 for r in rows(settings, "select account, symbol, qty, kafka_partition from positions")}
    assert positions == {("A1", "AAPL"): (60, symbol_partition("AAPL", TEST_PARTITIONS)),
                         ("A1", "PEP"): (50, symbol_partition("PEP", TEST_PARTITIONS))}
    oversize = rows(settings, "select payload, detail from dead_letters where reason = 'oversize'")[0]
    assert bytes(oversize["payload"]) == b"" and f"{LIMIT:,}" in oversize["detail"]
    # the as-of engine reads the same log to the same state, row for row
    result = CliRunner().invoke(app, ["replay", "--projection", "trading", "--from-beginning", "--into", "asof"])
    assert result.exit_code == 0, result.output
    live = table_dump(settings)
    for table, key in TABLE_KEYS.items():
        assert [tuple(r.values()) for r in rows(settings, f"select * from asof.{table} order by {key}")] == \
            live[table], table
    # nothing is left to read, and a second run changes nothing
    assert project(settings, names.group()).events == 0
    assert _exactly_once(settings) == expected


def test_a_relay_that_dies_after_producing_leaves_no_duplicate(limited: Settings, names,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The window no ordering closes: records produced and acknowledged, the process gone before
    it recorded that. The next relay finds them in the topic and produces only the rest."""
    settings = limited
    expected = _bad_log(settings)

    class Died(BaseException):
        pass

    def die(conn, relayed) -> None:  # noqa: ANN001
        raise Died

    monkeypatch.setattr(deadletters, "mark_relayed", die)
    engine = db.make_engine(settings)
    try:
        loop = ProjectionLoop(settings, TradingProjection(settings), engine, LoopConfig(group_id=names.group()))
        with pytest.raises(Died):
            loop.run(until_caught_up=True, max_seconds=120)
    finally:
        engine.dispose()
    in_topic = [deadletters.source_of(m.headers()) for m in _dead_letter_topic(settings)]
    planned = rows(settings, "select count(*) as n from dead_letters where relay_from is not null")[0]["n"]
    assert in_topic and len(in_topic) == planned  # the round's letters produced, none recorded
    assert rows(settings, "select count(*) as n from dead_letters where relayed_offset is not null")[0]["n"] == 0
    monkeypatch.undo()
    stats = project(settings, names.group())
    # those found in the topic are not produced again; only the log's remaining ones are
    assert stats.dead_letters_relayed == sum(expected.values()) - len(in_topic)
    assert _exactly_once(settings) == expected


def test_sigkill_at_any_moment_relays_each_dead_letter_once(limited: Settings, names) -> None:
    """A projector killed again and again while it refuses records: the topic ends holding
    each dead letter of the table once (before, each failed attempt produced them again)."""
    settings = limited
    expected = Counter(_bad_log(settings))
    codec = AvroCodec()
    producer = _raw_producer(settings)
    tape = Tape()
    for i in range(300):  # many small batches, each with a refusal
        tape.order(f"Q{i}", "A2", "IBM", Side.BUY, 1, price=1)
        producer.produce(settings.topic_orders, None, key=b"IBM", partition=symbol_partition("IBM", TEST_PARTITIONS))
    for r in tape.records:
        producer.produce(settings.topic_orders, codec.encode(r), key=b"IBM",
                         partition=symbol_partition("IBM", TEST_PARTITIONS))
    assert producer.flush(30) == 0
    expected["null_value"] += 300
    group = names.group("killed")
    for kill in range(6):
        proc = spawn_projector(settings, group, "--batch-size", "3")
        _wait_until(lambda kill=kill, proc=proc: _relayed(settings) > kill * 10 or proc.poll() is not None)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    final = spawn_projector(settings, group, "--batch-size", "500")
    _out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    assert _exactly_once(settings) == expected


def _relayed(settings: Settings) -> int:
    return int(rows(settings, "select count(*) as n from dead_letters where relayed_offset is not null")[0]["n"])


def _wait_until(condition, timeout: float = 120) -> None:  # noqa: ANN001
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)

