"""Unit tests of the order state machine: every edge of the issue and every rule id."""

from __future__ import annotations

from decimal import Decimal

import pytest
from factories import at, make_order_event

from backbone.domain.events import EventType as E
from backbone.domain.events import OrderEvent, OrderType, Side, TimeInForce
from backbone.domain.events import OrderStatus as S
from backbone.domain.order_state import (
    ANSWERS_ONLY,
    PENDING_STATUSES,
    PRECEDENCE,
    TERMINAL_STATUSES,
    TRANSITIONS,
    OrderState,
    accepts,
    apply,
    classify,
    complete,
    reported_status,
)
from backbone.domain.plain import to_plain
from backbone.errors import InvalidOrderTransition

D = Decimal


# -- helpers -------------------------------------------------------------------------------

def draft(state: OrderState | None, event_type: E, **fields: object) -> OrderEvent:
    seq = 1 if state is None else state.seq + 1
    fields.setdefault("event_time", at(seq))
    return make_order_event(event_type=event_type, seq=seq, **fields)


def step(state: OrderState | None, event_type: E, **fields: object) -> OrderState:
    return apply(state, complete(state, draft(state, event_type, **fields)))


def fill(state: OrderState, qty: str, px: str = "10", exec_id: str | None = None) -> OrderState:
    return step(state, E.FILLED, exec_id=exec_id or f"X{state.seq + 1}", last_qty=D(qty),
                last_px=D(px))


def new_order(qty: str = "100", tif: TimeInForce = TimeInForce.DAY) -> OrderState:
    return step(step(None, E.SUBMITTED, order_qty=D(qty), time_in_force=tif), E.ACCEPTED)


def rule_of(state: OrderState | None, event: OrderEvent) -> str:
    with pytest.raises(InvalidOrderTransition) as info:
        apply(state, event)
    assert info.value.order_id == event.order_id
    return info.value.rule


def completed_rule(state: OrderState | None, event_type: E, **fields: object) -> str:
    """The rule `complete` (and so `apply`) refuses a draft with."""
    with pytest.raises(InvalidOrderTransition) as info:
        complete(state, draft(state, event_type, **fields))
    return info.value.rule


def state_in(status: S) -> OrderState:
    """An order of 100 in `status`, with a live fill of 40 where the status allows one."""
    if status is S.PENDING_NEW:
        return step(None, E.SUBMITTED)
    if status is S.REJECTED:
        return step(step(None, E.SUBMITTED), E.REJECTED)
    if status is S.NEW:
        return new_order()
    part = fill(new_order(), "40", exec_id="F1")
    by_event = {S.PARTIALLY_FILLED: None, S.FILLED: E.FILLED, S.DONE_FOR_DAY: E.DONE_FOR_DAY,
                S.CANCELED: E.CANCELED, S.EXPIRED: E.EXPIRED,
                S.PENDING_CANCEL: E.CANCEL_REQUESTED, S.PENDING_REPLACE: E.REPLACE_REQUESTED}
    event_type = by_event[status]
    if event_type is None:
        return part
    if event_type is E.FILLED:
        return fill(part, "60")
    return step(part, event_type)


def typical_draft(state: OrderState, event_type: E) -> OrderEvent:
    """A plausible draft of `event_type` for `state`: the inputs its type needs."""
    live = [x for x in state.fills if not x.busted]
    fields: dict[str, object] = {"exec_id": f"T{state.seq + 1}"}
    if event_type is E.FILLED:
        fields |= {"last_qty": D("10"), "last_px": D("11")}
    elif event_type in (E.TRADE_CANCELED, E.TRADE_CORRECTED):
        fields |= {"exec_ref_id": live[0].exec_id if live else "NONE",
                   "last_qty": live[0].qty if live else D(1), "last_px": D("12")}
    elif event_type is E.REPLACED:
        fields |= {"order_qty": D("120"), "price": D("151")}
    return draft(state, event_type, **fields)


# -- the table -----------------------------------------------------------------------------

OWN = [s for s in S if s not in PENDING_STATUSES]  # the table is keyed by the order's own status
ALL_PAIRS = [(s, t) for s in OWN for t in E]
DEAD = {(s, t) for s in (S.NEW, S.REJECTED) for t in (E.TRADE_CANCELED, E.TRADE_CORRECTED)}


