"""The replace chain: the ClOrdIDs a request and its answer must carry (rules `replace_chain:*`).

Compliance reconstructs an order's ClOrdID chain from these events, so an answer that names
another request, or an orig_cl_ord_id that is no ClOrdID of the order, is refused (a reject
naming another request rejects one never reported pending, and leaves the open one); what a venue
sends (FIX 4.4 Vol. 4: the request's own ClOrdID, OrigClOrdID the last accepted one, a cancel
chained on the open replace) is taken.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from factories import at, make_order_event

from backbone.domain.events import EventType as E
from backbone.domain.events import OrderEvent
from backbone.domain.events import OrderStatus as S
from backbone.domain.order_state import OrderState, apply, complete
from backbone.errors import InvalidOrderTransition

D = Decimal


def event(state: OrderState | None, event_type: E, **fields: object) -> OrderEvent:
    seq = 1 if state is None else state.seq + 1
    return complete(state, make_order_event(event_type=event_type, seq=seq, event_time=at(seq), **fields))


def step(state: OrderState | None, event_type: E, **fields: object) -> OrderState:
    return apply(state, event(state, event_type, **fields))


def refused(state: OrderState, event_type: E, **fields: object) -> str:
    with pytest.raises(InvalidOrderTransition) as info:
        step(state, event_type, **fields)
    return info.value.rule


def acked() -> OrderState:
    """A DAY order of 100, ClOrdID X, acknowledged."""
    return step(step(None, E.SUBMITTED, cl_ord_id="X"), E.ACCEPTED, cl_ord_id="X")


def test_replaced_with_an_orig_cl_ord_id_that_names_no_id_of_the_order_is_refused() -> None:
    pending = step(acked(), E.REPLACE_REQUESTED, cl_ord_id="Y", orig_cl_ord_id="X")
    assert refused(pending, E.REPLACED, cl_ord_id="Y", orig_cl_ord_id="NOPE",
                   order_qty=D(120)) == "replace_chain:orig_cl_ord_id"
    # unsolicited (no request open): the orig_cl_ord_id is still checked
    assert refused(acked(), E.REPLACED, cl_ord_id="Y", orig_cl_ord_id="W",
                   order_qty=D(120)) == "replace_chain:orig_cl_ord_id"
    after = step(pending, E.REPLACED, cl_ord_id="Y", orig_cl_ord_id="X", order_qty=D(120))
    assert (after.status, after.cl_ord_id, after.replace_request) == (S.NEW, "Y", None)
    # the next replace chains on Y, not on X any more
    assert refused(after, E.REPLACE_REQUESTED, cl_ord_id="Z", orig_cl_ord_id="X") == "replace_chain:orig_cl_ord_id"
    assert step(after, E.REPLACE_REQUESTED, cl_ord_id="Z", orig_cl_ord_id="Y").replace_request == "Z"


def test_replaced_whose_cl_ord_id_is_not_the_pending_requests_is_refused() -> None:
    pending = step(acked(), E.REPLACE_REQUESTED, cl_ord_id="Y", orig_cl_ord_id="X")
    assert refused(pending, E.REPLACED, cl_ord_id="Q", orig_cl_ord_id="X",
                   order_qty=D(120)) == "replace_chain:cl_ord_id"
    assert step(pending, E.REPLACE_REJECTED, cl_ord_id="Y", orig_cl_ord_id="X").status is S.NEW
    # a reject naming another ClOrdID rejects a second request, never reported pending (FIX D21)
    second = step(pending, E.REPLACE_REJECTED, cl_ord_id="Q", orig_cl_ord_id="X")
    assert (second.status, second.replace_request) == (S.PENDING_REPLACE, "Y")


def test_cancel_answers_carry_the_cancel_requests_cl_ord_id() -> None:
    pending = step(acked(), E.CANCEL_REQUESTED, cl_ord_id="Y", orig_cl_ord_id="X")
    assert refused(pending, E.CANCELED, cl_ord_id="Q") == "replace_chain:cl_ord_id"
    second = step(pending, E.CANCEL_REJECTED, cl_ord_id="Q")  # a second cancel, never reported pending
    assert (second.status, second.cancel_request) == (S.PENDING_CANCEL, "Y")
    assert step(pending, E.CANCELED, cl_ord_id="Y").status is S.CANCELED
    assert step(pending, E.CANCELED, cl_ord_id="X").status is S.CANCELED  # the venue's own cancel
    assert step(pending, E.CANCEL_REJECTED, cl_ord_id="Y").status is S.NEW


def test_a_cancel_request_chains_on_the_current_or_the_pending_replace_cl_ord_id() -> None:
    assert refused(acked(), E.CANCEL_REQUESTED, cl_ord_id="Y", orig_cl_ord_id="W") == "replace_chain:orig_cl_ord_id"
    replacing = step(acked(), E.REPLACE_REQUESTED, cl_ord_id="Y", orig_cl_ord_id="X")
    for orig in ("X", "Y", None):
        both = step(replacing, E.CANCEL_REQUESTED, cl_ord_id="Z", orig_cl_ord_id=orig)
        assert (both.status, both.cancel_request, both.replace_request) == (S.PENDING_CANCEL, "Z", "Y")
    assert refused(replacing, E.CANCEL_REQUESTED, cl_ord_id="Z", orig_cl_ord_id="W") == "replace_chain:orig_cl_ord_id"
    assert refused(replacing, E.REPLACE_REQUESTED, cl_ord_id="Z", orig_cl_ord_id="Y") == "transition"


def test_a_reject_of_a_request_never_reported_pending_is_not_chained() -> None:
    """"Too late to cancel" for a request the venue never acknowledged: nothing to check it against."""
    filled = step(acked(), E.FILLED, exec_id="F", last_qty=D(100), last_px=D(1))
    assert step(filled, E.CANCEL_REJECTED, cl_ord_id="Y", orig_cl_ord_id="X").status is S.FILLED
    assert step(filled, E.REPLACE_REJECTED, cl_ord_id="Y", orig_cl_ord_id="W").status is S.FILLED


def test_requests_stored_without_their_cl_ord_id_are_not_checked() -> None:
    """An order persisted before request ids were kept: the status says the request is open."""
    pending = step(acked(), E.REPLACE_REQUESTED, cl_ord_id="Y")
    legacy = OrderState(**{**{f: getattr(pending, f) for f in pending.__dataclass_fields__}, "replace_request": None})
    assert step(legacy, E.REPLACED, cl_ord_id="ANY", order_qty=D(120)).status is S.NEW
    both = step(legacy, E.CANCEL_REQUESTED, cl_ord_id="Z")
    assert (both.status, both.replace_request) == (S.PENDING_CANCEL, "")
    after = step(both, E.REPLACED, cl_ord_id="ANY", order_qty=D(120))
    assert (after.status, after.prior_status, after.replace_request) == (S.PENDING_CANCEL, S.NEW, None)
