"""Helpers for integration tests: publish records, run the projector, read tables."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import sqlalchemy as sa
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from backbone import db
from backbone.codec.avro import AvroCodec
from backbone.domain.events import MarketMark, OrderEvent
from backbone.kafka import topics
from backbone.kafka.producer import KafkaProducer
from backbone.settings import Settings
from consumers.config import LoopConfig, RunStats
from consumers.runtime import ProjectionLoop
from producers.publisher import EventPublisher
from projections.trading import TradingProjection

TABLE_KEYS = {
    "orders": "order_id",
    "executions": "order_id, exec_id",
    "positions": "account, symbol",
    "marks": "symbol",
}


def publish(settings: Settings, records: list[OrderEvent | MarketMark]) -> None:
    with KafkaProducer(settings) as producer:
        publisher = EventPublisher(settings, producer, AvroCodec())
        for record in records:
            publisher.publish(record)


def project(settings: Settings, group: str, *, batch_size: int = 1000, max_seconds: float = 300,
            overlap: bool = True) -> RunStats:
    """Run the projector in this process until every partition is at its end."""
    engine = db.make_engine(settings)
    try:
        loop = ProjectionLoop(settings, TradingProjection(settings), engine,
                              LoopConfig(group_id=group, batch_size=batch_size, overlap=overlap))
        stats = loop.run(until_caught_up=True, max_seconds=max_seconds)
    finally:
        engine.dispose()
    return stats


def rows(settings: Settings, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = db.make_engine(settings)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]
    finally:
        engine.dispose()


def table_dump(settings: Settings) -> dict[str, list[tuple]]:
    """Every projected table, row for row, in key order (for exact comparisons)."""
    out = {}
    for table, key in TABLE_KEYS.items():
        out[table] = [tuple(r.values()) for r in rows(settings, f"select * from {table} order by {key}")]
    out["dead_letters"] = [tuple(r.values()) for r in rows(
        settings, "select projection, source_topic, source_partition, source_offset, reason, detail, payload "
                  "from dead_letters order by source_topic, source_partition, source_offset")]
    out["checkpoints"] = [tuple(r.values()) for r in rows(
        settings, "select projection, topic, partition, next_offset from projection_checkpoints "
                  "order by topic, partition")]
    return out


def schema_dump(settings: Settings, schema: str) -> dict[str, list[tuple]]:
    """The projection tables of `schema` (a scratch schema, or public), row for row, in key order."""
    return {t: [tuple(r.values()) for r in rows(settings, f"select * from {schema}.{t} order by {key}")]
            for t, key in TABLE_KEYS.items()}


_UNCOMMENTED = """
    select c.relname, null from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = %(schema)s and c.relkind in ('r', 'v', 'm', 'p', 'f')
      and coalesce(obj_description(c.oid, 'pg_class'), '') = ''
    union all
    select c.relname, a.attname from pg_class c join pg_namespace n on n.oid = c.relnamespace
    join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
    where n.nspname = %(schema)s and c.relkind in ('r', 'v', 'm', 'p', 'f')
      and coalesce(col_description(c.oid, a.attnum), '') = ''
    order by 1, 2
"""


def uncommented(conn: psycopg.Connection, schema: str) -> list[tuple[str, str | None]]:
    """The tables and views of `schema` without a comment (relation, None), and their columns
    without one (relation, column): docs/sql.md says every one has one."""
    return conn.execute(_UNCOMMENTED, {"schema": schema}).fetchall()


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment for a `backbone` subprocess that sees exactly these settings."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKBONE_")}
    for name, value in settings.display().items():
        if value != "" and name != "database_url" and "password" not in name:
            env[f"BACKBONE_{name.upper()}"] = value
    env["BACKBONE_DATABASE_URL"] = settings.database_url_value
    return env


def export_env(settings: Settings, monkeypatch: Any) -> Settings:
    """Put `settings` in the environment of this process (for CliRunner commands); returns them."""
    for key, value in settings_env(settings).items():
        if key.startswith("BACKBONE_"):
            monkeypatch.setenv(key, value)
    return settings


def spawn_projector(settings: Settings, group: str, *extra: str, until_caught_up: bool = True):
    """`backbone project run [--until-caught-up] --json` as a separate process (killable)."""
    import subprocess
    import sys

    caught_up = ["--until-caught-up"] if until_caught_up else []
    return subprocess.Popen([sys.executable, "-m", "cli.main", "project", "run", "--group", group,
                             *caught_up, "--json", *extra], env=settings_env(settings),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def checkpoints(settings: Settings) -> dict[tuple[str, int], int]:
    """Every (topic, partition)'s next offset in projection_checkpoints."""
    return {(r["topic"], r["partition"]): r["next_offset"]
            for r in rows(settings, "select topic, partition, next_offset from projection_checkpoints")}


def checkpoint_total(settings: Settings) -> int:
    return int(rows(settings, "select coalesce(sum(next_offset), 0) as n from projection_checkpoints")[0]["n"])


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


def set_topic_config(settings: Settings, topic: str, config: dict[str, str]) -> None:
    """Set topic configs (e.g. ``{"max.message.bytes": "20000"}``) and wait until the broker reports them."""
    admin = topics.admin_client(settings)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET) for key, value in config.items()])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result()
    deadline = time.monotonic() + 30
    while any(topics.describe_topics(settings, [topic], admin)[0].config.get(k) != v for k, v in config.items()):
        assert time.monotonic() < deadline, f"{topic}: {config} not applied after 30 s"
        time.sleep(0.1)
