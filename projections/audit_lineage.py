"""An order's lineage assembled from archived rows (pure: values in, values out; no I/O).

`projections.audit_queries` reads the rows and decodes their bytes; this module puts them in
order and derives what the archive does not hold as columns:

- the status before each event: the `status_after` of the order's previous archived event;
- the replace chain: each ClOrdID the order took, the event that brought it, the answer to it,
  and, for a REPLACED, the terms it changed (before → after, from the events' reported terms);
- every fill with the busts and corrections that restated it, and the fill as it stands, from
  the order's state refolded by the domain code (`backbone.domain.order_state.apply`);
- the mark in force at each event: the latest archived mark of the symbol whose event time is
  at or before the event's (ties: the later offset), and each fill's slippage against it;
- explicit "missing" markers where the order's sequence numbers jump: records the archive
  never held (they left the log before it was archived, or were never published).

Slippage, in basis points, positive = worse for the account:

    slippage_bps = sign × (px − reference) / reference × 10 000,  sign = +1 BUY, −1 SELL/SELL_SHORT

quantized to 0.01 bp, half-even. A reference that is missing (no mark, or the mark has no bid or
ask) gives None, never 0.
"""

from __future__ import annotations

import bisect
import dataclasses
import decimal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from backbone.domain import order_state
from backbone.domain.events import EventType, MarketMark, OrderEvent, Side
from backbone.domain.order_state import OrderState
from backbone.errors import InvalidOrderTransition, coordinates

E = EventType
BPS_QUANTUM = Decimal("0.01")
_BPS_CTX = decimal.Context(prec=60)  # exact enough for 38-digit decimals before the one rounding
#: the order terms a REPLACED may change
TERMS = ("order_qty", "price", "stop_price", "order_type", "time_in_force")
_REQUESTS = {E.REPLACE_REQUESTED: (E.REPLACED, E.REPLACE_REJECTED), E.CANCEL_REQUESTED: (E.CANCELED, E.CANCEL_REJECTED)}


@dataclass(frozen=True, slots=True)
class Archived:
    """One archived record of the orders topic that names the order."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    event: OrderEvent | None  # None: the bytes do not decode to an order event
    status_after: str | None
    dead_letter_reason: str | None = None
    dead_letter_detail: str | None = None
    key: bytes | None = None
    value: bytes | None = None
    archived_time: tuple[datetime | None, datetime | None] = (None, None)  # the columns, for undecoded rows

    @property
    def where(self) -> str:
        return coordinates(self.topic, self.partition, self.offset)

    @property
    def applied(self) -> bool:
        return self.dead_letter_reason is None and self.event is not None


@dataclass(frozen=True, slots=True)
class Mark:
    """An archived mark: the references a fill is measured against."""

    topic: str
    partition: int
    offset: int
    mark: MarketMark


class Marks:
    """The archived marks of some symbols; `in_force` answers by event time (bisect)."""

    def __init__(self, marks: Iterable[Mark]) -> None:
        by_symbol: dict[str, list[Mark]] = {}
        for m in marks:
            by_symbol.setdefault(m.mark.symbol, []).append(m)
        self._marks = {s: sorted(ms, key=lambda m: (m.mark.event_time, m.offset)) for s, ms in by_symbol.items()}
        self._times = {s: [m.mark.event_time for m in ms] for s, ms in self._marks.items()}

    def in_force(self, symbol: str, when: datetime) -> Mark | None:
        """The latest mark of `symbol` with event time <= `when` (None: none)."""
        times = self._times.get(symbol)
        if not times:
            return None
        i = bisect.bisect_right(times, when)
        return self._marks[symbol][i - 1] if i else None


def slippage_bps(side: Side, px: Decimal, reference: Decimal | None) -> Decimal | None:
    """See the module docstring; None when there is no (positive) reference."""
    if reference is None or not reference > 0:
        return None
    sign = 1 if side is Side.BUY else -1
    raw = _BPS_CTX.divide(_BPS_CTX.multiply(_BPS_CTX.subtract(px, reference), Decimal(10_000 * sign)), reference)
    return raw.quantize(BPS_QUANTUM, rounding=decimal.ROUND_HALF_EVEN, context=_BPS_CTX)


@dataclass(frozen=True, slots=True)
class Slippage:
    mark: Decimal | None
    bid: Decimal | None
    ask: Decimal | None


def slippage(side: Side, px: Decimal, mark: Mark | None) -> Slippage:
    m = None if mark is None else mark.mark
    return Slippage(slippage_bps(side, px, None if m is None else m.mark_price),
                    slippage_bps(side, px, None if m is None else m.bid),
                    slippage_bps(side, px, None if m is None else m.ask))


@dataclass(frozen=True, slots=True)
class Step:
    """One event of the lineage, with what surrounds it."""

    record: Archived
    status_before: str | None
    mark: Mark | None


@dataclass(frozen=True, slots=True)
class Missing:
    """Sequence numbers of the order the archive does not hold, before the record at `before`."""

    first_seq: int
    last_seq: int
    before: Archived

    def __str__(self) -> str:
        seqs = f"seq {self.first_seq}" if self.first_seq == self.last_seq else f"seq {self.first_seq}..{self.last_seq}"
        return f"missing: {seqs} not in the archive (left the log before it was archived, or never published)"


@dataclass(frozen=True, slots=True)
class ChainLink:
    """A ClOrdID of the order: the event that brought it, the answer to it, what it changed."""

    cl_ord_id: str
    orig_cl_ord_id: str | None
    introduced_by: Archived
    answer: Archived | None = None  # the REPLACED/REJECTED/CANCELED answering a request (None: none yet)
    changes: tuple[tuple[str, object, object], ...] = ()  # (term, before, after) of a REPLACED


@dataclass(frozen=True, slots=True)
class Fill:
    """An execution with its restatements and how it stands after them."""

    step: Step
    exec_id: str
    qty: Decimal
    px: Decimal
    restatements: tuple[Archived, ...]
    busted: bool
    effective_qty: Decimal | None  # None: busted
    effective_px: Decimal | None
    slippage: Slippage  # of the effective price (the executed one if busted), at the fill's time


@dataclass
class Refold:
    """The order folded by the domain code over its applied archived events."""

    state: OrderState | None = None
    duplicates: int = 0
    #: applied in the archive, refused by the domain code: (record, why)
    refused: list[tuple[Archived, str]] = field(default_factory=list)


def refold(records: Iterable[Archived]) -> Refold:
    """Fold the records the archive says were applied, in log order, as the trading projection
    does (a resend of an applied event is skipped)."""
    out = Refold()
    for r in records:
        if not r.applied:
            continue
        assert r.event is not None
        try:
            out.state = order_state.apply(out.state, r.event)
        except InvalidOrderTransition as e:
            if e.rule == "duplicate_event":
                out.duplicates += 1
            else:
                out.refused.append((r, str(e)))
    return out


@dataclass
class Lineage:
    order_id: str
    steps: list[Step]
    missing: list[Missing]
    chain: list[ChainLink]
    fills: list[Fill]
    refused: list[Archived]
    folded: Refold

    @property
    def first(self) -> OrderEvent | None:
        return next((s.record.event for s in self.steps if s.record.event is not None), None)


def _missing(records: Sequence[Archived]) -> list[Missing]:
    out, seen = [], 0
    for r in records:
        if r.event is None:
            continue
        if r.event.seq > seen + 1:
            out.append(Missing(seen + 1, r.event.seq - 1, r))
        seen = max(seen, r.event.seq)
    return out


def _changes(before: dict[str, object] | None, ev: OrderEvent) -> tuple[tuple[str, object, object], ...]:
    if before is None or ev.event_type is not E.REPLACED:
        return ()
    return tuple((t, before[t], getattr(ev, t)) for t in TERMS if before[t] != getattr(ev, t))


def _chain(records: Sequence[Archived]) -> list[ChainLink]:
    links: list[ChainLink] = []
    open_requests: dict[EventType, int] = {}  # request type -> its link (one of each may be open)
    terms: dict[str, object] | None = None  # as the last applied event reported them
    for r in records:
        ev = r.event
        if not r.applied or ev is None:
            continue
        answered = next((k for k, answers in _REQUESTS.items() if ev.event_type in answers and k in open_requests),
                        None)
        if answered is not None:
            i = open_requests.pop(answered)
            links[i] = dataclasses.replace(links[i], answer=r, changes=_changes(terms, ev))
        elif all(link.cl_ord_id != ev.cl_ord_id for link in links):
            links.append(ChainLink(ev.cl_ord_id, ev.orig_cl_ord_id, r, r if ev.event_type is E.REPLACED else None,
                                   _changes(terms, ev)))
            if ev.event_type in _REQUESTS:
                open_requests[ev.event_type] = len(links) - 1
        terms = {t: getattr(ev, t) for t in TERMS}
    return links


def is_fill(r: Archived) -> bool:
    """Whether the record is an execution of the lineage's fills: an applied FILLED event."""
    return r.applied and r.event is not None and r.event.event_type is E.FILLED and r.event.exec_id is not None


