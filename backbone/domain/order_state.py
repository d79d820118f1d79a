"""The FIX 4.4 order state machine: a pure function from (state, event) to the next state.

Every `OrderEvent` of one order is folded by `apply` into an immutable `OrderState`.

The model. An order has its own status (PENDING_NEW, NEW, PARTIALLY_FILLED, FILLED, CANCELED,
EXPIRED, DONE_FOR_DAY or REJECTED) and, beside it, at most one open cancel request and at most
one open replace request, each known by its ClOrdID. The OrdStatus an event reports is the FIX
4.4 precedence (Vol. 4, `PRECEDENCE`) over what holds at once: Pending Cancel > Pending Replace
> the order's own status. So a fill that completes the order while a replace is pending reports
PENDING_REPLACE with leaves_qty 0, and the venue's answer settles it: REPLACED re-opens it by its
larger quantity, REPLACE_REJECTED leaves it FILLED.

Which event types the order's own status takes is data, not code: `TRANSITIONS` maps
``(own status, EventType)`` to the next own status, or to a small resolver when it depends on
quantities (a fill ends PARTIALLY_FILLED or FILLED). A pair missing from the table is refused,
NautilusTrader style, so every allowed edge is visible in one place. Requests are the second,
smaller table: `BLOCKED_BY_OPEN` (a request refused while another is open) and `ANSWERS_ONLY`
(pairs only an answer to an open replace may take).

Quantities are restated on every event, never trusted: cum_qty is the sum of the live
(non-busted) fills, leaves_qty is order_qty − cum_qty (0 once the order is closed: CANCELED,
EXPIRED, REJECTED, FILLED, and DONE_FOR_DAY of a DAY, IOC or FOK order), avg_px is
Σ(last_qty × last_px) / cum_qty over the live fills, rounded half-even to SCALE places (0 when
cum_qty is 0). The venue's own cum_qty, leaves_qty, avg_px, order_status and the order terms
carried by the event must equal those values exactly, so a projection that trusts the event and
one that trusts the state machine can never disagree. `complete` fills those fields in for
simulators and importers.

Edges beyond the happy path (FIX 4.4 Vol. 4 Appendix D):

* cancel and replace requests are taken before the acknowledgement (PENDING_NEW), and a cancel
  request while a replace is open; the answers may come in either order: ACCEPTED or REJECTED of
  the new order while its cancel is pending, REPLACED or REPLACE_REJECTED while a cancel is
  pending (PENDING_CANCEL stays reported), CANCELED before the acknowledgement.
* fills, busts and corrections while a request is open move the own status by quantity; the
  request stays open and reported, even once cum_qty reaches order_qty (leaves_qty 0). A
  REPLACED answering it sets the own status by the new quantity; CANCEL_REJECTED /
  REPLACE_REJECTED close it, leaving the own status as it is. CANCELED of a filled order is
  what no venue sends: refused.
* CANCELED, EXPIRED, REJECTED and DONE_FOR_DAY end the order (or its day) and close every open
  request: they report their own status; a venue's later reject of such a request is taken and
  changes nothing, as is a reject of a request never reported pending ("too late to cancel").
* a GTC or GTD order done for the day works again the next day: DONE_FOR_DAY keeps its
  leaves_qty (order_qty − cum_qty; FIX allows 0 here, but the quantity is still working) and the
  order takes what its quantities' status (NEW or PARTIALLY_FILLED) takes: fills, busts and
  corrections, cancel/replace requests and answers, CANCELED, EXPIRED, DONE_FOR_DAY again. An
  event that moves the own status by quantity (a fill, a bust, a REPLACED) ends its day off; one
  that leaves it (a request, a reject) keeps DONE_FOR_DAY. A DAY, IOC or FOK order done for the
  day is closed.
* a fill that arrives after CANCELED, EXPIRED or a closing DONE_FOR_DAY (it was in flight) is
  accepted if it fits within order_qty − cum_qty; the status stays, leaves_qty stays 0 (D35).
* REPLACED down to or below cum_qty leaves the order FILLED with leaves_qty 0; the spec amends
  order_qty to cum_qty (D11), so the event must report order_qty >= cum_qty and `complete`
  amends a draft that asks for less.
* a filled order may be re-opened by a replace that increases order_qty (D34); an unsolicited
  REPLACED (no replace request open) is taken only by NEW and PARTIALLY_FILLED.
* IOC/FOK kills are unsolicited CANCELED events. `fok_partial_fill` refuses a FILLED event that
  leaves a FOK order with cum_qty < order_qty; a bust, a quantity correction or a replace that
  raises order_qty is not refused and may leave a FOK order partially filled.
* TRADE_CANCELED (a bust) and TRADE_CORRECTED (new last_qty/last_px) name the execution by
  exec_ref_id, which may be the original exec_id or that of a correction of it (spec D34), and
  restate the quantities: FILLED may go back to PARTIALLY_FILLED or NEW; a closed CANCELED,
  EXPIRED, DONE_FOR_DAY or REJECTED order keeps its status.
* REJECTED only from PENDING_NEW; SUBMITTED (or ACCEPTED, for venues that skip pending-new)
  only as the first event of an order.

The replace chain (what compliance reconstructs an order's ClOrdIDs from). The order's
cl_ord_id is the one it was created or last replaced with; a request carries its own ClOrdID,
which the order keeps while the request is open. An orig_cl_ord_id, where given (it is
optional), must name the order: the current cl_ord_id on REPLACE_REQUESTED, REPLACED and a
REPLACE_REJECTED answering the open replace; the current cl_ord_id or the open replace's on
CANCEL_REQUESTED (FIX chains a cancel on the last non-rejected ClOrdID). The answer to an open
request must carry that request's ClOrdID: REPLACED the replace's, CANCELED the cancel's or, for
a venue's unsolicited cancel, the order's current one. A CANCEL_REJECTED or REPLACE_REJECTED
carrying another ClOrdID than the open request's rejects a second request that was never
reported pending (a broker that takes one request at a time, FIX Appendix D 21): taken, the
open request stays open. A request stored before its ClOrdID was recorded (an empty id) is not
checked. A second replace request reported pending while one is open is refused.

Speed: this module is the one implementation of these rules. Where a compiler is available the
install also compiles it, unchanged, into an extension module (see setup.py and
backbone.compiled); a build without one runs the same source interpreted.

Sequencing and resends: an order's events carry seq 1, 2, 3, ... without gaps. A resend of an
event already applied (same event_id, seq ≤ state.seq) is recognised by `classify` as
"duplicate"; `apply` refuses it.

Rule ids (`InvalidOrderTransition.rule`), stable for alerting and dead-lettering:

============================ ============================================================
unknown_order                the first event of an order is neither SUBMITTED nor ACCEPTED
order_id_mismatch            the event belongs to another order than the state
sequence_gap                 seq > state.seq + 1 (or > 1 for the first event)
stale_seq                    a new event_id with seq ≤ state.seq
duplicate_event              `apply` given a resend of an event already applied
event_id_reused              an event_id already applied, with a new seq
terminal_order               an event type a closed order (no request open) does not take
transition                   an event type the order does not take in its state (a pair
                             missing from the table, a second cancel or replace request
                             while one is open, an unsolicited REPLACED of a filled or
                             unacknowledged order)
overfill                     cum_qty would exceed order_qty
fok_partial_fill             a fill that leaves a FOK order partially filled
replace_below_cum            REPLACED reporting order_qty < cum_qty (FIX amends it to cum_qty)
replace_chain:orig_cl_ord_id an orig_cl_ord_id that is not the order's ClOrdID it must name
replace_chain:cl_ord_id      an answer whose cl_ord_id is not the open request's
duplicate_exec_id            an exec_id this order has already seen
unknown_exec_ref             a bust or correction of an execution the order does not have
busted_exec_ref              a bust or correction of an execution already busted
missing_field:<name>         a field the event type needs is None (exec_id, last_qty, ...)
bad_value:<name>             a quantity not > 0, or a non-finite number
field_mismatch:<name>        a reported field differs from the computed one (cum_qty, avg_px,
                             order_status, leaves_qty, order_qty, price, symbol, ...)
arithmetic                   an exact decimal operation would have had to round
============================ ============================================================
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Literal, TypeAlias

from backbone.domain.events import EventType, OrderEvent, OrderStatus, OrderType, Side, TimeInForce
from backbone.domain.order_fields import (
    EXACT_CTX,
    ZERO,
    arithmetic_refusal,
    check_reported,
    finite_price,
    optional_price,
    positive_quantity,
    required,
    round_half_even,
)
from backbone.domain.plain import builder, replacer
from backbone.domain.plain import fast_replace as replace
from backbone.errors import InvalidOrderTransition

__all__ = [
    "ANSWERS_ONLY", "BLOCKED_BY_OPEN", "CREATING_EVENTS", "MULTI_DAY", "PENDING_STATUSES", "PRECEDENCE",
    "TERMINAL_STATUSES", "TRANSITIONS", "LiveFill", "OrderState", "Resolver", "accepts", "apply", "by_quantity",
    "classify", "closes", "complete", "reported_status", "unchanged",
]

S, E = OrderStatus, EventType  # short names keep the transition table readable

#: Statuses that end the order: nothing is left to execute, leaves_qty is 0, except that a GTC or
#: GTD order done for the day works again the next day (`OrderState.is_terminal`).
TERMINAL_STATUSES = frozenset({S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED, S.DONE_FOR_DAY})
#: Reported while a cancel or replace request is open; `prior_status` is then the own status.
PENDING_STATUSES = frozenset({S.PENDING_CANCEL, S.PENDING_REPLACE})
#: Times in force whose orders outlive DONE_FOR_DAY.
MULTI_DAY = frozenset({TimeInForce.GTC, TimeInForce.GTD})
#: FIX 4.4 OrdStatus precedence, highest first (Vol. 4; Calculated, Stopped, Suspended and
#: Accepted for Bidding are not used). What an event reports is the highest that holds.
PRECEDENCE: tuple[OrderStatus, ...] = (
    S.PENDING_CANCEL, S.PENDING_REPLACE, S.DONE_FOR_DAY, S.FILLED, S.CANCELED, S.EXPIRED,
    S.PARTIALLY_FILLED, S.NEW, S.REJECTED, S.PENDING_NEW)
#: The event types that may create an order, and the status they create it in.
CREATING_EVENTS: Mapping[EventType, OrderStatus] = MappingProxyType(
    {E.SUBMITTED: S.PENDING_NEW, E.ACCEPTED: S.NEW})


@dataclass(frozen=True, slots=True)
class LiveFill:
    """One execution of the order. A bust flags it (kept so a second bust is recognised)."""

    exec_id: str
    qty: Decimal
    px: Decimal
    busted: bool = False
    #: exec_ids of the TRADE_CORRECTED events that restated it; a later bust or correction may
    #: name any of them (FIX D34 corrects a correction by the correction's ExecID).
    restated_by: tuple[str, ...] = ()

    def answers_to(self, exec_ref_id: str) -> bool:
        return exec_ref_id == self.exec_id or exec_ref_id in self.restated_by


@dataclass(frozen=True, slots=True)
class OrderState:
    """Everything known about one order after its events 1..seq."""

    order_id: str
    account: str
    symbol: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    cl_ord_id: str  # as last created or replaced (an open request's own ClOrdID is kept apart)
    status: OrderStatus  # the OrdStatus reported: PRECEDENCE over the own status and open requests
    order_qty: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    cum_qty: Decimal
    leaves_qty: Decimal
    avg_px: Decimal
    seq: int
    first_event_time: datetime
    last_event_time: datetime
    fills: tuple[LiveFill, ...] = ()
    #: the order's own status while a request is open (status is then PENDING_*); None otherwise
    prior_status: OrderStatus | None = None
    event_ids: frozenset[str] = frozenset()
    exec_ids: frozenset[str] = frozenset()  # every exec_id seen, fills or not
    #: ClOrdID of the open cancel request (None: none open, or stored before ids were kept)
    cancel_request: str | None = None
    #: ClOrdID of the open replace request (None: none open, or stored before ids were kept)
    replace_request: str | None = None

    @property
    def own_status(self) -> OrderStatus:
        """The order's status beneath its open requests."""
        return self.status if self.prior_status is None else self.prior_status

    @property
    def is_terminal(self) -> bool:
        """Whether the order takes no new life (a late fill or a restatement aside)."""
        return closes(self.status, self.time_in_force)


