"""Point-in-time state and replay of the trading projection (docs/replay.md).

"State as of T": for each partition, every record up to (not including) the first record
after T, applied in offset order; a record is after T by its event time, to the microsecond
(`record_time.after`). Record timestamps are the event times' milliseconds, so the planning
is by offset: every record below `offsets_for_times(timestamp_ms(T))` (the first offset stamped
in T's millisecond or later) is before T, and reading goes on from there up to the first record
after T, decoding only the records stamped in T's millisecond. The cut is an offset, so a late
record at or before T that sits after the cut is excluded, and an early record before the cut
is included.

The state at an offset is built from the newest snapshot at or before it (the projector's
`projection_snapshots`) plus the tail of the log up to it, read with `Consumer.assign()` under a
throwaway group id that never joins a group and commits nothing: live tables and the live
consumer group are never touched. Cost grows with the tail, not with the log.

Records deleted before they were read (retention, `delete_records`) are decided as the live
projector decides them (`log_bounds.classify` with the projection's `expiring(topic)`), at
planning and again if the log start moves while reading: expired marks are skipped and
counted per partition (`PartitionReport.expired_ranges`), a gap in orders is refused.

Layout: pure planning first (cuts, snapshot choice, offset validation, the max-timestamp
search), then the Kafka reader, then `Replayer`, which ties planning, snapshots and reading
together (the rows printed from a state are projections.read_model's).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import Engine

from backbone.codec.avro import AvroCodec
from backbone.domain.events import MarketMark, OrderEvent
from backbone.errors import BackboneError, DecodeError, UsageError, coordinates
from backbone.gc_policy import FrozenHeap, fewer_collections
from backbone.kafka import log_bounds
from backbone.kafka.partitioner import symbol_partition
from backbone.kafka.reader import LogReader, ReadRange, Record, offset_at
from backbone.record_time import EPOCH, after, from_timestamp_ms, timestamp_ms, timestamp_us
from backbone.settings import Settings
from projections import ddl, snapshots, store
from projections.snapshots import Kind, SnapshotMeta
from projections.state import Changes, TradingState
from projections.trading import NAME, TradingProjection

TP = tuple[str, int]
PROJECTIONS = (NAME,)


class ReplayRefused(BackboneError):
    """A replay or point-in-time request that cannot give a correct answer (lost records,
    offsets outside the log, a bad range): refused with the reason, nothing done."""


def check_projection(name: str) -> None:
    if name not in PROJECTIONS:
        raise ReplayRefused(f"unknown projection {name!r} (known: {', '.join(PROJECTIONS)})")


# == pure: times, offsets, plans ===================================================================

def parse_time(text: str) -> datetime:
    """ISO-8601 with a UTC offset (`2026-11-20T10:15:00Z`, `2026-11-20 10:15:00.250-05:00`),
    to the microsecond, as UTC. Text that is not such a time is a usage error (exit 2): a time
    without an offset is refused rather than guessed, since the same wall-clock time is a
    different instant in every zone."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as e:
        raise UsageError(f"time {text!r}: not ISO-8601 (e.g. 2026-11-20T10:15:00Z)") from e
    if when.tzinfo is None:
        raise UsageError(f"time {text!r}: no UTC offset; add one, e.g. {when.isoformat()}Z or "
                         f"{when.isoformat()}-05:00")
    try:
        when = when.astimezone(UTC)
    except OverflowError as e:
        raise UsageError(f"time {text!r}: outside the years 1..9999 in UTC") from e
    # Kafka record timestamps start at the epoch, and -1, -2, -3 are its codes for "none",
    # "earliest" and "latest" in lookups: an earlier time would silently ask for one of those.
    if when < EPOCH:
        raise UsageError(f"time {text!r}: before 1970-01-01T00:00:00Z, where Kafka record timestamps start")
    return when


