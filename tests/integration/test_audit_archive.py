"""The audit archive (issue #25, points 1 and 2): every record archived exactly once with the
trading rules' verdict and the status after it, append-only, and a hash chain that
`backbone audit verify` checks against the log: tampering is found at its offset."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer, TopicPartition
from conftest import TEST_PARTITIONS, scratch_database
from sqlalchemy.engine import make_url
from support import export_env, project, publish, read_topic, rows, spawn_projector
from tape import Tape
from typer.testing import CliRunner

from backbone import db
from backbone.codec.avro import AvroCodec
from backbone.domain.events import Side
from backbone.kafka import topics
from backbone.kafka.partitioner import symbol_partition
from backbone.local.postgres import superuser_conninfo
from backbone.settings import Settings
from cli.main import app
from consumers.config import LoopConfig, RunStats
from consumers.runtime import ProjectionLoop
from producers.simulator import SimulationConfig, simulate
from projections.audit import AuditProjection

pytestmark = pytest.mark.integration

AAPL = symbol_partition("AAPL", TEST_PARTITIONS)


@pytest.fixture
def env(created_topics: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The test's settings, also in the environment (for the CLI)."""
    return export_env(created_topics, monkeypatch)


def _archive(settings: Settings, group: str, **config: Any) -> RunStats:
    engine = db.make_engine(settings)
    try:
        loop = ProjectionLoop(settings, AuditProjection(settings), engine, LoopConfig(group_id=group, **config))
        return loop.run(until_caught_up=True, max_seconds=120)
    finally:
        engine.dispose()


def _verify(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["audit", "verify", "--json", *args])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def _divergences(report: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(p["topic"], p["partition"]): p["divergence"] for p in report["partitions"] if p["divergence"]}


def _bytes(data: Any) -> bytes | None:
    return None if data is None else bytes(data)


def _superuser(settings: Settings) -> psycopg.Connection:
    dbname = make_url(settings.database_url_value).database
    return psycopg.connect(superuser_conninfo(settings, str(dbname)), autocommit=True)


def _tamper(settings: Settings, *statements: str) -> None:
    """As a superuser with triggers off: what the trigger and the privileges cannot stop."""
    with _superuser(settings) as conn:
        conn.execute("set session_replication_role = replica")
        for statement in statements:
            conn.execute(statement)


def _log(settings: Settings) -> dict[tuple[str, int, int], str]:
    """A small log with applied and refused records on AAPL's partitions; returns the expected
    dead-letter reason of each refused record by (topic, partition, offset)."""
    codec = AvroCodec()
    tape = Tape()
    tape.order("O1", "A1", "AAPL", Side.BUY, 100, price=10)  # submitted, accepted
    tape.fill("O1", 60, 10)
    tape.mark("AAPL", 11)
    tape.order("P1", "A1", "PEP", Side.BUY, 50, price=20)
    publish(settings, tape.records)
    stray = Tape(start=tape.clock)
    stray.order("Z9", "A1", "AAPL", Side.SELL, 5, price=12)
    stray.fill("Z9", 5, 12)
    producer = Producer(settings.kafka_config(**{"enable.idempotence": True, "acks": "all"}))
    orders, marks = settings.topic_orders, settings.topic_marketdata
    producer.produce(orders, codec.encode(stray.records[-1]), key=b"AAPL", partition=AAPL)  # 3: unknown order
    producer.produce(orders, None, key=b"AAPL", partition=AAPL)  # 4: a tombstone
    producer.produce(orders, b"", key=b"AAPL", partition=AAPL)  # 5
    producer.produce(orders, codec.encode(stray.records[0]), key=b"MSFT", partition=AAPL)  # 6
    producer.produce(marks, b"\xc3\x01garbage", key=b"AAPL", partition=AAPL)  # 1: undecodable
    assert producer.flush(30) == 0
    more = Tape(start=stray.clock)
    more.order("O2", "A2", "AAPL", Side.SELL, 30, price=11)  # 7, 8
    more.fill("O2", 30, 11)  # 9
    publish(settings, more.records)
    return {(orders, AAPL, 3): "unknown_order", (orders, AAPL, 4): "null_value", (orders, AAPL, 5): "empty_value",
            (orders, AAPL, 6): "key_not_symbol", (marks, AAPL, 1): "decode_error"}