def closes(status: OrderStatus, time_in_force: TimeInForce) -> bool:
    """Whether `status` ends an order of `time_in_force`: a terminal status, except DONE_FOR_DAY
    of a GTC or GTD order, which works again the next day."""
    return status in TERMINAL_STATUSES and not (status is S.DONE_FOR_DAY and time_in_force in MULTI_DAY)


def reported_status(own: OrderStatus, cancel_open: bool, replace_open: bool) -> OrderStatus:
    """The OrdStatus to report: `PRECEDENCE` over what holds (the own status is never pending,
    and ranks below both pending statuses)."""
    if cancel_open:
        return S.PENDING_CANCEL
    return S.PENDING_REPLACE if replace_open else own


#: Decides the next own status from the state before the event and the restated quantities.
Resolver: TypeAlias = Callable[[OrderState, Decimal, Decimal], OrderStatus]


def by_quantity(state: OrderState, cum: Decimal, order_qty: Decimal) -> OrderStatus:
    """The working status the quantities imply: NEW, PARTIALLY_FILLED or FILLED."""
    if cum == 0:
        return S.NEW
    return S.FILLED if cum >= order_qty else S.PARTIALLY_FILLED


def unchanged(state: OrderState, cum: Decimal, order_qty: Decimal) -> OrderStatus:
    """Requests, rejects, late fills and busts that do not move the own status."""
    return state.own_status


