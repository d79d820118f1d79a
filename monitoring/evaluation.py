"""Judging a partition's progress over a sliding window of samples (Burrow's model, plus time).

A partition's samples are judged together, oldest first, the window ending at the last one.
A sample is *usable* when it has no error, its lag is known and its committed offset is not
beyond the log end; the others are skipped, except the last: the present must be known. The
first rule that holds gives the status:

1. ERR: the last sample is not usable (no leader, group gone, topic missing, lag unknown, or
   the committed offset beyond the log end: the topic was recreated or truncated).
2. REWIND: the committed offset moved back between two usable samples of the window (a rebuild,
   an offset reset, offsets deleted). It wins over every status below while the move is in the
   window, even once caught up again: a rewind is news in itself.
3. OK: the lag was 0 in a usable sample of the window (Burrow: a partition that reached its end
   is not in error).
4. STOP: the lag stayed above 0 and the last commit is older than the window: nobody commits.
   Judged from the sample's `last_commit`; without it a stopped partition stays STALL.
5. STALL: the lag stayed above 0 and the committed offset did not move over the last half of
   the window at least. Half, not the whole window: a projector commits only when its offset
   moves, so "not moved for a window" and "no commit for a window" are one condition for it;
   STALL is the first half-window of a standstill, STOP what it becomes once a window passes.
6. WARN: the offset moved forward over the window while the lag never fell from one sample to
   the next and ended higher than it began (three samples at least: a trend needs two steps).
   Burrow's "not decreasing at any step": a consumer keeping up with noisy lag is not warned.
7. OK otherwise: consuming.

The rate is the committed offset's movement over the span of the usable samples since the last
rewind, in records a second (None with fewer than two such samples). A window should span
several of a group's commit intervals, or an idle stretch between commits reads as a stall.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from monitoring.model import SEVERITY_ORDER, GroupVerdict, PartitionSample, Source, Status, Verdict

_RANK = {status: rank for rank, status in enumerate(SEVERITY_ORDER)}
_RATE_STEP = Decimal("0.001")
_MICROSECOND = timedelta(microseconds=1)

_N = TypeVar("_N", int, Decimal)

#: a partition of one group read from one source
PartitionKey = tuple[str, Source, str, int]


def _lag(sample: PartitionSample) -> int | None:
    if sample.lag_records is not None:
        return sample.lag_records
    if sample.committed is not None and sample.log_end is not None:
        return sample.log_end - sample.committed
    return None


def _problem(sample: PartitionSample) -> str | None:
    """Why `sample` cannot be judged, or None."""
    if sample.error is not None:
        return sample.error
    if sample.committed is not None and sample.log_end is not None and sample.committed > sample.log_end:
        return (f"committed offset {sample.committed} is beyond the log end {sample.log_end} "
                "(topic recreated or truncated)")
    lag = _lag(sample)
    if lag is None:
        return "lag unknown"
    if lag < 0:
        return f"negative lag {lag}"
    return None


def _seconds(span: timedelta) -> Decimal:
    return Decimal(span // _MICROSECOND) / 1_000_000


def _rate(run: Sequence[PartitionSample]) -> Decimal | None:
    """Records a second the committed offset moved over `run` (usable samples, no rewind)."""
    known = [s for s in run if s.committed is not None]
    if len(known) < 2 or known[-1].at <= known[0].at:
        return None
    first, last = known[0], known[-1]
    assert first.committed is not None and last.committed is not None
    return ((last.committed - first.committed) / _seconds(last.at - first.at)).quantize(_RATE_STEP)


def _moved_back(before: PartitionSample, after: PartitionSample) -> bool:
    # offsets deleted (None after a value) count as a rewind: the group starts over from its reset policy
    return before.committed is not None and (after.committed is None or after.committed < before.committed)


def _status(usable: list[PartitionSample], window: timedelta) -> tuple[Status, str, list[PartitionSample]]:
    """The status of a partition whose last sample is usable, why, and the samples since the
    last rewind (the rate's span)."""
    last = usable[-1]
    lags = [_lag(s) or 0 for s in usable]
    rewinds = [i for i in range(1, len(usable)) if _moved_back(usable[i - 1], usable[i])]
    run = usable[rewinds[-1]:] if rewinds else usable
    if rewinds:
        i = rewinds[-1]
        return (Status.REWIND, f"committed offset moved back from {usable[i - 1].committed} to "
                               f"{usable[i].committed if usable[i].committed is not None else 'none'}", run)
    if 0 in lags:
        return (Status.OK, "caught up" if lags[-1] == 0 else f"lag reached 0 within the window, now {lags[-1]}",
                run)
    if last.last_commit is not None and last.at - last.last_commit > window:
        return (Status.STOP, f"no commit since {last.last_commit.isoformat()} (longer than the window of "
                             f"{_seconds(window)} s), lag {lags[-1]}", run)
    # the newest sample at least half a window old: the offset must not have moved since
    since = max((i for i, s in enumerate(usable) if s.at <= last.at - window / 2), default=None)
    if since is not None and all(s.committed == last.committed for s in usable[since:]):
        where = "no offset committed yet" if last.committed is None else f"offset {last.committed} not moving"
        return Status.STALL, f"{where} since {usable[since].at.isoformat()} at least, lag {lags[-1]}", run
    first = usable[0]
    moved = first.committed is None or (last.committed is not None and last.committed > first.committed)
    rising = all(b >= a for a, b in zip(lags, lags[1:], strict=False)) and lags[-1] > lags[0]
    if len(usable) >= 3 and moved and rising:
        return Status.WARN, f"consuming, but lag grew from {lags[0]} to {lags[-1]} over the window", run
    return Status.OK, f"consuming, lag {lags[-1]}", run


def judge(samples: Sequence[PartitionSample], *, window: timedelta) -> Verdict:
    """The verdict on one partition of one group and source: `samples` oldest first, the window
    ending at the last sample's `at` (older samples are ignored). Rules: the module docstring."""
    if not samples:
        raise ValueError("judge needs one sample at least")
    last = samples[-1]
    start = last.at - window
    problem = _problem(last)
    if problem is not None:
        status, reason, rate = Status.ERR, problem, None
    else:
        usable = [s for s in samples if s.at >= start and _problem(s) is None]
        status, reason, run = _status(usable, window)
        rate = _rate(run)
    return Verdict(group=last.group, source=last.source, topic=last.topic, partition=last.partition,
                   status=status, reason=reason, lag_records=_lag(last) if problem is None else last.lag_records,
                   lag_seconds=last.lag_seconds, rate=rate, committed=last.committed, log_end=last.log_end,
                   last_commit=last.last_commit)


def _largest(values: Iterable[_N | None]) -> _N | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def group_verdicts(verdicts: Iterable[Verdict]) -> list[GroupVerdict]:
    """Per (group, source, topic), sorted: the worst partition's status (SEVERITY_ORDER) and the
    largest lags; partitions in order."""
    by_topic: dict[tuple[str, Source, str], list[Verdict]] = {}
    for verdict in verdicts:
        by_topic.setdefault((verdict.group, verdict.source, verdict.topic), []).append(verdict)
    result = []
    for (group, source, topic), parts in sorted(by_topic.items()):
        parts.sort(key=lambda v: v.partition)
        result.append(GroupVerdict(group=group, source=source, topic=topic,
                                   status=max((v.status for v in parts), key=_RANK.__getitem__),
                                   lag_records=_largest(v.lag_records for v in parts),
                                   lag_seconds=_largest(v.lag_seconds for v in parts),
                                   partitions=tuple(parts)))
    return result


def _key(sample: PartitionSample) -> PartitionKey:
    return sample.group, sample.source, sample.topic, sample.partition


def _at(sample: PartitionSample) -> datetime:
    return sample.at


class Window:
    """The samples of every partition over the last `length`, up to the newest sample added.
    `verdicts` judges the partitions the last `add` sampled: a partition missing from it (a
    failed pass, a group gone) gets no verdict, and its alerts keep their state."""

    def __init__(self, length: timedelta) -> None:
        if length <= timedelta(0):
            raise ValueError("a window's length must be positive")
        self.length = length
        self._samples: dict[PartitionKey, list[PartitionSample]] = {}
        self._latest: set[PartitionKey] = set()
        self._newest: datetime | None = None

    def add(self, samples: Iterable[PartitionSample]) -> None:
        """Add a pass's samples (any order) and drop every sample older than the window."""
        self._latest = set()
        for sample in samples:
            key = _key(sample)
            insort(self._samples.setdefault(key, []), sample, key=_at)
            self._latest.add(key)
            if self._newest is None or sample.at > self._newest:
                self._newest = sample.at
        if self._newest is None:
            return
        start = self._newest - self.length
        for key in list(self._samples):
            kept = [s for s in self._samples[key] if s.at >= start]
            if kept:
                self._samples[key] = kept
            else:
                del self._samples[key]
                self._latest.discard(key)

    def samples(self, key: PartitionKey) -> list[PartitionSample]:
        return list(self._samples.get(key, ()))

    def verdicts(self) -> list[Verdict]:
        return [judge(self._samples[key], window=self.length) for key in sorted(self._latest)]
