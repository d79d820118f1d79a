"""Golden tests: the order-state-change matrices of FIX Appendix D ("Order State Change Matrices").

Each scenario is the spec's matrix as a table of rows (event, order qty, OrdStatus, CumQty,
LeavesQty, AvgPx), one row per ExecutionReport / OrderCancelReject the sell side sends. The
client's own requests (New Order, Cancel Request, Replace Request) are not events; the
"New Order" row becomes our SUBMITTED event (PENDING_NEW), as the backbone records it.

Scenario ids: ``D<n>`` is the FIX 4.2 numbering (D3, D4, D11, D19, D34, D35, D36 were checked
against the published matrices); the lettered ids (A.1.a, B.1.c, C.1.b, H.1.x, ...) follow the
newer section scheme of the same appendix; unnumbered ids are venue sequences the matrices do
not spell out (requests before the acknowledgement, a cancel while a replace is pending, GTC and
GTD orders across days), with OrdStatus by the spec's precedence. Where the spec gives no prices, prices were chosen
here and AvgPx is computed by hand. A fill that completes an order while a request is pending
reports the pending status, as the spec's OrdStatus precedence puts it (B.1.c, C.2.a).

Every row is checked twice: `apply` must accept the event as the spec writes it (so the
state machine agrees with the spec's CumQty/LeavesQty/AvgPx/OrdStatus, or it would raise
field_mismatch), and `complete` must produce exactly that event from a draft whose computed
fields are garbage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from factories import at, make_order_event

from backbone.domain.events import EventType as E
from backbone.domain.events import OrderEvent, TimeInForce
from backbone.domain.events import OrderStatus as S
from backbone.domain.order_state import OrderState, apply, complete

_DECIMAL_KEYS = ("last_qty", "last_px", "price", "requested")


@dataclass(frozen=True)
class Row:
    event_type: E
    order_qty: Decimal
    status: S
    cum: Decimal
    leaves: Decimal
    avg: Decimal
    extra: dict[str, object] = field(default_factory=dict)


def r(event_type: E, qty: str, status: S, cum: str, leaves: str, avg: str = "0",
      **extra: object) -> Row:
    """One matrix row; `requested` is the order qty a REPLACED draft asks for."""
    converted = {k: Decimal(str(v)) if k in _DECIMAL_KEYS else v for k, v in extra.items()}
    return Row(event_type, Decimal(qty), status, Decimal(cum), Decimal(leaves), Decimal(avg),
               converted)


def trade(exec_id: str, last_qty: str, last_px: str, qty: str, status: S, cum: str,
          leaves: str, avg: str) -> Row:
    return r(E.FILLED, qty, status, cum, leaves, avg, exec_id=exec_id, last_qty=last_qty,
             last_px=last_px)


SUB = r(E.SUBMITTED, "10000", S.PENDING_NEW, "0", "10000")
ACK = r(E.ACCEPTED, "10000", S.NEW, "0", "10000")

SCENARIOS: dict[str, tuple[TimeInForce, list[Row]]] = {
    "A.1.a-D1-filled-order": (TimeInForce.DAY, [
        SUB, ACK,
        trade("A", "2000", "100", "10000", S.PARTIALLY_FILLED, "2000", "8000", "100"),
        trade("B", "1000", "101", "10000", S.PARTIALLY_FILLED, "3000", "7000", "100.33333333"),
        trade("C", "7000", "102", "10000", S.FILLED, "10000", "0", "101.5"),
    ]),
    "A.1.b-D2-part-filled-day-order-done-for-day": (TimeInForce.DAY, [
        SUB, ACK,
        trade("A", "2000", "50", "10000", S.PARTIALLY_FILLED, "2000", "8000", "50"),
        trade("B", "1000", "50.5", "10000", S.PARTIALLY_FILLED, "3000", "7000", "50.16666667"),
        r(E.DONE_FOR_DAY, "10000", S.DONE_FOR_DAY, "3000", "0", "50.16666667"),
    ]),
    "D3-cancel-request-zero-filled-order": (TimeInForce.DAY, [
        SUB, ACK,
        r(E.CANCEL_REQUESTED, "10000", S.PENDING_CANCEL, "0", "10000", cl_ord_id="Y"),
        r(E.CANCELED, "10000", S.CANCELED, "0", "0", cl_ord_id="Y"),
    ]),
    "D3-cancel-request-zero-filled-order-rejected-by-exchange": (TimeInForce.DAY, [
        SUB, ACK,
        r(E.CANCEL_REQUESTED, "10000", S.PENDING_CANCEL, "0", "10000", cl_ord_id="Y"),
        r(E.CANCEL_REJECTED, "10000", S.NEW, "0", "10000", cl_ord_id="Y"),
    ]),
    "D4-cancel-request-part-filled-executions-while-pending": (TimeInForce.DAY, [
        SUB, ACK,
        trade("A", "2000", "10", "10000", S.PARTIALLY_FILLED, "2000", "8000", "10"),
        trade("B", "3000", "10.1", "10000", S.PARTIALLY_FILLED, "5000", "5000", "10.06"),
        r(E.CANCEL_REQUESTED, "10000", S.PENDING_CANCEL, "5000", "5000", "10.06"),
        trade("C", "1000", "10.2", "10000", S.PENDING_CANCEL, "6000", "4000", "10.08333333"),
        r(E.CANCELED, "10000", S.CANCELED, "6000", "0", "10.08333333"),
    ]),
    # The completing fill reports Pending Cancel ("pending cancel takes precedence over
    # filled"); the cancel reject, too late, settles it to Filled.
    "B.1.c-cancel-request-order-filled-before-cancel-accepted": (TimeInForce.DAY, [
        SUB, ACK,
        trade("A", "2000", "20", "10000", S.PARTIALLY_FILLED, "2000", "8000", "20"),
        trade("B", "3000", "20", "10000", S.PARTIALLY_FILLED, "5000", "5000", "20"),
        r(E.CANCEL_REQUESTED, "10000", S.PENDING_CANCEL, "5000", "5000", "20", cl_ord_id="Y",
          orig_cl_ord_id="CL-1"),
        trade("C", "5000", "20", "10000", S.PENDING_CANCEL, "10000", "0", "20"),
        r(E.CANCEL_REJECTED, "10000", S.FILLED, "10000", "0", "20", cl_ord_id="Y",
          orig_cl_ord_id="CL-1"),
    ]),
    "filled-order-followed-by-cancel-reject-too-late": (TimeInForce.DAY, [
        SUB, ACK,
        trade("A", "10000", "30", "10000", S.FILLED, "10000", "0", "30"),
        r(E.CANCEL_REJECTED, "10000", S.FILLED, "10000", "0", "30", cl_ord_id="Y"),
    ]),
    "C.1.a-zero-filled-replace-to-increase-qty": (TimeInForce.DAY, [
        SUB, ACK,
        r(E.REPLACE_REQUESTED, "10000", S.PENDING_REPLACE, "0", "10000", cl_ord_id="Y"),
        r(E.REPLACED, "11000", S.NEW, "0", "11000", cl_ord_id="Y", requested="11000"),
        trade("A", "1000", "40", "11000", S.PARTIALLY_FILLED, "1000", "10000", "40"),
        trade("B", "10000", "40", "11000", S.FILLED, "11000", "0", "40"),
    ]),
    "C.1.b-part-filled-replace-to-increase-qty-fill-while-pending-replace": (TimeInForce.DAY, [
        SUB, ACK,
        trade("A", "1000", "50", "10000", S.PARTIALLY_FILLED, "1000", "9000", "50"),
        r(E.REPLACE_REQUESTED, "10000", S.PENDING_REPLACE, "1000", "9000", "50", cl_ord_id="Y"),
        trade("B", "100", "51", "10000", S.PENDING_REPLACE, "1100", "8900", "50.09090909"),
        r(E.REPLACED, "12000", S.PARTIALLY_FILLED, "1100", "10900", "50.09090909",
          cl_ord_id="Y", requested="12000"),
        trade("C", "10900", "52", "12000", S.FILLED, "12000", "0", "51.825"),
    ]),
    "C.2.a-replace-not-accepted-order-filled-meanwhile": (TimeInForce.DAY, [
        SUB, ACK,
        r(E.REPLACE_REQUESTED, "10000", S.PENDING_REPLACE, "0", "10000", cl_ord_id="Y"),
        trade("A", "10000", "25", "10000", S.PENDING_REPLACE, "10000", "0", "25"),
        r(E.REPLACE_REJECTED, "10000", S.FILLED, "10000", "0", "25", cl_ord_id="Y"),
    ]),
    "C.4.c-replace-rejected-while-pending-then-second-replace-accepted": (TimeInForce.DAY, [
        SUB, ACK,
        trade("A", "1000", "10", "10000", S.PARTIALLY_FILLED, "1000", "9000", "10"),
        r(E.REPLACE_REQUESTED, "10000", S.PENDING_REPLACE, "1000", "9000", "10", cl_ord_id="Y"),
        r(E.REPLACE_REJECTED, "10000", S.PARTIALLY_FILLED, "1000", "9000", "10", cl_ord_id="Y"),
        r(E.REPLACE_REQUESTED, "10000", S.PENDING_REPLACE, "1000", "9000", "10", cl_ord_id="Z"),
        r(E.REPLACED, "8000", S.PARTIALLY_FILLED, "1000", "7000", "10", cl_ord_id="Z",
          requested="8000"),
        trade("B", "7000", "10", "8000", S.FILLED, "8000", "0", "10"),
    ]),
    "D21-second-replace-rejected-as-one-is-pending-first-replaced": (TimeInForce.DAY, [
        SUB, ACK,
        trade("A", "1000", "10", "10000", S.PARTIALLY_FILLED, "1000", "9000", "10"),
        r(E.REPLACE_REQUESTED, "10000", S.PENDING_REPLACE, "1000", "9000", "10", cl_ord_id="Y",
          orig_cl_ord_id="CL-1"),
        # the broker takes one request at a time: the second (Z, never reported pending) is rejected
        r(E.REPLACE_REJECTED, "10000", S.PENDING_REPLACE, "1000", "9000", "10", cl_ord_id="Z",
          orig_cl_ord_id="CL-1"),
        r(E.REPLACED, "8000", S.PARTIALLY_FILLED, "1000", "7000", "10", cl_ord_id="Y",
          orig_cl_ord_id="CL-1", requested="8000"),
        trade("B", "2000", "10", "8000", S.PARTIALLY_FILLED, "3000", "5000", "10"),
    ]),
    "second-cancel-rejected-as-one-is-pending-first-canceled": (TimeInForce.DAY, [
        SUB, ACK,
        r(E.CANCEL_REQUESTED, "10000", S.PENDING_CANCEL, "0", "10000", cl_ord_id="Y"),
        r(E.CANCEL_REJECTED, "10000", S.PENDING_CANCEL, "0", "10000", cl_ord_id="Z"),
        r(E.CANCELED, "10000", S.CANCELED, "0", "0", cl_ord_id="Y"),
    ]),
    "D11-replace-while-execution-reported-qty-equals-cum": (TimeInForce.DAY, [
        SUB, ACK,
        trade("A", "7000", "15", "10000", S.PARTIALLY_FILLED, "7000", "3000", "15"),
        r(E.REPLACED, "7000", S.FILLED, "7000", "0", "15", cl_ord_id="Y", requested="7000"),
    ]),
    "D12-replace-while-execution-reported-qty-below-cum-amended-to-cum": (TimeInForce.DAY, [
        SUB, ACK,
        trade("A", "8000", "15", "10000", S.PARTIALLY_FILLED, "8000", "2000", "15"),
        r(E.REPLACED, "8000", S.FILLED, "8000", "0", "15", cl_ord_id="Y", requested="7000"),
    ]),
    "D12-replace-below-cum-fill-while-pending-replace": (TimeInForce.DAY, [
        SUB, ACK,
        r(E.REPLACE_REQUESTED, "10000", S.PENDING_REPLACE, "0", "10000", cl_ord_id="Y"),
        trade("A", "8000", "15", "10000", S.PENDING_REPLACE, "8000", "2000", "15"),
        r(E.REPLACED, "8000", S.FILLED, "8000", "0", "15", cl_ord_id="Y", requested="7000"),
    ]),
    "D19-part-filled-order-canceled-unsolicited-verbal-cancel": (TimeInForce.DAY, [
        SUB, ACK,
        trade("A", "1000", "12", "10000", S.PARTIALLY_FILLED, "1000", "9000", "12"),
        r(E.CANCELED, "10000", S.CANCELED, "1000", "0", "12"),
    ]),
    "D.1.c-unsolicited-replace-of-part-filled-order": (TimeInForce.DAY, [
        SUB, ACK,
        trade("A", "1000", "12", "10000", S.PARTIALLY_FILLED, "1000", "9000", "12"),
        r(E.REPLACED, "8000", S.PARTIALLY_FILLED, "1000", "7000", "12", requested="8000"),
    ]),
    "D34-J.1.a-filled-order-then-correction-and-cancellation-of-executions": (TimeInForce.DAY, [
        SUB,
        r(E.ACCEPTED, "10000", S.NEW, "0", "10000", exec_id="B"),
        trade("C", "1000", "100", "10000", S.PARTIALLY_FILLED, "1000", "9000", "100"),
        trade("D", "9000", "110", "10000", S.FILLED, "10000", "0", "109"),
        r(E.TRADE_CANCELED, "10000", S.PARTIALLY_FILLED, "9000", "1000", "110",
          exec_id="E", exec_ref_id="C", last_qty="0", last_px="0"),
        r(E.TRADE_CORRECTED, "10000", S.PARTIALLY_FILLED, "9000", "1000", "100",
          exec_id="F", exec_ref_id="D", last_qty="9000", last_px="100"),
        trade("G", "1000", "120", "10000", S.FILLED, "10000", "0", "102"),
        r(E.TRADE_CORRECTED, "10000", S.FILLED, "10000", "0", "120",
          exec_id="H", exec_ref_id="F", last_qty="9000", last_px="120"),
        r(E.REPLACE_REQUESTED, "10000", S.PENDING_REPLACE, "10000", "0", "120",
          exec_id="I", cl_ord_id="Y"),
        r(E.REPLACED, "12000", S.PARTIALLY_FILLED, "10000", "2000", "120",
          exec_id="J", cl_ord_id="Y", requested="12000"),
        r(E.TRADE_CORRECTED, "12000", S.PARTIALLY_FILLED, "10500", "1500", "120",
          exec_id="K", exec_ref_id="H", last_qty="9500", last_px="120"),
    ]),
    "D35-J.1.b-canceled-order-busted-execution-then-new-execution": (TimeInForce.DAY, [
        SUB,
        r(E.ACCEPTED, "10000", S.NEW, "0", "10000", exec_id="A"),
        trade("B", "5000", "50", "10000", S.PARTIALLY_FILLED, "5000", "5000", "50"),
        r(E.CANCEL_REQUESTED, "10000", S.PENDING_CANCEL, "5000", "5000", "50", exec_id="C"),
        r(E.CANCELED, "10000", S.CANCELED, "5000", "0", "50", exec_id="D"),
        r(E.TRADE_CANCELED, "10000", S.CANCELED, "0", "0", "0", exec_id="E", exec_ref_id="B"),
        trade("F", "4000", "51", "10000", S.CANCELED, "4000", "0", "51"),
    ]),
    # D36 without its done-for-day and GTC restatement rows (the backbone has no restatement
    # event): quantity corrections of two executions.
    "D36-quantity-corrections-of-two-executions": (TimeInForce.GTC, [
        SUB,
        r(E.ACCEPTED, "10000", S.NEW, "0", "10000", exec_id="A"),
        trade("B", "2000", "30", "10000", S.PARTIALLY_FILLED, "2000", "8000", "30"),
        trade("E", "1000", "30", "10000", S.PARTIALLY_FILLED, "3000", "7000", "30"),
        r(E.TRADE_CORRECTED, "10000", S.PARTIALLY_FILLED, "2500", "7500", "30",
          exec_id="F", exec_ref_id="B", last_qty="1500", last_px="30"),
        r(E.TRADE_CORRECTED, "10000", S.PARTIALLY_FILLED, "2000", "8000", "30",
          exec_id="G", exec_ref_id="E", last_qty="500", last_px="30"),
    ]),
    "H.1.a-fill-or-kill-order-cannot-be-filled": (TimeInForce.FOK, [
        SUB, ACK, r(E.CANCELED, "10000", S.CANCELED, "0", "0"),
    ]),
    "H.1.a-fill-or-kill-order-filled-completely": (TimeInForce.FOK, [
        SUB, ACK, trade("A", "10000", "7", "10000", S.FILLED, "10000", "0", "7"),
    ]),
    "H.1.b-immediate-or-cancel-order-cannot-be-hit": (TimeInForce.IOC, [
        SUB, ACK, r(E.CANCELED, "10000", S.CANCELED, "0", "0"),
    ]),
    "H.1.c-immediate-or-cancel-order-partially-filled": (TimeInForce.IOC, [
        SUB, ACK,
        trade("A", "1000", "9.99", "10000", S.PARTIALLY_FILLED, "1000", "9000", "9.99"),
        r(E.CANCELED, "10000", S.CANCELED, "1000", "0", "9.99"),
    ]),
    "E.1-new-order-rejected": (TimeInForce.DAY, [
        SUB, r(E.REJECTED, "10000", S.REJECTED, "0", "0", reason="unknown symbol"),
    ]),
    "GTD-part-filled-order-expires": (TimeInForce.GTD, [
        SUB, ACK,
        trade("A", "4000", "3.5", "10000", S.PARTIALLY_FILLED, "4000", "6000", "3.5"),
        r(E.EXPIRED, "10000", S.EXPIRED, "4000", "0", "3.5"),
    ]),
    # Requests and answers in flight (FIX 4.4 OrdStatus precedence: Pending Cancel > Pending
    # Replace > the order's own status). X is the order's ClOrdID CL-1; Y and Z are requests.
    "cancel-request-before-the-ack-then-ack-then-canceled": (TimeInForce.DAY, [
        SUB,
        r(E.CANCEL_REQUESTED, "10000", S.PENDING_CANCEL, "0", "10000", cl_ord_id="Y", orig_cl_ord_id="CL-1"),
        r(E.ACCEPTED, "10000", S.PENDING_CANCEL, "0", "10000"),
        r(E.CANCELED, "10000", S.CANCELED, "0", "0", cl_ord_id="Y", orig_cl_ord_id="CL-1"),
    ]),
    "cancel-request-before-the-ack-canceled-before-the-ack": (TimeInForce.DAY, [
        SUB,
        r(E.CANCEL_REQUESTED, "10000", S.PENDING_CANCEL, "0", "10000", cl_ord_id="Y"),
        r(E.CANCELED, "10000", S.CANCELED, "0", "0", cl_ord_id="Y"),
    ]),
    "new-order-rejected-while-its-cancel-is-pending": (TimeInForce.DAY, [
        SUB,
        r(E.CANCEL_REQUESTED, "10000", S.PENDING_CANCEL, "0", "10000", cl_ord_id="Y"),
        r(E.REJECTED, "10000", S.REJECTED, "0", "0", reason="unknown symbol"),
        r(E.CANCEL_REJECTED, "10000", S.REJECTED, "0", "0", cl_ord_id="Y", reason="unknown order"),
    ]),
    "replace-request-before-the-ack-then-ack-then-replaced": (TimeInForce.DAY, [
        SUB,
        r(E.REPLACE_REQUESTED, "10000", S.PENDING_REPLACE, "0", "10000", cl_ord_id="Y", orig_cl_ord_id="CL-1"),
        r(E.ACCEPTED, "10000", S.PENDING_REPLACE, "0", "10000"),
        r(E.REPLACED, "12000", S.NEW, "0", "12000", cl_ord_id="Y", orig_cl_ord_id="CL-1", requested="12000"),
    ]),
    "cancel-request-while-replace-pending-replaced-then-canceled": (TimeInForce.DAY, [
        SUB, ACK,
        trade("A", "1000", "10", "10000", S.PARTIALLY_FILLED, "1000", "9000", "10"),
        r(E.REPLACE_REQUESTED, "10000", S.PENDING_REPLACE, "1000", "9000", "10", cl_ord_id="Y",
          orig_cl_ord_id="CL-1"),
        r(E.CANCEL_REQUESTED, "10000", S.PENDING_CANCEL, "1000", "9000", "10", cl_ord_id="Z",
          orig_cl_ord_id="Y"),  # chained on the last non-rejected ClOrdID
        r(E.REPLACED, "8000", S.PENDING_CANCEL, "1000", "7000", "10", cl_ord_id="Y",
          orig_cl_ord_id="CL-1", requested="8000"),
        r(E.CANCELED, "8000", S.CANCELED, "1000", "0", "10", cl_ord_id="Z", orig_cl_ord_id="Y"),
    ]),
    "cancel-request-while-replace-pending-replace-rejected-then-canceled": (TimeInForce.DAY, [
        SUB, ACK,
        r(E.REPLACE_REQUESTED, "10000", S.PENDING_REPLACE, "0", "10000", cl_ord_id="Y"),
        r(E.CANCEL_REQUESTED, "10000", S.PENDING_CANCEL, "0", "10000", cl_ord_id="Z"),
        r(E.REPLACE_REJECTED, "10000", S.PENDING_CANCEL, "0", "10000", cl_ord_id="Y"),
        r(E.CANCELED, "10000", S.CANCELED, "0", "0", cl_ord_id="Z"),
    ]),
    # A fill completes the order while a replace to increase the quantity is pending: Pending
    # Replace is reported with leaves 0, and the venue's replace re-opens the order.
    "fill-completes-order-while-replace-to-increase-pending-then-replaced": (TimeInForce.DAY, [
        SUB, ACK,
        trade("A", "4000", "20", "10000", S.PARTIALLY_FILLED, "4000", "6000", "20"),
        r(E.REPLACE_REQUESTED, "10000", S.PENDING_REPLACE, "4000", "6000", "20", cl_ord_id="Y"),
        trade("B", "6000", "21", "10000", S.PENDING_REPLACE, "10000", "0", "20.6"),
        r(E.REPLACED, "12000", S.PARTIALLY_FILLED, "10000", "2000", "20.6", cl_ord_id="Y",
          orig_cl_ord_id="CL-1", requested="12000"),
        trade("C", "2000", "20.6", "12000", S.FILLED, "12000", "0", "20.6"),
    ]),
    "fill-completes-order-while-cancel-and-replace-pending": (TimeInForce.DAY, [
        SUB, ACK,
        r(E.REPLACE_REQUESTED, "10000", S.PENDING_REPLACE, "0", "10000", cl_ord_id="Y"),
        r(E.CANCEL_REQUESTED, "10000", S.PENDING_CANCEL, "0", "10000", cl_ord_id="Z"),
        trade("A", "10000", "5", "10000", S.PENDING_CANCEL, "10000", "0", "5"),
        r(E.REPLACE_REJECTED, "10000", S.PENDING_CANCEL, "10000", "0", "5", cl_ord_id="Y"),
        r(E.CANCEL_REJECTED, "10000", S.FILLED, "10000", "0", "5", cl_ord_id="Z"),
    ]),
    # GTC and GTD orders done for the day work again the next day; their open quantity stays.
    "gtc-done-for-day-then-next-day-fill-then-canceled": (TimeInForce.GTC, [
        SUB, ACK,
        trade("A", "3000", "40", "10000", S.PARTIALLY_FILLED, "3000", "7000", "40"),
        r(E.DONE_FOR_DAY, "10000", S.DONE_FOR_DAY, "3000", "7000", "40"),
        trade("B", "2000", "41", "10000", S.PARTIALLY_FILLED, "5000", "5000", "40.4"),
        r(E.DONE_FOR_DAY, "10000", S.DONE_FOR_DAY, "5000", "5000", "40.4"),
        r(E.CANCEL_REQUESTED, "10000", S.PENDING_CANCEL, "5000", "5000", "40.4", cl_ord_id="Y"),
        r(E.CANCEL_REJECTED, "10000", S.DONE_FOR_DAY, "5000", "5000", "40.4", cl_ord_id="Y"),
        r(E.CANCELED, "10000", S.CANCELED, "5000", "0", "40.4"),
    ]),
    "gtd-done-for-day-replaced-next-day-then-expires": (TimeInForce.GTD, [
        SUB, ACK,
        r(E.DONE_FOR_DAY, "10000", S.DONE_FOR_DAY, "0", "10000"),
        r(E.REPLACE_REQUESTED, "10000", S.PENDING_REPLACE, "0", "10000", cl_ord_id="Y"),
        r(E.REPLACED, "9000", S.NEW, "0", "9000", cl_ord_id="Y", requested="9000"),
        r(E.EXPIRED, "9000", S.EXPIRED, "0", "0"),
    ]),
}


def _event(scenario: str, tif: TimeInForce, seq: int, row: Row) -> OrderEvent:
    extra = {k: v for k, v in row.extra.items() if k != "requested"}
    return make_order_event(
        order_id=f"ORD-{scenario}", seq=seq, event_type=row.event_type, event_time=at(seq),
        time_in_force=tif, order_qty=row.order_qty, order_status=row.status,
        cum_qty=row.cum, leaves_qty=row.leaves, avg_px=row.avg, **extra)


def _draft(row: Row, event: OrderEvent) -> OrderEvent:
    """The event with every computed field wrong; only the inputs of its type are kept."""
    creates = row.event_type in (E.SUBMITTED, E.ACCEPTED)
    requested = row.extra.get("requested")
    terms_are_input = creates or requested is not None
    return event.replace(
        seq=99, order_status=S.EXPIRED, cum_qty=Decimal(-1), leaves_qty=Decimal(-1),
        avg_px=Decimal(-1),
        order_qty=requested if requested is not None else (
            event.order_qty if creates else Decimal(1)),
        price=event.price if terms_are_input else Decimal(-5),
    )


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_matrix(scenario: str) -> None:
    tif, rows = SCENARIOS[scenario]
    state: OrderState | None = None
    for seq, row in enumerate(rows, start=1):
        event = _event(scenario, tif, seq, row)
        assert complete(state, _draft(row, event)) == event, f"row {seq}: complete"
        state = apply(state, event)
        got = (state.status, state.order_qty, state.cum_qty, state.leaves_qty, state.avg_px)
        want = (row.status, row.order_qty, row.cum, row.leaves, row.avg)
        assert got == want, f"row {seq} ({row.event_type})"
    assert state is not None and state.seq == len(rows)

