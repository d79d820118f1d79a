"""A partition judged over a window of samples: each status's definition, its precedence, the
rate, a group's worst partition, and the sliding window (monitoring.evaluation, pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitoring.evaluation import Window, group_verdicts, judge
from monitoring.model import SEVERITY_ORDER, PartitionSample, Source, Status, Verdict

T0 = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
WINDOW = timedelta(seconds=60)


def sample(second: float, committed: int | None, log_end: int | None, *, lag_records: int | None = None,
           last_commit: float | None = None, error: str | None = None, partition: int = 0, group: str = "g",
           topic: str = "trading.orders", source: Source = "postgres",
           lag_seconds: Decimal | None = None) -> PartitionSample:
    """A sample `second` seconds after T0; the lag from the offsets unless given, and the last
    commit at the sample's time unless given (a consumer that commits as it reads)."""
    if lag_records is None and committed is not None and log_end is not None:
        lag_records = log_end - committed
    at = T0 + timedelta(seconds=second)
    return PartitionSample(at=at, group=group, source=source, topic=topic, partition=partition, committed=committed,
                           log_end=log_end, lag_records=lag_records, lag_seconds=lag_seconds,
                           last_commit=at if last_commit is None else T0 + timedelta(seconds=last_commit),
                           error=error)


def series(points: list[tuple[int, int]]) -> list[PartitionSample]:
    """Samples every 10 s of (committed, log_end), committed when the offset changed."""
    out: list[PartitionSample] = []
    changed = 0.0
    for i, (committed, log_end) in enumerate(points):
        if i and committed != points[i - 1][0]:
            changed = i * 10.0
        out.append(sample(i * 10.0, committed, log_end, last_commit=changed))
    return out


def status_of(samples: list[PartitionSample]) -> Status:
    return judge(samples, window=WINDOW).status


# -- each status ------------------------------------------------------------------------------------


def test_ok_when_caught_up() -> None:
    verdict = judge(series([(100, 100), (150, 150), (200, 200)]), window=WINDOW)
    assert (verdict.status, verdict.reason, verdict.lag_records) == (Status.OK, "caught up", 0)


def test_lag_zero_throughout_and_idle_is_ok_not_stalled() -> None:
    # nothing to consume: an offset that does not move is no stall, however old its commit
    samples = [sample(s, 100, 100, last_commit=-3600) for s in range(0, 70, 10)]
    assert status_of(samples) is Status.OK


def test_ok_when_lag_reached_zero_within_the_window() -> None:
    verdict = judge(series([(100, 100), (100, 140), (100, 180), (100, 220)]), window=WINDOW)
    assert verdict.status is Status.OK
    assert verdict.reason == "lag reached 0 within the window, now 120"


def test_warn_when_offsets_move_but_lag_grows() -> None:
    verdict = judge(series([(100, 150), (120, 190), (140, 230), (160, 270)]), window=WINDOW)
    assert verdict.status is Status.WARN
    assert verdict.reason == "consuming, but lag grew from 50 to 110 over the window"


def test_no_warn_when_the_lag_fell_at_some_step() -> None:
    # Burrow: lag that decreases at any step is a consumer keeping up with a noisy producer
    assert status_of(series([(100, 150), (140, 190), (180, 220), (200, 270)])) is Status.OK


def test_no_warn_on_a_trend_of_two_samples() -> None:
    assert status_of(series([(100, 150), (120, 190)])) is Status.OK


def test_stall_when_the_offset_stands_still_with_lag() -> None:
    # the commit was 30 s ago: within the window, so not stopped; 30 s is half the window
    samples = [sample(s, 500, 510 + 10 * s, last_commit=0) for s in (0, 10, 20, 30)]
    verdict = judge(samples, window=WINDOW)
    assert verdict.status is Status.STALL
    assert verdict.reason == f"offset 500 not moving since {T0.isoformat()} at least, lag 310"
    assert verdict.rate == Decimal("0.000")


def test_no_stall_before_half_a_window_of_standstill() -> None:
    samples = [sample(0, 400, 700, last_commit=0)] + [sample(s, 500, 800, last_commit=10) for s in (10, 20, 30)]
    assert status_of(samples) is Status.OK  # 20 s without a move: not yet half of 60 s


def test_stop_when_no_commit_for_longer_than_the_window() -> None:
    samples = [sample(s, 500, 600 + s, last_commit=-5) for s in range(0, 70, 10)]
    verdict = judge(samples, window=WINDOW)
    assert verdict.status is Status.STOP
    assert verdict.reason.startswith("no commit since 2026-12-07T09:29:55+00:00 (longer than the window of 60 s)")


def test_a_standstill_is_stall_then_stop_once_the_last_commit_is_a_window_old() -> None:
    def at(now: int) -> Status:
        return status_of([sample(s, 500, 600 + s, last_commit=0) for s in range(max(0, now - 60), now + 1, 5)])

    assert [at(n) for n in (10, 25, 30, 45, 60, 65, 90)] == [
        Status.OK, Status.OK, Status.STALL, Status.STALL, Status.STALL, Status.STOP, Status.STOP]


