"""Netting positions and P&L by average cost: a pure module, no I/O.

One `Position` per (account, symbol) nets every fill into a single signed quantity, in the
manner of NautilusTrader's NETTING positions and Interactive Brokers' average-cost P&L:

* opening or adding (flat, or a fill in the direction of the position)::

      avg_px' = round12((|q|·avg_px + f·px) / (|q| + f))
      open_commission += commission

* reducing (opposite direction, f <= |q|)::

      realized_pnl += (px − avg_px) · f · sign(q)           avg_px unchanged (0 once flat)
      moved = round8(open_commission · f / |q|)            all of it when the position goes flat
      open_commission -= moved
      realized_commission += moved + commission

* flipping (opposite direction, f > |q|): close |q| and open f − |q| at the fill price::

      realized_pnl += (px − avg_px) · |q| · sign(q)
      closing = round8(commission · |q| / f)
      realized_commission += open_commission + closing
      open_commission = commission − closing
      avg_px' = round12(px)

where q is the signed position quantity before the fill, f > 0 the fill quantity, px its price,
``round12`` rounds half-even to 12 decimal places and ``round8`` half-even to 8.

Rounding. Every operation runs in a private decimal context of 60 significant digits that
*traps* `decimal.Inexact`, so no result is ever rounded implicitly: an operation that would lose
a digit raises `PositionError` (rule ``arithmetic``) instead. The only roundings are the two
explicit ones above, computed as correctly rounded quotients (exact integer division and
remainder, then half-even), never as a rounded quotient rounded again:

* ``avg_px`` is quantized to 12 places after every re-weighting (and set to the fill price,
  quantized the same way, when opening from flat or on a flip); it is ``0`` when flat;
* the pro-rata commission shares are quantized to 8 places;
* ``realized_pnl`` is exact (never quantized): 8-place prices and quantities and a 12-place
  average give at most 20 places.

Commission is moved, never re-computed, so ``realized_commission + open_commission`` equals
the sum of the commissions of the live fills exactly, and a flat position has
``open_commission == 0``.

Restatements. A position keeps its live fills, in application order, and the state it was in
before each of them (`prior_states`). `bust` and `correct` of the fill at index i restart from
the state before it and refold the later (or corrected) fills, in the same order, with the same
step as `apply_fill`; since every step is a deterministic function of the previous state and the
fill, the restated position equals, field by field, the position that would have been built had
the busted fill never happened or had the fill been right in the first place. A restatement
costs the number of fills after the restated one, not the position's whole history.

Identity. A fill is named by its order and its exec id, (order_id, exec_id), never by the exec
id alone: FIX makes an ExecID unique per sell side, so two orders of one account and symbol
sent to two venues may report the same exec id, and both fills count.

Errors. Every refusal raises `PositionError`, an `InvalidRecord` (so a `BackboneError`) like
`InvalidOrderTransition`, whose ``rule`` (also its ``reason``) names why: ``invalid_fill``
(quantity not > 0, negative commission, a non-finite or non-Decimal number, unknown side, naive
time), ``wrong_position`` (fill for another account or symbol), ``duplicate_exec_id`` (a fill
of the same order with the same exec id is already live), ``unknown_exec_id`` (bust or correct
of a fill the position does not hold), ``invalid_mark`` (a mark price that is not a finite
Decimal), ``arithmetic`` (an exact operation would have had to round). `InvariantViolation` is not used:
these are data errors, not bugs. The position passed in is never changed (it is immutable).

Cost. `apply_fill` is constant work: `fills` and `prior_states` are `History` sequences, views
of append-only lists that successive versions share, so a fill appends instead of copying the
position's history. Only the duplicate scan is O(n) in the live fills (~25-30 ns each); a
caller that already knows the fill is new (the projection's order state machine refuses an exec
id its order has seen) passes ``exec_id_is_new=True`` and skips it. `apply_fills` enters the decimal context
once. A bust or correction costs the fills after the restated one (plus one copy of the history
before it, since the restated versions fork from an earlier one). A position restored lazily
from a snapshot holds `Deferred` histories: fills apply to its summary at once, and its old
fills are loaded only when a restatement (or a comparison) reads them.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol, TypeVar

from backbone.domain.events import Side
from backbone.domain.history import appended as _appended
from backbone.domain.plain import builder
from backbone.errors import InvalidRecord

T = TypeVar("T")

__all__ = [
    "AVG_PX_PLACES",
    "COMMISSION_PLACES",
    "ARITHMETIC_PRECISION",
    "Fill",
    "Position",
    "PositionError",
    "Valued",
    "apply_fill",
    "apply_fills",
    "bust",
    "correct",
    "empty_position",
    "total_pnl",
    "unrealized_pnl",
]

#: Significant digits of every intermediate result.
ARITHMETIC_PRECISION = 60
#: Decimal places of `Position.avg_px` (round half-even after each re-weighting).
AVG_PX_PLACES = 12
#: Decimal places of a pro-rata commission share (round half-even).
COMMISSION_PLACES = 8

#: Exact arithmetic: a result that would need rounding raises instead.
_CTX = decimal.Context(
    prec=ARITHMETIC_PRECISION,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow, decimal.Inexact],
)
_ZERO = Decimal(0)
_AVG_QUANTUM = Decimal(1).scaleb(-AVG_PX_PLACES)
_COMMISSION_QUANTUM = Decimal(1).scaleb(-COMMISSION_PLACES)
_FLAT_AVG_PX = _ZERO.quantize(_AVG_QUANTUM)  # 0E-12: avg_px always carries 12 places
_BUY = Side.BUY
_SELLS = (Side.SELL, Side.SELL_SHORT)


class PositionError(InvalidRecord):
    """A fill, bust, correction or mark the position refuses; `rule` (= `reason`) names why.

    An `InvalidRecord` (hence a `BackboneError`), like `InvalidOrderTransition`: the record is
    refused for its content, the position is unchanged, and `reason` is a stable id.
    """

    def __init__(self, account: str, symbol: str, rule: str, detail: str):
        super().__init__(rule, f"position {account}/{symbol}: {rule}: {detail}")
        self.account = account
        self.symbol = symbol
        self.rule = rule
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution as the position sees it, named by (order_id, exec_id). BUY adds +qty, SELL
    and SELL_SHORT add −qty."""

    order_id: str
    exec_id: str
    account: str
    symbol: str
    side: Side
    qty: Decimal  # > 0
    price: Decimal
    commission: Decimal  # >= 0, may be 0
    time: datetime  # UTC


