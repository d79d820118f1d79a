"""Field-level helpers of the order state machine: reading, checking and comparing event fields.

Kept apart from `backbone.domain.order_state` so the state machine itself reads as the
transition table plus the few rules that move quantities. Everything here is pure.

Arithmetic. Every decimal operation of the state machine runs in `exact_context()`: a private
context wide enough for the product of two wire decimals (2 × PRECISION digits plus headroom)
that *traps* `decimal.Inexact`, so no sum, difference or product is ever rounded implicitly; an
operation that would lose a digit raises `InvalidOrderTransition` (rule ``arithmetic``) instead.
The one deliberate rounding, the average price, is a correctly rounded quotient (exact rational
division, then half-even to SCALE places), never a rounded quotient rounded again.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from fractions import Fraction

from backbone.domain.events import PRECISION, QUANTUM, SCALE, OrderEvent
from backbone.errors import InvalidOrderTransition

ZERO = Decimal(0)
_EXACT_PREC = 2 * PRECISION + 10


@contextmanager
def exact_context(order_id: str) -> Iterator[None]:
    """Run decimal arithmetic that must not round; an implicit rounding is a refusal."""
    with decimal.localcontext(prec=_EXACT_PREC, rounding=decimal.ROUND_HALF_EVEN) as ctx:
        ctx.traps[decimal.Inexact] = True
        ctx.traps[decimal.Rounded] = True
        try:
            yield
        except (decimal.Inexact, decimal.Rounded) as exc:
            raise InvalidOrderTransition(
                order_id, "arithmetic", f"an exact decimal operation would round ({exc!r})"
            ) from exc


def round_half_even(numerator: Decimal, denominator: Decimal) -> Decimal:
    """numerator / denominator rounded once, half-even, to SCALE places (denominator != 0)."""
    scaled = Fraction(numerator) / Fraction(denominator) * 10**SCALE
    return Decimal(round(scaled)).scaleb(-SCALE)  # round(Fraction) is exact banker's rounding


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
