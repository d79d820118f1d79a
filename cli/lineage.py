"""What `backbone audit order` and `backbone audit trades` print: an order's lineage as text or
canonical JSON, and executions as table, JSON Lines or CSV rows (docs/audit.md#order-lineage)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from backbone.csv_cells import cell
from cli.common import canonical_value
from projections.audit_lineage import Archived, ChainLink, Fill, Lineage, Mark, Missing, Step, in_window
from projections.audit_queries import Finding, LineageError

MISSING = "missing"
_EVENT_NUMBERS = ("order_qty", "price", "stop_price", "leaves_qty", "cum_qty", "avg_px", "last_qty", "last_px")
TRADE_COLUMNS = ("exec_id", "order_id", "cl_ord_id", "cl_ord_chain", "account", "symbol", "side", "event_time",
                 "ingest_time", "topic", "partition", "offset", "qty", "px", "busted", "corrected", "effective_qty",
                 "effective_px", "restatements", "order_status", "mark_price", "bid", "ask", "mark_time",
                 "mark_offset", "slippage_mark_bps", "slippage_bid_bps", "slippage_ask_bps")


def _canonical(data: dict[str, Any]) -> dict[str, Any]:
    return {k: canonical_value(v) for k, v in data.items()}


def money(value: Decimal | None) -> str:
    """A decimal for people: exact, thousands grouped; None as `missing`."""
    if value is None:
        return MISSING
    return f"{value.normalize():,f}" if value else "0"


def _when(value: datetime | None) -> str:
    return MISSING if value is None else str(canonical_value(value))


# -- JSON ---------------------------------------------------------------------------------------

def _coordinates(r: Archived) -> dict[str, Any]:
    return {"topic": r.topic, "partition": r.partition, "offset": r.offset}


def mark_json(m: Mark | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {**_canonical({"mark_price": m.mark.mark_price, "bid": m.mark.bid, "ask": m.mark.ask,
                          "event_time": m.mark.event_time}), "topic": m.topic, "partition": m.partition,
            "offset": m.offset}


def record_json(r: Archived) -> dict[str, Any]:
    ev = r.event
    out: dict[str, Any] = {"seq": None if ev is None else ev.seq,
                           "event_type": None if ev is None else ev.event_type.value, **_coordinates(r),
                           "kafka_timestamp_ms": r.timestamp_ms,
                           "event_time": canonical_value(ev.event_time if ev else r.archived_time[0]),
                           "ingest_time": canonical_value(ev.ingest_time if ev else r.archived_time[1])}
    for name in ("cl_ord_id", "orig_cl_ord_id", "exec_id", "exec_ref_id"):
        out[name] = None if ev is None else getattr(ev, name)
    return out


def _step_json(s: Step) -> dict[str, Any]:
    r, ev = s.record, s.record.event
    numbers = _canonical({n: None if ev is None else getattr(ev, n) for n in _EVENT_NUMBERS})
    return {**record_json(r), "status_before": s.status_before, "status_after": r.status_after, **numbers,
            "dead_letter_reason": r.dead_letter_reason, "dead_letter_detail": r.dead_letter_detail,
            "mark": mark_json(s.mark)}


def _missing_json(m: Missing) -> dict[str, Any]:
    return {"first_seq": m.first_seq, "last_seq": m.last_seq, "before": _coordinates(m.before)}


def _link_json(link: ChainLink) -> dict[str, Any]:
    return {"cl_ord_id": link.cl_ord_id, "orig_cl_ord_id": link.orig_cl_ord_id,
            "introduced_by": record_json(link.introduced_by),
            "answer": None if link.answer is None else record_json(link.answer),
            "changes": [{"term": t, "before": canonical_value(a), "after": canonical_value(b)}
                        for t, a, b in link.changes]}


def _restatement_json(r: Archived) -> dict[str, Any]:
    ev = r.event
    return {**record_json(r), **_canonical({"last_qty": None if ev is None else ev.last_qty,
                                            "last_px": None if ev is None else ev.last_px})}


def fill_json(f: Fill) -> dict[str, Any]:
    return {**record_json(f.step.record), **_canonical({
        "qty": f.qty, "px": f.px, "effective_qty": f.effective_qty, "effective_px": f.effective_px,
        "slippage_mark_bps": f.slippage.mark, "slippage_bid_bps": f.slippage.bid,
        "slippage_ask_bps": f.slippage.ask}), "busted": f.busted,
        "restatements": [_restatement_json(r) for r in f.restatements], "mark": mark_json(f.step.mark)}


def lineage_json(lineage: Lineage, findings: list[Finding] | None) -> dict[str, Any]:
    first = lineage.first
    return {
        "order_id": lineage.order_id,
        "account": None if first is None else first.account,
        "symbol": None if first is None else first.symbol,
        "side": None if first is None else first.side.value,
        "status": next((s.record.status_after for s in reversed(lineage.steps) if s.record.status_after), None),
        "missing": [_missing_json(m) for m in lineage.missing],
        "events": [_step_json(s) for s in lineage.steps],
        "replace_chain": [_link_json(link) for link in lineage.chain],
        "fills": [fill_json(f) for f in lineage.fills],
        "refused": [record_json(r) | {"dead_letter_reason": r.dead_letter_reason,
                                      "dead_letter_detail": r.dead_letter_detail} for r in lineage.refused],
        "verify": None if findings is None else {"ok": not findings, "findings": [
            {"where": f.where, "what": f.what} for f in findings]},
    }


# -- text ---------------------------------------------------------------------------------------

def _mark_text(m: Mark | None) -> str:
    if m is None:
        return f"mark {MISSING}"
    return f"mark {money(m.mark.mark_price)} bid {money(m.mark.bid)} ask {money(m.mark.ask)}"


def _bps(value: Decimal | None) -> str:
    return MISSING if value is None else f"{value:+} bp"


def lineage_table(lineage: Lineage) -> Table:
    table = Table("seq", "event", "event time", "ingest time", "at", "status", "qty", "price", "leaves", "cum",
                  "avg px", "last", "in force", "refused", title=None, box=None, pad_edge=False)
    missing = {id(m.before): m for m in lineage.missing}
    for s in lineage.steps:
        r, ev = s.record, s.record.event
        if id(r) in missing:
            table.add_row("…", str(missing[id(r)]), *[""] * 12)
        last = "" if ev is None or ev.last_qty is None else f"{money(ev.last_qty)} @ {money(ev.last_px)}"
        table.add_row(
            "?" if ev is None else str(ev.seq), "undecodable" if ev is None else ev.event_type.value,
            _when(ev.event_time if ev else r.archived_time[0]), _when(ev.ingest_time if ev else r.archived_time[1]),
            r.where, f"{s.status_before or '-'} → {r.status_after or '-'}",
            *("" if ev is None else money(getattr(ev, n)) if getattr(ev, n) is not None else "-"
              for n in ("order_qty", "price", "leaves_qty", "cum_qty", "avg_px")),
            last, _mark_text(s.mark), r.dead_letter_reason or "")
    return table


def _chain_line(link: ChainLink) -> str:
    intro = link.introduced_by.event
    head = link.cl_ord_id + ("" if link.orig_cl_ord_id is None else f" (from {link.orig_cl_ord_id})")
    kind = "" if intro is None else intro.event_type.value
    answer = "" if link.answer is None or link.answer is link.introduced_by or link.answer.event is None else \
        f" → {link.answer.event.event_type.value} at {link.answer.where}"
    changes = "; ".join(f"{t} {_term(a)} → {_term(b)}" for t, a, b in link.changes)
    return f"  {head}: {kind} at {link.introduced_by.where}{answer}" + (f": {changes}" if changes else "")


def _term(value: object) -> str:
    return money(value) if isinstance(value, Decimal) else "-" if value is None else str(value)


def _fill_lines(f: Fill) -> list[str]:
    ev = f.step.record.event
    assert ev is not None
    stands = "busted" if f.busted else f"stands {money(f.effective_qty)} @ {money(f.effective_px)}"
    lines = [f"  {f.exec_id}: {money(f.qty)} @ {money(f.px)} at {_when(ev.event_time)} ({f.step.record.where}); "
             f"{stands}; {_mark_text(f.step.mark)}; slippage vs mark {_bps(f.slippage.mark)}, "
             f"bid {_bps(f.slippage.bid)}, ask {_bps(f.slippage.ask)}"]
    for r in f.restatements:
        rev = r.event
        assert rev is not None
        what = "busted" if rev.last_qty is None else f"to {money(rev.last_qty)} @ {money(rev.last_px)}"
        lines.append(f"    {rev.event_type.value} {rev.exec_id} (of {rev.exec_ref_id}) at {_when(rev.event_time)} "
                     f"({r.where}): {what}")
    return lines


def _detail(r: Archived) -> str:
    """The dead letter's detail without the coordinates it starts with (printed already)."""
    detail = r.dead_letter_detail or ""
    return detail.removeprefix(f"{r.where}: ")


