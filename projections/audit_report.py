"""The evidence pack's `report.html` (pure): the timeline of the exported records as a table and,
per symbol, an SVG chart of the order's limit price, its fills, the marks and bid/ask over time.

Self-contained on purpose: no script, no stylesheet or font fetched, so it opens offline and
shows the same thing in any browser years later. Every value that comes from a record or a
user goes through `html.escape` (an account named `<script>` is text). Prices stay exact in
the table (decimal text with thousands separators); the chart's pixel positions are computed
in Decimal too, then rounded to hundredths of a pixel.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from backbone.codec.json_form import format_datetime, format_decimal
from backbone.domain.events import EventType, MarketMark, OrderEvent
from backbone.record_time import EPOCH, from_timestamp_ms, timestamp_us


@dataclass(frozen=True, slots=True)
class Entry:
    """One archived record as the pack shows it: coordinates, the archive's verdict, the event."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    chain_hash: bytes
    status_after: str | None
    dead_letter_reason: str | None
    dead_letter_detail: str | None
    record: OrderEvent | MarketMark | None  # None: the bytes do not decode (`decode_error` says why)
    decode_error: str | None = None

    @property
    def when(self) -> datetime:
        """The event time; for bytes that do not decode, their Kafka timestamp."""
        return self.record.event_time if self.record is not None else from_timestamp_ms(self.timestamp_ms)

    def sort_key(self) -> tuple[datetime, str, int, int]:
        return (self.when, self.topic, self.partition, self.offset)


@dataclass(frozen=True, slots=True)
class Head:
    """A verified partition's chain head (None: nothing archived there)."""

    topic: str
    partition: int
    offset: int | None
    hash_hex: str | None


def money(value: Decimal | None) -> str:
    """Exact decimal text, thousands separated: `1234567.5` -> `1,234,567.5`."""
    if value is None:
        return ""
    text = format_decimal(value)
    sign, text = ("-", text[1:]) if text.startswith("-") else ("", text)
    whole, dot, fraction = text.partition(".")
    groups: list[str] = []
    while len(whole) > 3:
        whole, tail = whole[:-3], whole[-3:]
        groups.insert(0, tail)
    return sign + ",".join([whole, *groups]) + dot + fraction


def _e(value: object) -> str:
    return "" if value is None else html.escape(str(value), quote=True)


