"""Property tests of the order state machine: random flows built with `complete`.

`OrderMachine` drives one order through random valid events (and random, probably invalid,
ones that must be refused without a trace) and checks the invariants after every step against
an independent reference (a Fraction-based average price, the status implied by quantities,
the requests left open by the events so far and the FIX precedence over them). The flows take
every edge of the table: requests before the acknowledgement, a cancel while a replace is
pending, fills completing the order while a request is pending, GTC/GTD orders across
DONE_FOR_DAY, answers in either order.
The replay properties check that folding the same event list from None is deterministic and
that resends interleaved in the stream are recognised by `classify` and change nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from factories import at, make_order_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from backbone.domain.events import EventType as E
from backbone.domain.events import OrderEvent, TimeInForce
from backbone.domain.events import OrderStatus as S
from backbone.domain.order_state import (
    MULTI_DAY,
    PENDING_STATUSES,
    PRECEDENCE,
    TERMINAL_STATUSES,
    LiveFill,
    OrderState,
    accepts,
    apply,
    classify,
    complete,
)
from backbone.errors import InvalidOrderTransition

Draw = Callable[[st.SearchStrategy[Any]], Any]
ORDER_ID = "ORD-PROP"
UNIT = Decimal("0.00000001")  # quantities are whole multiples of the wire quantum
MAX_UNITS = 10**14  # order quantities up to 1,000,000
PRICES = st.builds(lambda n, places: Decimal(n).scaleb(-places),
                   st.integers(-10**6, 10**12), st.sampled_from([0, 2, 4, 8]))
#: Refusals a random (not necessarily valid) event may legitimately meet.
EXPECTED_REFUSALS = {"transition", "terminal_order", "overfill", "fok_partial_fill",
                     "unknown_exec_ref", "busted_exec_ref", "replace_chain:cl_ord_id",
                     "replace_chain:orig_cl_ord_id"}
NO_EXEC_ID = (E.CANCEL_REJECTED, E.REPLACE_REJECTED)  # OrderCancelReject has no ExecID
ENDINGS = frozenset({E.CANCELED, E.EXPIRED, E.DONE_FOR_DAY, E.REJECTED})
REQUESTS = (E.CANCEL_REQUESTED, E.REPLACE_REQUESTED)


def units(qty: Decimal) -> int:
    return int(qty / UNIT)


def qty_between(draw: Draw, low: int, high: int) -> Decimal:
    drawn: int = draw(st.integers(low, high))
    return drawn * UNIT


def live(state: OrderState) -> list[LiveFill]:
    return [x for x in state.fills if not x.busted]


def applicable(state: OrderState | None) -> list[E]:
    """Event types that have a valid draft in `state`."""
    if state is None:
        return [E.SUBMITTED, E.ACCEPTED]
    room = state.order_qty - state.cum_qty
    out = []
    for event_type in E:
        if not accepts(state, event_type):
            continue
        if event_type is E.FILLED and room <= 0:
            continue
        if event_type in (E.TRADE_CANCELED, E.TRADE_CORRECTED) and not live(state):
            continue
        out.append(event_type)
    return out


def choose_type(draw: Draw, options: list[E]) -> E:
    """An applicable event type, mostly one that keeps the order alive (for longer flows)."""
    alive = [t for t in options if t not in ENDINGS]
    pool = alive if alive and draw(st.integers(0, 3)) > 0 else options
    chosen: E = draw(st.sampled_from(pool))
    return chosen


def build_draft(draw: Draw, state: OrderState | None, event_type: E, n: int,
                loose: bool = False) -> OrderEvent:
    """A draft of `event_type` for `state`; valid unless `loose` (then anything plausible)."""
    fields: dict[str, Any] = {
        "order_id": ORDER_ID, "event_type": event_type, "seq": 0, "event_id": f"{ORDER_ID}-{n}",
        "event_time": at(n), "exec_id": None if event_type in NO_EXEC_ID else f"X{n}",
    }
    if state is not None:
        fields |= chain_ids(draw, state, event_type, n, loose)
    if state is None or event_type in (E.SUBMITTED, E.ACCEPTED):
        fields |= {"order_qty": qty_between(draw, 1, MAX_UNITS), "price": draw(PRICES),
                   "time_in_force": draw(st.sampled_from(list(TimeInForce)))}
        return make_order_event(**fields)
    room = units(state.order_qty - state.cum_qty)
    if event_type is E.FILLED:
        if loose:
            qty = qty_between(draw, 1, units(state.order_qty) + 1)
        elif state.time_in_force is TimeInForce.FOK:
            qty = room * UNIT
        else:
            qty = qty_between(draw, 1, max(1, room // draw(st.sampled_from([1, 3, 20]))))
        fields |= {"last_qty": qty, "last_px": draw(PRICES)}
    elif event_type in (E.TRADE_CANCELED, E.TRADE_CORRECTED):
        refs = [ref for x in (state.fills if loose else live(state))
                for ref in (x.exec_id, *x.restated_by)]
        fields["exec_ref_id"] = draw(st.sampled_from([*refs, "NOPE"] if loose else refs))
        target = next((x for x in state.fills if x.exec_id == fields["exec_ref_id"]
                       or fields["exec_ref_id"] in x.restated_by), None)
        ceiling = room + (units(target.qty) if target else 0)
        fields |= {"last_qty": qty_between(draw, 1, max(ceiling + int(loose), 1)),
                   "last_px": draw(PRICES)}
    elif event_type is E.REPLACED:
        fields |= {"order_qty": qty_between(draw, 1, MAX_UNITS), "price": draw(PRICES)}
    return make_order_event(**fields)


def chain_ids(draw: Draw, state: OrderState, event_type: E, n: int, loose: bool) -> dict[str, Any]:
    """cl_ord_id and orig_cl_ord_id as a venue sends them (any id of the order if `loose`)."""
    if loose:
        ids = [state.cl_ord_id, state.cancel_request, state.replace_request, f"CL-{n}"]
        return {"cl_ord_id": draw(st.sampled_from([i for i in ids if i])),
                "orig_cl_ord_id": draw(st.sampled_from([None, *ids]))}
    if event_type in REQUESTS:
        origs = [None, state.cl_ord_id]
        if event_type is E.CANCEL_REQUESTED and state.replace_request:
            origs.append(state.replace_request)  # chained on the open replace
        return {"cl_ord_id": f"CL-{n}", "orig_cl_ord_id": draw(st.sampled_from(origs))}
    request = {E.REPLACED: state.replace_request, E.REPLACE_REJECTED: state.replace_request,
               E.CANCEL_REJECTED: state.cancel_request, E.CANCELED: state.cancel_request}.get(event_type)
    return {"cl_ord_id": request or state.cl_ord_id,
            "orig_cl_ord_id": draw(st.sampled_from([None, state.cl_ord_id]))}


def reference_requests(events: list[OrderEvent]) -> tuple[str | None, str | None]:
    """The ClOrdIDs of the cancel and replace requests the events leave open, by hand."""
    cancel = replace = None
    for e in events:
        if e.event_type is E.CANCEL_REQUESTED:
            cancel = e.cl_ord_id
        elif e.event_type is E.REPLACE_REQUESTED:
            replace = e.cl_ord_id
        elif e.event_type is E.REPLACED:
            replace = None
        # a reject naming another ClOrdID rejects a second request, never reported pending (D21)
        elif e.event_type is E.REPLACE_REJECTED and e.cl_ord_id == replace:
            replace = None
        elif e.event_type is E.CANCEL_REJECTED and e.cl_ord_id == cancel:
            cancel = None
        elif e.event_type in ENDINGS:
            cancel = replace = None
    return cancel, replace


def reference_avg_px(fills: list[LiveFill]) -> Decimal:
    """Σ qty·px / Σ qty, half-even to 8 places, by hand with rationals (not the module's code)."""
    if not fills:
        return Decimal(0)
    scaled = (sum(Fraction(x.qty) * Fraction(x.px) for x in fills)
              / sum(Fraction(x.qty) for x in fills) * 10**8)
    low = math.floor(scaled)
    half = scaled - low
    rounded = low + (1 if half > Fraction(1, 2) or (half == Fraction(1, 2) and low % 2) else 0)
    return Decimal(rounded) * UNIT


def working_status(cum: Decimal, qty: Decimal) -> S:
    return S.NEW if cum == 0 else S.FILLED if cum == qty else S.PARTIALLY_FILLED


def check_invariants(state: OrderState, events: list[OrderEvent]) -> None:
    fills = live(state)
    cum = sum((x.qty for x in fills), Decimal(0))
    assert state.cum_qty == cum, "cum_qty = sum of live fills"
    assert 0 <= cum <= state.order_qty, "no overfill"
    own = state.own_status
    assert own not in PENDING_STATUSES
    closed = own in TERMINAL_STATUSES and not (own is S.DONE_FOR_DAY and state.time_in_force in MULTI_DAY)
    assert state.leaves_qty == (0 if closed else state.order_qty - cum)
    assert state.avg_px == reference_avg_px(fills)
    assert [e.seq for e in events] == list(range(1, len(events) + 1)) and state.seq == len(events)
    assert state.event_ids == {e.event_id for e in events}
    exec_ids = [e.exec_id for e in events if e.exec_id is not None]
    assert len(exec_ids) == len(set(exec_ids)) and state.exec_ids == set(exec_ids)
    if own in (S.PENDING_NEW, S.NEW, S.REJECTED):
        assert cum == 0
    if own in (S.PARTIALLY_FILLED, S.FILLED):
        assert own is working_status(cum, state.order_qty)
    cancel, replace = reference_requests(events)
    assert (state.cancel_request, state.replace_request) == (cancel, replace)
    holding = {own} | ({S.PENDING_CANCEL} if cancel else set()) | ({S.PENDING_REPLACE} if replace else set())
    assert state.status is min(holding, key=PRECEDENCE.index), "reported status = FIX precedence"
    assert (state.prior_status is None) is (state.status is own)
    last = events[-1]
    assert (last.order_status, last.cum_qty, last.leaves_qty, last.avg_px, last.order_qty) == (
        state.status, state.cum_qty, state.leaves_qty, state.avg_px, state.order_qty)
    assert state.first_event_time == events[0].event_time
    assert state.last_event_time == last.event_time


def replay(events: list[OrderEvent]) -> OrderState:
    state: OrderState | None = None
    for event in events:
        state = apply(state, event)
    assert state is not None
    return state


class OrderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state: OrderState | None = None
        self.events: list[OrderEvent] = []

    def _accept(self, event: OrderEvent) -> None:
        before = self.state
        assert classify(before, event) == "apply"
        for name, wrong in (("cum_qty", event.cum_qty + UNIT), ("leaves_qty", event.leaves_qty
                                                                + UNIT)):
            with pytest.raises(InvalidOrderTransition) as info:
                apply(before, event.replace(**{name: wrong}))
            assert info.value.rule == f"field_mismatch:{name}"
        self.state = apply(before, event)
        self.events.append(event)
        assert classify(self.state, event) == "duplicate"

    @initialize(data=st.data())
    def create(self, data: st.DataObject) -> None:
        event_type = data.draw(st.sampled_from([E.SUBMITTED, E.ACCEPTED]))
        self._accept(complete(None, build_draft(data.draw, None, event_type, 0)))

    @rule(data=st.data())
    def valid_event(self, data: st.DataObject) -> None:
        options = applicable(self.state)
        if options:
            event_type = choose_type(data.draw, options)
            draft = build_draft(data.draw, self.state, event_type, len(self.events))
            self._accept(complete(self.state, draft))

    @rule(data=st.data())
    def arbitrary_event(self, data: st.DataObject) -> None:
        event_type = data.draw(st.sampled_from([t for t in E if t is not E.SUBMITTED]))
        draft = build_draft(data.draw, self.state, event_type, len(self.events), loose=True)
        try:
            event = complete(self.state, draft)
        except InvalidOrderTransition as exc:
            assert exc.rule in EXPECTED_REFUSALS, exc
            assert exc.order_id == ORDER_ID
            return
        self._accept(event)

    @rule(data=st.data())
    def resend(self, data: st.DataObject) -> None:
        event = data.draw(st.sampled_from(self.events))
        assert classify(self.state, event) == "duplicate"
        with pytest.raises(InvalidOrderTransition, match="duplicate_event"):
            apply(self.state, event)

    @invariant()
    def invariants_hold(self) -> None:
        assert self.state is not None
        check_invariants(self.state, self.events)


OrderMachine.TestCase.settings = settings(
    max_examples=80, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestOrderMachine = OrderMachine.TestCase


@st.composite
def flows(draw: Draw, max_events: int = 25) -> list[OrderEvent]:
    """A valid event list of one order, built with `complete`."""
    state: OrderState | None = None
    events: list[OrderEvent] = []
    for n in range(draw(st.integers(1, max_events))):
        options = applicable(state)
        if not options:
            break
        event = complete(state, build_draft(draw, state, choose_type(draw, options), n))
        state = apply(state, event)
        events.append(event)
    return events


PROPERTY = settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(flows())
def test_replaying_the_same_events_gives_the_same_state(events: list[OrderEvent]) -> None:
    first, second = replay(events), replay(list(events))
    assert first == second
    check_invariants(first, events)


@PROPERTY
@given(flows(), st.data())
def test_resends_in_the_stream_are_skipped(events: list[OrderEvent], data: st.DataObject) -> None:
    stream: list[OrderEvent] = []
    for i, event in enumerate(events):
        stream.append(event)
        if data.draw(st.booleans()):
            stream.append(data.draw(st.sampled_from(events[: i + 1])))
    state: OrderState | None = None
    applied = 0
    for event in stream:
        if classify(state, event) == "apply":
            state = apply(state, event)
            applied += 1
    assert applied == len(events)
    assert state == replay(events)