_Prior = tuple[Decimal, Decimal, Decimal, Decimal, Decimal, "datetime | None"]


@dataclass(frozen=True, slots=True)
class Position:
    """The net position of one account in one symbol; build it with `apply_fill`."""

    account: str
    symbol: str
    qty: Decimal  # signed: > 0 long, < 0 short, 0 flat
    avg_px: Decimal  # average open price of the open quantity, 12 places; 0 when flat
    realized_pnl: Decimal  # gross, from prices only; exact
    realized_commission: Decimal  # commission attributed to closed quantity
    open_commission: Decimal  # commission attributed to the open quantity; 0 when flat
    commission: Decimal  # total paid = realized_commission + open_commission
    last_fill_time: datetime | None  # latest `Fill.time` among the live fills; None if none
    fill_count: int  # number of live fills == len(fills)
    fills: Sequence[Fill]  # the live fills, in application order (a History, or Deferred; equal to a tuple)
    # The state before each live fill, for restatements: (qty, avg_px, realized_pnl,
    # realized_commission, open_commission, last_fill_time). Derived from `fills`, so not compared.
    prior_states: Sequence[_Prior] = field(default=(), compare=False, repr=False)

    @property
    def net_realized_pnl(self) -> Decimal:
        """realized_pnl − realized_commission."""
        with decimal.localcontext(_CTX):
            return self.realized_pnl - self.realized_commission


def empty_position(account: str, symbol: str) -> Position:
    """The flat position with no fills."""
    return Position(
        account, symbol, _ZERO, _FLAT_AVG_PX, _ZERO, _ZERO, _ZERO, _ZERO, None, 0, ()
    )


