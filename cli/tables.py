"""How the CLI's tables show a value: each column has a kind, declared once by its name (or by
the table that prints it), never guessed from the value.

- money (P&L, notional, commission, value): 2 decimals, rounded half-even, thousands separators;
- price: its significant decimals, at least 2 and at most 8 (rounded half-even at 8, the wire
  scale), thousands separators;
- quantity: exact, without trailing zeros, thousands separators;
- count (rows, records, offsets, bytes): an integer with thousands separators;
- id (partitions, snapshot ids, sequence numbers): an integer as it is;
- seconds and rate: 3 decimals, rounded half-even, thousands separators; basis points: 2;
- time: ISO-8601 UTC to the microsecond with a Z, as the canonical JSON form;
- flag: yes or no.

NULL is an empty cell; numbers are right-aligned and never in scientific notation. `--json`
output does not come through here: it keeps every value exact (cli.common.canonical_value).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

from rich.table import Table
from rich.text import Text

from backbone.codec import json_form

_PRICE_PLACES = 8


def _decimal(value: Decimal | int) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        # a float would show its binary error; every number the CLI prints is a Decimal or an int
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


def thousandths(value: Decimal | int) -> str:
    return fixed(value, 3)


def timestamp(value: datetime | str) -> str:
    # a string here is a time a command already put in the canonical form for its JSON
    return value if isinstance(value, str) else json_form.format_datetime(value)


def bps(value: Decimal | int) -> str:
    return f"{fixed(value, 2)} bp"


def flag(value: bool) -> str:
    return "yes" if value else "no"


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    show: Callable[[Any], str]
    right: bool  # numbers right-aligned


TEXT = Kind("text", str, False)
MONEY = Kind("money", money, True)
PRICE = Kind("price", price, True)
QUANTITY = Kind("quantity", quantity, True)
COUNT = Kind("count", count, True)
ID = Kind("id", str, True)
SECONDS = Kind("seconds", thousandths, True)
RATE = Kind("rate", thousandths, True)
BPS = Kind("bps", bps, True)
TIME = Kind("time", timestamp, False)
FLAG = Kind("flag", flag, False)

#: the kind of each column name the commands print (view and table columns keep their names)
KINDS: dict[str, Kind] = {
    **dict.fromkeys(("account", "symbol", "side", "status", "order_id", "order_type", "time_in_force",
                     "projection", "topic", "action", "group", "source"), TEXT),
    **dict.fromkeys(("realized_pnl", "unrealized_pnl", "commission", "total_pnl", "net_notional",
                     "gross_notional"), MONEY),
    **dict.fromkeys(("avg_px", "mark_price", "price", "stop_price", "px", "last_px", "bid", "ask"), PRICE),
    **dict.fromkeys(("qty", "order_qty", "cum_qty", "leaves_qty", "last_qty"), QUANTITY),
    **dict.fromkeys(("open_positions", "next_offset", "checkpoint", "events_covered", "bytes", "expired"), COUNT),
    **dict.fromkeys(("id", "partition", "seq"), ID),
    **dict.fromkeys(("mark_time", "last_event_time", "event_time", "max_timestamp", "created_at"), TIME),
    "missing_marks": FLAG,
}


@dataclass(frozen=True, slots=True)
class Column:
    key: str  # the row's key, or the header of a positional row
    kind: Kind
    header: str
    null: str = ""  # what a None shows

    def cell(self, value: Any) -> str | Text:
        if value is None:
            return self.null
        return value if isinstance(value, Text) else self.kind.show(value)


def column(key: str, kind: Kind | None = None, header: str | None = None, *, null: str = "") -> Column:
    """A column named `key`: of `kind`, or of the kind KINDS declares for the name (KeyError if
    none: a new column is declared, not guessed)."""
    return Column(key, KINDS[key] if kind is None else kind, key if header is None else header, null)


def table(columns: Sequence[Column | str], rows: Iterable[Mapping[str, Any] | Sequence[Any]],
          **options: Any) -> Table:
    """A rich Table of `rows` (mappings read by column key, or sequences in column order), each
    cell shown as its column's kind; `options` go to Table (title, box ...)."""
    cols = [c if isinstance(c, Column) else column(c) for c in columns]
    out = Table(**options)
    for c in cols:
        out.add_column(c.header, justify="right" if c.kind.right else "left")
    for row in rows:
        values = [row[c.key] for c in cols] if isinstance(row, Mapping) else row
        out.add_row(*(c.cell(v) for c, v in zip(cols, values, strict=True)))
    return out
