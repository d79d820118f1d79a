"""`backbone simulate` and `backbone publish FILE` against the real broker: what reaches which
topic, what is refused and why, and what the projector makes of it."""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka import Message
from support import read_topic, rows, set_topic_config, settings_env
from tape import Tape
from typer.testing import CliRunner

from backbone.codec import json_form
from backbone.codec.avro import AvroCodec
from backbone.domain.events import Side
from backbone.settings import Settings
from cli.main import app

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


# ------------------------------------------------------------------------------------------
# publish


def write_lines(tmp_path: Path, lines: list[str], name: str = "events.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def publish_json(path: Path) -> tuple[int, dict, str]:
    result = CliRunner().invoke(app, ["publish", str(path), "--json"])
    assert result.stdout, f"no summary: the command stopped ({result.stderr.strip()})"
    return result.exit_code, json.loads(result.stdout), result.stderr


def dead_letters(settings: Settings) -> dict[str, Message]:
    """The publish dead letters by their `source` header (``file:line``)."""
    return {dict(m.headers())["source"].decode(): m for m in read_topic(settings, settings.topic_deadletter)}


def test_an_oversize_line_is_refused_on_its_line_and_the_file_goes_on(
        created_topics: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, names) -> None:
    settings = use(created_topics, monkeypatch)
    tape = Tape()
    tape.order("O1", "ACC1", "BIG", Side.BUY, 100, price=10)
    tape.fill("O1", 40, 10)
    tape.fill("O1", 60, 11)
    tape.mark("BIG", 12)
    good = [json.loads(json_form.dumps(r)) for r in tape.records]
    huge = "x" * 1_200_000  # over the producer's 1,000,000 bytes, however well it compresses
    lines = [json.dumps(good[0]), json.dumps(good[1]),
             json.dumps(good[4] | {"event_id": "m-huge", "source": huge}),  # 3: a mark too large for Kafka
             json.dumps(good[2]), json.dumps(good[3]), json.dumps(good[4])]
    code, summary, stderr = publish_json(write_lines(tmp_path, lines))
    assert code == 1
    (refused,) = summary["rejected_lines"]
    assert (refused["line"], refused["reason"]) == (3, "oversize")
    assert f"{settings.topic_marketdata}: a record of 1,200,0" in refused["detail"]
    assert "limit of one record, 1,000,000 bytes" in refused["detail"]
    assert "events.jsonl:3: oversize:" in stderr
    assert (summary["published"], summary["rejected"], summary["record_limit_bytes"]) == (5, 1, 1_000_000)
    # the lines after it were published and project as if line 3 had not been there
    stats = json.loads(invoke("project", "run", "--until-caught-up", "--group", names.group(), "--json").stdout)
    assert (stats["events"], stats["dead_letters"]) == (5, 0)
    (pos,) = rows(settings, "select qty, avg_px from positions")
    assert (pos["qty"], pos["avg_px"]) == (Decimal(100), Decimal("10.6"))
    assert rows(settings, "select mark_price from marks")[0]["mark_price"] == Decimal(12)
    # its dead letter is cut to what one record may hold, and says so
    letter = dead_letters(settings)["events.jsonl:3"]
    headers = dict(letter.headers())
    assert headers["reason"] == b"oversize" and b"(dead letter: the first " in headers["detail"]
    assert lines[2].encode().startswith(letter.value()) and 900_000 < len(letter.value()) < 1_000_000


def test_the_limit_follows_the_topics_max_message_bytes_as_the_broker_reports_it(
        created_topics: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = use(created_topics, monkeypatch)
    set_topic_config(settings, settings.topic_orders, {"max.message.bytes": "20000"})
    tape = Tape()
    tape.order("O1", "ACC1", "BIG", Side.BUY, 100, price=10)
    first, accepted = (json.loads(json_form.dumps(r)) for r in tape.records)
    # random text: lz4 cannot shrink it below the topic's limit, which counts the compressed batch
    noise = base64.b64encode(random.Random(1).randbytes(21_000)).decode()[:21_000]
    lines = [json.dumps(first), json.dumps(accepted | {"reason": noise}), json.dumps(accepted)]
    code, summary, stderr = publish_json(write_lines(tmp_path, lines))
    assert code == 1, stderr
    assert summary["record_limit_bytes"] == 20_000 - 61  # a batch's header counts against the topic's limit
    assert [(r["line"], r["reason"]) for r in summary["rejected_lines"]] == [(2, "oversize")]
    assert "limit of one record, 19,939 bytes" in summary["rejected_lines"][0]["detail"]
    assert summary["published"] == 2
    assert [m.value() for m in read_topic(settings, settings.topic_orders)] == [
        AvroCodec().encode(r) for r in tape.records]


def test_a_file_continues_orders_of_the_log_and_the_projector_checks_them(
        created_topics: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, names) -> None:
    settings = use(created_topics, monkeypatch)
    tape = Tape()
    tape.order("O1", "ACC1", "CONT", Side.BUY, 100, price=10)
    tape.fill("O1", 40, 10)
    tape.order("O2", "ACC1", "CONT", Side.SELL, 10, price=12)
    tape.fill("O1", 60, 11)
    tape.fill("O2", 10, 12)
    lines = [json_form.dumps(r) for r in tape.records]
    first, second = lines[:5], lines[5:]  # O1 submitted, accepted, partly filled; O2 submitted, accepted
    late = json.loads(lines[6]) | {"event_id": "O2-again", "seq": 4, "exec_id": "X9"}  # O2 is filled already
    code, started, stderr = publish_json(write_lines(tmp_path, first, "first.jsonl"))
    assert (code, started["published"]) == (0, 5), stderr
    code, summary, stderr = publish_json(write_lines(tmp_path, [*second, json.dumps(late)], "second.jsonl"))
    # the state machine needs the log's state for these: published, left to the projector
    assert (code, summary["published"], summary["rejected"]) == (0, 3, 0), stderr
    assert (started["continued_orders"], summary["continued_orders"]) == (0, 2)
    stats = json.loads(invoke("project", "run", "--until-caught-up", "--group", names.group(), "--json").stdout)
    assert (stats["events"], stats["dead_letters"]) == (8, 1)
    orders = {r["order_id"]: r for r in rows(settings, "select order_id, status, cum_qty from orders")}
    assert {k: (v["status"], v["cum_qty"]) for k, v in orders.items()} == {
        "O1": ("FILLED", Decimal(100)), "O2": ("FILLED", Decimal(10))}
    (letter,) = rows(settings, "select reason, payload from dead_letters")
    assert letter["reason"] == "terminal_order"
    # a fill as the first event (seq 1) of an order: nothing can precede it, so it is refused at once
    unknown = json.loads(lines[2]) | {"order_id": "O3", "event_id": "O3-1", "seq": 1}
    code, summary, _ = publish_json(write_lines(tmp_path, [json.dumps(unknown)], "third.jsonl"))
    assert (code, [r["reason"] for r in summary["rejected_lines"]]) == (1, ["unknown_order"])


def test_json_lists_every_refused_line_with_reason_and_detail(
        created_topics: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = use(created_topics, monkeypatch)
    tape = Tape()
    tape.order("O1", "ACC1", "LIST", Side.BUY, 100, price=10)
    tape.fill("O1", 100, 10)
    tape.mark("LIST", 11)
    submitted, accepted, fill, mark = (json.loads(json_form.dumps(r)) for r in tape.records)
    # each bad line is a good one with one field spoilt: read as the old rules did, the fills
    # would pass (the first one published, the others as its resends) and so would the marks
    bad = [
        (fill | {"last_px": 10.5}, "invalid_field:last_px", "never a JSON number"),
        (fill | {"last_qty": 100}, "invalid_field:last_qty", "never a JSON number"),
        (mark | {"symbol": ""}, "invalid_field:symbol", "empty or only whitespace"),
        (mark | {"symbol": " \t"}, "invalid_field:symbol", "empty or only whitespace"),
        (fill | {"order_id": "  "}, "invalid_field:order_id", "empty or only whitespace"),
        (fill | {"account": ""}, "invalid_field:account", "empty or only whitespace"),
        (fill | {"event_id": ""}, "invalid_field:event_id", "empty or only whitespace"),
        (fill | {"exec_id": " "}, "invalid_field:exec_id", "empty or only whitespace"),
        (fill | {"cl_ord_id": "\u3000"}, "invalid_field:cl_ord_id", "empty or only whitespace"),
        (mark | {"event_id": " "}, "invalid_field:event_id", "empty or only whitespace"),
        ("{not json", "invalid_json", "invalid JSON"),
    ]
    refused = {line: (reason, words) for line, (_, reason, words) in enumerate(bad, start=3)}
    lines = [json.dumps(submitted), json.dumps(accepted),
             *(obj if isinstance(obj, str) else json.dumps(obj) for obj, _, _ in bad),
             json.dumps(fill), json.dumps(mark)]
    code, summary, stderr = publish_json(write_lines(tmp_path, lines))
    assert (code, summary["rejected"], summary["published"]) == (1, len(refused), 4), stderr
    assert [(r["line"], r["reason"]) for r in summary["rejected_lines"]] == [
        (line, reason) for line, (reason, _) in refused.items()]
    for entry in summary["rejected_lines"]:
        assert refused[entry["line"]][1] in entry["detail"], entry
        assert f"events.jsonl:{entry['line']}: {entry['reason']}: {entry['detail']}" in stderr
    assert summary["rejected_by_reason"] == {"invalid_field:account": 1, "invalid_field:cl_ord_id": 1,
                                             "invalid_field:event_id": 2, "invalid_field:exec_id": 1,
                                             "invalid_field:last_px": 1, "invalid_field:last_qty": 1,
                                             "invalid_field:order_id": 1, "invalid_field:symbol": 2,
                                             "invalid_json": 1}
    # nothing refused reached the record topics: no blank key, no rounded decimal
    published = read_topic(settings, settings.topic_orders) + read_topic(settings, settings.topic_marketdata)
    assert sorted(m.key() for m in published) == [b"LIST"] * 4
    assert set(dead_letters(settings)) == {f"events.jsonl:{line}" for line in refused}


def test_refusals_echo_line_numbers_and_input_as_plain_text(
        created_topics: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`file:line: reason: detail` stays plain text: rich read `:100:` and `:1234:` as emoji codes,
    and input like `[bold]` as markup."""
    use(created_topics, monkeypatch)
    tape = Tape()
    for i in range(1233):
        tape.mark(f"EMO{i % 7}", 10 + i % 5)
    lines = [json_form.dumps(r) for r in tape.records]
    lines[99] = "{:thumbs_up: [bold]not json"
    lines.append(json.dumps(json.loads(lines[0]) | {"symbol": " "}))
    path = write_lines(tmp_path, lines)
    result = CliRunner().invoke(app, ["publish", str(path)])
    assert result.exit_code == 1, result.output
    said = [line for line in result.stderr.splitlines() if line.startswith("events.jsonl:")]
    assert [line.split(":")[1:3] for line in said] == [["100", " invalid_json"], ["1234", " invalid_field"]]
    assert said[0].startswith("events.jsonl:100: invalid_json: ") and said[1].startswith(
        "events.jsonl:1234: invalid_field:symbol: ")
    assert not any(ord(ch) > 0x2000 for ch in result.stderr), result.stderr