def test_transitions_is_read_only_and_well_typed() -> None:
    with pytest.raises(TypeError):
        TRANSITIONS[(S.NEW, E.SUBMITTED)] = S.NEW  # type: ignore[index]
    for (status, event_type), target in TRANSITIONS.items():
        assert isinstance(status, S) and isinstance(event_type, E)
        assert isinstance(target, S) or callable(target)
    assert {S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED, S.DONE_FOR_DAY} == TERMINAL_STATUSES


def test_rejected_only_from_pending_new_and_submitted_never_in_table() -> None:
    assert {s for s, t in TRANSITIONS if t is E.REJECTED} == {S.PENDING_NEW}
    assert not any(t is E.SUBMITTED for _, t in TRANSITIONS)


@pytest.mark.parametrize(("status", "event_type"), [p for p in ALL_PAIRS if p not in TRANSITIONS],
                         ids=lambda v: str(v))
def test_pairs_missing_from_the_table_are_refused(status: S, event_type: E) -> None:
    state = state_in(status)
    assert not accepts(state, event_type)
    with pytest.raises(InvalidOrderTransition) as info:
        complete(state, typical_draft(state, event_type))
    assert info.value.rule == ("terminal_order" if status in TERMINAL_STATUSES else "transition")


@pytest.mark.parametrize(("status", "event_type"), list(TRANSITIONS), ids=lambda v: str(v))
def test_every_pair_in_the_table_is_reachable(status: S, event_type: E) -> None:
    state = state_in(status)
    if (status, event_type) in ANSWERS_ONLY:  # only as the answer to an open replace request
        assert not accepts(state, event_type)
        assert completed_rule(state, event_type, order_qty=D(120)) in ("transition", "terminal_order")
        state = step(state, E.REPLACE_REQUESTED)
    assert accepts(state, event_type)
    event = typical_draft(state, event_type)
    if (status, event_type) in DEAD:  # no live fill can exist in NEW or REJECTED
        with pytest.raises(InvalidOrderTransition, match="unknown_exec_ref"):
            complete(state, event)
        return
    after = apply(state, complete(state, event))
    target = TRANSITIONS[(status, event_type)]
    if isinstance(target, S):
        assert after.own_status is target
    assert after.seq == state.seq + 1
    assert after.status is reported_status(after.own_status, after.cancel_request is not None,
                                           after.replace_request is not None)


def test_reported_status_is_the_fix_precedence_over_what_holds() -> None:
    for own in OWN:
        for cancel in (False, True):
            for replace in (False, True):
                holding = {own} | ({S.PENDING_CANCEL} if cancel else set()) | (
                    {S.PENDING_REPLACE} if replace else set())
                assert reported_status(own, cancel, replace) is min(holding, key=PRECEDENCE.index)
    assert set(PRECEDENCE) == set(S)


def test_a_second_request_of_a_kind_is_refused_while_one_is_open() -> None:
    cancel = step(new_order(), E.CANCEL_REQUESTED, cl_ord_id="C2")
    assert completed_rule(cancel, E.CANCEL_REQUESTED, cl_ord_id="C3") == "transition"
    assert completed_rule(cancel, E.REPLACE_REQUESTED, cl_ord_id="C3") == "transition"
    replace = step(new_order(), E.REPLACE_REQUESTED, cl_ord_id="R2")
    assert completed_rule(replace, E.REPLACE_REQUESTED, cl_ord_id="R3") == "transition"
    both = step(replace, E.CANCEL_REQUESTED, cl_ord_id="C3")
    assert (both.status, both.own_status, both.cancel_request, both.replace_request) == (
        S.PENDING_CANCEL, S.NEW, "C3", "R2")


# -- creation and sequencing ---------------------------------------------------------------

def test_submitted_creates_a_pending_new_order() -> None:
    event = make_order_event(order_qty=D("250"), price=D("9.5"))
    state = apply(None, event)
    assert (state.status, state.cum_qty, state.leaves_qty, state.avg_px, state.seq) == (
        S.PENDING_NEW, D(0), D("250"), D(0), 1)
    assert state.first_event_time == state.last_event_time == event.event_time
    assert state.event_ids == {event.event_id} and state.prior_status is None


def test_accepted_may_create_an_order_for_venues_that_skip_pending_new() -> None:
    state = step(None, E.ACCEPTED)
    assert state.status is S.NEW and state.leaves_qty == D(100)