def test_every_record_is_archived_once_with_its_verdict_and_status(env: Settings, names) -> None:
    settings = env
    refused = _log(settings)
    stats = _archive(settings, names.group("audit"), batch_size=3)
    records = read_topic(settings, settings.topic_orders) + read_topic(settings, settings.topic_marketdata)
    assert stats.events == len(records) and stats.dead_letters == 0  # verdicts are archived, not dead-lettered
    archived = {(r["topic"], r["kafka_partition"], r["kafka_offset"]): r for r in rows(
        settings, "select * from audit_records")}
    assert sorted(archived) == sorted((m.topic(), m.partition(), m.offset()) for m in records)
    for m in records:
        row = archived[(m.topic(), m.partition(), m.offset())]
        assert (_bytes(row["record_value"]), _bytes(row["record_key"]), row["kafka_timestamp_ms"]) == \
            (m.value(), m.key(), m.timestamp()[1])
    # the same verdicts as the trading projection's dead letters
    project(settings, names.group("trading"))
    letters = {(r["source_topic"], r["source_partition"], r["source_offset"]): r["reason"]
               for r in rows(settings, "select * from dead_letters")}
    assert letters == refused
    assert {k: r["dead_letter_reason"] for k, r in archived.items() if r["dead_letter_reason"]} == refused
    # the status after each event; a refused one leaves its order as it was
    o = settings.topic_orders
    assert [archived[(o, AAPL, n)]["status_after"] for n in range(10)] == [
        "PENDING_NEW", "NEW", "PARTIALLY_FILLED", None, None, None, None, "PENDING_NEW", "NEW", "FILLED"]
    first = archived[(o, AAPL, 2)]
    assert (first["order_id"], first["account"], first["symbol"], first["event_type"]) == ("O1", "A1", "AAPL", "FILLED")
    assert first["cl_ord_id"] and first["exec_id"] and first["event_time"] and first["ingest_time"]
    assert bytes(first["schema_fingerprint"]) == bytes(first["record_value"])[2:10]
    # the trading projection's final statuses equal the last archived status of each order
    last = {r["order_id"]: r["status_after"] for r in rows(
        settings, "select distinct on (order_id) order_id, status_after from audit_records "
                  "where order_id is not null and dead_letter_reason is null order by order_id, kafka_offset desc")}
    assert last == {r["order_id"]: r["status"] for r in rows(settings, "select order_id, status from orders")}
    # verify: OK, with every partition's head
    code, report = _verify()
    assert code == 0 and report["ok"], report
    heads = {(p["topic"], p["partition"]): (p["head_offset"], p["head_hash"]) for p in report["partitions"]}
    for (t, p), (offset, digest) in heads.items():
        top = max((k for k in archived if k[:2] == (t, p)), default=None)
        assert offset == (None if top is None else top[2])
        assert digest == (None if top is None else bytes(archived[top]["chain_hash"]).hex())
    # nothing is archived twice
    assert _archive(settings, names.group("audit")).events == 0
    assert rows(settings, "select count(*) as n from audit_records")[0]["n"] == len(records)


def test_the_archive_refuses_update_delete_and_truncate(created_topics: Settings, names) -> None:
    settings = created_topics
    tape = Tape()
    tape.mark("AAPL", 11)
    publish(settings, tape.records)
    _archive(settings, names.group("audit"))
    reader = settings.database_readonly_role
    privileges = rows(settings, "select privilege_type from information_schema.table_privileges "
                                "where table_name = 'audit_records' and grantee = current_user")
    assert sorted(r["privilege_type"] for r in privileges) == ["INSERT", "SELECT"]
    assert rows(settings, f"select has_table_privilege('{reader}', 'audit_records', 'select') as s, "
                          f"has_table_privilege('{reader}', 'audit_records', 'insert') as i")[0] == {"s": True,
                                                                                                   "i": False}
    url = db.make_engine(settings).url.set(drivername="postgresql").render_as_string(hide_password=False)
    for statement in ("update audit_records set account = 'X'", "delete from audit_records",
                      "truncate audit_records", "delete from audit_gaps"):
        with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)  # the application's role
        with _superuser(settings) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute(statement)  # privileges do not bind a superuser; the trigger does
    assert rows(settings, "select count(*) as n from audit_records")[0]["n"] == 1


@pytest.mark.parametrize("tampering", ["altered", "deleted", "reordered"])
def test_verify_finds_a_tampered_row_at_its_offset(env: Settings, names, tampering: str) -> None:
    settings = env
    _log(settings)
    _archive(settings, names.group("audit"))
    where = f"topic = '{settings.topic_orders}' and kafka_partition = {AAPL}"
    _tamper(settings, *{
        "altered": [f"update audit_records set record_value = overlay(record_value placing '\\x00' from 12) "
                    f"where {where} and kafka_offset = 7"],
        "deleted": [f"delete from audit_records where {where} and kafka_offset = 7"],
        "reordered": [f"update audit_records set kafka_offset = -1 where {where} and kafka_offset = 7",
                      f"update audit_records set kafka_offset = 7 where {where} and kafka_offset = 9",
                      f"update audit_records set kafka_offset = 9 where {where} and kafka_offset = -1"],
    }[tampering])
    code, report = _verify()
    assert code == 1 and not report["ok"]
    found = _divergences(report)
    assert list(found) == [(settings.topic_orders, AAPL)]
    assert (found[(settings.topic_orders, AAPL)]["offset"], found[(settings.topic_orders, AAPL)]["side"]) == \
        (7, "archive"), found
    what = found[(settings.topic_orders, AAPL)]["what"]
    assert {"altered": "value differ", "deleted": "no archived row", "reordered": "differ from the log"}[tampering] \
        in what
    # one partition of each topic
    code, report = _verify("--partition", str(AAPL))
    assert code == 1 and [(p["topic"], p["partition"]) for p in report["partitions"]] == \
        [(settings.topic_orders, AAPL), (settings.topic_marketdata, AAPL)]
    assert _divergences(report) == found


