"""CSV cells a spreadsheet cannot run: the CSV exports (`audit trades --format csv`, the
evidence pack's events.csv) write every cell through `cell`.

A spreadsheet reads a cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return as a
formula (CSV injection). Such a text is written with a single quote in front, which makes it
text, as OWASP's CSV-injection advice says. A number is written as it is, `-5` stays the number
-5: an int, a Decimal, or a text that is a plain decimal numeral (how the canonical JSON form
writes decimals: an optional `-`, digits, an optional fraction), which no spreadsheet reads as
a formula. JSON Lines are never changed: they are data for programs, not cells.
"""

from __future__ import annotations

import re
from decimal import Decimal

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMERAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def cell(value: object) -> object:
    """`value` as a CSV cell: None as empty, a bool as true/false, numbers as they are, a text
    that would start a formula behind a single quote."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return value
    text = str(value)
    if text.startswith(FORMULA_STARTS) and not _NUMERAL.fullmatch(text):
        return "'" + text
    return text
