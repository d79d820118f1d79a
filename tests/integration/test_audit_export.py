"""`backbone audit export` (issue #25, points 5, 2 and 7): the evidence pack of an order or of an
account window, from the audit archive, against the real broker and database; its report.html
opened in a real headless browser."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url
from support import export_env, publish, rows
from tape import Tape
from typer.testing import CliRunner

from backbone.codec import json_form
from backbone.codec.avro import AvroCodec
from backbone.domain.events import Side
from backbone.local.postgres import superuser_conninfo
from backbone.settings import Settings
from cli.main import app

pytestmark = pytest.mark.integration


@pytest.fixture
def env(created_topics: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    return export_env(created_topics, monkeypatch)


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _golden(settings: Settings, group: str) -> Tape:
    """O1 (A1, AAPL): submitted, accepted, two fills between marks with bid/ask, and a refused
    stray fill after it is done; O2 (A2, AAPL) and P1 (A1, PEP) beside it. Archived."""
    tape = Tape()
    _quote(tape, "AAPL", "9.95", "9.9", "10")
    tape.order("O1", "A1", "AAPL", Side.BUY, 100, price="10.05")
    _quote(tape, "AAPL", "10.01", "10", "10.02")
    tape.fill("O1", 60, "10.02", commission="0.3")
    tape.order("O2", "A2", "AAPL", Side.SELL, 30, price=11)
    tape.order("P1", "A1", "PEP", Side.BUY, 50, price="1234.5")
    _quote(tape, "AAPL", "10.04", "10.03", "10.05")
    tape.fill("O1", 40, "10.05")
    tape.mark("PEP", "1234.25")
    publish(settings, tape.records)
    stray = Tape(start=tape.clock)
    stray.order("O1", "A1", "AAPL", Side.BUY, 5, price=12)
    stray.fill("O1", 5, 12)
    publish(settings, [stray.records[-1].replace(event_id="stray-fill")])  # O1 is filled: refused
    result = _cli("project", "run", "--projection", "audit", "--until-caught-up", "--group", group, "--json")
    assert result.exit_code == 0, result.output
    return tape


def _quote(tape: Tape, symbol: str, mark: str, bid: str, ask: str) -> None:
    tape.records[-1] = tape.mark(symbol, mark).replace(bid=Decimal(bid), ask=Decimal(ask))


def _archive(settings: Settings, where: str, **params: Any) -> dict[tuple[str, int, int], dict[str, Any]]:
    return {(r["topic"], r["kafka_partition"], r["kafka_offset"]): r
            for r in rows(settings, f"select * from audit_records where {where}", **params)}


def _pack(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, str]]]:
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["events.csv", "events.jsonl", "manifest.json", "report.html"]
    for f in manifest["files"]:
        data = (out / f["name"]).read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (f["sha256"], f["bytes"])
    lines = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    with (out / "events.csv").open(newline="") as fh:
        table = list(csv.DictReader(fh))
    return manifest, lines, table


def _check_rows(lines: list[dict[str, Any]], table: list[dict[str, str]],
                archived: dict[tuple[str, int, int], dict[str, Any]]) -> None:
    """Each JSONL line and CSV row is its archive row: bytes, link, verdict, and the bytes'
    canonical JSON form."""
    codec = AvroCodec()
    assert sorted((x["topic"], x["partition"], x["offset"]) for x in lines) == sorted(archived)
    assert [(c["topic"], int(c["partition"]), int(c["offset"])) for c in table] == \
        [(x["topic"], x["partition"], x["offset"]) for x in lines]
    for line, row in zip(lines, table, strict=True):
        a = archived[(line["topic"], line["partition"], line["offset"])]
        value = bytes(a["record_value"])
        assert base64.b64decode(line["value_base64"]) == value
        assert line["chain_hash"] == bytes(a["chain_hash"]).hex() == row["chain_hash"]
        assert (line["status_after"], line["dead_letter_reason"]) == (a["status_after"], a["dead_letter_reason"])
        canonical = json_form.to_json_dict(codec.decode(value))
        assert line["record"] == canonical
        assert {k: v for k, v in row.items() if k in canonical} == \
            {k: "" if v is None else str(v) for k, v in canonical.items()}


def _heads(manifest: dict[str, Any]) -> dict[tuple[str, int], tuple[int | None, str | None]]:
    return {(h["topic"], h["partition"]): (h["head_offset"], h["head_hash"]) for h in manifest["chain_heads"]}


def _verified_heads() -> dict[tuple[str, int], tuple[int | None, str | None]]:
    result = _cli("audit", "verify", "--json")
    assert result.exit_code == 0, result.output
    return {(p["topic"], p["partition"]): (p["head_offset"], p["head_hash"])
            for p in json.loads(result.stdout)["partitions"]}


def _chromium() -> str:
    """The browser; a hard requirement where `make deps` can install it (CI, root with apt-get)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true" or (os.geteuid() == 0 and shutil.which("apt-get")):
            pytest.fail("chromium is missing: `make deps` installs it")
        pytest.skip("chromium is not installed and this user cannot install packages (apt-get install chromium)")
    return found