def test_stop_needs_lag() -> None:
    assert status_of([sample(s, 500, 500, last_commit=-600) for s in (30, 60)]) is Status.OK


def test_stop_judged_on_one_sample_when_the_last_commit_is_known() -> None:
    assert status_of([sample(0, 500, 600, last_commit=-61)]) is Status.STOP


def test_rewind_when_the_committed_offset_moves_back() -> None:
    verdict = judge(series([(900, 1000), (950, 1000), (10, 1000), (400, 1000)]), window=WINDOW)
    assert verdict.status is Status.REWIND
    assert verdict.reason == "committed offset moved back from 950 to 10"
    assert verdict.rate == Decimal("39.000")  # since the rewind: 390 records in 10 s


def test_rewind_wins_over_stall() -> None:
    # moved back, then stands still with lag: the rewind is what happened
    samples = [sample(0, 900, 1000, last_commit=0)] + [sample(s, 0, 1000, last_commit=10) for s in (10, 40, 50)]
    assert status_of(samples) is Status.REWIND


def test_rewind_wins_over_caught_up_while_it_is_in_the_window() -> None:
    samples = series([(100, 100), (0, 100), (100, 100)])
    assert status_of(samples) is Status.REWIND
    # once the move left the window, the partition is judged as usual again
    later = samples + [sample(s, 100, 100) for s in (80, 90)]
    assert status_of(later) is Status.OK


def test_deleted_offsets_count_as_a_rewind() -> None:
    samples = [sample(0, 500, 600), sample(10, None, 600, lag_records=600)]
    assert judge(samples, window=WINDOW).reason == "committed offset moved back from 500 to none"


def test_err_when_the_last_sample_has_an_error() -> None:
    samples = series([(100, 200), (150, 250)]) + [sample(20, None, None, error="group gone")]
    verdict = judge(samples, window=WINDOW)
    assert (verdict.status, verdict.reason, verdict.lag_records, verdict.rate) == (Status.ERR, "group gone", None, None)


def test_an_err_sample_amid_good_ones_is_skipped() -> None:
    samples = [sample(0, 100, 200), sample(10, None, None, error="no leader"), sample(20, 150, 260),
               sample(30, 200, 330)]
    verdict = judge(samples, window=WINDOW)
    assert verdict.status is Status.WARN
    assert verdict.rate == Decimal("3.333")  # 100 records over 30 s


def test_err_when_the_log_was_truncated_below_the_committed_offset() -> None:
    verdict = judge([sample(0, 500, 600), sample(10, 500, 20, lag_records=0)], window=WINDOW)
    assert verdict.status is Status.ERR
    assert verdict.reason == "committed offset 500 is beyond the log end 20 (topic recreated or truncated)"


def test_err_when_the_lag_is_unknown() -> None:
    assert judge([sample(0, None, None)], window=WINDOW).reason == "lag unknown"


def test_single_sample_with_lag_is_ok_until_movement_can_be_judged() -> None:
    verdict = judge([sample(0, 100, 400)], window=WINDOW)
    assert (verdict.status, verdict.reason, verdict.rate) == (Status.OK, "consuming, lag 300", None)


def test_no_commit_yet_with_records_waiting_stalls() -> None:
    samples = [replace(sample(s, None, 50 + s, lag_records=50 + s), last_commit=None) for s in (0, 10, 20, 30, 40)]
    verdict = judge(samples, window=WINDOW)
    assert verdict.status is Status.STALL
    assert verdict.reason.startswith("no offset committed yet since")


def test_a_first_commit_is_movement() -> None:
    samples = [sample(0, None, 100, lag_records=100), sample(10, 60, 100), sample(20, 100, 120), sample(30, 120, 130)]
    verdict = judge(samples, window=WINDOW)
    assert verdict.status is Status.OK
    assert verdict.rate == Decimal("3.000")  # from the first committed offset: 60 records in 20 s


def test_samples_older_than_the_window_are_ignored() -> None:
    old = [sample(-100, 0, 50), sample(-90, 0, 50)]  # lag 0 long ago, and a standstill
    recent = [sample(s, 100 + 10 * s, 300 + 20 * s) for s in (0, 10, 20)]
    assert status_of(old + recent) is Status.WARN


def test_the_verdict_carries_the_last_sample() -> None:
    last = sample(10, 150, 200, lag_seconds=Decimal("2.5"))
    verdict = judge([sample(0, 100, 200), last], window=WINDOW)
    assert (verdict.group, verdict.source, verdict.topic, verdict.partition) == ("g", "postgres", "trading.orders", 0)
    assert (verdict.committed, verdict.log_end, verdict.lag_records, verdict.lag_seconds, verdict.last_commit) == (
        150, 200, 50, Decimal("2.5"), last.at)
    assert verdict.rate == Decimal("5.000")


def test_judge_needs_a_sample() -> None:
    with pytest.raises(ValueError):
        judge([], window=WINDOW)


# -- properties ------------------------------------------------------------------------------------

points = st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 1000), st.booleans()), min_size=1, max_size=12)