_WORKING = (S.NEW, S.PARTIALLY_FILLED)
_LIVE = (S.PENDING_NEW, *_WORKING)  # may still execute and take requests
_CLOSED = (S.CANCELED, S.EXPIRED, S.DONE_FOR_DAY)  # leaves killed; an in-flight fill may land
_OWN = (*_LIVE, S.FILLED, *_CLOSED, S.REJECTED)
_RESTATE = (E.TRADE_CANCELED, E.TRADE_CORRECTED)

#: (own status before, event type) -> own status after, or the resolver that decides it. A GTC
#: or GTD order done for the day is looked up by its quantities' status (NEW, PARTIALLY_FILLED).
TRANSITIONS: Mapping[tuple[OrderStatus, EventType], OrderStatus | Resolver] = MappingProxyType({
    # acknowledgement
    (S.PENDING_NEW, E.ACCEPTED): S.NEW,
    (S.PENDING_NEW, E.REJECTED): S.REJECTED,
    # executions; on a closed order only a late fill that still fits
    **{(s, E.FILLED): by_quantity for s in _LIVE},
    **{(s, E.FILLED): unchanged for s in _CLOSED},
    # busts and corrections restate the quantities; closed statuses stay
    **{(s, t): by_quantity for s in (*_WORKING, S.FILLED) for t in _RESTATE},
    **{(s, t): unchanged for s in (*_CLOSED, S.REJECTED) for t in _RESTATE},
    # requests open beside the own status (a filled order may be re-opened by a replace, D34)
    **{(s, E.CANCEL_REQUESTED): unchanged for s in _LIVE},
    **{(s, E.REPLACE_REQUESTED): unchanged for s in (*_LIVE, S.FILLED)},
    # answers: a reject may come whatever happened meanwhile ("too late", "unknown order")
    **{(s, t): unchanged for s in _OWN for t in (E.CANCEL_REJECTED, E.REPLACE_REJECTED)},
    **{(s, E.REPLACED): by_quantity for s in (*_LIVE, S.FILLED)},
    # the order ends: solicited or unsolicited cancel (IOC/FOK kill), expiry, done for day
    **{(s, E.CANCELED): S.CANCELED for s in _LIVE},
    **{(s, E.EXPIRED): S.EXPIRED for s in _LIVE},
    **{(s, E.DONE_FOR_DAY): S.DONE_FOR_DAY for s in _WORKING},
})
#: Request types refused while a request is open: (while a cancel is open, while a replace is).
BLOCKED_BY_OPEN: Mapping[EventType, tuple[bool, bool]] = MappingProxyType({
    E.CANCEL_REQUESTED: (True, False), E.REPLACE_REQUESTED: (True, True)})
