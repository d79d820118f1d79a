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
from decimal import Decimal
from typing import Any

from rich.table import Table
from rich.text import Text

from backbone.codec import json_form
from backbone.readable import count, fixed, money, price, quantity


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
    **dict.fromkeys(("open_positions", "next_offset", "checkpoint", "events_covered", "bytes", "expired",
                     "change_on"), COUNT),
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