class Valued(Protocol):
    """What valuing a position at a mark reads: a `Position`, or a summary of one without its
    fills (the read model's as-of rows)."""

    @property
    def account(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def qty(self) -> Decimal: ...
    @property
    def avg_px(self) -> Decimal: ...
    @property
    def realized_pnl(self) -> Decimal: ...
    @property
    def commission(self) -> Decimal: ...


def unrealized_pnl(position: Valued, mark_price: Decimal) -> Decimal:
    """Gross unrealized P&L at `mark_price`: (mark − avg_px) × qty; 0 when flat. Exact."""
    if not (isinstance(mark_price, Decimal) and mark_price.is_finite()):
        raise PositionError(
            position.account, position.symbol, "invalid_mark", f"mark price {mark_price!r}"
        )
    try:
        with decimal.localcontext(_CTX):
            return (mark_price - position.avg_px) * position.qty
    except decimal.DecimalException as exc:
        raise _arithmetic_error(position, exc) from exc


def total_pnl(position: Valued, mark_price: Decimal) -> Decimal:
    """realized_pnl + unrealized_pnl(mark_price) − commission (all commission paid). Exact."""
    unrealized = unrealized_pnl(position, mark_price)
    try:
        with decimal.localcontext(_CTX):
            return position.realized_pnl + unrealized - position.commission
    except decimal.DecimalException as exc:
        raise _arithmetic_error(position, exc) from exc


def apply_fill(position: Position, fill: Fill, *, exec_id_is_new: bool = False) -> Position:
    """The position after `fill`. Raises `PositionError` if the fill is refused.

    `exec_id_is_new`: the caller guarantees no live fill has the fill's (order_id, exec_id)
    (skips the O(n) duplicate scan)."""
    check_duplicate = not exec_id_is_new
    # _CTX itself becomes the current context: localcontext(_CTX) would copy it, ~0.4-0.8 µs
    # of a ~5 µs fill. Only its flags change and nothing reads them (every condition that
    # matters traps), as on the contexts whose methods order_fields calls directly.
    outer = decimal.getcontext()
    decimal.setcontext(_CTX)
    try:
        return _apply(position, fill, check_duplicate)
    except decimal.DecimalException as exc:
        raise _arithmetic_error(position, exc) from exc
    finally:
        decimal.setcontext(outer)


def apply_fills(position: Position, fills: Iterable[Fill], *, exec_ids_are_new: bool = False) -> Position:
    """`apply_fill` folded over `fills`, in order (one decimal context for the whole batch).

    `exec_ids_are_new`: the caller guarantees the fills' (order_id, exec_id) are distinct and
    none is live in `position` (skips the duplicate scan, which makes a long fold quadratic)."""
    check = not exec_ids_are_new
    try:
        with decimal.localcontext(_CTX):
            for fill in fills:
                position = _apply(position, fill, check)
            return position
    except decimal.DecimalException as exc:
        raise _arithmetic_error(position, exc) from exc


def _refold(position: Position, index: int, fills: Iterable[Fill]) -> Position:
    """The position before its fill `index`, then `fills` applied. The fills are the position's
    own (or one corrected in place), distinct already: no duplicate scan."""
    if len(position.prior_states) != len(position.fills):  # built by hand, not by `apply_fill`
        return apply_fills(empty_position(position.account, position.symbol), (*position.fills[:index], *fills),
                           exec_ids_are_new=True)
    qty, avg, realized, realized_c, open_c, last = position.prior_states[index]
    before = _new_position(position.account, position.symbol, qty, avg, realized, realized_c, open_c,
                           _CTX.add(realized_c, open_c), last, index, position.fills[:index],
                           position.prior_states[:index])
    return apply_fills(before, fills, exec_ids_are_new=True)


def bust(position: Position, order_id: str, exec_id: str) -> Position:
    """The position as if the fill (order_id, exec_id) had never happened (refold of the other
    fills)."""
    index = _index_of(position, order_id, exec_id)
    return _refold(position, index, position.fills[index + 1 :])


def correct(
    position: Position,
    order_id: str,
    exec_id: str,
    qty: Decimal,
    price: Decimal,
    commission: Decimal | None = None,
) -> Position:
    """The position as if the fill (order_id, exec_id) had had `qty`, `price` (and `commission`).

    ``commission=None`` keeps the fill's commission. The corrected fill keeps its place in the
    order of application, its side, time and ids; it and the later fills are refolded from the
    state before it.
    """
    fills = position.fills
    index = _index_of(position, order_id, exec_id)
    old = fills[index]
    new = Fill(
        old.order_id,
        old.exec_id,
        old.account,
        old.symbol,
        old.side,
        qty,
        price,
        old.commission if commission is None else commission,
        old.time,
    )
    return _refold(position, index, (new, *fills[index + 1 :]))


# --- internals ------------------------------------------------------------------------------


def _apply(p: Position, fill: Fill, check_duplicate: bool) -> Position:
    """One netting step; must run inside `decimal.localcontext(_CTX)`."""
    f = fill.qty
    px = fill.price
    c = fill.commission
    side = fill.side
    if side == _BUY:
        buy = True
    elif side in _SELLS:
        buy = False
    else:
        raise _invalid(p, fill, f"side {side!r}")
    if not (
        type(f) is Decimal
        and type(px) is Decimal
        and type(c) is Decimal
        and f.is_finite()
        and px.is_finite()
        and c.is_finite()
    ):
        raise _invalid(p, fill, "qty, price and commission must be finite Decimals")
    if f <= _ZERO:
        raise _invalid(p, fill, f"qty {f} is not > 0")
    if c < _ZERO:
        raise _invalid(p, fill, f"commission {c} is negative")
    time = fill.time
    if time.tzinfo is None:
        raise _invalid(p, fill, "time is naive (must be UTC)")
    if fill.account != p.account or fill.symbol != p.symbol:
        raise PositionError(
            p.account,
            p.symbol,
            "wrong_position",
            f"fill {fill.exec_id!r} is for {fill.account}/{fill.symbol}",
        )
    fills = p.fills
    if check_duplicate:
        exec_id = fill.exec_id
        order_id = fill.order_id
        for live in fills:
            if live.exec_id == exec_id and live.order_id == order_id:
                raise PositionError(
                    p.account,
                    p.symbol,
                    "duplicate_exec_id",
                    f"exec id {exec_id!r} of order {order_id!r} is already live",
                )

    q = p.qty
    avg = p.avg_px
    realized = p.realized_pnl
    realized_c = p.realized_commission
    open_c = p.open_commission
    last = p.last_fill_time
    prior = (q, avg, realized, realized_c, open_c, last)
    if q == _ZERO:  # open from flat
        q = f if buy else -f
        avg = px.quantize(_AVG_QUANTUM, decimal.ROUND_HALF_EVEN, _ROUNDING_CTX)
        open_c = open_c + c
    elif (q > _ZERO) is buy:  # add in the same direction
        aq = q if buy else -q
        avg = _div_round(aq * avg + f * px, aq + f, _AVG_QUANTUM)
        q = q + f if buy else q - f
        open_c = open_c + c
    else:  # opposite direction: reduce, close or flip
        aq = -q if buy else q  # |q|
        if f < aq:  # reduce
            realized = realized + ((avg - px) * f if buy else (px - avg) * f)
            moved = _div_round(open_c * f, aq, _COMMISSION_QUANTUM)
            realized_c = realized_c + moved + c
            open_c = open_c - moved
            q = q + f if buy else q - f
        elif f == aq:  # close: everything still open is realized
            realized = realized + ((avg - px) * f if buy else (px - avg) * f)
            realized_c = realized_c + open_c + c
            open_c = _ZERO
            q = _ZERO
            avg = _FLAT_AVG_PX
        else:  # flip: close |q|, open f − |q| at px
            realized = realized + ((avg - px) * aq if buy else (px - avg) * aq)
            closing = _div_round(c * aq, f, _COMMISSION_QUANTUM)
            realized_c = realized_c + open_c + closing
            open_c = c - closing
            q = q + f if buy else q - f
            avg = px.quantize(_AVG_QUANTUM, decimal.ROUND_HALF_EVEN, _ROUNDING_CTX)

    return _new_position(
        p.account,
        p.symbol,
        q,
        avg,
        realized,
        realized_c,
        open_c,
        realized_c + open_c,
        time if last is None or time > last else last,
        p.fill_count + 1,
        _appended(fills, fill),
        _appended(p.prior_states, prior),
    )


# A frozen dataclass's __init__ sets each field through object.__setattr__; `builder` sets the
# slots through their descriptors: the same object, Position(...) with the same positional
# arguments, for a fraction of the cost. `test_new_position_sets_every_field` checks it.
_new_position = builder(Position)


#: Only for the explicit roundings (quantize of a fill price to the avg_px scale).
_ROUNDING_CTX = decimal.Context(
    prec=ARITHMETIC_PRECISION,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)


def _div_round(numerator: Decimal, denominator: Decimal, quantum: Decimal) -> Decimal:
    """numerator / denominator rounded half-even to a multiple of `quantum`, correctly rounded.

    `denominator` > 0. Integer division and remainder are exact (no intermediate rounding).
    Runs inside `decimal.localcontext(_CTX)`.
    """
    unit = denominator * quantum
    whole, rest = divmod(numerator, unit)  # whole truncated toward zero, rest has its sign
    if rest:
        twice = rest + rest if rest > _ZERO else -(rest + rest)
        if twice > unit or (twice == unit and whole % 2):
            whole = whole + 1 if rest > _ZERO else whole - 1
    return whole * quantum


def _index_of(position: Position, order_id: str, exec_id: str) -> int:
    fills = position.fills
    for index in range(len(fills) - 1, -1, -1):  # from the newest: busts are mostly of recent fills
        fill = fills[index]
        if fill.exec_id == exec_id and fill.order_id == order_id:
            return index
    raise PositionError(
        position.account,
        position.symbol,
        "unknown_exec_id",
        f"no live fill {exec_id!r} of order {order_id!r}",
    )


def _invalid(position: Position, fill: Fill, detail: str) -> PositionError:
    return PositionError(
        position.account, position.symbol, "invalid_fill", f"fill {fill.exec_id!r}: {detail}"
    )


def _arithmetic_error(position: Valued, exc: decimal.DecimalException) -> PositionError:
    return PositionError(
        position.account,
        position.symbol,
        "arithmetic",
        f"{type(exc).__name__}: a result does not fit {ARITHMETIC_PRECISION} exact digits",
    )
