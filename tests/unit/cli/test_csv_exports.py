"""The CSV exports (`audit trades --format csv`, the evidence pack's events.csv) write a text that
would start a spreadsheet formula behind a single quote; numbers stay numbers; the JSON Lines of
the same rows keep every text as it is."""

from __future__ import annotations

import csv
import io
import json

from tape import Tape

from backbone.domain.events import Side
from cli.lineage import TRADE_COLUMNS, trades_csv, trades_jsonl
from projections.audit_export import _csv, jsonl_line
from projections.audit_report import Entry

EVIL = {"exec_id": "=HYPERLINK(\"http://x\",\"y\")", "order_id": "+1+2", "cl_ord_id": "@SUM(A1)",
        "cl_ord_chain": "-2+3", "account": "\tACC", "symbol": "\rAAPL"}


def _cells(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_trades_csv_quotes_formula_texts_and_keeps_numbers() -> None:
    row = dict.fromkeys(TRADE_COLUMNS)
    row.update(EVIL, side="BUY", event_time="2026-11-20T14:30:00.000001Z", topic="trading.orders", partition=0,
               offset=7, qty="100", px="10.5", busted=False, corrected=False, restatements=[],
               slippage_mark_bps="-3.25", slippage_bid_bps="-0.01", mark_offset=3)
    text = trades_csv([row])
    (out,) = _cells(text)  # one row: the CR in a text is quoted, not a line break
    for column, text in EVIL.items():
        assert out[column] == "'" + text, column
    assert (out["slippage_mark_bps"], out["slippage_bid_bps"], out["px"], out["offset"]) == ("-3.25", "-0.01",
                                                                                           "10.5", "7")
    assert (out["busted"], out["ask"]) == ("false", "")
    assert {k: json.loads(trades_jsonl([row]))[k] for k in EVIL} == EVIL  # JSON Lines: as they are


def test_the_evidence_packs_csv_quotes_formula_texts_and_keeps_numbers() -> None:
    tape = Tape()
    tape.order("O1", "=1+2", "AAPL", Side.SELL, 5, price="-1.5")  # a negative price: the CSV keeps it a number
    entries = [Entry("trading.orders", 0, i, 0, b"AAPL", b"v", bytes(32), None, "bad" if i else None,
                     "-detail" if i else None, r, "@error" if i else None) for i, r in enumerate(tape.records)]
    first, second = _cells(_csv(entries))
    assert (first["account"], first["price"], first["dead_letter_detail"]) == ("'=1+2", "-1.5", "")
    assert (second["dead_letter_detail"], second["decode_error"]) == ("'-detail", "'@error")
    lines = [json.loads(jsonl_line(e)) for e in entries]
    assert lines[0]["record"]["account"] == "=1+2" and lines[1]["dead_letter_detail"] == "-detail"
