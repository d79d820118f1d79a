"""`backbone audit order` and `backbone audit trades` (issue #25, points 3, 4 and 7) over a
golden lifecycle on the real broker and database: a replace chain with partial fills, a
correction, a bust, a late fill after the cancel, refused records, an order whose first records
the archive never held; `--verify` OK, and catching a tampered archive row and an orders row
that disagrees."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer
from conftest import TEST_PARTITIONS
from lifecycles import replaced_then_canceled
from sqlalchemy.engine import make_url
from support import export_env, project, publish
from tape import Tape
from typer.testing import CliRunner, Result

from backbone import db
from backbone.codec.avro import AvroCodec
from backbone.codec.json_form import format_datetime
from backbone.domain.events import EventType, OrderEvent, Side
from backbone.kafka.partitioner import symbol_partition
from backbone.local.postgres import superuser_conninfo
from backbone.settings import Settings
from cli.lineage import TRADE_COLUMNS
from cli.main import app
from consumers.config import LoopConfig
from consumers.runtime import ProjectionLoop
from projections.audit import AuditProjection

pytestmark = pytest.mark.integration

E = EventType
D = Decimal
US = timedelta(microseconds=1)


@pytest.fixture
def env(created_topics: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    return export_env(created_topics, monkeypatch)


def _cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def _order_json(*args: str) -> dict[str, Any]:
    result = _cli("audit", "order", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _golden(settings: Settings) -> dict[str, OrderEvent]:
    """The tape, published; refused records produced beside it. Returns the fills by exec id."""
    tape = Tape()
    mark = tape.mark("AAPL", "9.9")
    tape.records[-1] = mark.replace(bid=D("9.8"), ask=D(10))
    replaced_then_canceled(tape)  # X1..X6
    x2 = next(r for r in tape.records if isinstance(r, OrderEvent) and r.exec_id == "X2")
    tape.records.append(mark.replace(event_id="m2", event_time=x2.event_time - 500 * US, mark_price=D("10.4"),
                                     bid=None, ask=None))
    tape.order("O2", "A2", "MSFT", Side.SELL, 7, price=300)
    tape.fill("O2", 7, 301)  # X7: no mark of MSFT
    publish(settings, tape.records)
    events = [r for r in tape.records if isinstance(r, OrderEvent)]
    stray = Tape(start=tape.clock)
    stray.order("O9", "A1", "AAPL", Side.SELL, 5, price=12)
    stray.fill("O9", 2, 12)
    stray.fill("O9", 3, 12)
    codec = AvroCodec()
    producer = Producer(settings.kafka_config(**{"enable.idempotence": True, "acks": "all"}))
    stale = next(e for e in events if e.exec_id == "X6").replace(event_id="late-resend", exec_id="X99")
    aapl = symbol_partition("AAPL", TEST_PARTITIONS)
    for record in (stale, *stray.records[2:]):  # O1 refused (stale seq); O9 from seq 3 on
        producer.produce(settings.topic_orders, codec.encode(record), key=b"AAPL", partition=aapl)
    assert producer.flush(30) == 0
    return {e.exec_id: e for e in events if e.event_type is E.FILLED and e.exec_id}


def _project(settings: Settings, names: Any) -> None:
    engine = db.make_engine(settings)
    try:
        loop = ProjectionLoop(settings, AuditProjection(settings), engine, LoopConfig(group_id=names.group("audit")))
        loop.run(until_caught_up=True, max_seconds=120)
    finally:
        engine.dispose()
    project(settings, names.group("trading"))


def _superuser(settings: Settings) -> psycopg.Connection:
    dbname = make_url(settings.database_url_value).database
    return psycopg.connect(superuser_conninfo(settings, str(dbname)), autocommit=True)


def test_order_lineage_text_json_ids_and_verify(env: Settings, names) -> None:
    settings = env
    fills = _golden(settings)
    _project(settings, names)

    lineage = _order_json("O1")
    assert (lineage["order_id"], lineage["account"], lineage["side"], lineage["status"]) == \
        ("O1", "A1", "BUY", "CANCELED")
    events = lineage["events"]
    assert [e["event_type"] for e in events] == [
        "SUBMITTED", "ACCEPTED", "FILLED", "REPLACE_REQUESTED", "REPLACED", "FILLED", "TRADE_CORRECTED", "FILLED",
        "TRADE_CANCELED", "CANCEL_REQUESTED", "CANCELED", "FILLED", "FILLED"]
    assert [e["offset"] for e in events] == sorted(e["offset"] for e in events)
    assert all(a["status_after"] == b["status_before"] for a, b in zip(events, events[1:], strict=False))
    assert (events[0]["status_before"], events[0]["status_after"]) == (None, "PENDING_NEW")
    assert events[4]["order_qty"] == "150" and events[4]["price"] == "10.5"
    assert events[2]["event_time"] == format_datetime(fills["X1"].event_time) and events[2]["ingest_time"]
    assert events[2]["mark"] == {"mark_price": "9.9", "bid": "9.8", "ask": "10", "event_time": events[2]["mark"][
        "event_time"], "topic": settings.topic_marketdata, "partition": events[2]["mark"]["partition"],
        "offset": 0}
    assert events[5]["mark"]["mark_price"] == "10.4" and events[5]["mark"]["bid"] is None
    late, refused = events[-2], events[-1]
    assert (late["exec_id"], late["status_before"], late["dead_letter_reason"]) == ("X6", "CANCELED", None)
    assert refused["dead_letter_reason"] == "stale_seq" and refused["status_before"] == refused["status_after"]
    assert [r["offset"] for r in lineage["refused"]] == [refused["offset"]]

    chain = lineage["replace_chain"]
    assert [(c["cl_ord_id"], c["orig_cl_ord_id"]) for c in chain] == [
        ("O1-c0", None), ("O1-c1", "O1-c0"), ("O1-c2", "O1-c1")]
    assert chain[1]["answer"]["event_type"] == "REPLACED" and chain[1]["changes"] == [
        {"term": "order_qty", "before": "100", "after": "150"}, {"term": "price", "before": "10", "after": "10.5"}]
    assert chain[2]["answer"]["event_type"] == "CANCELED"

    by_exec = {f["exec_id"]: f for f in lineage["fills"]}
    assert sorted(by_exec) == ["X1", "X2", "X4", "X6"]
    x1, x2, x4 = by_exec["X1"], by_exec["X2"], by_exec["X4"]
    # buy 10 against mark 9.9, bid 9.8, ask 10: (px - ref) / ref × 10 000
    assert (x1["slippage_mark_bps"], x1["slippage_bid_bps"], x1["slippage_ask_bps"]) == ("101.01", "204.08", "0")
    assert (x2["px"], x2["effective_px"], x2["busted"]) == ("10.4", "10.3", False)
    assert [r["exec_id"] for r in x2["restatements"]] == ["X3"] and x2["restatements"][0]["last_px"] == "10.3"
    assert x2["slippage_mark_bps"] == "-96.15" and x2["slippage_bid_bps"] is None  # no bid: null, never 0
    assert x4["busted"] and x4["effective_qty"] is None and [r["exec_id"] for r in x4["restatements"]] == ["X5"]
    assert lineage["missing"] == [] and lineage["verify"] is None

    # the SQL views say the same, to the read-only role
    with _superuser(settings) as conn:
        conn.execute(f"set role {settings.database_readonly_role}")
        statuses = conn.execute("select status_before, status_after, kafka_offset from audit_order_events "
                                "where order_id = 'O1' order by kafka_offset").fetchall()
        executions = {r[0]: r[1:] for r in conn.execute(
            "select exec_id, busted, corrected, restated_by, mark_offset from audit_executions "
            "where order_id = 'O1'")}
    assert statuses == [(e["status_before"], e["status_after"], e["offset"]) for e in events]
    assert executions == {"X1": (False, False, [], 0), "X2": (False, True, ["X3"], 1),
                          "X4": (True, False, ["X5"], 1), "X6": (False, False, [], 1)}

    text = _cli("audit", "order", "O1")
    assert text.exit_code == 0, text.output
    out = text.stdout
    assert "order O1 account A1 symbol AAPL side BUY: 13 records, 1 refused" in out
    assert "PARTIALLY_FILLED → PENDING_REPLACE" in out and "O1-c1 (from O1-c0): REPLACE_REQUESTED" in out
    assert "order_qty 100 → 150; price 10.00 → 10.50" in out
    assert "TRADE_CORRECTED X3 (of X2)" in out and "TRADE_CANCELED X5 (of X4)" in out
    assert "bid missing" in out and "stale_seq" in out

    for flag, value in (("--cl-ord-id", "O1-c2"), ("--cl-ord-id", "O1-c0"), ("--exec-id", "X3"),
                        ("--exec-id", "X4")):
        assert _order_json(flag, value)["order_id"] == "O1"

    ok = _cli("audit", "order", "O1", "--verify")
    assert ok.exit_code == 0, ok.output
    assert "verify: OK" in ok.stdout
    assert _order_json("O2", "--verify")["verify"] == {"ok": True, "findings": []}

    # the projected row disagrees with the refold
    with _superuser(settings) as conn:
        conn.execute("update orders set cum_qty = cum_qty + 1 where order_id = 'O1'")
    bad = _cli("audit", "order", "O1", "--verify", "--json")
    assert bad.exit_code == 1, bad.output
    assert json.loads(bad.stdout)["verify"]["findings"] == [
        {"where": "orders row O1", "what": "cum_qty is 32, the archive folds to 31"}]
    with _superuser(settings) as conn:
        conn.execute("update orders set cum_qty = cum_qty - 1 where order_id = 'O1'")

    # an archived row rewritten behind the trigger
    at = events[1]
    with _superuser(settings) as conn:
        conn.execute("set session_replication_role = replica")
        conn.execute("update audit_records set kafka_timestamp_ms = kafka_timestamp_ms + 1 where topic = %s "
                     "and kafka_partition = %s and kafka_offset = %s", (at["topic"], at["partition"], at["offset"]))
    tampered = _cli("audit", "order", "O1", "--verify")
    assert tampered.exit_code == 1, tampered.output
    assert f"DIVERGES {at['topic']}[{at['partition']}]@{at['offset']}: the archived timestamp differs" in \
        tampered.stdout and "verify: DIVERGES (1)" in tampered.stdout


def test_unknown_ids_and_an_order_whose_first_records_are_missing(env: Settings, names) -> None:
    settings = env
    _golden(settings)
    _project(settings, names)
    for args, message in ((["NOPE"], "error: no order NOPE in the archive"),
                          (["--exec-id", "X404"], "error: no order with ExecID X404 in the archive"),
                          (["--cl-ord-id", "C404"], "error: no order with ClOrdID C404 in the archive")):
        result = _cli("audit", "order", *args)
        assert result.exit_code == 1 and result.stderr.strip().startswith(message), result.output
        assert "check the id" in result.stderr and result.stderr.count("\n") == 1
    both = _cli("audit", "order", "O1", "--exec-id", "X1")
    assert both.exit_code == 2 and "give exactly one of" in both.stderr and "Traceback" not in both.output

    o9 = _order_json("O9")
    assert o9["missing"] == [{"first_seq": 1, "last_seq": 2, "before": {
        "topic": settings.topic_orders, "partition": o9["events"][0]["partition"],
        "offset": o9["events"][0]["offset"]}}]
    assert [e["dead_letter_reason"] for e in o9["events"]] == ["unknown_order", "unknown_order"]
    assert o9["fills"] == [] and [e["status_before"] for e in o9["events"]] == [None, None]
    text = _cli("audit", "order", "O9")
    assert text.exit_code == 0 and "missing: seq 1..2 not in the archive" in text.stdout


def test_trades_windows_formats_and_bad_ranges(env: Settings, names, tmp_path: Path) -> None:
    settings = env
    fills = _golden(settings)
    _project(settings, names)

    def trades(*args: str) -> Result:
        return _cli("audit", "trades", *args)

    first, last = fills["X1"].event_time, fills["X7"].event_time
    everything = ("--from", format_datetime(first), "--to", format_datetime(last))
    result = trades(*everything, "--format", "jsonl")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["exec_id"] for r in rows] == ["X1", "X2", "X4", "X6", "X7"]
    x2, x7 = rows[1], rows[4]
    assert (x2["order_id"], x2["cl_ord_id"], x2["cl_ord_chain"], x2["order_status"]) == (
        "O1", "O1-c1", "O1-c0>O1-c1>O1-c2", "CANCELED")
    assert (x2["corrected"], x2["effective_px"], x2["mark_price"], x2["slippage_mark_bps"]) == (
        True, "10.3", "10.4", "-96.15")
    assert rows[2]["busted"] and rows[2]["effective_qty"] is None
    assert (x7["side"], x7["mark_price"], x7["slippage_mark_bps"]) == ("SELL", None, None)  # no mark: missing
    assert x7["offset"] >= 0 and x7["topic"] == settings.topic_orders

    only_a2 = trades(*everything, "--account", "A2", "--format", "jsonl")
    assert [json.loads(line)["exec_id"] for line in only_a2.stdout.splitlines()] == ["X7"]
    only_aapl = trades(*everything, "--symbol", "AAPL", "--format", "jsonl")
    assert [json.loads(line)["exec_id"] for line in only_aapl.stdout.splitlines()] == ["X1", "X2", "X4", "X6"]

    # the window's ends are exact to the microsecond, both included
    t = fills["X2"].event_time
    exact = trades("--from", format_datetime(t), "--to", format_datetime(t), "--format", "csv")
    table = list(csv.DictReader(io.StringIO(exact.stdout)))
    assert exact.exit_code == 0 and [r["exec_id"] for r in table] == ["X2"]
    assert table[0]["busted"] == "false" and table[0]["restatements"].startswith("TRADE_CORRECTED X3 at ")
    for start, end in ((t + US, t + US), (t - 2 * US, t - US)):
        empty = trades("--from", format_datetime(start), "--to", format_datetime(end), "--format", "csv")
        assert empty.exit_code == 0 and empty.stdout.splitlines() == [
            ",".join(TRADE_COLUMNS)]
        assert "no executions from" in empty.stderr

    out = tmp_path / "trades.csv"
    written = trades(*everything, "--format", "csv", "--out", str(out))
    assert written.exit_code == 0 and written.stdout == ""
    assert [r["exec_id"] for r in csv.DictReader(io.StringIO(out.read_text()))] == ["X1", "X2", "X4", "X6", "X7"]
    shown = trades(*everything)
    assert shown.exit_code == 0 and "X7" in shown.stdout and "busted" in shown.stdout and "missing" in shown.stdout

    naive = trades("--from", "2026-11-20T14:30:00", "--to", format_datetime(last))
    assert naive.exit_code == 2 and naive.stderr.startswith("error: time '2026-11-20T14:30:00': no UTC offset")
    inverted = trades("--from", format_datetime(last), "--to", format_datetime(first))
    assert inverted.exit_code == 2 and inverted.stderr.startswith("error: --to ")
    assert "is before --from" in inverted.stderr and "Traceback" not in inverted.output
