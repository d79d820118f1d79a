"""Kafka record timestamps: milliseconds since the epoch, and back; and where a record lies
against a time to the microsecond.

Producers stamp each record with its event time; replay cuts the log by the same clock. One
conversion for both, exact (integer arithmetic, no float rounding) and floored, because a
record stamped at millisecond M covers every event time in [M, M + 1 ms). Event times are
microseconds: within the millisecond of a time T, only a record's own event time tells
whether it is after T (`after`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from backbone.compiled import compiled

# exact and ~5x faster for UTC datetimes, the producers' case (None for anything else); where
# the extension is not built, the Python arithmetic below
_utc_millis = compiled("utc_millis")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_US = timedelta(microseconds=1)


def timestamp_ms(when: datetime) -> int:
    """Milliseconds since the epoch, rounded down (the record-timestamp granularity)."""
    if _utc_millis is not None:
        ms = _utc_millis(when)
        if ms is not None:
            return ms
    if when.tzinfo is None:
        raise ValueError("naive datetime: give a time zone (or use parse_time, which assumes UTC)")
    return (when - EPOCH) // _MS


def from_timestamp_ms(ms: int) -> datetime:
    """The UTC time of a record timestamp."""
    return EPOCH + timedelta(milliseconds=ms)


def timestamp_us(when: datetime) -> int:
    """Microseconds since the epoch, exact (the event-time granularity)."""
    if when.tzinfo is None:
        raise ValueError("naive datetime: give a time zone")
    return (when - EPOCH) // _US


def after(t_us: int, stamp_ms: int, event_us: Callable[[], int | None]) -> bool:
    """Whether a record is after the time `t_us` (microseconds since the epoch).

    Its record timestamp `stamp_ms` (the event time's millisecond) decides, except when that is
    `t_us`'s own millisecond: then its event time does, to the microsecond, and only then is
    `event_us()` asked (it decodes the record). A record without an event time (None: one that
    does not decode) counts as the start of its millisecond, so it is not after `t_us`."""
    t_ms = t_us // 1000
    if stamp_ms != t_ms:
        return stamp_ms > t_ms
    us = event_us()
    return us is not None and us > t_us