def test_verify_reports_a_record_deleted_from_the_log(env: Settings, names) -> None:
    settings = env
    _log(settings)
    _archive(settings, names.group("audit"))
    admin = topics.admin_client(settings)
    for future in admin.delete_records([TopicPartition(settings.topic_orders, AAPL, 3)],
                                       request_timeout=30).values():
        future.result()
    code, report = _verify()
    assert code == 1
    found = _divergences(report)
    assert list(found) == [(settings.topic_orders, AAPL)]
    divergence = found[(settings.topic_orders, AAPL)]
    assert (divergence["offset"], divergence["side"]) == (0, "log")
    assert "missing from the log" in divergence["what"]
    # from where the log starts, the chain verifies (the row below is trusted)
    assert _verify("--from-offset", "3")[0] == 0


def test_expired_marks_are_recorded_as_a_gap_and_an_orders_gap_stops(env: Settings, names) -> None:
    settings = env
    _log(settings)
    admin = topics.admin_client(settings)
    for future in admin.delete_records([TopicPartition(settings.topic_marketdata, AAPL, 1)],
                                       request_timeout=30).values():
        future.result()
    _archive(settings, names.group("audit"))
    assert rows(settings, "select topic, kafka_partition, first_offset, last_offset from audit_gaps") == [
        {"topic": settings.topic_marketdata, "kafka_partition": AAPL, "first_offset": 0, "last_offset": 0}]
    code, report = _verify()
    assert code == 0, report
    # orders deleted before they were archived: the audit projector refuses to go on
    more = Tape(start=Tape().clock)
    more.order("O9", "A1", "AAPL", Side.BUY, 1, price=1)
    publish(settings, more.records)
    for future in admin.delete_records([TopicPartition(settings.topic_orders, AAPL, 11)],
                                       request_timeout=30).values():
        future.result()
    proc = spawn_projector(settings, names.group("audit"), "--projection", "audit")
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "10..10 were deleted" in err, err


def _audit_dump(settings: Settings) -> list[tuple]:
    return [tuple(r.values()) for r in rows(settings, "select * from audit_records order by 1, 2, 3")]


def test_sigkills_leave_the_archive_contiguous_and_the_chain_verified(env: Settings, services, names) -> None:
    settings = env
    publish(settings, list(simulate(SimulationConfig(events=6000, seed=25, symbols=8, accounts=4))))
    with scratch_database(settings, services.database_url) as ref:
        assert _archive(ref, names.group("reference"), batch_size=2000).events == 6000
        reference = [r[:-1] for r in _audit_dump(ref)]  # archived_at aside
    group, kills = names.group("killed"), 0
    while kills < 2:
        before = rows(settings, "select count(*) as n from audit_records")[0]["n"]
        proc = spawn_projector(settings, group, "--projection", "audit", "--batch-size", "20")
        deadline = time.monotonic() + 120
        while rows(settings, "select count(*) as n from audit_records")[0]["n"] < before + 200:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kills += 1
    assert rows(settings, "select count(*) as n from audit_records")[0]["n"] < 6000  # killed mid-stream
    final = spawn_projector(settings, group, "--projection", "audit", "--batch-size", "500")
    _out, err = final.communicate(timeout=600)
    assert final.returncode == 0, err
    contiguity = rows(settings, "select topic, kafka_partition, count(*) as n, min(kafka_offset) as lo, "
                                "max(kafka_offset) as hi from audit_records group by 1, 2")
    assert all(r["lo"] == 0 and r["hi"] == r["n"] - 1 for r in contiguity), contiguity
    assert [r[:-1] for r in _audit_dump(settings)] == reference
    assert _verify()[0] == 0


def test_project_run_archives_in_its_own_group(env: Settings, names) -> None:
    """`project run --projection audit` beside the trading projector: each keeps its checkpoints."""
    settings = env
    _log(settings)
    audit = spawn_projector(settings, names.group("a"), "--projection", "audit")
    out, err = audit.communicate(timeout=120)
    assert audit.returncode == 0, err
    assert json.loads(out)["projection"] == "audit"
    assert {r["projection"] for r in rows(settings, "select projection from projection_checkpoints")} == {"audit"}
    assert rows(settings, "select count(*) as n from orders")[0]["n"] == 0


def test_the_migration_downgrades_and_upgrades_again(env: Settings, names) -> None:
    from alembic import command

    settings = env
    _log(settings)
    _archive(settings, names.group("audit"))
    command.downgrade(db.alembic_config(settings.database_url_value, settings.database_readonly_role), "0009")
    assert rows(settings, "select to_regclass('audit_records') as a, to_regclass('audit_gaps') as g, "
                          "to_regproc('audit_append_only') as f") == [{"a": None, "g": None, "f": None}]
    db.upgrade(settings, url=settings.database_url_value)
    assert rows(settings, "select count(*) as n from audit_records")[0]["n"] == 0
