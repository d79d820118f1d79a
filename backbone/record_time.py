"""Kafka record timestamps: milliseconds since the epoch, and back.

Producers stamp each record with its event time; replay cuts the log by the same clock. One
conversion for both, exact (integer arithmetic, no float rounding) and floored, because a
record stamped at millisecond M covers every event time in [M, M + 1 ms).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backbone.compiled import compiled

# exact and ~5x faster for UTC datetimes, the producers' case (None for anything else); where
# the extension is not built, the Python arithmetic below
_utc_millis = compiled("utc_millis")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


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
