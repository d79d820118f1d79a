"""Field-level helpers of the order state machine: reading, checking and comparing event fields.

Kept apart from `backbone.domain.order_state` so the state machine itself reads as the
transition table plus the few rules that move quantities. Everything here is pure.

Arithmetic. Every decimal operation of the state machine runs in `exact_context()`: a private
context wide enough for the product of two wire decimals (2 × PRECISION digits plus headroom)
that *traps* `decimal.Inexact`, so no sum, difference or product is ever rounded implicitly; an
operation that would lose a digit raises `InvalidOrderTransition` (rule ``arithmetic``) instead.
The one deliberate rounding, the average price, is a correctly rounded quotient (exact integer
quotient and remainder, then half-even to SCALE places), never a rounded quotient rounded again.
"""

from __future__ import annotations

import decimal
from decimal import Decimal

from backbone.domain.events import PRECISION, QUANTUM, SCALE, OrderEvent
from backbone.errors import InvalidOrderTransition

ZERO = Decimal(0)
_EXACT_PREC = 2 * PRECISION + 10
_EXACT_CTX = decimal.Context(prec=_EXACT_PREC, rounding=decimal.ROUND_HALF_EVEN,
                             traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow,
                                    decimal.Inexact, decimal.Rounded])
# Wide enough for the exact quotient of two exact products (see `round_half_even`).
_QUOTIENT_CTX = decimal.Context(prec=2 * _EXACT_PREC, rounding=decimal.ROUND_HALF_EVEN,
                                traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow,
                                       decimal.Inexact])
_ZERO_AT_SCALE = ZERO.scaleb(-SCALE)


class exact_context:  # noqa: N801 - used like the function it replaced: `with exact_context(order_id):`
    """Run decimal arithmetic that must not round; an implicit rounding is a refusal.

    A class rather than a @contextmanager generator: it is entered once per event on the hot
    path, and the generator protocol costs several microseconds more."""

    __slots__ = ("order_id", "_local")

    def __init__(self, order_id: str) -> None:
        self.order_id = order_id

    def __enter__(self) -> None:
        self._local = decimal.localcontext(_EXACT_CTX)
        self._local.__enter__()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        self._local.__exit__(exc_type, exc, tb)
        if exc_type is not None and issubclass(exc_type, (decimal.Inexact, decimal.Rounded)):
            raise InvalidOrderTransition(
                self.order_id, "arithmetic", f"an exact decimal operation would round ({exc!r})"
            ) from exc
        return False


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
        if twice > unit or (twice == unit and whole % 2):
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