def check_time_range(from_time: datetime | None, to_time: datetime | None, *,
                     options: tuple[str, str] = ("--from-timestamp", "--to-timestamp")) -> None:
    """A range by time ends at or after its start (equal: the records at exactly that time);
    `options` name its two ends in the message."""
    if from_time is not None and to_time is not None and to_time < from_time:
        raise UsageError(f"{options[1]} {to_time.isoformat()} is before {options[0]} {from_time.isoformat()}")


_OFFSET_ITEM = re.compile(r"^(?:(?P<topic>.+):)?(?P<partition>\d+):(?P<offset>\d+)$")


def parse_offsets(spec: str, orders_topic: str, marketdata_topic: str) -> dict[TP, int]:
    """`P:O[,P:O…]` (orders topic) or `TOPIC:P:O` with TOPIC `orders`, `marketdata` or a full
    topic name, into {(topic, partition): offset}."""
    aliases = {"orders": orders_topic, "marketdata": marketdata_topic,
               orders_topic: orders_topic, marketdata_topic: marketdata_topic}
    out: dict[TP, int] = {}
    for item in (i.strip() for i in spec.split(",")):
        if not item:
            continue
        m = _OFFSET_ITEM.match(item)
        if m is None:
            raise ReplayRefused(f"offset {item!r}: expected PARTITION:OFFSET or TOPIC:PARTITION:OFFSET")
        topic = m["topic"] or orders_topic
        if topic not in aliases:
            raise ReplayRefused(f"offset {item!r}: topic {topic!r} is not a topic of this projection "
                                f"({orders_topic}, {marketdata_topic}, or the aliases orders, marketdata)")
        tp = (aliases[topic], int(m["partition"]))
        if tp in out:
            raise ReplayRefused(f"offset {item!r}: {tp[0]}[{tp[1]}] is named twice")
        out[tp] = int(m["offset"])
    if not out:
        raise ReplayRefused(f"no offsets in {spec!r}")
    return out


def check_offset(tp: TP, offset: int, low: int, high: int, what: str = "start", *, expiring: bool = False) -> None:
    """A replay bound must lie in the log: not beyond the end, and not below the log start unless
    the topic's records may expire (`expiring`: the projector's rule, `log_bounds.classify`)."""
    where = coordinates(tp[0], tp[1], offset)
    verdict = log_bounds.classify(log_bounds.Bounds(tp[0], tp[1], offset, low, high), expiring=expiring)
    if verdict == "deleted":
        raise ReplayRefused(f"{where}: {what} offset is below the log start offset {low}: the records before "
                            f"{low} were deleted by retention; the earliest replayable offset is {low}")
    if verdict == "beyond_end":
        raise ReplayRefused(f"{where}: {what} offset is beyond the end of the log (next offset {high})")


def past_expired(bounds: log_bounds.Bounds, limit: int, *, expiring: bool) -> tuple[log_bounds.Verdict, int]:
    """The projector's decision for reading a partition from `bounds.next_offset` up to `limit`
    (`log_bounds.classify`), and where reading goes on: at the next offset when it is in the log;
    at the log start (`limit` at most) when the records below it expired (an expiring topic:
    skipped and counted, as the projector does); the caller refuses `deleted` and `beyond_end`."""
    verdict = log_bounds.classify(bounds, expiring=expiring)
    return verdict, (min(bounds.low, limit) if verdict == "expired" else bounds.next_offset)


def choose_snapshot(candidates: Iterable[SnapshotMeta], limit: int) -> SnapshotMeta | None:
    """The newest snapshot (highest next_offset) at or before offset `limit`."""
    best = None
    for s in candidates:
        if s.next_offset <= limit and (best is None or s.next_offset > best.next_offset):
            best = s
    return best


