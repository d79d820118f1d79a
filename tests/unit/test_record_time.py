"""Where a record lies against a time to the microsecond (`record_time.after`): the boundary
rule of `state --as-of`, `replay --from-timestamp/--to-timestamp` and `checkpoints create
--as-of` (docs/replay.md, "Point-in-time semantics")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backbone.record_time import after, timestamp_ms, timestamp_us

T = datetime(2026, 11, 20, 15, 15, 0, 500_250, tzinfo=UTC)
US = timedelta(microseconds=1)


def record_after(t: datetime, event_time: datetime) -> bool:
    """`after` for a record our producers wrote: stamped with its event time's millisecond."""
    return after(timestamp_us(t), timestamp_ms(event_time), lambda: timestamp_us(event_time))


def test_timestamp_us_is_exact() -> None:
    assert timestamp_us(T) - timestamp_us(T.replace(microsecond=0)) == 500_250
    assert timestamp_us(T) // 1000 == timestamp_ms(T)
    assert timestamp_us(datetime(1970, 1, 1, tzinfo=UTC) - US) == -1
    with pytest.raises(ValueError, match="naive"):
        timestamp_us(datetime(2026, 11, 20))


@pytest.mark.parametrize("t", [T, T.replace(microsecond=500_000), T.replace(microsecond=500_999),
                               T.replace(microsecond=0)])
def test_within_a_millisecond_of_t_each_record_is_judged_by_its_event_time(t: datetime) -> None:
    offsets = [-900, -1, 0, 1, 900]  # µs from T: the same millisecond and the ones beside it
    assert [record_after(t, t + k * US) for k in offsets] == [False, False, False, True, True]


def test_the_event_time_is_decoded_only_for_records_stamped_in_ts_millisecond() -> None:
    t_us = timestamp_us(T)

    def undecodable() -> int | None:
        raise AssertionError("decoded a record that its timestamp decides")

    assert after(t_us, timestamp_ms(T) + 1, undecodable)
    assert not after(t_us, timestamp_ms(T) - 1, undecodable)
    asked: list[int] = []
    assert after(t_us, timestamp_ms(T), lambda: asked.append(1) or t_us + 1)
    assert asked == [1]


def test_a_record_without_an_event_time_counts_as_the_start_of_its_millisecond() -> None:
    assert not after(timestamp_us(T), timestamp_ms(T), lambda: None)


@given(t=st.integers(0, 10**16), event=st.integers(0, 10**16))
def test_after_is_event_time_after_t_for_records_stamped_with_their_event_time(t: int, event: int) -> None:
    assert after(t, event // 1000, lambda: event) == (event > t)
    # "at or after t" (the start of a replay range) is "after t - 1 µs"
    assert (not after(t - 1, event // 1000, lambda: event)) == (event < t)


@given(t=st.integers(0, 10**12), offsets=st.lists(st.integers(-3000, 3000), max_size=30))
def test_a_cut_by_after_keeps_exactly_the_records_up_to_the_first_one_after_t(t: int, offsets: list[int]) -> None:
    """The as-of cut of one partition: offsets up to the first record after t; when event times
    rise with the offset (one producer), that is every record at or before t."""
    events = sorted(max(t + k, 0) for k in offsets)
    cut = next((i for i, e in enumerate(events) if after(t, e // 1000, lambda e=e: e)), len(events))
    assert events[:cut] == [e for e in events if e <= t]
