"""The trading projection: orders, executions, positions (from `trading.orders`) and marks
(from `trading.marketdata`), driven by consumers.runtime.ProjectionLoop.

Snapshots (docs/replay.md): the projection counts, per partition, the records it folded since
that partition's last snapshot; when `settings.snapshot_every_events` are reached, or
`settings.snapshot_every_seconds` have passed with new records, `prepare()` takes a snapshot of
the partition's state at the batch's end and `send()` adds it to the batch's transaction, the
one that moves that offset in `projection_checkpoints`. A snapshot is bookkeeping, never a
reason to lose a batch.

Bounded live state (docs/live-state.md; the live projector by default): after a batch commits,
the orders it changed that may not execute again leave memory with their executions, and the
positions it changed keep their summary and read their fills back on demand; `prefetch` reads
back, before each fold, the orders a batch names that are not in memory. Its snapshots are
taken after the batch commits, from the tables, by a child process the loop polls
(`SnapshotBuild`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Engine

from backbone.codec.avro import AvroCodec
from backbone.compiled import compiled
from backbone.deadletters import DeadLetter
from backbone.domain.events import MarketMark, OrderEvent
from backbone.domain.order_fields import ZERO
from backbone.domain.positions import Position, PositionError
from backbone.errors import DecodeError, InvalidOrderTransition, InvariantViolation, coordinates
from backbone.kafka.partitioner import partition_for
from backbone.kafka.reader import LogReader, Record
from backbone.record_time import from_timestamp_ms, timestamp_ms
from backbone.settings import Settings
from consumers.checkpoints import FencedError, read_checkpoints, read_generation
from consumers.projection import Tail
from projections import snapshots, store
from projections.live_snapshots import Outcome, SnapshotBuild
from projections.state import Changes, TradingState

NAME = "trading"
#: Runs a read in a transaction of its own (not the batch's; REPEATABLE READ unless
#: `isolation_level` says otherwise) and returns its result.
Reader = Callable[..., Any]
log = logging.getLogger(__name__)
#: After a snapshot build failed, the next waits this long (a bad setting would otherwise start
#: a child that fails after every batch).
SNAPSHOT_RETRY_S = 30.0
#: On close, how long the projector waits for a snapshot build before it terminates it.
SNAPSHOT_CLOSE_S = 30.0


@dataclass(slots=True)
class _Tracker:
    """Snapshot bookkeeping of one partition."""

    next_offset: int  # after the last record folded
    since: int  # records folded since the last snapshot
    covered: int  # records folded since the beginning of the partition
    max_ts: int  # highest record timestamp folded by this process or in the last snapshot (ms; -1: none)
    exact: bool  # max_ts covers every record below next_offset (false after a restart between snapshots)
    last_snapshot: float  # wall clock of the last snapshot (or of the start of tracking)


@dataclass(slots=True)
class Batch:
    """A batch as `prepare` captured it: what a retried transaction sends again, whatever the
    fold did since, and what `committed` books once it is in."""

    tables: list[store.TableRows]
    snapshots: list[snapshots.NewSnapshot]
    due: list[tuple[tuple[str, int], _Tracker, int]]  # snapshotted partitions: tracker, records counted then
    duplicates: int  # resent records recognised and skipped in this batch
    changed: Changes  # the keys of the rows in `tables`: what may leave memory once it commits
    offsets: dict[int, int]  # orders partition: the next offset after the batch (bounded state only)


_NUL_DETAIL = "a text field contains a NUL character, which Postgres text and JSON cannot store"


def _any_nul_python(*texts: object) -> bool:
    return any(t is not None and "\x00" in str(t) for t in texts)


# one C call for all the fields; the f-string scan it replaced was ~8 % of the fold
_any_nul: Callable[..., bool] = compiled("any_nul") or _any_nul_python


def _order_has_nul(e: OrderEvent) -> bool:
    """Whether a text field of the event holds a NUL character."""
    return _any_nul(e.event_id, e.account, e.symbol, e.order_id, e.cl_ord_id, e.orig_cl_ord_id, e.exec_id,
                    e.exec_ref_id, e.currency, e.reason, e.actor, e.correlation_id, e.causation_id)


class TradingProjection:

    def __init__(self, settings: Settings, codec: AvroCodec | None = None, *, schema: str | None = None,
                 name: str = NAME, snapshots: bool = True, bounded: bool | None = None,
                 decode: Callable[[bytes], object] | None = None) -> None:
        """`schema`: write into that schema's tables instead of public's (scratch, rebuild);
        `name`: the checkpoint key, so a rebuild's progress never mixes with the live one's;
        `snapshots`: take snapshots with each batch (off for in-memory replays); `bounded`: keep
        only the open book in memory once a loop gives a reader (`attach_reader`,
        docs/live-state.md); `settings.bounded_state` when None; `decode`: the codec's decoder,
        or one wrapping it (the audit keeps what each record decoded to)."""
        self.settings = settings
        self.schema = schema
        self.name = name
        self.codec = codec or AvroCodec()
        self._decode = decode or self.codec.decoder()
        self.state = TradingState()
        self.snapshots = snapshots and (settings.snapshot_every_events > 0 or settings.snapshot_every_seconds > 0)
        self.clock: Callable[[], float] = time.time
        self._trackers: dict[tuple[str, int], _Tracker] = {}
        self.snapshots_taken = 0
        # resent events (an event id already applied: a producer retry) recognised and skipped,
        # in committed batches; the open batch's are counted apart until it commits
        self.duplicates = 0
        self._batch_duplicates = 0
        # order ids whose rows another Kafka partition owns (found when the table refused a
        # write), and that partition: a record naming one on any other partition is refused
        self._foreign_orders: dict[str, int] = {}
        # per topic: its partition count (`place`), and each symbol's key and partition under it
        self._partition_counts: dict[str, int] = {}
        self._homes: dict[str, dict[str, tuple[bytes, int]]] = {}
        # the bounded live state (docs/live-state.md): set by `attach_reader`
        self.bounded = settings.bounded_state if bounded is None else bounded
        self._read: Reader | None = None
        self._engine: Engine | None = None
        self._decoded: dict[tuple[int, int], object] = {}  # by (partition, offset): `prefetch`'s decodes
        self._fetched: set[str] = set()  # orders read back since the last commit
        # per orders partition, the next offset committed (loaded, or moved by a committed batch)
        # and the one after the last record folded since `prepare`; and the generation loaded
        self._stored: dict[int, int | None] = {}
        self._folded_to: dict[int, int] = {}
        self._generation = 0
        self.evicted = 0  # orders that left memory
        self._build: SnapshotBuild | None = None  # a bounded state's snapshot build (`_snapshot_beside`)
        self._requested: dict[tuple[str, int], tuple[_Tracker, int]] = {}  # its partitions: tracker, count then
        self._build_after = 0.0  # clock: no build starts before (after a failure)
        self.snapshot_failures = 0  # builds that failed (each logged)

    def attach_reader(self, read: Reader, engine: Engine) -> None:
        """How to read Postgres while a batch is in flight (a transaction on a connection of its
        own, retried), and the loop's engine: what a bounded state reads on demand, and where
        its snapshots are built."""
        self._read, self._engine = read, engine

    @property
    def _bounded(self) -> bool:
        return self.bounded and self._read is not None

    def _history_of(self, partition: int, summary: Position) -> Callable[[], Position]:
        schema = self.schema
        return lambda: self._read_ours([partition],
                                       lambda conn: store.position_history(conn, partition, summary, schema))

    def _read_ours(self, partitions: Iterable[int], work: Callable[[psycopg.Connection], Any]) -> Any:
        """`work` in a transaction whose snapshot holds the rows this owner committed last
        (`_check_fence`)."""
        assert self._read is not None

        def checked(conn: psycopg.Connection) -> Any:
            stored = read_checkpoints(conn, self.name)  # first: it fixes the transaction's snapshot
            self._check_fence(partitions, {p: o for (t, p), o in stored.items() if t == self.settings.topic_orders},
                              read_generation(conn, self.name))
            return work(conn)

        return self._read(checked)

    def _check_fence(self, partitions: Iterable[int], stored: dict[int, int], generation: int) -> None:
        """If another owner (or a rebuild's swap) moved a checkpoint of `partitions` since this
        state was loaded or committed, the rows read with `stored` are not the ones it left
        there: `FencedError` has the loop reload."""
        wanted = sorted(set(partitions))
        moved = [p for p in wanted if stored.get(p) != self._stored.get(p)]
        if moved or generation != self._generation:
            raise FencedError(f"rows read back for {self.settings.topic_orders}{moved or wanted} are not the "
                              "ones this projector committed (another owner, or a rebuild's swap)")

    def prefetch(self, records: Sequence[Record]) -> None:
        """Before a batch's fold (bounded state): decode its order events (kept for `apply_at`)
        and read back from Postgres, in one query, the orders they name that left memory, so the
        fold sees exactly the state it would have seen had they stayed."""
        self._decoded.clear()
        if not self._bounded:
            return
        topic, limit, orders = self.settings.topic_orders, self.settings.max_record_bytes, self.state.orders
        wanted: dict[str, int] = {}
        folded_to = self._folded_to
        for msg in records:
            if msg.topic() != topic:
                continue
            partition, offset = msg.partition(), msg.offset()
            folded_to[partition] = offset + 1
            value = msg.value()
            if not value or len(value) > limit:
                continue
            try:
                record = self._decode(value)
            except DecodeError:
                continue
            self._decoded[(partition, offset)] = record
            if isinstance(record, OrderEvent) and record.order_id not in orders:
                wanted.setdefault(record.order_id, partition)
        if wanted:
            self._put_back(wanted)

    def _put_back(self, wanted: dict[str, int]) -> None:
        """Read back the orders of `wanted` ({order_id: the partition whose record names it})
        that Postgres holds for that partition, with their executions, in one statement outside
        a transaction (one snapshot: `store.fetch_orders`); fenced like `_read_ours`. An order
        of another partition's rows is left out (the fold refuses its record)."""
        assert self._read is not None
        name, topic, schema = self.name, self.settings.topic_orders, self.schema
        got = self._read(lambda conn: store.fetch_orders(conn, wanted, projection=name, topic=topic, schema=schema),
                         isolation_level="AUTOCOMMIT")
        self._check_fence(wanted.values(), got.offsets, got.generation)
        state, found = self.state, set()
        for order, partition in got.orders:
            if wanted.get(order.order_id) == partition and order.order_id not in state.orders:
                state.orders[order.order_id] = order
                state.order_partition[order.order_id] = partition
                found.add(order.order_id)
        for x in got.executions:
            if x.order_id in found:
                state.executions.setdefault((x.order_id, x.exec_id), x)
        self._fetched.update(found)

    def place(self, counts: dict[str, int]) -> None:
        """The partition counts of the topics, as the broker reports them: a symbol's records
        belong to the partition murmur2 picks among them (how the producers place them). Every
        reader calls this before `apply_at`; a count that changed forgets the old placements."""
        for topic, count in counts.items():
            if self._partition_counts.get(topic) != count:
                self._partition_counts[topic] = count
                self._homes[topic] = {}

    def topics(self) -> list[str]:
        return [self.settings.topic_orders, self.settings.topic_marketdata]

    def expiring(self, topic: str) -> bool:
        """Marks may expire unread (only the newest per symbol matters); orders are the record."""
        return topic == self.settings.topic_marketdata

    def _split(self, tps: list[tuple[str, int]]) -> tuple[list[int], list[int]]:
        return ([p for t, p in tps if t == self.settings.topic_orders],
                [p for t, p in tps if t == self.settings.topic_marketdata])

    def load(self, conn: psycopg.Connection, assigned: list[tuple[str, int]]) -> None:
        orders, marks = self._split(assigned)
        store.load_partitions(conn, self.state, orders, marks, schema=self.schema,
                              history_of=self._history_of if self._bounded else None)
        if self._bounded:  # in the loader's transaction: what the rows just loaded were committed with
            stored = read_checkpoints(conn, self.name)
            self._stored.update({p: stored.get((self.settings.topic_orders, p)) for p in orders})
            for p in orders:
                self._folded_to.pop(p, None)
            self._generation = read_generation(conn, self.name)
        if self.snapshots:
            self._load_trackers(conn, assigned)

    def resume_bookkeeping(self, conn: psycopg.Connection, tps: list[tuple[str, int]]) -> None:
        """The snapshot bookkeeping of partitions whose state was put in place without `load`
        (a rebuild's shadow seeded from snapshots), from their checkpoints and snapshots."""
        if self.snapshots:
            self._load_trackers(conn, tps)

    def _load_trackers(self, conn: psycopg.Connection, assigned: list[tuple[str, int]]) -> None:
        """Resume the bookkeeping from the newest snapshot and the checkpoint of each partition."""
        if not snapshots.table_exists(conn):
            log.warning("table projection_snapshots is missing (run `backbone db upgrade`): no snapshots taken")
            self.snapshots = False
            return
        checkpoints = read_checkpoints(conn, self.name)
        now = self.clock()
        for tp in assigned:
            self._trackers.pop(tp, None)
            nxt = checkpoints.get(tp)
            if nxt is None:
                continue  # from the beginning: tracked from the first record
            snap = snapshots.newest_at_or_before(conn, self.name, tp[0], tp[1], nxt)
            base = snap.next_offset if snap else 0
            gap = nxt - base  # folded by an earlier process since that snapshot
            self._trackers[tp] = _Tracker(
                next_offset=nxt, since=gap, covered=snapshots.events_covered_at(snap, nxt),
                max_ts=-1 if snap is None or snap.max_timestamp is None else timestamp_ms(snap.max_timestamp),
                exact=gap == 0, last_snapshot=snap.created_at.timestamp() if snap else now)

    def drop(self, revoked: list[tuple[str, int]]) -> None:
        for tp in revoked:
            self._trackers.pop(tp, None)
        self.state.drop_partitions(*self._split(revoked))

    def apply(self, msg: Record) -> DeadLetter | None:
        return self.apply_at(msg, msg.topic(), msg.partition(), msg.offset())

    def apply_at(self, msg: Record, topic: str, partition: int, offset: int) -> DeadLetter | None:
        """`apply(msg)` with the record's coordinates already read (the projector, a rebuild's
        shadow and a replay read them first)."""
        if self.snapshots:
            self._track(msg, topic, partition, offset)
        value = msg.value()
        if not value:
            if value is None:
                return self._letter(msg, "null_value", "a record without a value (a tombstone): events are never "
                                    "deleted, the log is the record")
            return self._letter(msg, "empty_value", "a record with an empty value")
        if len(value) > self.settings.max_record_bytes:
            return self._letter(msg, "oversize", f"a value of {len(value):,} bytes, over the limit of "
                                f"{self.settings.max_record_bytes:,} (BACKBONE_MAX_RECORD_BYTES); the record stays "
                                "in the log at these coordinates", payload=b"")
        try:
            record = (self._decoded.pop((partition, offset), None)
                      if self._decoded and topic == self.settings.topic_orders else None)
            if record is None:
                record = self._decode(value)
        except DecodeError as e:
            return self._letter(msg, "decode_error", str(e))
        orders = topic == self.settings.topic_orders
        if not isinstance(record, OrderEvent if orders else MarketMark):
            return self._letter(msg, "unexpected_record",
                                f"{type(record).__name__} on the {'orders' if orders else 'marketdata'} topic")
        letter = self._misplaced(msg, topic, partition, record.symbol)
        if letter is not None:
            return letter
        try:
            if isinstance(record, OrderEvent):  # = `orders` after the check above, and narrows the type
                if _order_has_nul(record):
                    return self._letter(msg, "nul_character", _NUL_DETAIL)
                if self._foreign_orders:
                    owner = self._foreign_orders.get(record.order_id, partition)
                    if owner != partition:
                        return self._letter(msg, "order_id_in_other_partition",
                                            f"order {record.order_id} belongs to partition {owner} (another "
                                            "symbol's)")
                if self.state.apply_order_event(record, partition, offset) == "duplicate":
                    self._batch_duplicates += 1
            else:
                if _any_nul(record.event_id, record.symbol, record.source):
                    return self._letter(msg, "nul_character", _NUL_DETAIL)
                if record.mark_price <= ZERO:  # a Decimal against a Decimal: no int converted first
                    return self._letter(msg, "bad_value:mark_price", f"mark price {record.mark_price} is not > 0")
                self.state.apply_mark(record, partition)
        except InvalidOrderTransition as e:
            return self._letter(msg, e.rule, str(e))
        except PositionError as e:
            return self._letter(msg, "position", str(e))
        return None

    def _misplaced(self, msg: Record, topic: str, partition: int, symbol: str) -> DeadLetter | None:
        """A dead letter if the record's key is not its symbol or the symbol lives on another
        partition: applied, it would split the symbol's book between two partitions, and the
        as-of state (which reads the symbol's own partition) would disagree with the live one."""
        homes = self._homes.get(topic)
        if homes is None:
            raise InvariantViolation(f"the partition count of {topic} is unknown: call place() before apply_at()")
        home = homes.get(symbol)
        if home is None:
            key = symbol.encode("utf-8", "surrogatepass")
            home = homes[symbol] = (key, partition_for(key, self._partition_counts[topic]))
        if msg.key() != home[0]:
            return self._letter(msg, "key_not_symbol", f"key {msg.key()!r} is not the record's symbol {symbol!r}")
        if partition != home[1]:
            return self._letter(msg, "wrong_partition", f"symbol {symbol!r} belongs to partition {home[1]} of "
                                f"{self._partition_counts[topic]} (murmur2 of the key), not {partition}: the "
                                "producer does not use the murmur2_random partitioner")
        return None

    def _track(self, msg: Record, topic: str, partition: int, offset: int) -> None:
        tracker = self._trackers.get((topic, partition))
        if tracker is None:
            tracker = self._trackers[(topic, partition)] = _Tracker(0, 0, 0, -1, True, self.clock())
        tracker.next_offset = offset + 1
        tracker.since += 1
        tracker.covered += 1
        ts = msg.timestamp()[1]
        if ts > tracker.max_ts:
            tracker.max_ts = ts

    def _letter(self, msg: Record, reason: str, detail: str, *, payload: bytes | None = None) -> DeadLetter:
        detail = detail.replace("\x00", "\\x00")  # quotes record values; Postgres text cannot hold NUL
        where = coordinates(msg.topic(), msg.partition(), msg.offset())
        return DeadLetter(reason=reason, detail=f"{where}: {detail}", source=where, stage="project",
                          payload=(msg.value() or b"") if payload is None else payload, key=msg.key(),
                          source_topic=msg.topic(),
                          source_partition=msg.partition(), source_offset=msg.offset(), projection=self.name,
                          timestamp_ms=msg.timestamp()[1])

    def prepare(self) -> Batch:
        """Capture what the records folded since the last `prepare` changed: the rows as they are
        now and the snapshots due. The change set starts anew, so the next records can be folded
        before this batch commits; a retried transaction resends the batch as captured."""
        changes = self.state.take_changes()
        tables = store.change_rows(self.state, changes)
        # a bounded state's snapshots are taken beside the loop (`committed`)
        snaps, due = self._snapshots_due() if self.snapshots and not self._bounded else ([], [])
        batch = Batch(tables, snaps, due, self._batch_duplicates, changes, self._folded_to)
        self._folded_to = {}
        self._batch_duplicates = 0
        return batch

    def send(self, conn: psycopg.Connection, batch: Batch, tail: Tail | None = None) -> Callable[[], int]:
        """Send `batch` in the caller's transaction without waiting for the upserts (see
        `store.send_rows`); the returned check waits for them, raises if the batch must be
        abandoned, and returns the rows written."""
        if batch.snapshots:  # rare, and reads its results: before the pipeline
            snapshots.insert(conn, batch.snapshots)
        check = store.send_rows(conn, batch.tables, self.schema, tail)

        def settle() -> int:
            try:
                return check()
            except store.ForeignKeysError as e:
                # Remembered across the reload that follows (a FencedError): folded again, the
                # records that reuse these order ids are refused instead of overwriting the
                # owner's rows.
                self._foreign_orders.update({key: theirs for key, (_ours, theirs) in e.order_ids.items()})
                raise

        return settle

    def write(self, conn: psycopg.Connection, tail: Tail | None = None) -> Batch:
        """`prepare`, `send` and wait, for callers that commit or abandon right after (the
        rebuild's shadow); returns the batch, for `committed`. The change set is gone with it
        either way: after a failed write the state is reloaded, not written again."""
        batch = self.prepare()
        self.send(conn, batch, tail)()
        return batch

    def _snapshots_due(self) -> tuple[list[snapshots.NewSnapshot], list[tuple[tuple[str, int], _Tracker, int]]]:
        """Snapshots of the partitions that are due, of the state as it is now, to go in the
        transaction that moves their offsets; with each partition's tracker and the records it
        counted at this point (taken off when the batch commits). A snapshot is bookkeeping: a
        failure to serialize one is logged, and the batch goes on without it."""
        due = self._due()
        if not due:
            return [], []
        self._resolve_max_timestamps([tp for tp in due if not self._trackers[tp].exact])
        kinds = {tp: snapshots.kind_of(self.settings, tp[0]) for tp in due}
        try:
            payloads = snapshots.serialize_many(self.state, [(kinds[tp], tp[1]) for tp in due])
        except Exception:  # a bug in serialization must not stop the projector: no snapshot this time
            log.exception("could not serialize snapshots of %s", ", ".join(f"{t}[{p}]" for t, p in due))
            return [], []
        rows, taken = [], []
        for tp in due:
            t = self._trackers[tp]
            rows.append(snapshots.NewSnapshot(self.name, tp[0], tp[1], t.next_offset,
                                              None if t.max_ts < 0 else from_timestamp_ms(t.max_ts),
                                              t.covered, payloads[(kinds[tp], tp[1])]))
            taken.append((tp, t, t.since))
        return rows, taken

    def _due(self) -> list[tuple[str, int]]:
        """The partitions whose snapshot is due (`snapshot_every_events`, `_seconds`)."""
        every_n, every_s = self.settings.snapshot_every_events, self.settings.snapshot_every_seconds
        now = self.clock()
        return sorted(tp for tp, t in self._trackers.items() if t.since > 0 and (
            (every_n and t.since >= every_n) or (every_s and now - t.last_snapshot >= every_s)))

    def _snapshot_beside(self) -> None:
        """A bounded state's snapshots, between batches: if a build is running, see whether it
        is over (never waiting for it); if none is, the partitions due are snapshotted at their
        checkpoints from the tables by a child process (`SnapshotBuild`) while the loop goes
        on; the memory holds the open book only. One build at a time: a partition that falls
        due while one runs waits for the next, so none is skipped."""
        if self._build is not None:
            outcome = self._build.poll()
            if outcome is None:
                return
            self._build = None
            self._book(outcome)
        due = self._due()
        if due and self.clock() >= self._build_after:
            self._start_build(due)

    def _start_build(self, due: list[tuple[str, int]]) -> None:
        self._requested = {tp: (self._trackers[tp], self._trackers[tp].since) for tp in due}
        try:
            self._build = SnapshotBuild(self.settings, self.name, due)
        except OSError as e:  # no process to be had (memory, limits): as a failed build
            self._book(Outcome([], f"not started: {e}"))

    def _book(self, outcome: Outcome) -> None:
        """A build is over: the partitions it snapshotted are not due again until their counts
        or clocks say so. A failed build is one warning and one count; its partitions stay due
        and the next build waits `SNAPSHOT_RETRY_S`."""
        now = self.clock()
        if outcome.failure is not None:
            self.snapshot_failures += 1
            self._build_after = now + SNAPSHOT_RETRY_S
            log.warning("snapshots of %s not taken: %s", ", ".join(f"{t}[{p}]" for t, p in sorted(self._requested)),
                        outcome.failure)
        for t in outcome.taken:
            tp = (t.topic, t.partition)
            tracker, since = self._requested.get(tp, (None, 0))
            if tracker is not None and self._trackers.get(tp) is tracker:  # not replaced by a reload meanwhile
                tracker.since -= since
                tracker.last_snapshot = now
                self.snapshots_taken += t.action == "created"
        self._requested = {}

    def close(self) -> None:
        """Take the snapshots due (the build in progress, then those still due, at the last
        checkpoints), waiting `SNAPSHOT_CLOSE_S` at most in all; no child is left running."""
        deadline = time.monotonic() + SNAPSHOT_CLOSE_S
        for _ in range(2):  # the build in progress, then one for the partitions still due
            if self._build is None:
                due = self._due() if self.snapshots and self._bounded else []
                if not due or self.clock() < self._build_after:
                    return
                self._start_build(due)
                if self._build is None:
                    return
            build, self._build = self._build, None
            self._book(build.close(max(deadline - time.monotonic(), 0.0)))

    def _resolve_max_timestamps(self, tps: list[tuple[str, int]]) -> None:
        """After a restart between snapshots, the records between the last snapshot and the
        checkpoint were folded by an earlier process: find their highest timestamp in Kafka
        (a bisection over `offsets_for_times`, about 40 lookups for all partitions together)."""
        if not tps:
            return
        try:
            with LogReader(self.settings) as reader:
                found = reader.max_timestamps_below({tp: (self._trackers[tp].next_offset,
                                                          self._trackers[tp].max_ts if self._trackers[tp].max_ts >= 0
                                                          else None) for tp in tps})
        except Exception as e:  # bookkeeping only: keep the lower bound, never fail the batch
            log.warning("could not look up record timestamps for snapshots (%s); their max_timestamp is the "
                        "highest this process saw", e)
            return
        for tp, ms in found.items():
            t = self._trackers[tp]
            if ms is not None and ms > t.max_ts:
                t.max_ts = ms
            t.exact = True

    def abandon(self) -> None:
        """Forget every batch not committed (in flight or folded since): the partitions are
        reloaded from Postgres next, and their records folded again."""
        self.state.take_changes()  # names rows of the abandoned batches, some of them gone with the reload
        self._fetched.clear()
        self._folded_to.clear()
        self._batch_duplicates = 0

    def committed(self, batch: Batch) -> None:
        """`batch` (from `prepare` or `write`) committed."""
        self.duplicates += batch.duplicates
        now = self.clock()
        for tp, tracker, since in batch.due:
            if self._trackers.get(tp) is tracker:  # not replaced by a reload meanwhile
                tracker.since -= since  # records folded after the snapshot stay counted
                tracker.last_snapshot = now
                self.snapshots_taken += 1
        if self._bounded:
            self._stored.update(batch.offsets)
            # Postgres now holds these rows as they are, unless the fold since changed them again
            dirty, fetched, self._fetched = self.state.changes, self._fetched, set()
            self.evicted += self.state.evict((batch.changed.orders | fetched) - dirty.orders,
                                             batch.changed.positions - dirty.positions, self._history_of)
            if self.snapshots:
                self._snapshot_beside()
