"""Smoke tests of the foundation against the real broker and database."""

from __future__ import annotations

import json
import socket
import time

import psycopg
import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer, Producer, TopicPartition
from typer.testing import CliRunner

from backbone import db
from backbone.errors import ServiceError
from backbone.kafka import topics
from backbone.local import kafka as local_kafka
from backbone.local import process, stack
from backbone.settings import Settings
from cli.main import app
from consumers.checkpoints import FencedError, advance_checkpoints, read_checkpoints

pytestmark = pytest.mark.integration


def _consumer(settings: Settings, group: str) -> Consumer:
    return Consumer(settings.kafka_config(**{"group.id": group, "auto.offset.reset": "earliest",
                                             "enable.auto.commit": False}))


def test_produce_and_consume_round_trip(created_topics: Settings, names) -> None:
    settings = created_topics
    producer = Producer(settings.kafka_config(**{"enable.idempotence": True, "acks": "all"}))
    producer.produce(settings.topic_orders, key=b"AAPL", value=b"hello backbone")
    assert producer.flush(30) == 0
    consumer = _consumer(settings, names.group())
    consumer.subscribe([settings.topic_orders])
    try:
        deadline = time.monotonic() + 60
        msg = None
        while msg is None and time.monotonic() < deadline:
            candidate = consumer.poll(1.0)
            if candidate is not None and candidate.error() is None:
                msg = candidate
        assert msg is not None, "no record consumed within 60 s"
        assert (msg.key(), msg.value()) == (b"AAPL", b"hello backbone")
    finally:
        consumer.close()


def test_offsets_for_times_finds_the_first_record_at_or_after_t(created_topics: Settings, names) -> None:
    settings = created_topics
    producer = Producer(settings.kafka_config(**{"enable.idempotence": True, "acks": "all"}))
    base_ms = 1_790_000_000_000
    for i in range(5):  # timestamps base, base+10s, ... on partition 0
        producer.produce(settings.topic_orders, partition=0, value=str(i).encode(), timestamp=base_ms + i * 10_000)
    assert producer.flush(30) == 0
    consumer = _consumer(settings, names.group())
    try:
        def lookup(ts_ms: int) -> int:
            (tp,) = consumer.offsets_for_times([TopicPartition(settings.topic_orders, 0, ts_ms)], timeout=30)
            assert tp.error is None
            return tp.offset

        assert lookup(base_ms) == 0
        assert lookup(base_ms + 20_000) == 2  # exact hit
        assert lookup(base_ms + 20_001) == 3  # between records: the next one
        assert lookup(base_ms - 1) == 0
        assert lookup(base_ms + 10**9) == -1  # none after: librdkafka answers OFFSET_END (-1)
    finally:
        consumer.close()


def test_topics_create_is_idempotent_and_reports_wrong_config(settings: Settings) -> None:
    settings = settings.with_overrides(marketdata_retention_ms=Settings().marketdata_retention_ms)  # the default
    assert [r.action for r in topics.create_topics(settings)] == ["created"] * 4
    assert [r.action for r in topics.create_topics(settings)] == ["exists"] * 4
    wider = settings.with_overrides(partitions=settings.partitions + 2)
    reports = topics.create_topics(wider)
    assert all(r.action == "mismatch" for r in reports)
    assert f"has {settings.partitions} partitions, configured {settings.partitions + 2}" in reports[0].problems[0]
    described = {d.name: d for d in topics.describe_topics(settings)}
    orders = described[settings.topic_orders]
    assert orders.config["retention.ms"] == "-1"
    assert orders.config["message.timestamp.type"] == "CreateTime"
    assert described[settings.topic_marketdata].config["retention.ms"] == str(7 * 24 * 3600 * 1000)
    assert len(orders.partitions) == settings.partitions


def test_topics_cli_exit_codes(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"BACKBONE_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
                       "BACKBONE_TOPIC_ORDERS": settings.topic_orders,
                       "BACKBONE_TOPIC_MARKETDATA": settings.topic_marketdata,
                       "BACKBONE_TOPIC_DEADLETTER": settings.topic_deadletter,
                       "BACKBONE_TOPIC_ALERTS": settings.topic_alerts,
                       "BACKBONE_PARTITIONS": str(settings.partitions)}.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    first = runner.invoke(app, ["topics", "create", "--json"])
    assert first.exit_code == 0, first.output
    assert [r["action"] for r in json.loads(first.stdout)] == ["created"] * 4
    monkeypatch.setenv("BACKBONE_PARTITIONS", str(settings.partitions + 1))
    wrong = runner.invoke(app, ["topics", "create"])
    assert wrong.exit_code == 1
    assert "mismatch" in wrong.output
    described = runner.invoke(app, ["topics", "describe", "--json"])
    assert described.exit_code == 0, described.output
    assert {d["name"] for d in json.loads(described.stdout)} == set(settings.topic_names())


def test_migrations_apply_to_a_real_database(base_settings: Settings, empty_database: str) -> None:
    assert db.current(base_settings, url=empty_database) is None
    assert db.upgrade(base_settings, url=empty_database) == db.head_revision()
    assert db.upgrade(base_settings, url=empty_database) == db.head_revision()  # idempotent
    engine = db.make_engine(base_settings, empty_database)
    try:
        columns = {c["name"] for c in sa.inspect(engine).get_columns("projection_checkpoints")}
        assert {"projection", "topic", "partition", "next_offset"} <= columns
        with engine.begin() as conn:
            conn.execute(sa.text("insert into projection_checkpoints (projection, topic, partition, next_offset) "
                                 "values ('p', 't', 0, 5)"))
            with pytest.raises(sa.exc.IntegrityError):
                with conn.begin_nested():
                    conn.execute(sa.text("insert into projection_checkpoints (projection, topic, partition, "
                                         "next_offset) values ('p', 't', 0, 6)"))
    finally:
        engine.dispose()