def _dom(report: Path, profile: Path) -> str:
    done = subprocess.run([_chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
                           "--no-first-run", f"--user-data-dir={profile}", "--dump-dom", report.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_an_order_pack_holds_its_archive_records_and_the_verified_heads(env: Settings, names,
                                                                         tmp_path: Path) -> None:
    settings = env
    tape = _golden(settings, names.group("audit"))
    out = tmp_path / "O1"
    result = _cli("audit", "export", "O1", "--out", str(out))
    assert result.exit_code == 0, result.output
    manifest, lines, table = _pack(out)
    # every record of O1, the refused stray fill included, and AAPL's marks over its lifetime
    # with the one before it (bid/ask); none of O2, P1 or PEP
    orders = _archive(settings, "topic = :t and order_id = 'O1'", t=settings.topic_orders)
    assert sum(1 for r in orders.values() if r["dead_letter_reason"]) == 1
    o1 = [r for r in tape.records if getattr(r, "order_id", None) == "O1"]
    marks = _archive(settings, "topic = :t and symbol = 'AAPL' and event_time between :a and :b",
                     t=settings.topic_marketdata, a=o1[0].event_time - timedelta(milliseconds=1),
                     b=max(r["event_time"] for r in orders.values()))
    assert len(marks) == 3
    _check_rows(lines, table, orders | marks)
    assert [x["record"]["event_type"] for x in lines if x["topic"] == settings.topic_orders] == \
        ["SUBMITTED", "ACCEPTED", "FILLED", "FILLED", "FILLED"]
    assert manifest["query"] == {"order_id": "O1"} and manifest["records"] == 8 and not manifest["empty"]
    # the heads it verified are those `audit verify` reports: every orders partition, AAPL's marks
    heads = _heads(manifest)
    verified = _verified_heads()
    assert heads == {tp: verified[tp] for tp in heads}
    assert {tp for tp in verified if tp[0] == settings.topic_orders} <= set(heads)
    assert {tp for tp in heads if tp[0] == settings.topic_marketdata} == {(m[0], m[1]) for m in marks}
    assert {s["record"] for s in manifest["schemas"]} >= {"OrderEvent", "MarketMark"}
    assert manifest["backbone_version"] and manifest["created_at"].endswith("Z")
    # report.html as a browser renders it, offline: the timeline rows and the chart
    dom = _dom(out / "report.html", tmp_path / "profile")
    assert 'class="timeline"' in dom and dom.count('<tr class="') == 8
    for x in lines:
        record = x["record"]
        assert f'data-coordinates="{x["topic"]}[{x["partition"]}]@{x["offset"]}"' in dom
        assert f"<td>{record['event_time']}</td>" in dom
    events = re.findall(r'@[0-9]+</td><td>([A-Z_]+)</td><td>([^<]*)</td>', dom)  # after each record's coordinates
    assert events == [("MARK", ""), ("SUBMITTED", "O1"), ("ACCEPTED", "O1"), ("MARK", ""), ("FILLED", "O1"),
                      ("MARK", ""), ("FILLED", "O1"), ("FILLED", "O1")]
    assert "refused: " in dom and "10.05" in dom
    assert '<svg class="chart" data-symbol="AAPL"' in dom
    for series in ('class="limit"', 'class="mark"', 'class="bid"', 'class="ask"'):
        assert f"<polyline {series}" in dom
    assert dom.count('<circle class="fill"') == 2 and dom.count('<circle class="refused-fill"') == 1


def test_an_account_window_is_exact_to_the_microsecond_and_may_be_empty(env: Settings, names,
                                                                        tmp_path: Path) -> None:
    settings = env
    tape = _golden(settings, names.group("audit"))
    a1 = [r for r in tape.records if getattr(r, "account", None) == "A1"]
    # from O1's first fill to P1's acceptance, ends included; a microsecond less leaves them out
    start, end = a1[2].event_time, a1[4].event_time
    for since, until, expected in ((start, end, 3), (start + timedelta(microseconds=1),
                                                     end - timedelta(microseconds=1), 1)):
        out = tmp_path / f"w{expected}"
        result = _cli("audit", "export", "--account", "A1", "--from", since.isoformat(), "--to", until.isoformat(),
                      "--out", str(out), "--json")
        assert result.exit_code == 0, result.output
        manifest, lines, table = _pack(out)
        events = _archive(settings, "topic = :t and account = 'A1' and event_time between :a and :b",
                          t=settings.topic_orders, a=since, b=until)
        assert len(events) == expected
        symbols = {r["symbol"] for r in events.values()}
        marks = [x for x in lines if x["topic"] == settings.topic_marketdata]
        assert {x["record"]["symbol"] for x in marks} <= symbols
        _check_rows([x for x in lines if x["topic"] == settings.topic_orders],
                    [c for c in table if c["topic"] == settings.topic_orders], events)
        assert manifest["query"] == {"account": "A1", "from": json_form.format_datetime(since),
                                     "to": json_form.format_datetime(until)}
        assert json.loads(result.stdout)["records"] == len(lines)
    # a window without records: a pack explicitly marked empty, its heads verified
    out = tmp_path / "empty"
    result = _cli("audit", "export", "--account", "A1", "--from", "2020-01-01T00:00:00Z", "--to",
                  "2020-01-02T00:00:00Z", "--out", str(out))
    assert result.exit_code == 0 and "EMPTY" in result.stdout, result.output
    manifest, lines, _table = _pack(out)
    assert manifest["empty"] and manifest["records"] == 0 and lines == [] and manifest["chain_heads"]
    assert "EMPTY: no archived record" in (out / "report.html").read_text()
    # an order id the archive does not hold: one line, exit 1, nothing written
    result = _cli("audit", "export", "NOPE", "--out", str(tmp_path / "nope"))
    assert result.exit_code == 1 and result.output.strip() == "error: no archived record has order id 'NOPE'"
    assert not (tmp_path / "nope").exists()


def test_a_tampered_archive_refuses_the_export(env: Settings, names, tmp_path: Path) -> None:
    settings = env
    _golden(settings, names.group("audit"))
    (target,) = _archive(settings, "topic = :t and order_id = 'O1' and event_type = 'ACCEPTED'",
                         t=settings.topic_orders)
    dbname = make_url(settings.database_url_value).database
    with psycopg.connect(superuser_conninfo(settings, str(dbname)), autocommit=True) as conn:
        conn.execute("set session_replication_role = replica")  # what the append-only trigger cannot stop
        conn.execute("update audit_records set account = 'A9', record_value = overlay(record_value placing "
                     "'\\x00' from 12) where topic = %s and kafka_partition = %s and kafka_offset = %s", target)
    out = tmp_path / "pack"
    result = _cli("audit", "export", "O1", "--out", str(out))
    assert result.exit_code == 1, result.output
    line = result.output.strip()
    assert "\n" not in line and line.startswith("error: the archive does not verify, nothing exported: ")
    assert f"{target[0]}[{target[1]}]@{target[2]}: archive:" in line
    assert not out.exists() and list(tmp_path.iterdir()) == []
