"""Golden order lifecycles for the tests, written with the Tape."""

from __future__ import annotations

from decimal import Decimal

from tape import Tape

from backbone.domain.events import EventType, Side, TimeInForce
from projections.state import TradingState

E = EventType


def replaced_then_canceled(tape: Tape, order_id: str = "O1") -> None:
    """Submitted, accepted, a partial fill (X1), a replace (qty 100 → 150, price 10 → 10.5)
    after a request, a fill (X2) corrected (X3), a fill (X4) busted (X5), a cancel after a
    request, then a late fill (X6) after the cancel. Exec ids as named when the tape is fresh."""
    c0, c1, c2 = (f"{order_id}-c{n}" for n in range(3))
    tape.order(order_id, "A1", "AAPL", Side.BUY, 100, price=10)
    tape.fill(order_id, 10, 10)
    tape.event(order_id, E.REPLACE_REQUESTED, cl_ord_id=c1, orig_cl_ord_id=c0)
    tape.event(order_id, E.REPLACED, cl_ord_id=c1, orig_cl_ord_id=c0, order_qty=Decimal(150), price=Decimal("10.5"))
    x2 = tape.fill(order_id, 20, "10.4")
    tape.correct(order_id, x2, qty=20, px="10.3")
    x4 = tape.fill(order_id, 5, "10.6")
    tape.bust(order_id, x4)
    tape.event(order_id, E.CANCEL_REQUESTED, cl_ord_id=c2, orig_cl_ord_id=c1)
    tape.event(order_id, E.CANCELED, cl_ord_id=c2, orig_cl_ord_id=c1)
    tape.fill(order_id, 1, "10.2")


def done_for_the_day(orders: dict[str, TimeInForce]) -> TradingState:
    """Each order (of 100, time in force as given) filled 40, then DONE_FOR_DAY; folded on
    partition 0."""
    t = Tape()
    for order_id, tif in orders.items():
        t.order(order_id, "ACC1", "GOLD", Side.BUY, 100, price=10, tif=tif)
        t.fill(order_id, 40, 10)
        t.event(order_id, E.DONE_FOR_DAY)
    state = TradingState()
    for offset, r in enumerate(t.records):
        state.apply_order_event(r, 0, offset)
    return state