#: Pairs of the table only the answer to an open replace request may take: no venue replaces an
#: unacknowledged or filled order on its own.
ANSWERS_ONLY = frozenset({(S.PENDING_NEW, E.REPLACED), (S.FILLED, E.REPLACED)})
#: Event types that close every open request (they report their own status).
_CLOSES_REQUESTS = frozenset({E.CANCELED, E.EXPIRED, E.REJECTED, E.DONE_FOR_DAY})


_new_live_fill = builder(LiveFill)  # LiveFill(...) with every field given, built faster
_replace_state = replacer(OrderState)  # replace(state, ...) without the per-call class lookup
_new_state = builder(OrderState)
_NO_IDS: frozenset[str] = frozenset()


# -- effects: what an event type does to fills and terms (the status comes from TRANSITIONS) --
# Fill effects return the order's new fills; `_settle` copies the state once with them.

def _add_fill(state: OrderState, event: OrderEvent) -> tuple[LiveFill, ...]:
    fill = _new_live_fill(str(required(event, "exec_id")), positive_quantity(event, "last_qty"),
                          finite_price(event, "last_px"), False, ())
    fills = (*state.fills, fill)
    if state.time_in_force == TimeInForce.FOK and _cum(fills) < state.order_qty:
        raise InvalidOrderTransition(state.order_id, "fok_partial_fill",
                                     f"FOK order filled {_cum(fills)} of {state.order_qty}")
    return fills


