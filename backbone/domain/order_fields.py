"""Field-level helpers of the order state machine: reading, checking and comparing event fields.

Kept apart from `backbone.domain.order_state` so the state machine itself reads as the
transition table plus the few rules that move quantities. Everything here is pure.

Arithmetic. Every decimal operation of the state machine runs on `EXACT_CTX` (its methods, or
inside `exact_context()`): a private context wide enough for the product of two wire decimals
(2 × PRECISION digits plus headroom) that *traps* `decimal.Inexact`, so no sum, difference or
product is ever rounded implicitly; an operation that would lose a digit raises
`InvalidOrderTransition` (rule ``arithmetic``, `arithmetic_refusal`) instead.
The one deliberate rounding, the average price, is a correctly rounded quotient (exact integer
quotient and remainder, then half-even to SCALE places), never a rounded quotient rounded again.
"""

from __future__ import annotations

import decimal
from decimal import Decimal
from types import TracebackType

from backbone.domain.events import PRECISION, QUANTUM, SCALE, OrderEvent
from backbone.errors import InvalidOrderTransition

ZERO = Decimal(0)
_EXACT_PREC = 2 * PRECISION + 10
EXACT_CTX = decimal.Context(prec=_EXACT_PREC, rounding=decimal.ROUND_HALF_EVEN,
                            traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow,
                                   decimal.Inexact, decimal.Rounded])
# Wide enough for the exact quotient of two exact products (see `round_half_even`).
_QUOTIENT_CTX = decimal.Context(prec=2 * _EXACT_PREC, rounding=decimal.ROUND_HALF_EVEN,
                                traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow,
                                       decimal.Inexact])
_ZERO_AT_SCALE = ZERO.scaleb(-SCALE)


class exact_context:  # noqa: N801 - used like a function: `with exact_context(order_id):`
    """Run decimal arithmetic written with operators exactly: an implicit rounding is a refusal.

    `EXACT_CTX` itself becomes the current context (localcontext would copy it): only its flags
    change and nothing reads them, since every condition that matters traps. The state machine
    itself calls the context's methods instead (order_state)."""

    __slots__ = ("order_id", "_outer")

    def __init__(self, order_id: str) -> None:
        self.order_id = order_id

    def __enter__(self) -> None:
        self._outer = decimal.getcontext()
        decimal.setcontext(EXACT_CTX)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        decimal.setcontext(self._outer)
        if exc_type is not None and issubclass(exc_type, (decimal.Inexact, decimal.Rounded)):
            raise arithmetic_refusal(self.order_id, exc) from exc


def arithmetic_refusal(order_id: str, exc: BaseException | None) -> InvalidOrderTransition:
    """The refusal of an event whose exact arithmetic would have had to round."""
    return InvalidOrderTransition(order_id, "arithmetic", f"an exact decimal operation would round ({exc!r})")


def round_half_even(numerator: Decimal, denominator: Decimal) -> Decimal:
    """numerator / denominator rounded once, half-even, to SCALE places (denominator != 0).

    Correctly rounded: the integer quotient and remainder by one quantum of the denominator
    are exact (the context traps Inexact), then the remainder decides, ties to even."""
    c = _QUOTIENT_CTX
    if denominator < 0:
        numerator, denominator = c.minus(numerator), c.minus(denominator)
    unit = c.multiply(denominator, QUANTUM)
    whole, rest = c.divmod(numerator, unit)  # whole truncated toward zero, rest has its sign
    if rest:
        twice = c.add(rest, rest)
        if twice < 0:
            twice = c.minus(twice)
        if twice > unit or (twice == unit and c.remainder(whole, 2)):
            whole = c.add(whole, 1) if rest > 0 else c.subtract(whole, 1)
    if not whole:
        return _ZERO_AT_SCALE  # never -0
    return c.multiply(whole, QUANTUM)


def quantize_px(value: Decimal) -> Decimal:
    """A reported price brought to the wire scale, half-even, for comparison."""
    with decimal.localcontext(prec=_EXACT_PREC):
        return value.quantize(QUANTUM, rounding=decimal.ROUND_HALF_EVEN)


def required(event: OrderEvent, name: str) -> object:
    """The value of an optional field this event type needs (rule ``missing_field:<name>``)."""
    value = getattr(event, name)
    if value is None:
        raise InvalidOrderTransition(
            event.order_id, f"missing_field:{name}", f"{event.event_type} needs {name}"
        )
    return value


def positive_quantity(event: OrderEvent, name: str) -> Decimal:
    """A quantity field that must be a finite Decimal > 0 (rule ``bad_value:<name>``)."""
    value = required(event, name)
    if not (isinstance(value, Decimal) and value.is_finite() and value > 0):
        raise InvalidOrderTransition(
            event.order_id, f"bad_value:{name}",
            f"{name} must be a finite Decimal > 0, got {value!r}",
        )
    return value


def finite_price(event: OrderEvent, name: str) -> Decimal:
    """A finite Decimal price; negative prices exist (calendar spreads, some futures)."""
    value = required(event, name)
    if not (isinstance(value, Decimal) and value.is_finite()):
        raise InvalidOrderTransition(
            event.order_id, f"bad_value:{name}", f"{name} must be a finite Decimal, got {value!r}"
        )
    return value


def optional_price(event: OrderEvent, name: str) -> Decimal | None:
    """An optional price (limit or stop): None, or a finite Decimal."""
    return None if getattr(event, name) is None else finite_price(event, name)


def same_value(name: str, reported: object, computed: object) -> bool:
    """Exact equality of a reported field with the computed one (avg_px quantized first)."""
    if computed is None or reported is None:
        return reported is None and computed is None
    if isinstance(computed, Decimal):
        if not (isinstance(reported, Decimal) and reported.is_finite()):
            return False
        if name == "avg_px":
            reported = quantize_px(reported)
        return reported == computed
    return reported == computed


def check_reported(event: OrderEvent, computed: dict[str, object]) -> None:
    """Every reported field must equal the computed one (rule ``field_mismatch:<name>``)."""
    for name, value in computed.items():
        reported = getattr(event, name)
        if not same_value(name, reported, value):
            raise InvalidOrderTransition(
                event.order_id,
                f"field_mismatch:{name}",
                f"{event.event_type} seq {event.seq} reports {name}={reported!r}, "
                f"the state machine computes {value!r}",
            )