@pytest.mark.parametrize("event_type", [t for t in E if t not in (E.SUBMITTED, E.ACCEPTED)])
def test_only_submitted_or_accepted_creates_an_order(event_type: E) -> None:
    event = make_order_event(event_type=event_type, exec_id="X", exec_ref_id="Y",
                             last_qty=D(1), last_px=D(1))
    assert rule_of(None, event) == "unknown_order"
    with pytest.raises(InvalidOrderTransition, match="unknown_order"):
        classify(None, event)


def test_submitted_is_only_the_first_event() -> None:
    assert completed_rule(new_order(), E.SUBMITTED) == "transition"


def test_first_event_must_have_seq_1() -> None:
    assert rule_of(None, make_order_event(seq=2)) == "sequence_gap"
    assert rule_of(None, make_order_event(seq=0)) == "stale_seq"


def test_sequence_gap_and_stale_seq() -> None:
    state = new_order()
    good = complete(state, draft(state, E.CANCEL_REQUESTED))
    assert rule_of(state, good.replace(seq=state.seq + 2)) == "sequence_gap"
    assert rule_of(state, good.replace(seq=state.seq)) == "stale_seq"
    with pytest.raises(InvalidOrderTransition, match="stale_seq"):
        classify(state, good.replace(seq=1))


def test_resent_event_is_a_duplicate_for_classify_and_refused_by_apply() -> None:
    first = make_order_event()
    state = apply(None, first)
    ack = complete(state, draft(state, E.ACCEPTED))
    state = apply(state, ack)
    assert classify(state, first) == "duplicate"
    assert classify(state, ack) == "duplicate"
    assert rule_of(state, ack) == "duplicate_event"
    nxt = complete(state, draft(state, E.CANCEL_REQUESTED))
    assert classify(state, nxt) == "apply"
    assert rule_of(state, nxt.replace(event_id=ack.event_id)) == "event_id_reused"


def test_event_of_another_order_is_refused() -> None:
    state = new_order()
    event = complete(state, draft(state, E.CANCEL_REQUESTED)).replace(order_id="ORD-2")
    assert rule_of(state, event) == "order_id_mismatch"


def test_classify_raises_on_violations_and_never_changes_state() -> None:
    state = new_order()
    overfill = complete(state, draft(state, E.FILLED, exec_id="A", last_qty=D(40),
                                     last_px=D(1))).replace(last_qty=D(101))
    with pytest.raises(InvalidOrderTransition, match="overfill"):
        classify(state, overfill)
    assert apply(state, overfill.replace(last_qty=D(40))).cum_qty == D(40)


# -- fills, pending requests and rejects ---------------------------------------------------

def test_partial_and_full_fills() -> None:
    state = fill(new_order(), "30", "10")
    assert (state.status, state.cum_qty, state.leaves_qty, state.avg_px) == (
        S.PARTIALLY_FILLED, D(30), D(70), D(10))
    state = fill(state, "70", "20")
    assert (state.status, state.cum_qty, state.leaves_qty, state.avg_px) == (
        S.FILLED, D(100), D(0), D(17))


def test_fill_before_ack_from_pending_new() -> None:
    state = step(None, E.SUBMITTED)
    assert fill(state, "10").status is S.PARTIALLY_FILLED


@pytest.mark.parametrize(("request_type", "pending"), [
    (E.CANCEL_REQUESTED, S.PENDING_CANCEL), (E.REPLACE_REQUESTED, S.PENDING_REPLACE)])
def test_fill_while_pending_stays_pending_and_updates_prior(request_type: E, pending: S) -> None:
    state = step(new_order(), request_type)
    assert (state.status, state.prior_status) == (pending, S.NEW)
    state = fill(state, "25")
    assert (state.status, state.prior_status, state.leaves_qty) == (
        pending, S.PARTIALLY_FILLED, D(75))
    reject = E.CANCEL_REJECTED if pending is S.PENDING_CANCEL else E.REPLACE_REJECTED
    back = step(state, reject)
    assert (back.status, back.prior_status, back.cum_qty, back.leaves_qty) == (
        S.PARTIALLY_FILLED, None, D(25), D(75))
    done = fill(state, "75")  # the pending request still takes precedence over filled
    assert (done.status, done.prior_status, done.leaves_qty) == (pending, S.FILLED, D(0))
    settled = step(done, reject)  # "too late to cancel"
    assert (settled.status, settled.prior_status, settled.leaves_qty) == (S.FILLED, None, D(0))
    assert step(settled, reject).status is S.FILLED  # a reject of a request never reported


