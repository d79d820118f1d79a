"""Avro binary primitives of the codec: the single-object header, varints, timestamps, decimals.

Writers return the wire bytes of one value, readers take ``(buf, pos)`` and return
``(value, next position)``; both raise `Invalid` for what Avro cannot hold (a long beyond 64
bits, a decimal needing rounding, a naive datetime, a varint over 10 bytes). The tables
(`LEN`, `SHORT`, `CONT14`, ...) are what the generated code of `backbone.codec.generated`
indexes instead of computing.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal

#: The two marker bytes that start every single-object-encoded record.
MAGIC = b"\xc3\x01"
#: Marker + 8-byte fingerprint.
HEADER_SIZE = 10


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
MIN_LONG, MAX_LONG = -(1 << 63), (1 << 63) - 1
MIN_INT, MAX_INT = -(1 << 31), (1 << 31) - 1
#: Exact decimal arithmetic for scaling (scaleb never rounds with MAX_PREC).
EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


class Invalid(ValueError):
    """A value or a byte string the codec refuses; the message says why (no field name). The
    codec turns it into `EncodeError` or `DecodeError` naming the record and the field."""


BYTE = tuple(bytes((i,)) for i in range(256))


def uvarint(z: int) -> bytes:
    """Avro varint of an already zigzag-encoded non-negative int."""
    if z < 0x80:
        return BYTE[z]
    if z < 0x4000:
        return bytes((z & 0x7F | 0x80, z >> 7))
    out = bytearray()
    while z >= 0x80:
        out.append(z & 0x7F | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def long_bytes(n: int) -> bytes:
    """Avro `long`: zigzag varint, range-checked."""
    if not MIN_LONG <= n <= MAX_LONG:
        raise Invalid(f"{n} is out of range for an Avro long (64-bit)")
    return uvarint((n << 1) ^ (n >> 63))


def int_bytes(n: int) -> bytes:
    if not MIN_INT <= n <= MAX_INT:
        raise Invalid(f"{n} is out of range for an Avro int (32-bit)")
    return uvarint((n << 1) ^ (n >> 63))


#: Avro encodings of a length n (zigzag 2n) for short strings/bytes, plain and after union index 1.
LEN = tuple(uvarint(2 * n) for n in range(64))
LEN_U = tuple(b"\x02" + uvarint(2 * n) for n in range(64))


#: The instants a datetime can hold in UTC, in microseconds since the epoch.
MIN_MICROS = (datetime.min.replace(tzinfo=UTC) - EPOCH) // MICROSECOND
MAX_MICROS = (datetime.max.replace(tzinfo=UTC) - EPOCH) // MICROSECOND


def timestamp_micros(value: datetime) -> int:
    if value.tzinfo is None or value.utcoffset() is None:
        raise Invalid("naive datetime: need a timezone-aware (UTC) datetime")
    micros = (value - EPOCH) // MICROSECOND
    if not MIN_MICROS <= micros <= MAX_MICROS:
        raise Invalid(f"{value.isoformat()} is outside the years 1..9999 in UTC")
    return micros


def timestamp_varint(micros: int) -> bytes:
    """Varint of a timestamp outside the fast path's range (before 1970-01-26 or after 2541)."""
    if not MIN_MICROS <= micros <= MAX_MICROS:
        raise Invalid("outside the years 1..9999 in UTC")
    return uvarint((micros << 1) ^ (micros >> 63))


@functools.cache
def make_unscaled(scale: int, precision: int) -> Callable[[Decimal], int]:
    """Decimal -> unscaled int at `scale`, refusing anything that would need rounding."""
    limit_adjusted = precision  # adjusted() of the scaled value must stay below precision

    def unscaled(value: Decimal) -> int:
        if not isinstance(value, Decimal):
            raise Invalid(f"expected Decimal, got {type(value).__name__}")
        if not value.is_finite():
            raise Invalid(f"{value} is not a finite number")
        q = value.scaleb(scale, EXACT)
        if q.adjusted() >= limit_adjusted and q:
            raise Invalid(f"{value} has more than {precision - scale} integer digits (decimal({precision}, {scale}))")
        n = int(q)
        if n != q:
            raise Invalid(
                f"{value} has more than {scale} fractional digits; "
                f"the codec does not round (decimal({precision}, {scale}))"
            )
        return n

    return unscaled


