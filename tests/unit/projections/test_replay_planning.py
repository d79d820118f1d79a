"""Replay planning as pure functions: times, cuts, offsets, snapshot choice, the max-timestamp
search (no services)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backbone.errors import UsageError
from backbone.kafka.log_bounds import Bounds
from backbone.kafka.reader import max_timestamps_below, offset_at
from backbone.record_time import from_timestamp_ms, timestamp_ms
from cli.common import exit_code
from projections.replay import (
    PartitionReport,
    ReplayRefused,
    check_offset,
    check_time_range,
    choose_snapshot,
    parse_offsets,
    parse_time,
    past_expired,
    plan_partition,
)
from projections.snapshots import SnapshotMeta

TP = ("trading.orders", 3)
MARKS = ("trading.marketdata", 3)
D = Decimal


def snap(offset: int, i: int = 1) -> SnapshotMeta:
    return SnapshotMeta(i, "trading", TP[0], TP[1], offset, None, offset, datetime.now(tz=UTC), 100)


# -- times --------------------------------------------------------------------------------------------

def test_timestamp_ms_is_exact_and_floors() -> None:
    t = datetime(2026, 11, 20, 15, 15, 0, 999_999, tzinfo=UTC)
    assert timestamp_ms(t) == timestamp_ms(t.replace(microsecond=999_000))
    assert timestamp_ms(t) == timestamp_ms(t.replace(microsecond=0)) + 999
    assert from_timestamp_ms(timestamp_ms(t)) == t.replace(microsecond=999_000)
    assert timestamp_ms(datetime(1970, 1, 1, tzinfo=UTC) - timedelta(microseconds=1)) == -1
    with pytest.raises(ValueError, match="naive"):
        timestamp_ms(datetime(2026, 11, 20))


def test_parse_time_reads_iso_8601_with_an_offset_to_the_microsecond() -> None:
    utc = datetime(2026, 11, 20, 15, 15, tzinfo=UTC)
    assert parse_time("2026-11-20T15:15:00Z") == utc
    assert parse_time("2026-11-20T10:15:00-05:00") == utc
    assert parse_time("2026-11-20 15:15+00:00") == utc
    assert parse_time("2026-11-20T15:15:00.250+00:00") == utc + timedelta(milliseconds=250)
    assert parse_time("2026-11-20T15:15:00.000001Z") == utc + timedelta(microseconds=1)
    assert parse_time("2026-11-20T10:15:00-05:00").tzinfo == UTC  # times are UTC from here on
    assert parse_time("1970-01-01T00:00:00Z") == datetime(1970, 1, 1, tzinfo=UTC)
    with pytest.raises(UsageError, match="not ISO-8601"):
        parse_time("10:15 yesterday")
    # -2 ms and -1 ms would reach Kafka as its "earliest" and "latest" lookup codes
    for before_epoch in ("1969-12-31T23:59:59.998Z", "1969-12-31T23:59:59.999Z", "0001-01-01T00:00:00Z"):
        with pytest.raises(UsageError, match="before 1970-01-01T00:00:00Z"):
            parse_time(before_epoch)
    for unrepresentable in ("9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+01:00"):
        with pytest.raises(UsageError, match="outside the years 1..9999 in UTC"):
            parse_time(unrepresentable)


@pytest.mark.parametrize("naive", ["2026-11-20T15:15:00", "2026-11-20 15:15:00.000250", "2026-11-20"])
def test_parse_time_refuses_a_time_without_an_offset_as_a_usage_error(naive: str) -> None:
    with pytest.raises(UsageError, match=r"no UTC offset; add one, e\.g\. 2026-11-20T.*Z") as refused:
        parse_time(naive)
    assert exit_code(refused.value) == 2


def test_a_time_range_may_not_end_before_it_starts() -> None:
    t = datetime(2026, 11, 20, 15, 15, tzinfo=UTC)
    check_time_range(t, t)  # the records at exactly t
    check_time_range(t, t + timedelta(microseconds=1))
    check_time_range(None, t)
    with pytest.raises(UsageError, match=r"--to-timestamp 2026-11-20T15:14:59.999999\+00:00 is before "
                                         r"--from-timestamp 2026-11-20T15:15:00\+00:00") as refused:
        check_time_range(t, t - timedelta(microseconds=1))
    assert exit_code(refused.value) == 2


# -- offsets ------------------------------------------------------------------------------------------

def test_parse_offsets_forms_and_refusals() -> None:
    o, m = "trading.orders", "trading.marketdata"
    assert parse_offsets("0:5, 3:7", o, m) == {(o, 0): 5, (o, 3): 7}
    assert parse_offsets("orders:1:2,marketdata:1:9", o, m) == {(o, 1): 2, (m, 1): 9}
    assert parse_offsets("trading.marketdata:4:0", o, m) == {(m, 4): 0}
    for bad, why in (("x", "PARTITION:OFFSET"), ("1:-2", "PARTITION:OFFSET"), ("other:1:2", "not a topic"),
                     ("1:2,orders:1:3", "named twice"), (" , ", "no offsets")):
        with pytest.raises(ReplayRefused, match=why):
            parse_offsets(bad, o, m)


def test_offset_at_maps_no_answer_to_the_end() -> None:
    assert offset_at(-1, 42) == 42
    assert offset_at(7, 42) == 7
    assert offset_at(50, 42) == 42


def test_check_offset_names_the_record_and_the_reason() -> None:
    check_offset(TP, 10, 10, 20)
    check_offset(TP, 20, 10, 20)  # the end itself: an empty range
    with pytest.raises(ReplayRefused, match=r"trading.orders\[3\]@9: start offset is below the log start offset 10"):
        check_offset(TP, 9, 10, 20)
    with pytest.raises(ReplayRefused, match=r"@21: start offset is beyond the end of the log \(next offset 20\)"):
        check_offset(TP, 21, 10, 20)


def test_choose_snapshot_takes_the_newest_at_or_before() -> None:
    snaps = [snap(100, 1), snap(300, 2), snap(200, 3)]
    assert choose_snapshot(snaps, 250).id == 3
    assert choose_snapshot(snaps, 300).id == 2
    assert choose_snapshot(snaps, 99) is None
    assert choose_snapshot([], 10) is None


# -- plans ----------------------------------------------------------------------------------------------

def test_plan_of_an_empty_partition_and_a_cut_before_the_first_record() -> None:
    empty = plan_partition(TP, begin=0, end=0, low=0, high=0, snapshot=None)
    assert (empty.start, empty.begin, empty.end, empty.to_read) == (0, 0, 0, 0)
    before_first = plan_partition(TP, begin=0, end=0, low=0, high=500, snapshot=None)
    assert before_first.to_read == 0
    trimmed_empty = plan_partition(TP, begin=40, end=40, low=40, high=40, snapshot=snap(40))
    assert trimmed_empty.to_read == 0


def test_plan_starts_from_the_snapshot_and_reads_only_the_tail() -> None:
    plan = plan_partition(TP, begin=250, end=250, low=0, high=900, snapshot=snap(200), end_us=123_456)
    assert (plan.start, plan.begin, plan.end, plan.to_read, plan.end_us) == (200, 250, 250, 50, 123_456)
    no_snap = plan_partition(TP, begin=250, end=400, low=0, high=900, snapshot=None)
    assert (no_snap.start, no_snap.to_read) == (0, 400)


def test_plan_refuses_what_retention_has_lost() -> None:
    with pytest.raises(ReplayRefused, match=r"needs records 0…99, deleted by retention \(log start 100\), and no "
                                            r"snapshot at or before offset 150"):
        plan_partition(TP, begin=150, end=150, low=100, high=900, snapshot=None)
    with pytest.raises(ReplayRefused, match=r"snapshot 1 of trading.orders\[3\]@50\) needs records 50…99"):
        plan_partition(TP, begin=150, end=150, low=100, high=900, snapshot=snap(50))
    ok = plan_partition(TP, begin=150, end=150, low=100, high=900, snapshot=snap(120))
    assert ok.start == 120
    exactly = plan_partition(TP, begin=50, end=50, low=50, high=900, snapshot=snap(50))
    assert exactly.to_read == 0  # the snapshot is the whole answer; nothing to read
    with pytest.raises(ReplayRefused, match="below the log start"):
        plan_partition(TP, begin=0, end=900, low=100, high=900, snapshot=None)


def test_plan_skips_what_expired_on_an_expiring_topic_and_reads_the_rest() -> None:
    """The projector's rule: records of an expiring topic deleted before they were read are
    skipped and counted; the state starts from what remains."""
    plan = plan_partition(MARKS, begin=150, end=150, low=100, high=900, snapshot=None, expiring=True)
    assert (plan.start, plan.expired, plan.read_from, plan.to_read) == (0, 100, 100, 50)
    after_snapshot = plan_partition(MARKS, begin=150, end=150, low=100, high=900, snapshot=snap(50), expiring=True)
    assert (after_snapshot.start, after_snapshot.expired, after_snapshot.read_from) == (50, 50, 100)
    covered = plan_partition(MARKS, begin=150, end=150, low=100, high=900, snapshot=snap(120), expiring=True)
    assert (covered.expired, covered.read_from) == (0, 120)
    whole = plan_partition(MARKS, begin=0, end=900, low=100, high=900, snapshot=None, expiring=True)
    assert (whole.begin, whole.expired, whole.to_read) == (0, 100, 800)
    gone = plan_partition(MARKS, begin=0, end=60, low=100, high=900, snapshot=None, expiring=True)
    assert (gone.expired, gone.read_from, gone.to_read) == (60, 60, 0)  # never past the end of the range
    nothing_to_read = plan_partition(MARKS, begin=40, end=40, low=100, high=900, snapshot=snap(40), expiring=True)
    assert nothing_to_read.expired == 0
    check_offset(MARKS, 9, 10, 20, expiring=True)
    with pytest.raises(ReplayRefused, match="beyond the end of the log"):
        plan_partition(MARKS, begin=901, end=901, low=100, high=900, snapshot=None, expiring=True)
    with pytest.raises(ReplayRefused, match="beyond the end of the log"):
        check_offset(MARKS, 21, 10, 20, expiring=True)


@given(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50), st.integers(0, 50), st.booleans())
def test_past_expired_follows_the_projector_verdict(nxt: int, low: int, extra: int, limit: int, expiring: bool) -> None:
    verdict, resume = past_expired(Bounds(MARKS[0], 3, nxt, low, low + extra), limit, expiring=expiring)
    if verdict == "expired":
        assert expiring and nxt < low and resume == min(low, limit)
    else:
        assert resume == nxt
        assert verdict == ("beyond_end" if nxt > low + extra else "within" if nxt >= low else "deleted")


def test_report_counts_expired_ranges_joining_those_that_follow_each_other() -> None:
    report = PartitionReport(plan_partition(MARKS, begin=0, end=0, low=0, high=0, snapshot=None), begin=0, end=0)
    report.skip(0, 0)
    assert report.expired_ranges == [] and report.expired == 0
    report.skip(0, 10)
    report.skip(10, 25)  # deleted again while it was read, before anything after 10 was
    report.skip(40, 45)
    assert report.expired_ranges == [(0, 25), (40, 45)] and report.expired == 30


def test_plan_refuses_bad_ranges() -> None:
    with pytest.raises(ReplayRefused, match="end offset is beyond the end"):
        plan_partition(TP, begin=0, end=901, low=0, high=900, snapshot=None)
    with pytest.raises(ReplayRefused, match=r"the end \(10\) is before the start \(20\)"):
        plan_partition(TP, begin=20, end=10, low=0, high=900, snapshot=None)
    with pytest.raises(ValueError):
        plan_partition(TP, begin=20, end=30, low=0, high=900, snapshot=snap(25))


# -- the max-timestamp search -----------------------------------------------------------------------

def oracle(logs: dict[tuple[str, int], list[int]], calls: list[int]):
    def first_offsets_after(points: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        calls.append(len(points))
        return {tp: next((i for i, ts in enumerate(logs[tp]) if ts > ms), len(logs[tp])) for tp, ms in points.items()}
    return first_offsets_after


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2_000_000_000_000), min_size=0, max_size=40), st.data())
def test_max_timestamp_search_finds_the_exact_maximum(stamps: list[int], data) -> None:
    nxt = data.draw(st.integers(min_value=0, max_value=len(stamps)))
    known_upto = data.draw(st.integers(min_value=0, max_value=nxt))
    known = max(stamps[:known_upto]) if known_upto else None
    calls: list[int] = []
    got = max_timestamps_below({TP: (nxt, known)}, oracle({TP: stamps}, calls), ceiling_ms=1_800_000_000_000)
    assert got[TP] == (max(stamps[:nxt]) if nxt else None)
    assert len(calls) <= 64


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=50), min_size=0, max_size=30), st.data())
def test_max_timestamp_search_sees_only_retained_records(stamps: list[int], data) -> None:
    """Records below the log start are gone: the maximum is over [low, next_offset), None if empty."""
    low = data.draw(st.integers(min_value=0, max_value=len(stamps)))
    nxt = data.draw(st.integers(min_value=0, max_value=len(stamps)))

    def first_offsets_after(points: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        return {tp: next((i for i in range(low, len(stamps)) if stamps[i] > ms), len(stamps))
                for tp, ms in points.items()}

    got = max_timestamps_below({TP: (nxt, None)}, first_offsets_after, ceiling_ms=1_000)
    assert got[TP] == (max(stamps[low:nxt]) if low < nxt else None)


def test_max_timestamp_search_runs_partitions_in_step_and_handles_future_stamps() -> None:
    logs = {("a", 0): [5, 3, 9, 1], ("a", 1): [10**13, 2], ("a", 2): []}
    calls: list[int] = []
    got = max_timestamps_below({("a", 0): (3, None), ("a", 1): (2, None), ("a", 2): (0, None)}, oracle(logs, calls),
                               ceiling_ms=1_000)
    assert got == {("a", 0): 9, ("a", 1): 10**13, ("a", 2): None}
    assert max(calls) == 2  # one lookup serves every partition still searching