def test_cancel_reject_returns_to_prior_status() -> None:
    part = fill(new_order(), "10")
    state = step(part, E.CANCEL_REQUESTED)
    assert state.prior_status is S.PARTIALLY_FILLED
    assert step(state, E.CANCEL_REJECTED).status is S.PARTIALLY_FILLED
    assert step(step(new_order(), E.CANCEL_REQUESTED), E.CANCEL_REJECTED).status is S.NEW


def test_reject_reported_with_wrong_status_is_refused() -> None:
    state = step(fill(new_order(), "10"), E.REPLACE_REQUESTED)
    event = complete(state, draft(state, E.REPLACE_REJECTED)).replace(order_status=S.NEW)
    assert rule_of(state, event) == "field_mismatch:order_status"


@pytest.mark.parametrize("closed", [E.CANCELED, E.EXPIRED, E.DONE_FOR_DAY])
def test_late_fill_after_the_order_closed(closed: E) -> None:
    state = step(fill(new_order(), "40", "10"), closed)
    assert (state.cum_qty, state.leaves_qty) == (D(40), D(0))
    late = fill(state, "60", "20")
    assert (late.status, late.cum_qty, late.leaves_qty, late.avg_px) == (
        state.status, D(100), D(0), D(16))
    assert completed_rule(state, E.FILLED, exec_id="Z", last_qty=D("60.00000001"),
                          last_px=D(1)) == "overfill"


def test_replace_down_to_cum_qty_fills_the_order() -> None:
    state = fill(new_order(), "40")
    event = complete(state, draft(state, E.REPLACED, order_qty=D(30)))
    assert event.order_qty == D(40)  # amended to cum_qty, as FIX D11/D12
    after = apply(state, event)
    assert (after.status, after.order_qty, after.leaves_qty) == (S.FILLED, D(40), D(0))
    equal = apply(state, complete(state, draft(state, E.REPLACED, order_qty=D(40))))
    assert (equal.status, equal.leaves_qty) == (S.FILLED, D(0))
    raw = event.replace(order_qty=D(30), leaves_qty=D(0))
    assert rule_of(state, raw) == "replace_below_cum"


def test_replace_changes_terms_and_keeps_fills() -> None:
    state = step(fill(new_order(), "40", "10"), E.REPLACE_REQUESTED, cl_ord_id="CL-2")
    after = step(state, E.REPLACED, order_qty=D(200), price=D("149"), cl_ord_id="CL-2",
                 order_type=OrderType.STOP_LIMIT, stop_price=D("148"))
    assert (after.status, after.order_qty, after.leaves_qty, after.price, after.stop_price,
            after.order_type, after.cl_ord_id, after.avg_px) == (
        S.PARTIALLY_FILLED, D(200), D(160), D(149), D(148), OrderType.STOP_LIMIT, "CL-2", D(10))
    # later events must carry the new terms
    event = complete(after, draft(after, E.CANCEL_REQUESTED))
    assert (event.order_qty, event.price, event.order_type) == (D(200), D(149),
                                                              OrderType.STOP_LIMIT)
    assert rule_of(after, event.replace(price=D("150.25"))) == "field_mismatch:price"


def test_filled_order_may_be_reopened_by_a_replace_that_increases_qty() -> None:
    state = step(fill(new_order(), "100"), E.REPLACE_REQUESTED)
    assert (state.status, state.prior_status, state.leaves_qty) == (
        S.PENDING_REPLACE, S.FILLED, D(0))
    assert step(state, E.REPLACE_REJECTED).status is S.FILLED
    reopened = step(state, E.REPLACED, order_qty=D(150))
    assert (reopened.status, reopened.leaves_qty) == (S.PARTIALLY_FILLED, D(50))


@pytest.mark.parametrize("tif", [TimeInForce.IOC, TimeInForce.FOK])
def test_ioc_and_fok_kill_is_an_unsolicited_cancel(tif: TimeInForce) -> None:
    killed = step(new_order(tif=tif), E.CANCELED)
    assert (killed.status, killed.leaves_qty, killed.cum_qty) == (S.CANCELED, D(0), D(0))