def _restated_fill(state: OrderState, event: OrderEvent) -> int:
    """Index of the live fill a bust or correction names."""
    ref = str(required(event, "exec_ref_id"))
    for i, fill in enumerate(state.fills):
        if fill.answers_to(ref):
            if fill.busted:
                raise InvalidOrderTransition(state.order_id, "busted_exec_ref",
                                             f"execution {ref} is already busted")
            return i
    raise InvalidOrderTransition(state.order_id, "unknown_exec_ref",
                                 f"{event.event_type} names unknown execution {ref}")


def _bust(state: OrderState, event: OrderEvent) -> tuple[LiveFill, ...]:
    i = _restated_fill(state, event)
    return (*state.fills[:i], replace(state.fills[i], busted=True), *state.fills[i + 1:])


def _correct(state: OrderState, event: OrderEvent) -> tuple[LiveFill, ...]:
    i = _restated_fill(state, event)
    old = state.fills[i]
    new = replace(old, qty=positive_quantity(event, "last_qty"),
                  px=finite_price(event, "last_px"),
                  restated_by=(*old.restated_by, str(event.exec_id)))
    return (*state.fills[:i], new, *state.fills[i + 1:])


def _replace_terms(state: OrderState, event: OrderEvent) -> OrderState:
    qty = positive_quantity(event, "order_qty")
    if qty < state.cum_qty:
        raise InvalidOrderTransition(
            state.order_id, "replace_below_cum",
            f"REPLACED reports order_qty {qty} below cum_qty {state.cum_qty}; FIX amends it to "
            "cum_qty (use complete() to build such an event)")
    return replace(state, order_qty=qty, price=optional_price(event, "price"),
                   stop_price=optional_price(event, "stop_price"),
                   order_type=event.order_type, time_in_force=event.time_in_force,
                   cl_ord_id=event.cl_ord_id)


_FillEffect: TypeAlias = Callable[[OrderState, OrderEvent], tuple[LiveFill, ...]]
_FILL_EFFECTS: Mapping[EventType, _FillEffect] = MappingProxyType({
    E.FILLED: _add_fill, E.TRADE_CANCELED: _bust, E.TRADE_CORRECTED: _correct,
})
_NEEDS_EXEC_ID = frozenset({E.FILLED, E.TRADE_CANCELED, E.TRADE_CORRECTED})
#: Event types that open a request or check the chain even when none is open.
_MOVES_REQUESTS = frozenset({E.CANCEL_REQUESTED, E.REPLACE_REQUESTED, E.REPLACED})


# The arithmetic runs on the exact context's own methods (order_fields), whatever the thread's
# current context: a rounding raises decimal.Inexact or Rounded, which `_next` refuses.
_add, _multiply, _subtract = EXACT_CTX.add, EXACT_CTX.multiply, EXACT_CTX.subtract


def _cum(fills: tuple[LiveFill, ...]) -> Decimal:
    cum = ZERO
    for x in fills:
        if not x.busted:
            cum = _add(cum, x.qty)
    return cum


