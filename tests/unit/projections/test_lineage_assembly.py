"""An order's lineage from archived rows (projections.audit_lineage), without services: status
before → after, the replace chain, fills with their restatements, the mark in force, slippage,
refused records and missing sequence numbers."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st
from lifecycles import replaced_then_canceled
from tape import T0, Tape

from backbone.domain import order_state
from backbone.domain.events import EventType, MarketMark, OrderEvent, Side
from projections.audit_lineage import Archived, Mark, Marks, assemble, in_window, slippage_bps

E = EventType
D = Decimal


def _archive(events: list[OrderEvent], refused: dict[int, str] | None = None) -> list[Archived]:
    """Archived rows of `events` at offsets 0.., as the audit projection writes them: the
    status after each applied event; a refused one (index -> reason) leaves it unchanged."""
    refused = refused or {}
    out, states = [], {}
    for i, ev in enumerate(events):
        if i not in refused:
            states[ev.order_id] = order_state.apply(states.get(ev.order_id), ev)
        state = states.get(ev.order_id)
        out.append(Archived("orders", 0, i, i, ev, None if state is None else state.status.value, refused.get(i),
                            None if i not in refused else f"orders[0]@{i}: refused"))
    return out


def _mark(offset: int, price: str, when_ms: int, bid: str | None = None, ask: str | None = None) -> Mark:
    m = MarketMark(f"m{offset}", "AAPL", T0 + timedelta(milliseconds=when_ms), D(price),
                   None if bid is None else D(bid), None if ask is None else D(ask))
    return Mark("marks", 0, offset, m)


def _lifecycle() -> tuple[Tape, list[OrderEvent]]:
    tape = Tape()
    replaced_then_canceled(tape)
    return tape, [r for r in tape.records if isinstance(r, OrderEvent)]


def test_status_before_is_the_previous_records_status_after() -> None:
    _tape, events = _lifecycle()
    lineage = assemble("O1", _archive(events), Marks(()))
    statuses = [(s.status_before, s.record.status_after) for s in lineage.steps]
    assert statuses[0] == (None, "PENDING_NEW")
    assert all(a[1] == b[0] for a, b in zip(statuses, statuses[1:], strict=False))
    assert [s.record.event.event_type for s in lineage.steps if s.record.event] == [e.event_type for e in events]
    assert lineage.missing == [] and lineage.refused == []


def test_the_replace_chain_names_each_clordid_its_answer_and_what_it_changed() -> None:
    _tape, events = _lifecycle()
    chain = assemble("O1", _archive(events), Marks(())).chain
    assert [(c.cl_ord_id, c.orig_cl_ord_id) for c in chain] == [("O1-c0", None), ("O1-c1", "O1-c0"),
                                                                  ("O1-c2", "O1-c1")]
    first, replace, cancel = chain
    assert first.introduced_by.event.event_type is E.SUBMITTED and first.answer is None
    assert replace.introduced_by.event.event_type is E.REPLACE_REQUESTED
    assert replace.answer.event.event_type is E.REPLACED
    assert replace.changes == (("order_qty", D(100), D(150)), ("price", D(10), D("10.5")))
    assert cancel.answer.event.event_type is E.CANCELED and cancel.changes == ()


def test_fills_carry_their_restatements_and_how_they_stand() -> None:
    _tape, events = _lifecycle()
    fills = {f.exec_id: f for f in assemble("O1", _archive(events), Marks(())).fills}
    assert sorted(fills) == ["X1", "X2", "X4", "X6"]  # corrections and busts are not fills
    x2 = fills["X2"]
    assert (x2.qty, x2.px, x2.effective_qty, x2.effective_px, x2.busted) == (D(20), D("10.4"), D(20), D("10.3"), False)
    assert [r.event.exec_id for r in x2.restatements] == ["X3"]
    x4 = fills["X4"]
    assert x4.busted and x4.effective_qty is None and [r.event.exec_id for r in x4.restatements] == ["X5"]
    assert fills["X6"].step.status_before == "CANCELED"  # the late fill after the cancel


def test_a_correction_of_a_correction_restates_the_same_fill() -> None:
    tape = Tape()
    tape.order("O1", "A1", "AAPL", Side.SELL, 10, price=5)
    tape.fill("O1", 10, 5)  # X1
    tape.correct("O1", "X1", qty=10, px="5.1")  # X2
    tape.correct("O1", "X2", qty=9, px="5.2")  # X3: names the correction
    events = [r for r in tape.records if isinstance(r, OrderEvent)]
    (fill,) = assemble("O1", _archive(events), Marks(())).fills
    assert [r.event.exec_id for r in fill.restatements] == ["X2", "X3"]
    assert (fill.effective_qty, fill.effective_px) == (D(9), D("5.2"))


def test_refused_records_are_listed_and_leave_the_refold_alone() -> None:
    _tape, events = _lifecycle()
    dup = events[3].replace(event_id="other", seq=events[3].seq)  # a stale seq: refused
    rows = _archive([*events[:5], dup, *events[5:]], refused={5: "stale_seq"})
    lineage = assemble("O1", rows, Marks(()))
    assert [(r.offset, r.dead_letter_reason) for r in lineage.refused] == [(5, "stale_seq")]
    assert lineage.steps[5].status_before == lineage.steps[5].record.status_after  # unchanged
    assert lineage.folded.refused == []
    assert lineage.folded.state is not None and lineage.folded.state.seq == events[-1].seq


def test_a_resend_of_an_applied_event_is_skipped_by_the_refold() -> None:
    _tape, events = _lifecycle()
    lineage = assemble("O1", _archive(events) + [Archived("orders", 0, 99, 99, events[2], "X", None)], Marks(()))
    assert lineage.folded.duplicates == 1 and lineage.folded.refused == []
    assert lineage.folded.state is not None and lineage.folded.state.seq == events[-1].seq


def test_an_event_the_domain_code_refuses_is_reported_by_the_refold() -> None:
    _tape, events = _lifecycle()
    rows = _archive(events)
    tampered = rows[5].event.replace(last_qty=D(999))  # the fill X2 as if archived applied
    rows[5] = Archived("orders", 0, 5, 5, tampered, rows[5].status_after)
    refused = assemble("O1", rows, Marks(())).folded.refused
    assert [r.offset for r, _why in refused][:1] == [5]


def test_missing_sequence_numbers_are_marked_where_they_fall() -> None:
    _tape, events = _lifecycle()
    rows = _archive(events)
    lineage = assemble("O1", rows[2:5] + rows[6:], Marks(()))
    assert [(m.first_seq, m.last_seq, m.before.offset) for m in lineage.missing] == [(1, 2, 2), (6, 6, 6)]
    assert "seq 1..2 not in the archive" in str(lineage.missing[0])


def test_the_mark_in_force_is_the_latest_at_or_before_the_event() -> None:
    marks = Marks([_mark(0, "9", 0), _mark(1, "11", 5, bid="10.9", ask="11.1"), _mark(2, "12", 5), _mark(3, "13", 9)])
    assert marks.in_force("AAPL", T0 - timedelta(microseconds=1)) is None
    assert marks.in_force("AAPL", T0).offset == 0
    assert marks.in_force("AAPL", T0 + timedelta(microseconds=4999)).offset == 0
    assert marks.in_force("AAPL", T0 + timedelta(milliseconds=5)).offset == 2  # same time: the later offset
    assert marks.in_force("AAPL", T0 + timedelta(hours=1)).offset == 3
    assert marks.in_force("MSFT", T0 + timedelta(hours=1)) is None


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 10**6)), max_size=30), st.integers(-5, 60))
def test_the_mark_in_force_equals_a_linear_scan(points: list[tuple[int, int]], at_ms: int) -> None:
    marks = [_mark(offset, "1", ms) for offset, (ms, _x) in enumerate(points)]
    when = T0 + timedelta(milliseconds=at_ms)
    before = [m for m in marks if m.mark.event_time <= when]
    expected = max(before, key=lambda m: (m.mark.event_time, m.offset)) if before else None
    assert Marks(marks).in_force("AAPL", when) == expected


def test_slippage_is_positive_when_worse_for_the_account() -> None:
    assert slippage_bps(Side.BUY, D("10.01"), D(10)) == D("10.00")
    assert slippage_bps(Side.SELL, D("10.01"), D(10)) == D("-10.00")
    assert slippage_bps(Side.SELL_SHORT, D("9.99"), D(10)) == D("10.00")
    assert slippage_bps(Side.BUY, D(3), D(3)) == D("0.00")
    assert slippage_bps(Side.BUY, D(1), D(3)) == D("-6666.67")  # quantized half-even to 0.01 bp
    assert slippage_bps(Side.BUY, D(1), None) is None and slippage_bps(Side.BUY, D(1), D(0)) is None


@given(st.decimals(min_value=D("0.00000001"), max_value=D("1e12"), places=8),
       st.decimals(min_value=D("0.00000001"), max_value=D("1e12"), places=8))
def test_slippage_of_a_sell_is_the_negated_buy(px: Decimal, ref: Decimal) -> None:
    buy, sell = slippage_bps(Side.BUY, px, ref), slippage_bps(Side.SELL, px, ref)
    assert buy is not None and sell == -buy and buy.as_tuple().exponent == -2
    assert (buy > 0) == (px > ref) and (buy < 0) == (px < ref) or buy == 0


def test_fills_are_measured_against_the_mark_in_force_and_missing_refs_stay_none() -> None:
    tape, events = _lifecycle()
    fill_time = next(e.event_time for e in events if e.exec_id == "X1")
    marks = Marks([_mark(0, "9.9", int((fill_time - T0) / timedelta(milliseconds=1)), bid="9.8")])
    x1 = next(f for f in assemble("O1", _archive(events), marks).fills if f.exec_id == "X1")
    assert x1.step.mark is not None and x1.step.mark.offset == 0
    assert x1.slippage.mark == D("101.01")  # (10 - 9.9) / 9.9 × 10 000 for a buy
    assert x1.slippage.bid == D("204.08") and x1.slippage.ask is None


def test_fills_only_gives_the_fills_the_same_marks_and_the_other_steps_none() -> None:
    """What `audit trades` asks for: the marks of its rows, and no look-up for the other steps."""
    _tape, events = _lifecycle()
    first_ms = int((events[0].event_time - T0) / timedelta(milliseconds=1))
    marks = Marks([_mark(0, "9.9", first_ms - 1, bid="9.8"), _mark(1, "10.2", first_ms + 3, ask="10.3")])
    every, fills = assemble("O1", _archive(events), marks), assemble("O1", _archive(events), marks, fills_only=True)
    assert fills.fills == every.fills and len(fills.fills) >= 2
    assert all(f.step.mark is not None for f in fills.fills)
    assert [s.mark for s in fills.steps if s.record.event.event_type is not E.FILLED] == \
        [None] * (len(fills.steps) - len(fills.fills))
    assert any(s.mark is not None for s in every.steps if s.record.event.event_type is not E.FILLED)
    assert (fills.chain, fills.missing, fills.refused) == (every.chain, every.missing, every.refused)


def test_the_window_includes_both_ends_to_the_microsecond() -> None:
    _tape, events = _lifecycle()
    x1 = next(f for f in assemble("O1", _archive(events), Marks(())).fills if f.exec_id == "X1")
    t = x1.step.record.event.event_time
    us = timedelta(microseconds=1)
    assert in_window(x1, t, t) and in_window(x1, t - us, t + us)
    assert not in_window(x1, t + us, t + 2 * us) and not in_window(x1, t - 2 * us, t - us)