def _fills(steps: Sequence[Step], state: OrderState | None) -> list[Fill]:
    live = {} if state is None else {f.exec_id: f for f in state.fills}
    restating = [s.record for s in steps if s.record.applied and s.record.event is not None
                 and s.record.event.event_type in (E.TRADE_CORRECTED, E.TRADE_CANCELED)]
    out = []
    for s in steps:
        ev = s.record.event
        if ev is None or ev.exec_id is None or not is_fill(s.record):
            continue
        qty, px = Decimal(ev.last_qty or 0), Decimal(ev.last_px or 0)
        now = live.get(ev.exec_id)
        restated = tuple(r for r in restating if now is not None and r.event is not None
                         and r.event.exec_ref_id is not None and now.answers_to(r.event.exec_ref_id))
        busted = now is not None and now.busted
        eff_qty = None if busted or now is None else now.qty
        eff_px = None if busted or now is None else now.px
        out.append(Fill(s, ev.exec_id, qty, px, restated, busted, eff_qty, eff_px,
                        slippage(ev.side, px if eff_px is None else eff_px, s.mark)))
    return out


def assemble(order_id: str, records: Iterable[Archived], marks: Marks, *, fills_only: bool = False) -> Lineage:
    """The order's lineage from its archived records (any order: sorted here by coordinates).
    `fills_only`: the mark in force is looked up for the fills' steps only, the other steps get
    None (what `audit trades` shows: `marks` need hold only the fills' marks)."""
    ordered = sorted(records, key=lambda r: (r.topic, r.partition, r.offset))
    steps, before = [], None
    for r in ordered:
        when = r.event.event_time if r.event is not None else r.archived_time[0]
        symbol = r.event.symbol if r.event is not None else None
        mark = None
        if when is not None and symbol is not None and (not fills_only or is_fill(r)):
            mark = marks.in_force(symbol, when)
        steps.append(Step(r, before, mark))
        if r.status_after is not None:
            before = r.status_after
    folded = refold(ordered)
    return Lineage(order_id, steps, _missing(ordered), _chain(ordered), _fills(steps, folded.state),
                   [r for r in ordered if r.dead_letter_reason is not None], folded)


def in_window(fill: Fill, start: datetime, end: datetime) -> bool:
    """Whether the fill's event time is in [start, end], both ends included, to the microsecond."""
    ev = fill.step.record.event
    return ev is not None and start <= ev.event_time <= end
