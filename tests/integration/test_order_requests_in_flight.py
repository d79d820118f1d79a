"""FIX 4.4 venue sequences with requests in flight, through the real broker to the projector.

Requests before the acknowledgement, a cancel while a replace is pending, a fill that completes
the order while a request is pending, a GTC order across DONE_FOR_DAY: none is dead-lettered,
and each orders row reports the status FIX's OrdStatus precedence puts it in. A broken replace
chain is dead-lettered with its rule.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from support import project, publish, rows
from tape import Tape

from backbone.domain import order_state
from backbone.domain.events import EventType as E
from backbone.domain.events import Side, TimeInForce
from backbone.settings import Settings

pytestmark = pytest.mark.integration
D = Decimal


def venue_sequences() -> Tape:
    t = Tape()
    # cancel right after new: pending cancel survives the ack, then the cancel is accepted
    t.order("A1", "ACC1", "FLY", Side.BUY, 100, price=10, accept=False)
    t.event("A1", E.CANCEL_REQUESTED, cl_ord_id="A1-c1", orig_cl_ord_id="A1-c0")
    t.event("A1", E.ACCEPTED)
    t.event("A1", E.CANCELED, cl_ord_id="A1-c1", orig_cl_ord_id="A1-c0")
    # a cancel chained on a pending replace; the replace is answered first, the cancel still open
    t.order("A2", "ACC1", "FLY", Side.BUY, 100, price=10)
    t.fill("A2", 40, 10)
    t.event("A2", E.REPLACE_REQUESTED, cl_ord_id="A2-c1", orig_cl_ord_id="A2-c0")
    t.event("A2", E.CANCEL_REQUESTED, cl_ord_id="A2-c2", orig_cl_ord_id="A2-c1")
    t.event("A2", E.REPLACED, cl_ord_id="A2-c1", orig_cl_ord_id="A2-c0", order_qty=D(80), price=D(10))
    # a fill completes the order while a replace to increase is pending; the replace re-opens it
    t.order("A3", "ACC1", "FLY", Side.SELL, 100, price=10)
    t.event("A3", E.REPLACE_REQUESTED, cl_ord_id="A3-c1")
    t.fill("A3", 100, 11)
    t.event("A3", E.REPLACED, cl_ord_id="A3-c1", orig_cl_ord_id="A3-c0", order_qty=D(150), price=D(10))
    # the same, still unanswered
    t.order("A4", "ACC1", "FLY", Side.SELL, 50, price=10)
    t.event("A4", E.REPLACE_REQUESTED, cl_ord_id="A4-c1")
    t.fill("A4", 50, 12)
    # a GTC order done for the day, filled the next day, done for the day again
    t.order("A5", "ACC1", "FLY", Side.BUY, 100, price=10, tif=TimeInForce.GTC)
    t.fill("A5", 30, 10)
    t.event("A5", E.DONE_FOR_DAY)
    t.fill("A5", 20, 10)
    t.event("A5", E.DONE_FOR_DAY)
    return t


def test_requests_in_flight_are_projected_as_fix_reports_them(created_topics: Settings, names) -> None:
    settings = created_topics
    tape = venue_sequences()
    state = tape.states["A4"]  # a replace answer that names another request: no venue sends it
    last = next(r for r in reversed(tape.records) if r.order_id == "A4")
    draft = last.replace(event_id="A4-replaced", event_type=E.REPLACED, exec_id=None, last_qty=None, last_px=None,
                         cl_ord_id="A4-c1", order_qty=D(60))
    broken = order_state.complete(state, draft)
    publish(settings, [*tape.records, broken.replace(cl_ord_id="A4-c9")])
    stats = project(settings, names.group())
    assert stats.dead_letters == 1
    assert [r["reason"] for r in rows(settings, "select reason from dead_letters")] == ["replace_chain:cl_ord_id"]
    got = {r["order_id"]: (r["status"], r["cl_ord_id"], r["order_qty"], r["cum_qty"], r["leaves_qty"],
                           json.loads(r["state"]) if isinstance(r["state"], str) else r["state"])
           for r in rows(settings, "select order_id, status, cl_ord_id, order_qty, cum_qty, leaves_qty, state "
                                   "from orders")}
    summary = {o: (s, c, q, cum, leaves, st["prior_status"], st["cancel_request"], st["replace_request"])
               for o, (s, c, q, cum, leaves, st) in got.items()}
    assert summary == {
        "A1": ("CANCELED", "A1-c0", D(100), D(0), D(0), None, None, None),
        "A2": ("PENDING_CANCEL", "A2-c1", D(80), D(40), D(40), "PARTIALLY_FILLED", "A2-c2", None),
        "A3": ("PARTIALLY_FILLED", "A3-c1", D(150), D(100), D(50), None, None, None),
        "A4": ("PENDING_REPLACE", "A4-c0", D(50), D(50), D(0), "FILLED", None, "A4-c1"),
        "A5": ("DONE_FOR_DAY", "A5-c0", D(100), D(50), D(50), None, None, None),
    }
    # every event reported what the machine computes (nothing else is accepted) and was applied
    assert stats.events == len(tape.records) + 1