@functools.cache
def make_decimal_raw(scale: int, precision: int) -> Callable[[Decimal], bytes]:
    unscaled = make_unscaled(scale, precision)

    def decimal_raw(value: Decimal) -> bytes:
        n = unscaled(value)
        return n.to_bytes(((n if n >= 0 else ~n).bit_length() + 8) >> 3, "big", signed=True)

    return decimal_raw


@functools.cache
def make_decimal_field(scale: int, precision: int) -> tuple[Callable[[str], bytes], Callable[[Decimal], bytes]]:
    """Two ways to the Avro bytes field (length + two's complement) of a decimal:
    ``from_text(str(value))`` for exact Decimals and ``from_value(value)`` for anything else.

    The text of a Decimal is plain digits for the usual values ("101.25", "-0.00012345"), so
    the unscaled integer is the digits padded to `scale` places: cheaper than any Decimal
    arithmetic. Exponent forms ("1E+2", "1.5E-7") and more than `scale` places (exact only
    with trailing zeros) take the exact Decimal route.
    """
    zeros = tuple("0" * k for k in range(scale + 1))
    low, high = -(10**precision), 10**precision
    unscaled = make_unscaled(scale, precision)

    def from_text(text: str) -> bytes:
        whole, _, frac = text.partition(".")
        k = len(frac)
        if k <= scale and "E" not in text:
            n = int(whole + frac + zeros[scale - k])  # "NaN", "Infinity": ValueError
            if not low < n < high:
                raise Invalid(
                    f"{text} has more than {precision - scale} integer digits (decimal({precision}, {scale}))"
                )
        else:
            n = unscaled(Decimal(text))
        raw = n.to_bytes(((n if n >= 0 else ~n).bit_length() + 8) >> 3, "big", signed=True)
        return LEN[len(raw)] + raw  # at most 17 bytes for precision 38: one length byte

    def from_value(value: Decimal) -> bytes:
        n = unscaled(value)
        raw = n.to_bytes(((n if n >= 0 else ~n).bit_length() + 8) >> 3, "big", signed=True)
        return LEN[len(raw)] + raw

    return from_text, from_value


@functools.cache
def make_decimal_from(scale: int, precision: int) -> Callable[[bytes], Decimal]:
    limit = 10**precision

    def decimal_from(raw: bytes) -> Decimal:
        n = int.from_bytes(raw, "big", signed=True)
        if not -limit < n < limit:
            raise Invalid(f"decimal with more than {precision} digits")
        return Decimal(n).scaleb(-scale, EXACT)

    return decimal_from


# Reading (the decoders)


def read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """Zigzag varint at buf[pos] -> (value, next position)."""
    b = buf[pos]
    pos += 1
    n = b & 0x7F
    shift = 7
    while b & 0x80:
        if shift > 63:
            raise Invalid("varint longer than 10 bytes")
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
    value = (n >> 1) ^ -(n & 1)
    if not MIN_LONG <= value <= MAX_LONG:
        raise Invalid("varint out of range for an Avro long")
    return value, pos


def read_count(buf: bytes, pos: int) -> tuple[int, int]:
    """A non-negative varint (length, enum index)."""
    n, pos = read_long(buf, pos)
    if n < 0:
        raise Invalid(f"negative length or index {n}")
    return n, pos


def read_int(buf: bytes, pos: int) -> tuple[int, int]:
    n, pos = read_long(buf, pos)
    if not MIN_INT <= n <= MAX_INT:
        raise Invalid(f"{n} is out of range for an Avro int")
    return n, pos


unpack_double = struct.Struct("<d").unpack_from
unpack_float = struct.Struct("<f").unpack_from
unpack_4u16 = struct.Struct("<4H").unpack_from
pack_double = struct.Struct("<d").pack
pack_float = struct.Struct("<f").pack

#: A one-byte varint (< 0x80, even: zigzag of 0..63) -> its length or index; -1 otherwise.
SHORT = tuple(b >> 1 if b < 0x80 and not b & 1 else -1 for b in range(256))

#: 14-bit groups as two varint bytes: with both continuation bits (CONT14), and final (LAST14).
CONT14 = tuple(bytes((i & 0x7F | 0x80, i >> 7 | 0x80)) for i in range(1 << 14))
LAST14 = tuple(bytes((i & 0x7F | 0x80, i >> 7)) if i >= 0x80 else BYTE[i] for i in range(1 << 14))