@dataclass(frozen=True)
class PartitionPlan:
    """One partition of a replay: the state starts at `start` (a snapshot's next offset, or 0
    with an empty state), records [start, begin) are caught up silently, records [begin, end)
    are the replay proper (reported). `state --as-of` has begin == end == the cut. Records
    [start, start + expired) are gone from an expiring topic (retention): reading starts after
    them (`read_from`), and the state lacks them, as the live projector's does.

    Bounds found by time (microseconds since the epoch) are settled while reading, by each
    record's own time (`record_time.after`): a lookup by time finds milliseconds only, and
    `offsets_for_times` answers for record batches including transaction markers, which carry
    the broker's clock at commit, not event time. So `end` is where the search starts (no record
    before it is stamped in the bound's millisecond or later), and with `end_us` the range goes
    on past it up to the first record after end_us; with `begin_us`, records from `begin` on
    that are before begin_us still count as catch-up."""

    topic: str
    partition: int
    start: int
    begin: int
    end: int
    low: int
    high: int
    snapshot: SnapshotMeta | None = None
    begin_us: int | None = None
    end_us: int | None = None
    expired: int = 0

    @property
    def tp(self) -> TP:
        return (self.topic, self.partition)

    @property
    def read_from(self) -> int:
        return self.start + self.expired

    @property
    def to_read(self) -> int:
        """Offsets to read (an upper bound on records: transaction markers take offsets too)."""
        return max(self.end - self.read_from, 0)


def plan_partition(tp: TP, *, begin: int, end: int, low: int, high: int, snapshot: SnapshotMeta | None,
                   begin_us: int | None = None, end_us: int | None = None, expiring: bool = False) -> PartitionPlan:
    """Validate one partition's range and where its state starts; refuse what cannot be right.
    `expiring`: the topic's records may expire unread (the projection's `expiring(topic)`); then
    records between the state's start and the log start are skipped, not refused."""
    check_offset(tp, begin, low, high, "start", expiring=expiring)
    if end > high:
        raise ReplayRefused(f"{coordinates(tp[0], tp[1], end)}: end offset is beyond the end of the log "
                            f"(next offset {high})")
    if end < begin:
        raise ReplayRefused(f"{tp[0]}[{tp[1]}]: the end ({end}) is before the start ({begin})")
    if snapshot is not None and snapshot.next_offset > begin:
        raise ValueError(f"{snapshot.where} is after the start offset {begin}")
    start = snapshot.next_offset if snapshot is not None else 0
    verdict, read_from = (past_expired(log_bounds.Bounds(tp[0], tp[1], start, low, high), end, expiring=expiring)
                          if start < end else ("within", start))
    if verdict == "deleted":
        if snapshot is None:
            raise ReplayRefused(
                f"{coordinates(tp[0], tp[1], begin)}: the state there needs records 0…{low - 1}, deleted by "
                f"retention (log start {low}), and no snapshot at or before offset {begin} exists")
        raise ReplayRefused(
            f"{coordinates(tp[0], tp[1], begin)}: the newest snapshot at or before it ({snapshot.where}) "
            f"needs records {start}…{low - 1}, deleted by retention (log start {low})")
    return PartitionPlan(tp[0], tp[1], start, begin, end, low, high, snapshot, begin_us, end_us, read_from - start)


# == replay: plans, snapshots, reading, results ======================================================

@dataclass
class PartitionReport:
    plan: PartitionPlan
    begin: int  # where the replay proper began (exact: see PartitionPlan)
    end: int  # where it ended, exclusive (exact)
    caught_up: int = 0  # records in [start, begin)
    replayed: int = 0  # records in [begin, end)
    dead_letters: Counter[str] = field(default_factory=Counter)
    max_timestamp_ms: int | None = None  # of the records read
    #: [from, to) offset ranges of an expiring topic deleted (retention) before they were read:
    #: not in the state, as the projector skips them
    expired_ranges: list[tuple[int, int]] = field(default_factory=list)

    @property
    def expired(self) -> int:
        return sum(to - start for start, to in self.expired_ranges)

    def skip(self, start: int, to: int) -> None:
        """Records [start, to) expired unread (one range with the last when they follow it)."""
        if to <= start:
            return
        if self.expired_ranges and self.expired_ranges[-1][1] == start:
            start = self.expired_ranges.pop()[0]
        self.expired_ranges.append((start, to))


