"""How the page writes numbers: money with 2 decimals, prices with their significant decimals
(2 to 8), quantities without trailing zeros; thousands separators everywhere, half-even."""

from __future__ import annotations

import decimal
from datetime import datetime
from decimal import Decimal

_PLACES = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN)
_PRICE_QUANTUM = Decimal(1).scaleb(-8)


def _fixed(value: Decimal, places: int) -> str:
    rounded = value.quantize(Decimal(1).scaleb(-places), context=_PLACES)
    return f"{rounded.copy_abs() if rounded.is_zero() else rounded:,.{places}f}"  # no "-0.00"


def money(value: Decimal | None) -> str:
    """P&L, notional, exposure: `-1,234,567.89`."""
    return "" if value is None else _fixed(value, 2)


def price(value: Decimal | None) -> str:
    """A price with the decimals it has, at least 2 and at most 8: `65.71`, `0.00012345`."""
    if value is None:
        return ""
    rounded = value.quantize(_PRICE_QUANTUM, context=_PLACES).normalize(_PLACES)
    return _fixed(rounded, min(max(-int(rounded.as_tuple().exponent), 2), 8))


def qty(value: Decimal | None) -> str:
    """A quantity as exact as it is, without trailing zeros: `1,200`, `0.5`."""
    if value is None:
        return ""
    reduced = value.normalize(_PLACES)
    return _fixed(reduced, max(-int(reduced.as_tuple().exponent), 0))


def when(value: datetime | None) -> str:
    """A UTC time to the second: `2024-01-02 14:30:00`."""
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")
