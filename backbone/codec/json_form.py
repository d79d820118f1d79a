"""The canonical JSON form of the event model.

Used by ``backbone publish FILE`` (JSON Lines: one object per line, blank lines are the
caller's business) and by every ``--json`` output of the CLI. One record is one JSON object
whose ``"type"`` is the record name (``"OrderEvent"``, ``"MarketMark"``, ``"Alert"``) and whose
other keys are the dataclass fields of `backbone.domain.events`. A full `OrderEvent`, as
`dumps` writes it (one line; wrapped here)::

    {"type":"OrderEvent","event_id":"1d7c3a52-3f0e-5b8e-9a4c-2f6d8e1b7c90","event_type":"FILLED",
     "event_time":"2026-11-22T14:30:00.000000Z","ingest_time":"2026-11-22T14:30:00.001250Z",
     "seq":3,"account":"ACC-1","symbol":"AAPL","side":"BUY","order_type":"LIMIT",
     "time_in_force":"DAY","order_id":"O-1001","cl_ord_id":"C-1001","order_qty":"100",
     "cum_qty":"60","leaves_qty":"40","avg_px":"101.25","order_status":"PARTIALLY_FILLED",
     "orig_cl_ord_id":null,"exec_id":"E-7","exec_ref_id":null,"price":"101.5",
     "stop_price":null,"last_qty":"60","last_px":"101.25","commission":"0.35",
     "currency":"USD","liquidity":"ADDED","reason":null,"actor":"trader-7",
     "correlation_id":null,"causation_id":null}

Output rules (`to_json_dict`, `dumps`):

* ``"type"`` first, then every field in declaration order; an absent optional field is null.
* Decimal: a JSON string holding the exact value in plain notation (never an exponent),
  without trailing fractional zeros; zero is ``"0"``: ``Decimal("101.25000000")`` -> ``"101.25"``,
  ``Decimal("100.00000000")`` -> ``"100"``, ``Decimal("1E+2")`` -> ``"100"``,
  ``Decimal("-0.5")`` -> ``"-0.5"``. (One spelling per value: the form compares as text.)
* datetime: ISO-8601 in UTC with exactly six fractional digits and ``Z``:
  ``"2026-11-22T14:30:00.000000Z"``. A naive datetime is refused (`JsonFormError`).
* enum: its name (the StrEnum value), e.g. ``"FILLED"``. str and int: JSON string and integer.
* `dumps`: compact separators (``,`` and ``:``), non-ASCII characters as themselves (UTF-8)
  except the Unicode line breaks U+0085, U+2028 and U+2029, which are escaped like the control
  characters: the output is one line for every line splitter.

Input rules (`from_json_dict`, `loads`), strict so that a typo in a publish file fails loudly:

* ``"type"`` is required. Every field without a default is required; an optional field may
  be null or missing. An unknown key is an error (`loads` also refuses duplicate keys).
* Decimal: a JSON string such as ``"101.25"``, ``"101.25000000"``, ``"-3"``, ``"1.5e2"``. A JSON
  number is refused, an integer too: many JSON writers hold numbers as binary floats, so a
  price or a quantity beyond 2**53 may have been rounded before it was written, and a string is
  the one spelling that stays exact end to end (it is also what `dumps` writes). The value
  must fit ``decimal(38, 8)`` exactly: at most 8 significant fractional digits
  (``"1.123456789"`` is refused, ``"1.500000000"`` is 1.5) and at most 30 integer digits; NaN
  and infinities are refused.
* datetime: ``YYYY-MM-DDTHH:MM:SS[.ffffff]`` followed by ``Z`` or ``+HH:MM``/``-HH:MM``; any
  offset is converted to UTC; no offset (a naive time) is refused, as are more than six
  fractional digits.
* enum: the exact (case-sensitive) name. int: a JSON integer (not a boolean, not ``1.0``)
  within the signed 64-bit range.
* str: a JSON string. Ids, symbols, accounts and codes (every string field but the free text
  of `FREE_TEXT`) must hold a character other than whitespace: an empty symbol or order id
  would be published as a key or an id of its own.

Every input problem raises `JsonFormError` whose `field` names the offending key (``"type"``
for the record type, None for a line that is not a JSON object) and whose message names the
field and the problem.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import types
import typing
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from typing import Any

from backbone.domain.events import PRECISION, SCALE, Alert, MarketMark, OrderEvent
from backbone.errors import BackboneError

__all__ = [
    "FREE_TEXT",
    "RECORD_TYPES",
    "JsonFormError",
    "dumps",
    "format_datetime",
    "format_decimal",
    "from_json_dict",
    "loads",
    "to_json_dict",
]

Record = OrderEvent | MarketMark | Alert

#: Record name ("type" value) -> dataclass.
RECORD_TYPES: dict[str, type] = {cls.__name__: cls for cls in (OrderEvent, MarketMark, Alert)}
#: The string fields that are free text and may be empty; every other one names something.
FREE_TEXT = frozenset({"reason", "message"})

_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)
_INTEGER_DIGITS = PRECISION - SCALE
_MIN_LONG, _MAX_LONG = -(1 << 63), (1 << 63) - 1
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DATETIME_TEXT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-9]{2})"
)


class JsonFormError(BackboneError):
    """A JSON object (or line) that is not a record in the canonical JSON form.

    `field` names the offending key; None when the input as a whole is the problem.
    """

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class _Spec:
    name: str
    py_type: Any  # str, int, Decimal, datetime or a StrEnum class
    nullable: bool
    required: bool  # no default in the dataclass


def _specs(cls: type) -> tuple[_Spec, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        nullable = False
        if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
            args = [a for a in typing.get_args(t) if a is not type(None)]
            nullable = len(args) < len(typing.get_args(t))
            t = args[0] if len(args) == 1 else t
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        out.append(_Spec(f.name, t, nullable, not has_default))
    return tuple(out)


_SPECS: dict[type, tuple[_Spec, ...]] = {cls: _specs(cls) for cls in RECORD_TYPES.values()}


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def format_decimal(value: Decimal) -> str:
    """The canonical text of a decimal: exact, plain notation, no trailing fractional zeros."""
    if not value.is_finite():
        raise ValueError(f"{value} is not a finite number")
    if not value:
        return "0"
    return format(value.normalize(_EXACT), "f")


def format_datetime(value: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC; naive datetimes raise ValueError."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: need a timezone-aware (UTC) datetime")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def to_json_dict(record: Record) -> dict[str, Any]:
    """The canonical JSON object of `record` (a dict ready for `json.dumps`)."""
    specs = _SPECS.get(type(record))
    if specs is None:
        raise JsonFormError(f"not a record type: {type(record).__name__} (known: {', '.join(RECORD_TYPES)})")
    out: dict[str, Any] = {"type": type(record).__name__}
    for spec in specs:
        value = getattr(record, spec.name)
        try:
            if value is None:
                out[spec.name] = None
            elif spec.py_type is Decimal:
                out[spec.name] = format_decimal(value)
            elif spec.py_type is datetime:
                out[spec.name] = format_datetime(value)
            elif isinstance(value, enum.Enum):
                out[spec.name] = value.value
            else:
                out[spec.name] = value
        except (
            ValueError,
            TypeError,
            AttributeError,
            ArithmeticError,
        ) as e:  # ArithmeticError: decimal signals, OverflowError
            raise JsonFormError(f"{type(record).__name__}.{spec.name}={value!r}: {e}", field=spec.name) from e
    return out


_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


def dumps(record: Record) -> str:
    """One line of canonical JSON for `record` (no trailing newline)."""
    # json escapes the ASCII control characters; the Unicode line breaks are escaped too so that
    # the line stays one line for every line splitter (str.splitlines, editors). They can only
    # occur inside strings, where the escape means the same character.
    return json.dumps(to_json_dict(record), ensure_ascii=False, separators=(",", ":")).translate(_LINE_BREAKS)


# --------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, (float, Decimal)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _fail(spec: _Spec, value: Any, problem: str) -> JsonFormError:
    if isinstance(value, str):
        shown = repr(value) if len(value) <= 80 else repr(value[:77] + "...")
    elif isinstance(value, Decimal):  # a JSON number with a fraction, as written (`loads` never makes floats)
        shown = str(value)
    else:
        shown = repr(value)
    return JsonFormError(f"field {spec.name!r}: {problem} (got {_json_type(value)} {shown})", field=spec.name)


def _parse_decimal(spec: _Spec, value: Any) -> Decimal:
    if not isinstance(value, str):
        if _json_type(value) in ("integer", "number"):
            raise _fail(spec, value, 'wrong type: a decimal is a JSON string like "101.25", never a JSON number '
                        "(a writer's binary float may have rounded it)")
        raise _fail(spec, value, 'wrong type: expected a decimal string like "101.25"')
    if not _DECIMAL_TEXT.fullmatch(value):
        raise _fail(spec, value, 'bad decimal: expected a decimal string like "101.25"')
    d = Decimal(value)
    # Bound the exponent first: "1e999999999" must not turn into a huge integer.
    if d and d.adjusted() >= _INTEGER_DIGITS:
        raise _fail(
            spec, value, f"bad decimal: more than {_INTEGER_DIGITS} integer digits (decimal({PRECISION}, {SCALE}))"
        )
    scaled = d.scaleb(SCALE, _EXACT)
    if scaled != scaled.to_integral_value(context=_EXACT):
        raise _fail(
            spec,
            value,
            f"bad decimal: more than {SCALE} fractional digits (decimal({PRECISION}, {SCALE}); "
            "the form does not round)",
        )
    return d


def _parse_datetime(spec: _Spec, value: Any) -> datetime:
    if not isinstance(value, str):
        raise _fail(spec, value, 'wrong type: expected an ISO-8601 UTC time string like "2026-11-22T14:30:00.000000Z"')
    if not _DATETIME_TEXT.fullmatch(value):
        if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+", value):
            raise _fail(spec, value, 'bad time: no UTC offset (naive time); end it with "Z" or "+HH:MM"')
        raise _fail(spec, value, 'bad time: expected ISO-8601 "YYYY-MM-DDTHH:MM:SS[.ffffff]Z" (or "+HH:MM" offset)')
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise _fail(spec, value, f"bad time: {e}") from None
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise _fail(spec, value, "bad time: out of range after conversion to UTC") from None


def _parse_value(spec: _Spec, value: Any) -> Any:
    t = spec.py_type
    if t is str:
        if not isinstance(value, str):
            raise _fail(spec, value, "wrong type: expected a string")
        if not value.strip() and spec.name not in FREE_TEXT:
            raise _fail(spec, value,
                        "empty or only whitespace: an id, symbol, account or code needs a visible character")
        return value
    if t is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _fail(spec, value, "wrong type: expected an integer")
        if not _MIN_LONG <= value <= _MAX_LONG:
            raise _fail(spec, value, "integer out of the signed 64-bit range")
        return value
    if t is Decimal:
        return _parse_decimal(spec, value)
    if t is datetime:
        return _parse_datetime(spec, value)
    if isinstance(t, type) and issubclass(t, enum.Enum):
        member = t._value2member_map_.get(value) if isinstance(value, str) else None
        if member is None:
            allowed = ", ".join(m.value for m in t)
            if isinstance(value, str):
                raise _fail(spec, value, f"unknown {t.__name__} value (expected one of: {allowed})")
            raise _fail(spec, value, f"wrong type: expected a {t.__name__} name string (one of: {allowed})")
        return member
    return value  # a field type this module does not know: passed through


def from_json_dict(obj: dict[str, Any]) -> Record:
    """The record of a canonical JSON object; `JsonFormError` naming the field otherwise."""
    if not isinstance(obj, dict):
        raise JsonFormError(f"expected a JSON object, got {_json_type(obj)}")
    type_name = obj.get("type")
    if "type" not in obj:
        raise JsonFormError(
            f"field 'type': missing required field (the record name, one of: {', '.join(RECORD_TYPES)})", field="type"
        )
    cls = RECORD_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise JsonFormError(
            f"field 'type': unknown record type {type_name!r} (expected one of: {', '.join(RECORD_TYPES)})",
            field="type",
        )
    specs = _SPECS[cls]
    names = {s.name for s in specs}
    for key in obj:
        if key != "type" and key not in names:
            raise JsonFormError(f"field {key!r}: unknown field for {type_name}", field=key)
    kwargs: dict[str, Any] = {}
    for spec in specs:
        if spec.name not in obj:
            if spec.required:
                raise JsonFormError(f"field {spec.name!r}: missing required field of {type_name}", field=spec.name)
            continue
        value = obj[spec.name]
        if value is None:
            if not spec.nullable:
                raise JsonFormError(f"field {spec.name!r}: must not be null in {type_name}", field=spec.name)
            kwargs[spec.name] = None
            continue
        kwargs[spec.name] = _parse_value(spec, value)
    return cls(**kwargs)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise JsonFormError(f"field {key!r}: duplicate key", field=key)
        obj[key] = value
    return obj


def _refuse_constant(name: str) -> Any:
    raise JsonFormError(f"invalid JSON: {name} is not a JSON value")


def loads(line: str) -> Record:
    """The record on one line of canonical JSON (JSON Lines)."""
    try:
        obj = json.loads(line, parse_float=Decimal, object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)
    except json.JSONDecodeError as e:
        raise JsonFormError(f"invalid JSON: {e.msg} at column {e.colno}") from None
    except (TypeError, ValueError, RecursionError) as e:
        raise JsonFormError(f"invalid JSON: {e}") from None
    return from_json_dict(obj)