def test_ioc_partial_fill_then_kill() -> None:
    state = step(fill(new_order(tif=TimeInForce.IOC), "30"), E.CANCELED)
    assert (state.status, state.cum_qty, state.leaves_qty) == (S.CANCELED, D(30), D(0))


def test_fok_may_not_be_partially_filled() -> None:
    state = new_order(tif=TimeInForce.FOK)
    assert completed_rule(state, E.FILLED, exec_id="A", last_qty=D(99),
                          last_px=D(1)) == "fok_partial_fill"
    assert fill(state, "100").status is S.FILLED


def test_expired_and_done_for_day_zero_the_leaves() -> None:
    part = fill(new_order(), "10")
    for event_type, status in ((E.EXPIRED, S.EXPIRED), (E.DONE_FOR_DAY, S.DONE_FOR_DAY)):
        state = step(part, event_type)
        assert (state.status, state.cum_qty, state.leaves_qty) == (status, D(10), D(0))
    assert step(step(None, E.SUBMITTED), E.EXPIRED).status is S.EXPIRED


def test_rejected_only_from_pending_new() -> None:
    state = step(step(None, E.SUBMITTED), E.REJECTED)
    assert (state.status, state.leaves_qty) == (S.REJECTED, D(0))
    assert completed_rule(new_order(), E.REJECTED) == "transition"


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_terminal_orders_refuse_new_life(status: S) -> None:
    assert completed_rule(state_in(status), E.ACCEPTED) == "terminal_order"


def test_fill_on_filled_order_is_refused() -> None:
    state = fill(new_order(), "100")
    assert completed_rule(state, E.FILLED, exec_id="Z", last_qty=D(1),
                          last_px=D(1)) == "terminal_order"


def test_overfill() -> None:
    state = fill(new_order(), "60")
    assert completed_rule(state, E.FILLED, exec_id="Z", last_qty=D(41),
                          last_px=D(1)) == "overfill"


# -- busts and corrections -----------------------------------------------------------------

def test_bust_restates_quantities_and_status() -> None:
    state = fill(fill(new_order(), "40", "10", "A"), "60", "20", "B")
    assert state.status is S.FILLED
    state = step(state, E.TRADE_CANCELED, exec_id="C", exec_ref_id="B")
    assert (state.status, state.cum_qty, state.leaves_qty, state.avg_px) == (
        S.PARTIALLY_FILLED, D(40), D(60), D(10))
    assert [x.busted for x in state.fills] == [False, True]
    state = step(state, E.TRADE_CANCELED, exec_id="D", exec_ref_id="A")
    assert (state.status, state.cum_qty, state.leaves_qty, state.avg_px) == (
        S.NEW, D(0), D(100), D(0))
    assert fill(state, "100", "5").status is S.FILLED  # busted quantity may be filled again


@pytest.mark.parametrize("closed", [E.CANCELED, E.EXPIRED, E.DONE_FOR_DAY])
def test_bust_on_closed_order_keeps_its_status(closed: E) -> None:
    state = step(fill(new_order(), "40", exec_id="A"), closed)
    after = step(state, E.TRADE_CANCELED, exec_id="B", exec_ref_id="A")
    assert (after.status, after.cum_qty, after.leaves_qty, after.avg_px) == (
        state.status, D(0), D(0), D(0))


def test_a_price_only_correction_does_not_answer_a_pending_replace_of_a_filled_order() -> None:
    state = step(fill(new_order(), "100", exec_id="A"), E.REPLACE_REQUESTED)
    corrected = step(state, E.TRADE_CORRECTED, exec_id="C", exec_ref_id="A", last_qty=D(100), last_px=D(11))
    assert (corrected.status, corrected.prior_status, corrected.avg_px) == (S.PENDING_REPLACE, S.FILLED, D(11))
    reopened = step(corrected, E.REPLACED, order_qty=D(150))  # the venue's answer still applies
    assert (reopened.status, reopened.leaves_qty) == (S.PARTIALLY_FILLED, D(50))
    # a correction that fills the order leaves a pending cancel pending, as a fill would
    partial = step(fill(new_order(), "90", exec_id="P"), E.CANCEL_REQUESTED)
    filled = step(partial, E.TRADE_CORRECTED, exec_id="Q", exec_ref_id="P", last_qty=D(100), last_px=D(10))
    assert (filled.status, filled.prior_status, filled.leaves_qty) == (S.PENDING_CANCEL, S.FILLED, D(0))
    assert completed_rule(filled, E.CANCELED) == "transition"  # no venue cancels a filled order
    assert step(filled, E.CANCEL_REJECTED).status is S.FILLED


