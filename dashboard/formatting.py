"""How the page writes figures: numbers as backbone.readable writes them (the CLI's tables
too), an absent one as an empty cell; times to the second."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from backbone import readable


def money(value: Decimal | None) -> str:
    """P&L, notional, exposure: `-1,234,567.89`."""
    return "" if value is None else readable.money(value)


def price(value: Decimal | None) -> str:
    """A price with the decimals it has, at least 2 and at most 8: `65.71`, `0.00012345`."""
    return "" if value is None else readable.price(value)


def qty(value: Decimal | None) -> str:
    """A quantity as exact as it is, without trailing zeros: `1,200`, `0.5`."""
    return "" if value is None else readable.quantity(value)


def when(value: datetime | None) -> str:
    """A UTC time to the second: `2024-01-02 14:30:00`."""
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def count(value: int | None) -> str:
    """Records: `12,345`."""
    return "" if value is None else readable.count(value)


def seconds(value: Decimal | None) -> str:
    """Seconds to the millisecond, as `backbone lag` writes them: `1,234.568`."""
    return "" if value is None else readable.fixed(value, 3)