def test_db_cli_reports_unreachable_database_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKBONE_DATABASE_URL", "postgresql+psycopg://u:secretpw@127.0.0.1:1/nowhere")
    result = CliRunner().invoke(app, ["db", "current"])
    assert result.exit_code == 3  # a service that cannot be reached
    assert "cannot reach the database" in result.output
    assert "secretpw" not in result.output


@pytest.fixture
def local_stack(services) -> Settings:
    if services.source != "local":
        pytest.skip("services come from the environment or testcontainers, not the local runner")
    return Settings()


def test_local_up_twice_is_idempotent_and_status_reports_both(local_stack: Settings) -> None:
    first = {s.name: s.pid for s in stack.up(local_stack)}
    second = {s.name: s.pid for s in stack.up(local_stack)}
    assert first == second and all(first.values())
    result = CliRunner().invoke(app, ["local", "status", "--json"])
    assert result.exit_code == 0, result.output
    statuses = {s["name"]: s for s in json.loads(result.stdout)}
    assert statuses["kafka"]["running"] and statuses["postgres"]["running"]
    assert statuses["kafka"]["version"].startswith("Apache Kafka 4.")
    assert statuses["postgres"]["version"].startswith("PostgreSQL ")
    assert statuses["kafka"]["address"] == f"127.0.0.1:{local_stack.kafka_port}"


def test_kafka_start_failure_reports_the_log_tail(local_stack: Settings, tmp_path) -> None:
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    broken = local_stack.with_overrides(state_dir=tmp_path, kafka_port=ports[0], kafka_controller_port=ports[1],
                                        kafka_heap="1k", startup_timeout_s=60)
    with pytest.raises(ServiceError) as err:
        local_kafka.start(broken)
    assert "Kafka" in str(err.value) and "last lines of" in str(err.value)
    assert "heap" in str(err.value).lower()  # the JVM's own complaint made it into the message


def test_port_in_use_names_the_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ServiceError, match=f"port {port} needed by Kafka is already in use"):
            process.ensure_port_free(port, "Kafka")


def test_missing_tool_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ServiceError, match="mvn not found on PATH: install Apache Maven"):
        process.require_tool("mvn", "install Apache Maven (Debian: apt-get install maven)")


def test_checkpoints_move_all_or_nothing_and_a_stale_owner_is_fenced(base_settings: Settings,
                                                                     empty_database: str) -> None:
    db.upgrade(base_settings, url=empty_database)
    engine = db.make_engine(base_settings, empty_database)
    try:
        def read() -> dict[tuple[str, int], int]:
            with engine.connect() as c:
                return read_checkpoints(c.connection.driver_connection, "p")

        with engine.begin() as c:  # first checkpoints of 30 partitions: one statement
            advance_checkpoints(c.connection.driver_connection, "p",
                                      {("t", i): (None, 10 + i) for i in range(30)})
        assert read() == {("t", i): 10 + i for i in range(30)}
        with engine.begin() as c:  # every partition moves from where this owner left it
            advance_checkpoints(c.connection.driver_connection, "p",
                                      {("t", i): (10 + i, 20 + i) for i in range(30)} | {("u", 0): (None, 1)})
        assert read() == {("t", i): 20 + i for i in range(30)} | {("u", 0): 1}
        # another owner moved partition 17: the stale owner's whole batch is refused
        with engine.begin() as c:
            c.exec_driver_sql("update projection_checkpoints set next_offset = 99 where partition = 17 and topic = 't'")
        with pytest.raises(FencedError, match=r"t\[17\] is no longer at 37"), engine.begin() as c:
            advance_checkpoints(c.connection.driver_connection, "p",
                                      {("t", i): (20 + i, 30 + i) for i in range(30)})
        with pytest.raises(FencedError, match=r"u\[0\] is no longer at None"), engine.begin() as c:
            advance_checkpoints(c.connection.driver_connection, "p", {("u", 0): (None, 5)})
        # fenced on the updates, the inserts' results unread: every cursor is closed all the same
        opened: list[psycopg.Cursor] = []

        class Recording(psycopg.Cursor):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, **kwargs)  # type: ignore[arg-type]
                opened.append(self)

        with pytest.raises(FencedError, match=r"t\[17\]"), engine.begin() as c:
            conn = c.connection.driver_connection
            conn.cursor_factory = Recording
            try:
                advance_checkpoints(conn, "p", {("t", 17): (37, 40), ("w", 0): (None, 1)})
            finally:
                conn.cursor_factory = psycopg.Cursor
        assert len(opened) == 2 and all(cur.closed for cur in opened)
        assert read() == {("t", i): 20 + i for i in range(30)} | {("t", 17): 99, ("u", 0): 1}
        # a rebuild's swap bumped the generation: an owner of the older one may not add a first
        # checkpoint either (a partition the swap left without one), or that partition would hold
        # the old generation and fence every later owner
        with engine.begin() as c:
            c.exec_driver_sql("update projection_checkpoints set generation = 1 where projection = 'p'")
        with pytest.raises(FencedError, match=r"v\[0\] is no longer at None"), engine.begin() as c:
            advance_checkpoints(c.connection.driver_connection, "p", {("v", 0): (None, 5)}, generation=0)
        with engine.begin() as c:
            advance_checkpoints(c.connection.driver_connection, "p", {("v", 0): (None, 5)}, generation=1)
        assert read()[("v", 0)] == 5
    finally:
        engine.dispose()