def test_bust_while_pending_cancel_stays_pending_and_prior_follows() -> None:
    state = step(fill(new_order(), "40", exec_id="A"), E.CANCEL_REQUESTED)
    state = step(state, E.TRADE_CANCELED, exec_id="B", exec_ref_id="A")
    assert (state.status, state.prior_status, state.leaves_qty) == (
        S.PENDING_CANCEL, S.NEW, D(100))
    assert step(state, E.CANCEL_REJECTED).status is S.NEW


def test_bust_on_rejected_order_keeps_rejected_but_has_nothing_to_bust() -> None:
    state = state_in(S.REJECTED)
    resolver = TRANSITIONS[(S.REJECTED, E.TRADE_CANCELED)]
    assert callable(resolver) and resolver(state, D(0), D(100)) is S.REJECTED
    assert completed_rule(state, E.TRADE_CANCELED, exec_id="B",
                          exec_ref_id="A") == "unknown_exec_ref"


def test_correction_restates_qty_and_price() -> None:
    state = fill(fill(new_order(), "40", "10", "A"), "60", "20", "B")
    down = step(state, E.TRADE_CORRECTED, exec_id="C", exec_ref_id="B", last_qty=D(50),
                last_px=D(22))
    assert (down.status, down.cum_qty, down.leaves_qty, down.avg_px) == (
        S.PARTIALLY_FILLED, D(90), D(10), D("16.66666667"))
    # a later correction may name the correction's exec id (FIX D34)
    up = step(down, E.TRADE_CORRECTED, exec_id="D", exec_ref_id="C", last_qty=D(60),
              last_px=D(20))
    assert (up.status, up.cum_qty, up.leaves_qty, up.avg_px) == (S.FILLED, D(100), D(0), D(16))
    assert completed_rule(up, E.TRADE_CORRECTED, exec_id="E", exec_ref_id="A",
                          last_qty=D(41), last_px=D(1)) == "overfill"
    busted = step(up, E.TRADE_CANCELED, exec_id="F", exec_ref_id="C")
    assert (busted.cum_qty, busted.status) == (D(40), S.PARTIALLY_FILLED)


def test_correction_on_canceled_order_keeps_canceled() -> None:
    state = step(fill(new_order(), "40", "10", "A"), E.CANCELED)
    after = step(state, E.TRADE_CORRECTED, exec_id="B", exec_ref_id="A", last_qty=D(30),
                 last_px=D(11))
    assert (after.status, after.cum_qty, after.leaves_qty, after.avg_px) == (
        S.CANCELED, D(30), D(0), D(11))


def test_bust_or_correction_of_unknown_or_busted_execution() -> None:
    state = fill(new_order(), "40", exec_id="A")
    assert completed_rule(state, E.TRADE_CANCELED, exec_id="B",
                          exec_ref_id="NOPE") == "unknown_exec_ref"
    state = step(state, E.TRADE_CANCELED, exec_id="B", exec_ref_id="A")
    assert completed_rule(state, E.TRADE_CANCELED, exec_id="C",
                          exec_ref_id="A") == "busted_exec_ref"
    assert completed_rule(state, E.TRADE_CORRECTED, exec_id="C", exec_ref_id="A",
                          last_qty=D(1), last_px=D(1)) == "busted_exec_ref"


def test_duplicate_exec_id() -> None:
    state = fill(new_order(), "10", exec_id="A")
    assert completed_rule(state, E.FILLED, exec_id="A", last_qty=D(1),
                          last_px=D(1)) == "duplicate_exec_id"
    assert completed_rule(state, E.TRADE_CANCELED, exec_id="A",
                          exec_ref_id="A") == "duplicate_exec_id"
    acked = step(step(None, E.SUBMITTED), E.ACCEPTED, exec_id="ACK")
    assert completed_rule(acked, E.FILLED, exec_id="ACK", last_qty=D(1),
                          last_px=D(1)) == "duplicate_exec_id"


