"""How numbers read for people: money with 2 decimals, prices with their significant decimals
(2 to 8, the wire scale), quantities exact without trailing zeros, counts as integers; every one
with thousands separators, rounded half-even where rounded, never in scientific notation. The
CLI's tables (cli.tables) and the dashboard write numbers through here, so both read alike."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal

_PRICE_PLACES = 8


def _decimal(value: Decimal | int) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        # a float would show its binary error; every number shown is a Decimal or an int
        raise TypeError(f"not a Decimal or int: {value!r}")
    return Decimal(value)


def _context(value: Decimal, places: int) -> Context:
    """Enough digits for `value` at `places` decimals: quantize never rounds to fewer."""
    return Context(prec=max(28, value.adjusted() + places + 2), rounding=ROUND_HALF_EVEN)


def _grouped(value: Decimal) -> str:
    """Plain notation with thousands separators; zero without its sign."""
    return f"{abs(value) if value.is_zero() else value:,f}"


def fixed(value: Decimal | int, places: int) -> str:
    """`value` rounded half-even to `places` decimals, every one of them shown."""
    d = _decimal(value)
    if not d.is_finite():
        return str(d)
    return _grouped(d.quantize(Decimal(1).scaleb(-places), context=_context(d, places)))


def money(value: Decimal | int) -> str:
    return fixed(value, 2)


def price(value: Decimal | int) -> str:
    d = _decimal(value)
    if not d.is_finite():
        return str(d)
    ctx = _context(d, _PRICE_PLACES)
    rounded = d.quantize(Decimal(1).scaleb(-_PRICE_PLACES), context=ctx)
    exponent = rounded.normalize(ctx).as_tuple().exponent
    assert isinstance(exponent, int)
    return _grouped(rounded.quantize(Decimal(1).scaleb(min(exponent, -2)), context=ctx))


def quantity(value: Decimal | int) -> str:
    d = _decimal(value)
    if not d.is_finite():
        return str(d)
    # as many digits as the value has: normalize never rounds it
    return _grouped(d.normalize(Context(prec=max(28, len(d.as_tuple().digits)))))


def count(value: Decimal | int) -> str:
    d = _decimal(value)
    if d != d.to_integral_value():
        raise ValueError(f"not a whole number: {value}")
    return f"{int(d):,}"