def _avg_px(fills: tuple[LiveFill, ...], cum: Decimal) -> Decimal:
    if cum == 0:
        return ZERO
    notional = ZERO
    for x in fills:
        if not x.busted:
            notional = _add(notional, _multiply(x.qty, x.px))
    return round_half_even(notional, cum)


def _settle(moved: OrderState, own: OrderStatus, requests: tuple[str | None, str | None], event: OrderEvent,
            fills: tuple[LiveFill, ...], cum: Decimal, avg_px: Decimal) -> OrderState:
    """Restate quantities and bookkeeping after `event` moved the terms to `moved`, the fills to
    `fills` (cum and avg_px computed from them), the own status to `own` and left `requests`
    (the open cancel's and replace's ClOrdIDs, None where none is open) open."""
    if cum > moved.order_qty:
        raise InvalidOrderTransition(moved.order_id, "overfill",
                                     f"{event.event_type} seq {event.seq} makes cum_qty {cum} "
                                     f"exceed order_qty {moved.order_qty}")
    cancel, replace_ = requests
    status = reported_status(own, cancel is not None, replace_ is not None)
    return _replace_state(
        moved, fills=fills, status=status, cum_qty=cum, avg_px=avg_px,
        leaves_qty=ZERO if closes(own, moved.time_in_force) else _subtract(moved.order_qty, cum),
        prior_status=None if status is own else own,
        seq=event.seq, last_event_time=event.event_time,
        event_ids=moved.event_ids | {event.event_id},
        exec_ids=moved.exec_ids if event.exec_id is None else moved.exec_ids | {event.exec_id},
        cancel_request=cancel, replace_request=replace_,
    )


def _create(event: OrderEvent) -> OrderState:
    status = CREATING_EVENTS.get(event.event_type)
    if status is None:
        raise InvalidOrderTransition(event.order_id, "unknown_order",
                                     f"{event.event_type} for an order never submitted")
    if event.seq != 1:
        rule = "sequence_gap" if event.seq > 1 else "stale_seq"
        raise InvalidOrderTransition(event.order_id, rule,
                                     f"the first event of an order has seq 1, got {event.seq}")
    qty = positive_quantity(event, "order_qty")
    blank = _new_state(  # OrderState(...) field by field, in field order
        event.order_id, event.account, event.symbol, event.side, event.order_type, event.time_in_force,
        event.cl_ord_id, status, qty, optional_price(event, "price"), optional_price(event, "stop_price"),
        ZERO, qty, ZERO, 0, event.event_time, event.event_time, (), None, _NO_IDS, _NO_IDS, None, None)
    return _settle(blank, status, _NO_REQUESTS, event, (), ZERO, ZERO)


_NO_REQUESTS: tuple[str | None, str | None] = (None, None)


def _open_requests(state: OrderState) -> tuple[str | None, str | None]:
    """ClOrdIDs of the open cancel and replace requests; None where none is open, "" for one
    opened before request ids were stored (the status alone says it is open)."""
    if state.prior_status is None:  # the common case: nothing open
        return _NO_REQUESTS
    cancel = (state.cancel_request or "") if state.status is S.PENDING_CANCEL else None
    open_replace = state.status is S.PENDING_REPLACE or state.replace_request is not None
    return cancel, (state.replace_request or "") if open_replace else None


def _lookup(state: OrderState, event_type: EventType) -> OrderStatus | Resolver | None:
    """The table's entry for `event_type` in `state`, or None where the order does not take it."""
    own = state.own_status
    key = (by_quantity(state, state.cum_qty, state.order_qty)
           if own is S.DONE_FOR_DAY and state.time_in_force in MULTI_DAY else own)
    target = TRANSITIONS.get((key, event_type))
    if target is None:
        return None
    blocked = BLOCKED_BY_OPEN.get(event_type)
    if blocked is not None or (key, event_type) in ANSWERS_ONLY:
        cancel, replace_ = _open_requests(state)
        if blocked is not None and ((blocked[0] and cancel is not None) or (blocked[1] and replace_ is not None)):
            return None
        if (key, event_type) in ANSWERS_ONLY and replace_ is None:
            return None
    return target


def accepts(state: OrderState, event_type: EventType) -> bool:
    """Whether the order takes an event of `event_type` now (its fields aside)."""
    return _lookup(state, event_type) is not None