# -- fields --------------------------------------------------------------------------------

@pytest.mark.parametrize(("event_type", "fields", "rule"), [
    (E.FILLED, {"last_qty": D(1), "last_px": D(1)}, "missing_field:exec_id"),
    (E.FILLED, {"exec_id": "N", "last_px": D(1)}, "missing_field:last_qty"),
    (E.FILLED, {"exec_id": "N", "last_qty": D(1)}, "missing_field:last_px"),
    (E.FILLED, {"exec_id": "N", "last_qty": D(0), "last_px": D(1)}, "bad_value:last_qty"),
    (E.FILLED, {"exec_id": "N", "last_qty": D(-1), "last_px": D(1)}, "bad_value:last_qty"),
    (E.FILLED, {"exec_id": "N", "last_qty": D("NaN"), "last_px": D(1)}, "bad_value:last_qty"),
    (E.FILLED, {"exec_id": "N", "last_qty": D(1), "last_px": D("Infinity")},
     "bad_value:last_px"),
    (E.TRADE_CANCELED, {"exec_id": "B"}, "missing_field:exec_ref_id"),
    (E.TRADE_CANCELED, {"exec_ref_id": "A"}, "missing_field:exec_id"),
    (E.TRADE_CORRECTED, {"exec_id": "B", "exec_ref_id": "A", "last_px": D(1)},
     "missing_field:last_qty"),
    (E.REPLACED, {"order_qty": D(0)}, "bad_value:order_qty"),
])
def test_type_specific_fields(event_type: E, fields: dict[str, object], rule: str) -> None:
    state = fill(new_order(), "10", exec_id="A")
    assert completed_rule(state, event_type, **fields) == rule


def test_negative_prices_are_allowed() -> None:
    state = fill(fill(new_order(), "50", "-37.63"), "50", "-30")
    assert state.avg_px == D("-33.815")


def test_order_terms_are_checked_on_creation_and_replace() -> None:
    assert rule_of(None, make_order_event(order_qty=D(0), leaves_qty=D(0))) == "bad_value:order_qty"
    assert rule_of(None, make_order_event(price=D("NaN"))) == "bad_value:price"
    assert rule_of(None, make_order_event(stop_price=D("-Infinity"))) == "bad_value:stop_price"
    assert apply(None, make_order_event(order_type=OrderType.MARKET, price=None)).price is None
    assert completed_rule(new_order(), E.REPLACED, price=D("sNaN")) == "bad_value:price"


@pytest.mark.parametrize(("name", "wrong"), [
    ("order_status", S.FILLED), ("cum_qty", D(11)), ("leaves_qty", D(89)),
    ("avg_px", D("10.00000001")), ("order_qty", D(101)), ("price", D(1)), ("price", None),
    ("stop_price", D(1)), ("symbol", "MSFT"), ("account", "ACC-2"), ("side", Side.SELL),
    ("order_type", OrderType.MARKET), ("time_in_force", TimeInForce.GTC),
    ("cum_qty", D("NaN")),
])
def test_reported_fields_must_match(name: str, wrong: object) -> None:
    state = new_order()
    event = complete(state, draft(state, E.FILLED, exec_id="A", last_qty=D(10),
                                  last_px=D(10)))
    assert apply(state, event).cum_qty == D(10)
    assert rule_of(state, event.replace(**{name: wrong})) == f"field_mismatch:{name}"


def test_reported_values_compare_by_value_and_avg_px_after_quantizing() -> None:
    state = fill(new_order(), "30", "100")
    event = complete(state, draft(state, E.FILLED, exec_id="B", last_qty=D(60), last_px=D(101)))
    assert event.avg_px == D("100.66666667")
    assert apply(state, event.replace(avg_px=D("100.666666666666"), cum_qty=D("90.000"),
                                      leaves_qty=D("10.00000000"))).cum_qty == D(90)
    assert rule_of(state, event.replace(avg_px=D("100.6667"))) == "field_mismatch:avg_px"