def lineage_text(lineage: Lineage) -> tuple[str, Table, list[str]]:
    """A header line, the events' table, and the sections below it."""
    first = lineage.first
    who = "" if first is None else f" account {first.account} symbol {first.symbol} side {first.side.value}"
    header = f"order {lineage.order_id}{who}: {len(lineage.steps)} records, {len(lineage.refused)} refused"
    lines = ["replace chain:", *(_chain_line(link) for link in lineage.chain)]
    lines += ["fills:", *(line for f in lineage.fills for line in _fill_lines(f))] if lineage.fills else \
        ["fills: none"]
    if lineage.refused:
        lines += ["refused:", *(f"  {r.where}: {r.dead_letter_reason}: {_detail(r)}" for r in lineage.refused)]
    lines += [str(m) for m in lineage.missing]
    return header, lineage_table(lineage), lines


# -- trades -------------------------------------------------------------------------------------

def trade_rows(lineages: Iterable[Lineage], start: datetime, end: datetime) -> list[dict[str, Any]]:
    """One row per fill in [start, end] (canonical JSON values), by event time then coordinates."""
    rows = []
    for lineage in lineages:
        chain = ">".join(link.cl_ord_id for link in lineage.chain)
        status = next((s.record.status_after for s in reversed(lineage.steps) if s.record.status_after), None)
        for f in lineage.fills:
            if not in_window(f, start, end):
                continue
            ev, r, m = f.step.record.event, f.step.record, f.step.mark
            assert ev is not None
            rows.append({
                "exec_id": f.exec_id, "order_id": lineage.order_id, "cl_ord_id": ev.cl_ord_id, "cl_ord_chain": chain,
                "account": ev.account, "symbol": ev.symbol, "side": ev.side.value,
                "event_time": canonical_value(ev.event_time), "ingest_time": canonical_value(ev.ingest_time),
                **_coordinates(r), **_canonical({"qty": f.qty, "px": f.px}), "busted": f.busted,
                "corrected": any(x.event is not None and x.event.last_qty is not None for x in f.restatements),
                **_canonical({"effective_qty": f.effective_qty, "effective_px": f.effective_px}),
                "restatements": [_restatement_json(x) for x in f.restatements], "order_status": status,
                **_canonical({"mark_price": None if m is None else m.mark.mark_price,
                              "bid": None if m is None else m.mark.bid, "ask": None if m is None else m.mark.ask,
                              "mark_time": None if m is None else m.mark.event_time}),
                "mark_offset": None if m is None else m.offset,
                **_canonical({"slippage_mark_bps": f.slippage.mark, "slippage_bid_bps": f.slippage.bid,
                              "slippage_ask_bps": f.slippage.ask})})
    return sorted(rows, key=lambda row: (row["event_time"], row["topic"], row["partition"], row["offset"]))