def _chain_refusal(state: OrderState, event: OrderEvent, name: str, allowed: tuple[str, ...]) -> None:
    value = event.cl_ord_id if name == "cl_ord_id" else event.orig_cl_ord_id
    if value is not None and value not in allowed:
        raise InvalidOrderTransition(state.order_id, f"replace_chain:{name}",
                                     f"{event.event_type} seq {event.seq} has {name} {value!r}, "
                                     f"the chain allows {' or '.join(map(repr, allowed))}")


def _requests(state: OrderState, event: OrderEvent) -> tuple[str | None, str | None]:
    """The open requests after `event`, checking the replace chain of a request or an answer."""
    cancel, replace_ = _open_requests(state)
    kind = event.event_type
    if kind is E.CANCEL_REQUESTED:  # FIX chains a cancel on the last non-rejected ClOrdID
        _chain_refusal(state, event, "orig_cl_ord_id", (state.cl_ord_id,) if not replace_ else
                       (state.cl_ord_id, replace_))
        return event.cl_ord_id, replace_
    if kind is E.REPLACE_REQUESTED:
        _chain_refusal(state, event, "orig_cl_ord_id", (state.cl_ord_id,))
        return cancel, event.cl_ord_id
    if (kind is E.REPLACE_REJECTED and replace_ and event.cl_ord_id != replace_) or (
            kind is E.CANCEL_REJECTED and cancel and event.cl_ord_id != cancel):
        # the reject of another request, never reported pending: a broker that takes one request
        # at a time rejects the second (FIX Appendix D 21); the open one stays open
        return cancel, replace_
    if kind is E.REPLACED or (kind is E.REPLACE_REJECTED and replace_ is not None):
        _chain_refusal(state, event, "orig_cl_ord_id", (state.cl_ord_id,))
        if replace_:
            _chain_refusal(state, event, "cl_ord_id", (replace_,))
        return cancel, None
    if kind is E.CANCEL_REJECTED and cancel is not None:
        if cancel:
            _chain_refusal(state, event, "cl_ord_id", (cancel,))
        return None, replace_
    if kind in _CLOSES_REQUESTS:
        if kind is E.CANCELED and cancel:  # the answer, or the venue's own (unsolicited) cancel
            _chain_refusal(state, event, "cl_ord_id", (cancel, state.cl_ord_id))
        return _NO_REQUESTS
    return cancel, replace_


def _check_sequence(state: OrderState, event: OrderEvent) -> None:
    if event.order_id != state.order_id:
        raise InvalidOrderTransition(event.order_id, "order_id_mismatch",
                                     f"event for {event.order_id} applied to {state.order_id}")
    if event.event_id in state.event_ids:
        rule = "duplicate_event" if event.seq <= state.seq else "event_id_reused"
        raise InvalidOrderTransition(state.order_id, rule,
                                     f"event {event.event_id} (seq {event.seq}) already applied")
    if event.seq != state.seq + 1:
        rule = "sequence_gap" if event.seq > state.seq else "stale_seq"
        raise InvalidOrderTransition(state.order_id, rule,
                                     f"expected seq {state.seq + 1}, got {event.seq}")


def _advance(state: OrderState, event: OrderEvent) -> OrderState:
    _check_sequence(state, event)
    target = _lookup(state, event.event_type)
    if target is None:
        rule = "terminal_order" if state.is_terminal else "transition"
        raise InvalidOrderTransition(state.order_id, rule,
                                     f"{event.event_type} not allowed in status {state.status}"
                                     + ("" if state.prior_status is None else f" (own {state.prior_status})"))
    if event.event_type in _NEEDS_EXEC_ID:
        required(event, "exec_id")
    if event.exec_id is not None and event.exec_id in state.exec_ids:
        raise InvalidOrderTransition(state.order_id, "duplicate_exec_id",
                                     f"exec_id {event.exec_id} already seen on this order")
    requests = (_requests(state, event) if state.prior_status is not None or event.event_type in _MOVES_REQUESTS
                else _NO_REQUESTS)  # nothing open and nothing to open: the common case
    moved = _replace_terms(state, event) if event.event_type is E.REPLACED else state
    effect = _FILL_EFFECTS.get(event.event_type)
    if effect is None:  # the fills stay, and so do the quantities derived from them alone
        fills, cum, avg_px = state.fills, state.cum_qty, state.avg_px
    else:
        fills = effect(state, event)
        cum = _cum(fills)
        avg_px = _avg_px(fills, cum)
    own = target if isinstance(target, S) else target(state, cum, moved.order_qty)
    return _settle(moved, own, requests, event, fills, cum, avg_px)


