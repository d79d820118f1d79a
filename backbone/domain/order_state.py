"""The FIX 4.4 order state machine: a pure function from (state, event) to the next state.

Every `OrderEvent` of one order is folded by `apply` into an immutable `OrderState`. Which
event types an order may take in which status is data, not code: `TRANSITIONS` maps
``(OrderStatus, EventType)`` to the next status, or to a small resolver when the next status
depends on quantities (a fill ends PARTIALLY_FILLED or FILLED). A pair missing from the table is
refused, NautilusTrader style, so every allowed edge is visible in one place.

Quantities are restated on every event, never trusted: cum_qty is the sum of the live
(non-busted) fills, leaves_qty is order_qty − cum_qty (0 in a terminal status), avg_px is
Σ(last_qty × last_px) / cum_qty over the live fills, rounded half-even to SCALE places (0 when
cum_qty is 0). The venue's own cum_qty, leaves_qty, avg_px, order_status and the order terms
carried by the event must equal those values exactly, so a projection that trusts the event and
one that trusts the state machine can never disagree. `complete` fills those fields in for
simulators and importers.

Edges beyond the happy path (FIX 4.4 Vol. 4 Appendix D):

* fills while PENDING_CANCEL / PENDING_REPLACE keep the pending status (the status it will
  return to, `prior_status`, follows the fills) and go FILLED once cum_qty reaches order_qty.
  The spec's precedence table would keep PENDING_CANCEL even then; FILLED is the deliberate
  choice here because the order can no longer be canceled.
* busts and corrections while a request is pending keep it pending as fills do; one that leaves
  cum_qty unchanged (a price-only correction) keeps it pending even on a filled order, whose
  replace request (D34) is still to be answered.
* CANCEL_REJECTED / REPLACE_REJECTED return a pending order to `prior_status`; without a
  pending request (a "too late to cancel" on a filled order) they leave the status alone.
* a fill that arrives after CANCELED, EXPIRED or DONE_FOR_DAY (it was in flight) is accepted if
  it fits within order_qty − cum_qty; the status stays, leaves_qty stays 0 (spec D35).
* REPLACED down to or below cum_qty leaves the order FILLED with leaves_qty 0; the spec amends
  order_qty to cum_qty (D11), so the event must report order_qty >= cum_qty and `complete`
  amends a draft that asks for less.
* a filled order may be re-opened by a replace that increases order_qty (spec D34).
* IOC/FOK kills are unsolicited CANCELED events; a FOK order may only fill completely.
* TRADE_CANCELED (a bust) and TRADE_CORRECTED (new last_qty/last_px) name the execution by
  exec_ref_id, which may be the original exec_id or that of a correction of it (spec D34), and
  restate the quantities: FILLED may go back to PARTIALLY_FILLED or NEW; a terminal CANCELED,
  EXPIRED, DONE_FOR_DAY or REJECTED order keeps its status.
* REJECTED only from PENDING_NEW; SUBMITTED (or ACCEPTED, for venues that skip pending-new)
  only as the first event of an order.

Speed: this module is the one implementation of these rules. Where a compiler is available the
install also compiles it, unchanged, into an extension module (see setup.py and
backbone.compiled); a build without one runs the same source interpreted.

Sequencing and resends: an order's events carry seq 1, 2, 3, ... without gaps. A resend of an
event already applied (same event_id, seq ≤ state.seq) is recognised by `classify` as
"duplicate"; `apply` refuses it.

Rule ids (`InvalidOrderTransition.rule`), stable for alerting and dead-lettering:

======================== ================================================================
unknown_order            the first event of an order is neither SUBMITTED nor ACCEPTED
order_id_mismatch        the event belongs to another order than the state
sequence_gap             seq > state.seq + 1 (or > 1 for the first event)
stale_seq                a new event_id with seq ≤ state.seq
duplicate_event          `apply` given a resend of an event already applied
event_id_reused          an event_id already applied, with a new seq
terminal_order           an event type a terminal order does not take
transition               an event type the (non-terminal) status does not take
overfill                 cum_qty would exceed order_qty
fok_partial_fill         a fill that leaves a FOK order partially filled
replace_below_cum        REPLACED reporting order_qty < cum_qty (FIX amends it to cum_qty)
duplicate_exec_id        an exec_id this order has already seen
unknown_exec_ref         a bust or correction of an execution the order does not have
busted_exec_ref          a bust or correction of an execution already busted
missing_field:<name>     a field the event type needs is None (exec_id, last_qty, ...)
bad_value:<name>         a quantity not > 0, or a non-finite number
field_mismatch:<name>    a reported field differs from the computed one (cum_qty, avg_px,
                         order_status, leaves_qty, order_qty, price, symbol, ...)
arithmetic               an exact decimal operation would have had to round
======================== ================================================================
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
    "CREATING_EVENTS", "PENDING_STATUSES", "TERMINAL_STATUSES", "TRANSITIONS",
    "LiveFill", "OrderState", "Resolver", "apply", "by_fill", "by_quantity", "by_restatement", "classify",
    "complete", "to_prior", "unchanged",
]

S, E = OrderStatus, EventType  # short names keep the transition table readable

#: Statuses in which nothing is left to execute: leaves_qty is 0.
TERMINAL_STATUSES = frozenset({S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED, S.DONE_FOR_DAY})
#: Statuses waiting for the answer to a cancel or replace request; `prior_status` is set.
PENDING_STATUSES = frozenset({S.PENDING_CANCEL, S.PENDING_REPLACE})
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
    cl_ord_id: str  # as last created or replaced (cancel/replace requests do not change it)
    status: OrderStatus
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
    prior_status: OrderStatus | None = None  # the status a rejected cancel/replace returns to
    event_ids: frozenset[str] = frozenset()
    exec_ids: frozenset[str] = frozenset()  # every exec_id seen, fills or not

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


#: Decides the next status from the state before the event and the restated quantities.
Resolver: TypeAlias = Callable[[OrderState, Decimal, Decimal], OrderStatus]


def by_quantity(state: OrderState, cum: Decimal, order_qty: Decimal) -> OrderStatus:
    """The working status the quantities imply: NEW, PARTIALLY_FILLED or FILLED."""
    if cum == 0:
        return S.NEW
    return S.FILLED if cum >= order_qty else S.PARTIALLY_FILLED


def by_fill(state: OrderState, cum: Decimal, order_qty: Decimal) -> OrderStatus:
    """Like `by_quantity`, but a pending request stays pending until the order is filled."""
    if state.status in PENDING_STATUSES and cum < order_qty:
        return state.status
    return by_quantity(state, cum, order_qty)


def by_restatement(state: OrderState, cum: Decimal, order_qty: Decimal) -> OrderStatus:
    """A bust or correction while a request is pending: like `by_fill`, except that a restatement
    that leaves cum_qty as it was (a price-only correction of a filled order) answers nothing."""
    if state.status in PENDING_STATUSES and cum == state.cum_qty:
        return state.status
    return by_fill(state, cum, order_qty)


def unchanged(state: OrderState, cum: Decimal, order_qty: Decimal) -> OrderStatus:
    """Late fills, busts and rejects that do not move the order (e.g. a bust on CANCELED)."""
    return state.status


def to_prior(state: OrderState, cum: Decimal, order_qty: Decimal) -> OrderStatus:
    """A rejected cancel/replace request: back to the status before the request."""
    return state.prior_status or by_quantity(state, cum, order_qty)


_WORKING = (S.NEW, S.PARTIALLY_FILLED)
_PENDING = (S.PENDING_CANCEL, S.PENDING_REPLACE)
_CLOSED = (S.CANCELED, S.EXPIRED, S.DONE_FOR_DAY)  # leaves killed; an in-flight fill may land
_RESTATE = (E.TRADE_CANCELED, E.TRADE_CORRECTED)

#: (status before, event type) -> status after, or the resolver that decides it.
TRANSITIONS: Mapping[tuple[OrderStatus, EventType], OrderStatus | Resolver] = MappingProxyType({
    # acknowledgement
    (S.PENDING_NEW, E.ACCEPTED): S.NEW,
    (S.PENDING_NEW, E.REJECTED): S.REJECTED,
    # executions; on a closed order only a late fill that still fits
    **{(s, E.FILLED): by_fill for s in (S.PENDING_NEW, *_WORKING, *_PENDING)},
    **{(s, E.FILLED): unchanged for s in _CLOSED},
    # busts and corrections restate the quantities; terminal non-filled statuses stay
    **{(s, t): by_quantity for s in (*_WORKING, S.FILLED) for t in _RESTATE},
    **{(s, t): by_restatement for s in _PENDING for t in _RESTATE},
    **{(s, t): unchanged for s in (*_CLOSED, S.REJECTED) for t in _RESTATE},
    # cancel
    **{(s, E.CANCEL_REQUESTED): S.PENDING_CANCEL for s in _WORKING},
    (S.PENDING_CANCEL, E.CANCEL_REJECTED): to_prior,
    **{(s, E.CANCEL_REJECTED): unchanged for s in (*_WORKING, S.FILLED, *_CLOSED)},
    # replace (a filled order may be re-opened by increasing its quantity, D34)
    **{(s, E.REPLACE_REQUESTED): S.PENDING_REPLACE for s in (*_WORKING, S.FILLED)},
    **{(s, E.REPLACED): by_quantity for s in (*_WORKING, S.PENDING_REPLACE)},
    (S.PENDING_REPLACE, E.REPLACE_REJECTED): to_prior,
    **{(s, E.REPLACE_REJECTED): unchanged for s in (*_WORKING, S.FILLED, *_CLOSED)},
    # the order ends: solicited or unsolicited cancel (IOC/FOK kill), expiry, done for day
    **{(s, E.CANCELED): S.CANCELED for s in (S.PENDING_NEW, *_WORKING, *_PENDING)},
    **{(s, E.EXPIRED): S.EXPIRED for s in (S.PENDING_NEW, *_WORKING, *_PENDING)},
    **{(s, E.DONE_FOR_DAY): S.DONE_FOR_DAY for s in (*_WORKING, *_PENDING)},
})


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


def _settle(moved: OrderState, status: OrderStatus, event: OrderEvent, fills: tuple[LiveFill, ...],
            cum: Decimal, avg_px: Decimal) -> OrderState:
    """Restate quantities and bookkeeping after `event` moved the terms to `moved` and the
    fills to `fills` (cum and avg_px computed from them)."""
    if cum > moved.order_qty:
        raise InvalidOrderTransition(moved.order_id, "overfill",
                                     f"{event.event_type} seq {event.seq} makes cum_qty {cum} "
                                     f"exceed order_qty {moved.order_qty}")
    return _replace_state(
        moved, fills=fills, status=status, cum_qty=cum, avg_px=avg_px,
        leaves_qty=ZERO if status in TERMINAL_STATUSES else _subtract(moved.order_qty, cum),
        prior_status=(by_quantity(moved, cum, moved.order_qty)
                      if status in PENDING_STATUSES else None),
        seq=event.seq, last_event_time=event.event_time,
        event_ids=moved.event_ids | {event.event_id},
        exec_ids=moved.exec_ids if event.exec_id is None else moved.exec_ids | {event.exec_id},
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
        ZERO, qty, ZERO, 0, event.event_time, event.event_time, (), None, _NO_IDS, _NO_IDS)
    return _settle(blank, status, event, (), ZERO, ZERO)


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
    target = TRANSITIONS.get((state.status, event.event_type))
    if target is None:
        rule = "terminal_order" if state.is_terminal else "transition"
        raise InvalidOrderTransition(state.order_id, rule,
                                     f"{event.event_type} not allowed in status {state.status}")
    if event.event_type in _NEEDS_EXEC_ID:
        required(event, "exec_id")
    if event.exec_id is not None and event.exec_id in state.exec_ids:
        raise InvalidOrderTransition(state.order_id, "duplicate_exec_id",
                                     f"exec_id {event.exec_id} already seen on this order")
    moved = _replace_terms(state, event) if event.event_type is E.REPLACED else state
    effect = _FILL_EFFECTS.get(event.event_type)
    if effect is None:  # the fills stay, and so do the quantities derived from them alone
        fills, cum, avg_px = state.fills, state.cum_qty, state.avg_px
    else:
        fills = effect(state, event)
        cum = _cum(fills)
        avg_px = _avg_px(fills, cum)
    status = target if isinstance(target, S) else target(state, cum, moved.order_qty)
    return _settle(moved, status, event, fills, cum, avg_px)


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