def _restatements_text(items: list[dict[str, Any]]) -> str:
    return "; ".join(f"{x['event_type']} {x['exec_id']} at {x['topic']}[{x['partition']}]@{x['offset']}"
                     + ("" if x["last_qty"] is None else f" {x['last_qty']}@{x['last_px']}") for x in items)


def trades_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    # CRLF ends a row (RFC 4180): a CR inside a text is then quoted, never a row break of its own
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(TRADE_COLUMNS)
    for row in rows:
        writer.writerow([cell(_restatements_text(row[c]) if c == "restatements" else row[c]) for c in TRADE_COLUMNS])
    return buf.getvalue()


def trades_jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)


def trades_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("event time", "exec", "order", "account", "symbol", "side", "qty", "px", "stands", "mark",
                  "slip vs mark", "at", box=None, pad_edge=False)
    for row in rows:
        stands = "busted" if row["busted"] else (
            f"{money(Decimal(row['effective_qty']))} @ {money(Decimal(row['effective_px']))}"
            + (" (corrected)" if row["corrected"] else ""))
        table.add_row(row["event_time"], row["exec_id"], row["order_id"], row["account"], row["symbol"], row["side"],
                      money(Decimal(row["qty"])), money(Decimal(row["px"])), stands,
                      MISSING if row["mark_price"] is None else money(Decimal(row["mark_price"])),
                      MISSING if row["slippage_mark_bps"] is None else f"{row['slippage_mark_bps']} bp",
                      f"{row['topic']}[{row['partition']}]@{row['offset']}")
    return table


def render_table(table: Table) -> str:
    """A table as plain text, for a file."""
    console = Console(file=io.StringIO(), width=250, highlight=False, markup=False, emoji=False, color_system=None)
    console.print(table)
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


def write_file(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise LineageError(f"cannot write {path}: {e.strerror or e}") from e