def _next(state: OrderState | None, event: OrderEvent) -> OrderState:
    """The state after `event` (None: a new order), computed from its inputs; reported fields
    are not read."""
    try:
        return _create(event) if state is None else _advance(state, event)
    except (decimal.Inexact, decimal.Rounded) as exc:
        raise arithmetic_refusal(event.order_id, exc) from exc


def _reported(state: OrderState) -> dict[str, object]:
    """The event fields that must equal the state after the event."""
    return {
        "order_status": state.status, "cum_qty": state.cum_qty, "leaves_qty": state.leaves_qty,
        "avg_px": state.avg_px, "order_qty": state.order_qty, "price": state.price,
        "stop_price": state.stop_price, "order_type": state.order_type,
        "time_in_force": state.time_in_force, "account": state.account,
        "symbol": state.symbol, "side": state.side,
    }


def apply(state: OrderState | None, event: OrderEvent) -> OrderState:
    """Fold one event into the order (None: an order not seen yet).

    Raises InvalidOrderTransition on any violation; the state passed in is never modified and
    no partially applied state is ever returned.
    """
    after = _next(state, event)
    # Fast path: the venue reported exactly what we computed (the common case); the detailed
    # check below also accepts equal-but-differently-scaled avg_px and names the mismatch.
    try:
        reported_as_computed = _reported_as_computed(event, after)
    except decimal.InvalidOperation:  # a signaling NaN reported: the detailed check names the field
        reported_as_computed = False
    if reported_as_computed:
        return after
    check_reported(event, _reported(after))
    return after


def _reported_as_computed(event: OrderEvent, after: OrderState) -> bool:
    """Whether the event reports exactly the computed state (the fast path of `apply`)."""
    return (event.order_status is after.status and event.cum_qty == after.cum_qty
            and event.leaves_qty == after.leaves_qty and event.avg_px == after.avg_px
            and event.order_qty == after.order_qty and event.price == after.price
            and event.stop_price == after.stop_price and event.order_type is after.order_type
            and event.time_in_force is after.time_in_force and event.account == after.account
            and event.symbol == after.symbol and event.side is after.side
            # equal to the computed (finite) Decimals, and Decimals themselves (0 == Decimal(0))
            and isinstance(event.cum_qty, Decimal) and isinstance(event.leaves_qty, Decimal)
            and isinstance(event.avg_px, Decimal) and isinstance(event.order_qty, Decimal))


def classify(state: OrderState | None, event: OrderEvent) -> Literal["apply", "duplicate"]:
    """Tell a resend of an event already applied ("duplicate") from a new one ("apply").

    "apply" means `apply` will accept the event; everything else (a stale seq with a new
    event_id, a gap, a refused transition, a field mismatch, ...) raises InvalidOrderTransition,
    so a consumer can skip duplicates and dead-letter violations with one call.
    """
    if (state is not None and event.order_id == state.order_id
            and event.event_id in state.event_ids and event.seq <= state.seq):
        return "duplicate"
    apply(state, event)
    return "apply"


def complete(state: OrderState | None, draft: OrderEvent) -> OrderEvent:
    """`draft` with seq, order_status, cum_qty, leaves_qty, avg_px and the order terms set.

    The draft supplies what only the venue knows (event_type, ids, times, last_qty/last_px and
    exec_id of fills, exec_ref_id of busts and corrections, the new terms of REPLACED); the
    rest is computed, so ``apply(state, complete(state, draft))`` succeeds. A REPLACED draft
    asking for less than cum_qty gets order_qty = cum_qty, as FIX amends it (D11).
    """
    event = draft.replace(seq=1 if state is None else state.seq + 1)
    if (state is not None and event.event_type == E.REPLACED
            and isinstance(event.order_qty, Decimal) and event.order_qty.is_finite()
            and 0 < event.order_qty < state.cum_qty):
        event = event.replace(order_qty=state.cum_qty)
    return event.replace(**_reported(_next(state, event)))