def _samples(raw: list[tuple[int, int, bool]]) -> list[PartitionSample]:
    """Samples every 5 s; an offset at or below the log end, or an error where asked."""
    out = []
    for i, (committed, extra, failed) in enumerate(raw):
        out.append(sample(i * 5.0, None if failed else committed, None if failed else committed + extra,
                          error="no leader" if failed else None, last_commit=0))
    return out


@given(points)
def test_every_status_has_its_evidence(raw: list[tuple[int, int, bool]]) -> None:
    samples = _samples(raw)
    verdict = judge(samples, window=WINDOW)
    good = [s for s in samples if s.error is None and s.at >= samples[-1].at - WINDOW]
    lags = [s.lag_records for s in good]
    offsets = [s.committed for s in good]
    if samples[-1].error is not None:
        assert verdict.status is Status.ERR
        return
    moved_back = any(b < a for a, b in zip(offsets, offsets[1:], strict=False))  # type: ignore[operator]
    assert (verdict.status is Status.REWIND) == moved_back
    if verdict.status in (Status.STALL, Status.STOP, Status.WARN):
        assert 0 not in lags
    if verdict.status is Status.STALL:
        assert offsets[-1] == offsets[-2]
    if verdict.status is Status.WARN:
        assert lags == sorted(lags) and lags[-1] > lags[0] and offsets[-1] > offsets[0]  # type: ignore[operator]
    if not moved_back and 0 in lags:
        assert verdict.status is Status.OK
    if verdict.rate is not None and not moved_back:
        assert verdict.rate >= 0


@given(points, st.integers(1, 30))
def test_the_window_judges_what_judge_judges_on_its_slice(raw: list[tuple[int, int, bool]], seconds: int) -> None:
    window = Window(timedelta(seconds=seconds))
    samples = _samples(raw)
    for s in samples:
        window.add([s])
    key = ("g", "postgres", "trading.orders", 0)
    kept = window.samples(key)
    assert kept == [s for s in samples if s.at >= samples[-1].at - timedelta(seconds=seconds)]
    assert window.verdicts() == [judge(kept, window=timedelta(seconds=seconds))]


# -- the window ------------------------------------------------------------------------------------


def test_window_keeps_partitions_apart_and_judges_the_last_pass_only() -> None:
    window = Window(timedelta(seconds=20))
    window.add([sample(0, 10, 10, partition=0), sample(0, 10, 20, partition=1)])
    window.add([sample(10, 10, 10, partition=0)])  # partition 1 missing from this pass
    assert [(v.partition, v.status) for v in window.verdicts()] == [(0, Status.OK)]
    window.add([sample(20, 10, 30, partition=1), sample(20, 10, 10, partition=0)])
    assert [v.partition for v in window.verdicts()] == [0, 1]
    assert [s.at for s in window.samples(("g", "postgres", "trading.orders", 1))] == [T0, T0 + timedelta(seconds=20)]
    window.add([sample(50, 10, 10, partition=0)])
    assert window.samples(("g", "postgres", "trading.orders", 1)) == []  # fell out: forgotten


def test_window_sorts_samples_added_out_of_order() -> None:
    window = Window(timedelta(seconds=60))
    window.add([sample(20, 30, 40), sample(0, 10, 40), sample(10, 20, 40)])
    assert [s.committed for s in window.samples(("g", "postgres", "trading.orders", 0))] == [10, 20, 30]


def test_window_length_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Window(timedelta(0))


# -- a group's worst partition ---------------------------------------------------------------------


def verdict(partition: int, status: Status, lag: int | None, seconds: str | None, *, group: str = "g",
            topic: str = "trading.orders", source: Source = "postgres") -> Verdict:
    return Verdict(group=group, source=source, topic=topic, partition=partition, status=status, reason="",
                   lag_records=lag, lag_seconds=None if seconds is None else Decimal(seconds), rate=None)


def test_group_verdicts_take_the_worst_status_and_the_largest_lags() -> None:
    found = group_verdicts([verdict(2, Status.STALL, 5, "1.5"), verdict(0, Status.OK, 40, None),
                            verdict(1, Status.WARN, None, "9"), verdict(0, Status.OK, 1, "0", source="kafka"),
                            verdict(0, Status.ERR, None, None, topic="trading.marketdata")])
    assert [(g.group, g.source, g.topic, g.status, g.lag_records, g.lag_seconds, [p.partition for p in g.partitions])
            for g in found] == [
        ("g", "kafka", "trading.orders", Status.OK, 1, Decimal("0"), [0]),
        ("g", "postgres", "trading.marketdata", Status.ERR, None, None, [0]),
        ("g", "postgres", "trading.orders", Status.STALL, 40, Decimal("9"), [0, 1, 2]),
    ]


@given(st.lists(st.sampled_from(list(Status)), min_size=1, max_size=8))
def test_the_group_status_is_the_worst_by_severity_order(statuses: list[Status]) -> None:
    [found] = group_verdicts([verdict(i, s, i, None) for i, s in enumerate(statuses)])
    assert found.status is max(statuses, key=SEVERITY_ORDER.index)
    assert found.lag_records == len(statuses) - 1