class ReportTotals:
    """Totals over `reports` (per partition), and the rate over `read_seconds`."""

    reports: dict[TP, PartitionReport]
    read_seconds: float

    @property
    def records(self) -> int:
        return sum(r.caught_up + r.replayed for r in self.reports.values())

    @property
    def replayed(self) -> int:
        return sum(r.replayed for r in self.reports.values())

    @property
    def expired(self) -> int:
        """Records of expiring topics deleted before they were read (skipped, as the projector does)."""
        return sum(r.expired for r in self.reports.values())

    @property
    def dead_letters(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for r in self.reports.values():
            total.update(r.dead_letters)
        return total

    def events_per_s(self) -> float:
        return self.records / self.read_seconds if self.read_seconds > 0 else 0.0

    def max_timestamp(self, tp: TP) -> datetime | None:
        """Highest record timestamp folded into this partition's state (snapshot included)."""
        report = self.reports[tp]
        snap = report.plan.snapshot
        best = None if snap is None or snap.max_timestamp is None else timestamp_ms(snap.max_timestamp)
        if report.max_timestamp_ms is not None and (best is None or report.max_timestamp_ms > best):
            best = report.max_timestamp_ms
        return None if best is None else from_timestamp_ms(best)

    def events_covered(self, tp: TP) -> int:
        report = self.reports[tp]
        base = report.plan.snapshot.events_covered if report.plan.snapshot else 0
        return base + report.caught_up + report.replayed


@dataclass
class ReplayResult(ReportTotals):
    state: TradingState
    reports: dict[TP, PartitionReport]
    read_seconds: float
    snapshot_seconds: float
    letters: list[tuple[str, str, str]]  # (topic[p]@offset, reason, detail): the first ones, in the range


class Replayer:
    """Plans and runs point-in-time reconstructions and replays of one projection's state."""

    def __init__(self, settings: Settings, engine: Engine, *, projection: str = NAME,
                 reader: LogReader | None = None) -> None:
        check_projection(projection)
        self.settings, self.engine, self.projection = settings, engine, projection
        self._own_reader = reader is None
        self.reader = reader or LogReader(settings)
        self._codec = AvroCodec()
        self._rules = TradingProjection(settings, self._codec, snapshots=False)  # its gap rule, for planning

    def close(self) -> None:
        if self._own_reader:
            self.reader.close()

    def __enter__(self) -> Replayer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- partitions and snapshots ----------------------------------------------------------------

    def topics(self) -> list[str]:
        return [self.settings.topic_orders, self.settings.topic_marketdata]

    def kind(self, topic: str) -> Kind:
        return snapshots.kind_of(self.settings, topic)

    def expiring(self, topic: str) -> bool:
        """Whether the projection tolerates records of `topic` expiring unread (the live
        projector's rule: `TradingProjection.expiring`)."""
        return self._rules.expiring(topic)

    def symbol_partitions(self, symbol: str) -> set[int]:
        """The partition number a symbol's records live in, on both (co-partitioned) topics."""
        return {symbol_partition(symbol, len(self.reader.partitions(self.settings.topic_orders)))}

    def all_partitions(self, only: set[int] | None = None) -> list[TP]:
        return [(t, p) for t in self.topics() for p in self.reader.partitions(t) if only is None or p in only]

    @contextmanager
    def _db(self) -> Any:
        with self.engine.connect() as sa_conn:
            try:
                yield sa_conn.connection.driver_connection
            finally:
                sa_conn.rollback()

    def _snapshots_at_or_before(self, limits: dict[TP, int]) -> dict[TP, SnapshotMeta | None]:
        with self._db() as conn:
            return {tp: snapshots.newest_at_or_before(conn, self.projection, tp[0], tp[1], limit)
                    for tp, limit in limits.items()}

    # -- plans -----------------------------------------------------------------------------------

    def plan_as_of(self, when: datetime, *, partitions: set[int] | None = None,
                   use_snapshots: bool = True) -> list[PartitionPlan]:
        """Every partition (or those numbered in `partitions`) cut at `when`: planned up to
        the first offset stamped in its millisecond or later, the exact cut found by reading on."""
        tps = self.all_partitions(partitions)
        marks = self.reader.watermarks(tps)
        cuts = self._first_offsets_from(when, tps, {tp: h for tp, (_, h) in marks.items()})
        chosen = self._snapshots_for_cut(when, cuts, marks) if use_snapshots else {}
        # a snapshot inside the millisecond holds records at or before `when` only: the search goes on from it
        starts = {tp: max(cuts[tp], s.next_offset) if (s := chosen.get(tp)) else cuts[tp] for tp in tps}
        return [plan_partition(tp, begin=starts[tp], end=starts[tp], low=marks[tp][0], high=marks[tp][1],
                               snapshot=chosen.get(tp), end_us=timestamp_us(when), expiring=self.expiring(tp[0]))
                for tp in tps]

    def _snapshots_for_cut(self, when: datetime, cuts: dict[TP, int],
                           marks: dict[TP, tuple[int, int]]) -> dict[TP, SnapshotMeta | None]:
        """The newest snapshot at or before each partition's as-of cut at `when`, given `cuts`,
        the first offsets stamped in its millisecond or later. The newest snapshot below the
        first offset stamped after that millisecond may lie above such a cut (`checkpoints
        create --as-of` leaves one at the exact cut): the records between the two, of that
        millisecond, are read, and the newest snapshot at or before the first of them after
        `when` is taken."""
        highs = {tp: h for tp, (_, h) in marks.items()}
        chosen = self._snapshots_at_or_before(self.reader.first_offsets_after(
            {tp: timestamp_ms(when) for tp in cuts}, highs))
        inside = {tp: s.next_offset for tp, s in chosen.items() if s is not None and s.next_offset > cuts[tp]}
        if not inside:
            return chosen
        stop = self._after(timestamp_us(when))
        first_after: dict[TP, int] = {}

        def on_message(msg: Record, tp: TP, offset: int) -> None:
            if tp not in first_after and stop(msg):
                first_after[tp] = offset

        def on_gone(tp: TP, _at: int, limit: int) -> int:
            first_after[tp] = cuts[tp]  # deleted unread: the cut decides, and plan_partition what was lost
            return limit

        self.reader.read({tp: ReadRange(cuts[tp], nxt) for tp, nxt in inside.items()}, on_message, on_gone)
        if first_after:
            chosen.update(self._snapshots_at_or_before(first_after))
        return chosen

    def _first_offsets_from(self, when: datetime, tps: Iterable[TP], highs: dict[TP, int]) -> dict[TP, int]:
        """The first offset of each partition stamped in `when`'s millisecond or later (its end
        when none): every record before it is before `when`."""
        found = self.reader.offsets_for_times({tp: timestamp_ms(when) for tp in tps})
        return {tp: offset_at(found[tp], highs[tp]) for tp in found}

    def plan_replay(self, *, from_offsets: dict[TP, int] | None = None, from_time: datetime | None = None,
                    from_beginning: bool = False, to_offsets: dict[TP, int] | None = None,
                    to_time: datetime | None = None) -> list[PartitionPlan]:
        """A replay range per partition. `from_offsets` replays only the partitions it names;
        `from_time` starts each partition at its first record at or after it (microseconds);
        `from_beginning` starts at offset 0 with an empty state (no snapshot). The end: the
        `to_offsets` offset (exclusive), else the as-of cut of `to_time`, else the end of the
        log when the replay is planned. Where the range starts after the state's start, the
        state there comes from the newest snapshot at or before it plus the records between."""
        if sum(x is not None and x is not False for x in (from_offsets, from_time, from_beginning)) != 1:
            raise ReplayRefused("give exactly one of --from-offset, --from-timestamp, --from-beginning")
        if to_offsets is not None and to_time is not None:
            raise ReplayRefused("give at most one of --to-offset, --to-timestamp")
        check_time_range(from_time, to_time)
        known = {tp: None for tp in self.all_partitions()}
        if from_offsets is not None:
            for tp in from_offsets:
                if tp not in known:
                    raise ReplayRefused(f"{tp[0]}[{tp[1]}] does not exist")
            tps = sorted(from_offsets)
        else:
            tps = list(known)
        for tp in to_offsets or {}:
            if tp not in tps:
                raise ReplayRefused(f"--to-offset names {tp[0]}[{tp[1]}], which this replay does not cover")
        marks = self.reader.watermarks(tps)
        highs = {tp: h for tp, (_, h) in marks.items()}
        if from_offsets is not None:
            begins = dict(from_offsets)
        elif from_time is not None:
            begins = self._first_offsets_from(from_time, tps, highs)
        else:
            begins = {tp: 0 for tp in tps}
        for tp in tps:  # refuse a bad start before looking anything else up
            check_offset(tp, begins[tp], *marks[tp], expiring=self.expiring(tp[0]))
        if to_offsets is not None:
            ends = {tp: to_offsets.get(tp, highs[tp]) for tp in tps}
        elif to_time is not None:
            ends = self._first_offsets_from(to_time, tps, highs)
            # A start offset within the end's millisecond: the search for the end starts there,
            # unless a record stamped after that millisecond comes first (then the end is before
            # the start, and refused).
            late = [tp for tp in tps if begins[tp] > ends[tp]]
            beyond = self.reader.first_offsets_after({tp: timestamp_ms(to_time) for tp in late}, highs)
            ends.update({tp: min(begins[tp], beyond[tp]) for tp in late})
        else:
            ends = highs
        chosen = {} if from_beginning else self._snapshots_at_or_before(begins)
        begin_us = None if from_time is None else timestamp_us(from_time)
        end_us = None if to_time is None else timestamp_us(to_time)
        return [plan_partition(tp, begin=begins[tp], end=ends[tp], low=marks[tp][0], high=marks[tp][1],
                               snapshot=chosen.get(tp), begin_us=begin_us, end_us=end_us,
                               expiring=self.expiring(tp[0])) for tp in tps]

    # -- running ---------------------------------------------------------------------------------

    def _event_us(self, msg: Record) -> int | None:
        """The event time of an order event or mark in microseconds; None for anything else
        (the fold dead-letters it)."""
        value = msg.value()
        if not value:
            return None
        try:
            record = self._codec.decode(value)
        except DecodeError:
            return None
        return timestamp_us(record.event_time) if isinstance(record, OrderEvent | MarketMark) else None

    def _after(self, t_us: int) -> Callable[[Record], bool]:
        """The reader's stop rule of a range that ends at time `t_us`: a record after it."""
        return lambda msg: after(t_us, msg.timestamp()[1], lambda: self._event_us(msg))

    def run(self, plans: Sequence[PartitionPlan], *, progress: Callable[[int], None] | None = None,
            keep_letters: int = 100) -> ReplayResult:
        """Build the state: restore each plan's snapshot, then read [start, end) and apply it."""
        # The fold keeps what it allocates: fewer collections, and what it kept frozen every
        # 1 000 records so that none rescans it (backbone.gc_policy).
        with fewer_collections(), FrozenHeap(collect_batches=False) as heap:
            projection = TradingProjection(self.settings, self._codec, snapshots=False)
            projection.place({t: len(self.reader.partitions(t)) for t in projection.topics()})
            state = projection.state
            state.keep_days = Changes()  # the day rows of every batch: write_into writes them all
            t0 = time.perf_counter()
            with_snapshot = [p for p in plans if p.snapshot is not None]
            if with_snapshot:
                with self._db() as conn:
                    for plan in with_snapshot:
                        assert plan.snapshot is not None
                        # lazily: the tail decodes the parts of the snapshot it needs (state.py)
                        snapshots.restore_snapshot(conn, state, self.kind(plan.topic), plan.snapshot, lazy=True)
            snapshot_seconds = time.perf_counter() - t0
            reports = {p.tp: PartitionReport(p, begin=-1, end=p.end) for p in plans}
            for p in plans:
                reports[p.tp].skip(p.start, p.read_from)
            letters: list[tuple[str, str, str]] = []
            count = 0

            def on_message(msg: Record, tp: TP, offset: int) -> None:
                nonlocal count
                report = reports[tp]
                ts = msg.timestamp()[1]
                letter = projection.apply_at(msg, tp[0], tp[1], offset)
                if report.begin < 0 and offset >= report.plan.begin:
                    # the range proper: from the first record at or after begin_us, i.e. after a µs before it
                    start_us = report.plan.begin_us
                    if start_us is None or after(start_us - 1, ts, lambda: self._event_us(msg)):
                        report.begin = offset
                in_range = report.begin >= 0
                if in_range:
                    report.replayed += 1
                else:
                    report.caught_up += 1
                if ts >= 0 and (report.max_timestamp_ms is None or ts > report.max_timestamp_ms):
                    report.max_timestamp_ms = ts
                if letter is not None and in_range:
                    report.dead_letters[letter.reason] += 1
                    if len(letters) < keep_letters:
                        letters.append((coordinates(tp[0], tp[1], offset), letter.reason, letter.detail))
                count += 1
                if count % 1000 == 0:
                    state.take_changes()  # nothing is written from the change sets here: keep them small
                    heap.after_batch()
                    if progress is not None:
                        progress(count)

            def on_gone(tp: TP, at: int, limit: int) -> int:
                """Records from `at` on were deleted while this run read them (or the topic was
                recreated): decided as at planning, and as the projector decides mid-run."""
                low, high = self.reader.watermarks([tp])[tp]
                bounds = log_bounds.Bounds(tp[0], tp[1], at, low, high)
                verdict, resume = past_expired(bounds, limit, expiring=projection.expiring(tp[0]))
                where = coordinates(tp[0], tp[1], at)
                if verdict == "deleted":
                    raise ReplayRefused(f"{where}: records {at}..{low - 1} were deleted while they were read (the "
                                        f"log starts at {low} now): the state cannot be exact without them")
                if verdict == "beyond_end":
                    raise ReplayRefused(f"{where}: the log ends at {high} now: the topic was recreated or "
                                        "truncated while it was read")
                reports[tp].skip(at, resume)
                return resume

            t1 = time.perf_counter()
            ranges = {p.tp: ReadRange(p.read_from, p.end) if p.end_us is None
                      else ReadRange(p.read_from, p.high, p.end, self._after(p.end_us)) for p in plans}
            ended = self.reader.read(ranges, on_message, on_gone)
            read_seconds = time.perf_counter() - t1
            for tp, report in reports.items():
                report.end = ended[tp]
                if report.begin < 0:  # no record in the range proper
                    plan = report.plan
                    report.begin = report.end if plan.begin_us is not None else min(plan.begin, report.end)
            state.take_changes()
            if progress is not None:
                progress(count)
            return ReplayResult(state, reports, read_seconds, snapshot_seconds, letters)


# == writing and showing a state ===================================================================

def full_changes(state: TradingState) -> Changes:
    """Every row of the state as changed (what a fresh schema needs), with the day rows the
    replay kept (`TradingState.keep_days`); loads what is still cold."""
    state.thaw_all()
    state.take_changes()
    days = Changes() if state.keep_days is None else state.keep_days
    return Changes(set(state.orders), set(state.executions), set(state.positions), set(state.marks),
                   days.position_days, days.mark_days)


def write_into(conn: psycopg.Connection, state: TradingState, schema: str, *, reader_role: str | None) -> int:
    """A fresh schema with the projection tables and views, holding `state`; in the caller's
    transaction, so the schema appears complete or not at all. Returns rows written."""
    try:
        ddl.check_schema_name(schema)
    except ValueError as e:
        raise ReplayRefused(str(e)) from e
    try:
        ddl.create_schema(conn, schema, reader_role=reader_role)
    except psycopg.errors.DuplicateSchema as e:
        raise ReplayRefused(f"schema {schema} already exists: --into wants a fresh schema "
                            f"(drop it with `drop schema {schema} cascade`)") from e
    return store.write_changes(conn, state, full_changes(state), schema=schema)