_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.refused { background: #fde8e8; }
tr.mark { color: #555; }
.mono { font-family: monospace; font-size: 0.9em; }
table.timeline td { white-space: nowrap; }
p.empty { font-weight: bold; padding: 0.5em; border: 2px solid #c00; }
"""

_COLUMNS = ("event time (UTC)", "record", "event", "order", "cl. ord. id", "account", "symbol", "side", "qty",
            "limit", "fill", "cum / leaves", "mark", "bid", "ask", "status after", "verdict")


def _row(entry: Entry) -> str:
    r = entry.record
    coords = f"{entry.topic}[{entry.partition}]@{entry.offset}"
    verdict = "applied" if entry.dead_letter_reason is None else f"refused: {entry.dead_letter_reason}"
    if entry.dead_letter_detail:
        verdict += f" ({entry.dead_letter_detail})"
    cells: list[tuple[str, bool]]  # (escaped text, numeric)
    if isinstance(r, OrderEvent):
        fill = "" if r.last_qty is None else f"{money(r.last_qty)} @ {money(r.last_px)}"
        cells = [(_e(r.event_type.value), False), (_e(r.order_id), False), (_e(r.cl_ord_id), False),
                 (_e(r.account), False), (_e(r.symbol), False), (_e(r.side.value), False),
                 (_e(money(r.order_qty)), True), (_e(money(r.price)), True), (_e(fill), True),
                 (_e(f"{money(r.cum_qty)} / {money(r.leaves_qty)}"), True), ("", True), ("", True), ("", True)]
    elif isinstance(r, MarketMark):
        cells = [("MARK", False), ("", False), ("", False), ("", False), (_e(r.symbol), False), ("", False),
                 ("", True), ("", True), ("", True), ("", True), (_e(money(r.mark_price)), True),
                 (_e(money(r.bid)), True), (_e(money(r.ask)), True)]
    else:
        cells = [(_e(f"undecodable: {entry.decode_error}"), False)] + [("", False)] * 12
    kind = "refused" if entry.dead_letter_reason else ("mark" if isinstance(r, MarketMark) else "event")
    tds = "".join(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>" for text, numeric in cells)
    return (f'<tr class="{kind}" data-coordinates="{_e(coords)}"><td>{_e(format_datetime(entry.when))}</td>'
            f'<td class="mono">{_e(coords)}</td>{tds}<td>{_e(entry.status_after)}</td><td>{_e(verdict)}</td></tr>')


# == the chart =====================================================================================

_W, _H = Decimal(960), Decimal(320)
_LEFT, _RIGHT, _TOP, _BOTTOM = Decimal(90), Decimal(20), Decimal(20), Decimal(50)
_PX = Decimal("0.01")
_SERIES = (  # name, colour, dash
    ("limit", "#1f4e9c", ""), ("mark", "#444444", ""), ("bid", "#2a8c3a", "4 3"), ("ask", "#c0392b", "4 3"))


@dataclass(frozen=True, slots=True)
class _Scale:
    t0: int
    t1: int
    lo: Decimal
    hi: Decimal

    def x(self, when: datetime) -> str:
        span = _W - _LEFT - _RIGHT
        return str((_LEFT + span * (timestamp_us(when) - self.t0) / (self.t1 - self.t0)).quantize(_PX, ROUND_HALF_EVEN))

    def y(self, price: Decimal) -> str:
        span = _H - _TOP - _BOTTOM
        return str((_TOP + span * (self.hi - price) / (self.hi - self.lo)).quantize(_PX, ROUND_HALF_EVEN))


def _scale(times: list[datetime], prices: list[Decimal]) -> _Scale:
    t0, t1 = min(timestamp_us(t) for t in times), max(timestamp_us(t) for t in times)
    if t1 == t0:
        t0, t1 = t0 - 1000, t1 + 1000
    lo, hi = min(prices), max(prices)
    pad = (hi - lo) / 20 if hi > lo else max(abs(hi) / 100, Decimal(1))
    return _Scale(t0, t1, lo - pad, hi + pad)


def _series(entries: Sequence[Entry]) -> dict[str, list[tuple[datetime, Decimal]]]:
    """The chart's lines: each order's limit price as a step line, marks, bid and ask."""
    out: dict[str, list[tuple[datetime, Decimal]]] = {name: [] for name, _c, _d in _SERIES}
    for e in entries:
        r = e.record
        if isinstance(r, OrderEvent) and r.price is not None and e.dead_letter_reason is None:
            limit = out["limit"]
            if limit and limit[-1][1] != r.price:
                limit.append((r.event_time, limit[-1][1]))  # a replace steps the line
            limit.append((r.event_time, r.price))
        elif isinstance(r, MarketMark):
            out["mark"].append((r.event_time, r.mark_price))
            for name, value in (("bid", r.bid), ("ask", r.ask)):
                if value is not None:
                    out[name].append((r.event_time, value))
    return out


def _fills(entries: Sequence[Entry]) -> list[Entry]:
    return [e for e in entries if isinstance(e.record, OrderEvent) and e.record.last_px is not None
            and e.record.event_type in (EventType.FILLED, EventType.TRADE_CORRECTED)]


def chart(symbol: str, entries: Sequence[Entry]) -> str:
    """One symbol's SVG chart; empty text when it has no price to draw."""
    lines = _series(entries)
    fills = _fills(entries)
    points = [p for line in lines.values() for p in line] + [
        (f.when, f.record.last_px) for f in fills if isinstance(f.record, OrderEvent) and f.record.last_px]
    if not points:
        return ""
    s = _scale([t for t, _p in points] + [e.when for e in entries], [p for _t, p in points])
    parts = [f'<svg class="chart" data-symbol="{_e(symbol)}" xmlns="http://www.w3.org/2000/svg" width="{_W}" '
             f'height="{_H}" viewBox="0 0 {_W} {_H}" role="img" aria-label="{_e(f"prices of {symbol} over time")}">',
             f'<rect x="{_LEFT}" y="{_TOP}" width="{_W - _LEFT - _RIGHT}" height="{_H - _TOP - _BOTTOM}" '
             'fill="#fafafa" stroke="#999"/>']
    for i in range(5):
        price = s.lo + (s.hi - s.lo) * i / 4
        parts.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{s.y(price)}" y2="{s.y(price)}" stroke="#e2e2e2"/>'
                     f'<text x="{_LEFT - 6}" y="{s.y(price)}" text-anchor="end" font-size="11" '
                     f'dominant-baseline="middle">{_e(money(price.quantize(Decimal("0.0001"))))}</text>')
    for us, anchor in ((s.t0, "start"), (s.t1, "end")):
        when = format_datetime(EPOCH + timedelta(microseconds=us))
        x = _LEFT if anchor == "start" else _W - _RIGHT
        parts.append(f'<text x="{x}" y="{_H - _BOTTOM + 16}" text-anchor="{anchor}" font-size="11">{_e(when)}</text>')
    for name, colour, dash in _SERIES:
        line = lines[name]
        if not line:
            continue
        coords = " ".join(f"{s.x(t)},{s.y(p)}" for t, p in line)
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<polyline class="{name}" points="{coords}" fill="none" stroke="{colour}" '
                     f'stroke-width="1.5"{dashed}/>')
        for t, p in line:
            parts.append(f'<circle class="{name}-point" cx="{s.x(t)}" cy="{s.y(p)}" r="2" fill="{colour}">'
                         f"<title>{_e(f'{name} {money(p)} at {format_datetime(t)}')}</title></circle>")
    for f in fills:
        r = f.record
        assert isinstance(r, OrderEvent) and r.last_px is not None
        label = f"{r.event_type.value} {money(r.last_qty)} @ {money(r.last_px)} at {format_datetime(r.event_time)}"
        # a refused fill moved nothing: drawn hollow, so the eye does not count it
        kind, paint = ("fill", 'fill="#f39c12" stroke="#000"') if f.dead_letter_reason is None else (
            "refused-fill", 'fill="none" stroke="#c00" stroke-width="2"')
        if f.dead_letter_reason is not None:
            label += f", refused: {f.dead_letter_reason}"
        parts.append(f'<circle class="{kind}" cx="{s.x(r.event_time)}" cy="{s.y(r.last_px)}" r="5" {paint}>'
                     f"<title>{_e(label)}</title></circle>")
    legend = [(name, colour) for name, colour, _d in _SERIES if lines[name]]
    legend += [(kind, colour) for kind, colour, refused in (("fill", "#f39c12", False), ("refused fill", "#c00", True))
               if any((f.dead_letter_reason is not None) == refused for f in fills)]
    for i, (name, colour) in enumerate(legend):
        x = _LEFT + 110 * i
        parts.append(f'<rect x="{x}" y="{_H - 18}" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{x + 16}" y="{_H - 8}" font-size="12">{_e(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# == the page ======================================================================================

def _symbols(entries: Iterable[Entry]) -> list[str]:
    return sorted({e.record.symbol for e in entries if e.record is not None})


def render(title: str, query: Sequence[tuple[str, str]], entries: Sequence[Entry], heads: Sequence[Head],
           check: str, created_at: datetime) -> str:
    """The whole page. `query`: (label, value) pairs describing what was asked."""
    ordered = sorted(entries, key=Entry.sort_key)
    asked = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in query)
    body = [f"<h1>{_e(title)}</h1>",
            f'<table class="query">{asked}<tr><th>created</th><td>{_e(format_datetime(created_at))}</td></tr>'
            f"<tr><th>records</th><td>{len(ordered)}</td></tr></table>"]
    if not ordered:
        body.append('<p class="empty">EMPTY: no archived record matches this query.</p>')
    else:
        for symbol in _symbols(ordered):
            svg = chart(symbol, [e for e in ordered if e.record is not None and e.record.symbol == symbol])
            if svg:
                body.append(f"<h2>{_e(symbol)}</h2>{svg}")
        header = "".join(f"<th>{_e(c)}</th>" for c in _COLUMNS)
        body.append(f'<h2>Timeline</h2><table class="timeline"><thead><tr>{header}</tr></thead><tbody>'
                    f'{"".join(_row(e) for e in ordered)}</tbody></table>')
    head_rows = "".join(
        f'<tr><td>{_e(h.topic)}</td><td class="num">{h.partition}</td>'
        f'<td class="num">{_e("nothing archived" if h.offset is None else h.offset)}</td>'
        f'<td class="mono">{_e(h.hash_hex)}</td></tr>' for h in heads)
    body.append(f"<h2>Chain heads</h2><p>{_e(check)}</p><table class=\"heads\"><thead><tr><th>topic</th>"
                f"<th>partition</th><th>head offset</th><th>head hash (SHA-256)</th></tr></thead>"
                f"<tbody>{head_rows}</tbody></table>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n")