def test_avg_px_rounds_half_even_exactly_once() -> None:
    # 10.000000005 -> 10.00000000 (even), 10.000000015 -> 10.00000002 (even)
    down = fill(fill(new_order("2"), "1", "10.00000001"), "1", "10")
    up = fill(fill(new_order("2"), "1", "10.00000003"), "1", "10")
    assert (down.avg_px, up.avg_px) == (D("10.00000000"), D("10.00000002"))
    # (1 * 1 + 2 * 0.00000001) / 3 = 0.33333334 exactly rounded (a twice-rounded quotient
    # would agree here; the half-even rule is what this pins)
    odd = fill(fill(new_order("3"), "1", "1"), "2", "0.00000001")
    assert odd.avg_px == D("0.33333334")


def test_large_quantities_stay_exact() -> None:
    qty = D("999999999999999999999999999999.99999999")  # 38 digits, the wire maximum
    state = step(step(None, E.SUBMITTED, order_qty=qty), E.ACCEPTED)
    state = fill(state, "0.00000001", "99999999999999999999999999.99999999")
    state = fill(state, "999999999999999999999999999999.99999998", "0.00000001")
    assert state.status is S.FILLED and state.cum_qty == qty


def test_implicit_rounding_is_refused() -> None:
    huge = D("1" * 60 + ".12345678")
    state = step(step(None, E.SUBMITTED, order_qty=huge * 2), E.ACCEPTED)
    assert completed_rule(state, E.FILLED, exec_id="A", last_qty=huge,
                          last_px=D("3" * 40 + ".1")) == "arithmetic"


def test_complete_carries_terms_and_sets_seq() -> None:
    state = fill(new_order(), "10")
    event = complete(state, make_order_event(event_type=E.CANCEL_REQUESTED, seq=77,
                                             order_qty=D(1), price=None, symbol="X"))
    assert (event.seq, event.order_qty, event.price, event.symbol, event.order_status) == (
        state.seq + 1, D(100), D("150.25"), "AAPL", S.PENDING_CANCEL)
    assert apply(state, event).status is S.PENDING_CANCEL


def test_apply_never_modifies_the_input_state() -> None:
    """Neither an applied event nor a refused one changes the state passed in: compared with its
    plain form taken before (frozen dataclasses can still share mutable parts by mistake)."""
    state = fill(new_order(), "10")
    before = to_plain(state)
    accepted = apply(state, complete(state, draft(state, E.FILLED, exec_id="Y", last_qty=D(5), last_px=D(2))))
    assert accepted.cum_qty == D(15) and accepted.seq == state.seq + 1
    overfill = complete(state, draft(state, E.FILLED, exec_id="Z", last_qty=D(1), last_px=D(1)))
    with pytest.raises(InvalidOrderTransition):
        apply(state, overfill.replace(last_qty=D(91), cum_qty=D(101), leaves_qty=D(0)))
    assert to_plain(state) == before


def test_a_signaling_nan_reported_is_a_field_mismatch_not_a_decimal_error() -> None:
    state = new_order()
    event = complete(state, draft(state, E.FILLED, exec_id="N", last_qty=D(5), last_px=D(2)))
    assert rule_of(state, event.replace(cum_qty=D("sNaN"))) == "field_mismatch:cum_qty"


# -- across days -----------------------------------------------------------------------------

@pytest.mark.parametrize("tif", list(TimeInForce))
def test_only_gtc_and_gtd_orders_work_again_after_done_for_day(tif: TimeInForce) -> None:
    state = step(fill(new_order(tif=tif), "40") if tif is not TimeInForce.FOK else new_order(tif=tif),
                 E.DONE_FOR_DAY)
    multi_day = tif in (TimeInForce.GTC, TimeInForce.GTD)
    assert (state.status, state.is_terminal) == (S.DONE_FOR_DAY, not multi_day)
    assert state.leaves_qty == (state.order_qty - state.cum_qty if multi_day else D(0))
    if not multi_day:
        assert completed_rule(state, E.CANCEL_REQUESTED) == "terminal_order"
        return
    for event_type in (E.CANCEL_REQUESTED, E.REPLACE_REQUESTED, E.CANCELED, E.EXPIRED, E.DONE_FOR_DAY):
        assert accepts(state, event_type)
    pending = step(state, E.CANCEL_REQUESTED, cl_ord_id="C2")
    assert (pending.status, pending.prior_status, pending.leaves_qty) == (S.PENDING_CANCEL, S.DONE_FOR_DAY, D(60))
    next_day = fill(state, "10")
    assert (next_day.status, next_day.leaves_qty) == (S.PARTIALLY_FILLED, D(50))
