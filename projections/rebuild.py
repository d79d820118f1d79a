"""Rebuild a projection from the Kafka log into shadow tables while the live projection keeps
serving, then swap the shadow in atomically (`backbone rebuild NAME`; docs/rebuild.md).

The procedure, in order:

1. **Shadow.** A schema `rebuild_<utc timestamp>` with empty copies of the projection tables and
   the views (`ddl.create_schema`), plus a `dead_letters` table of its own so the shadow's refusals
   never show in `public.dead_letters` before the swap.
2. **Catch up.** A shadow projector (`_Shadow`: the same `TradingProjection`, writing into the
   shadow schema, checkpoint key `trading@<shadow>`) reads every partition from the beginning of
   the log in batches, each batch one transaction (rows + shadow dead letters + shadow offsets),
   in passes that follow the *live projection's* checkpoints, until it is within one batch of
   them. It has its own manually assigned consumer (no group, nothing committed to Kafka) and
   never produces to the dead-letter topic: those records were dead-lettered when first refused.
   With `from_snapshot`, each partition first gets the live projection's newest snapshot at or
   before its live checkpoint (rows, shadow checkpoint, and the live dead letters below it) and is
   read from there (`_Shadow.seed`).
3. **Older snapshots.** It waits (bounded) for transactions that began before the shadow caught
   up: a REPEATABLE READ reader whose snapshot predates the swap and that first reads the tables
   after it would otherwise see the shadow as of its old snapshot, i.e. half built.
4. **Swap, one transaction.**
   a. *Freeze the live projection*: `public` projection tables in SHARE mode (writers wait,
      readers go on), `dead_letters` and `projection_checkpoints` in EXCLUSIVE mode; the order is
      the live projector's own write order, so the two cannot deadlock.
   b. Read the live checkpoints L; bring the shadow exactly to L; checksum old (`public`) and new
      (shadow) per table and partition: a like-for-like comparison at the same offsets.
   c. Bring the shadow on to the end of the log.
   d. Lock, for readers, the views bound to the tables and the tables (ACCESS EXCLUSIVE) with a
      lock timeout shorter than `deadlock_timeout`, retried from a savepoint: readers wait at most
      that long per attempt, and never get a deadlock error because of us.
   e. `alter table … set schema`: public tables to `rebuild_old_<ts>`, shadow tables to public;
      rename the new indexes to the old names, copy owner, grants and storage options; recreate
      (`create or replace`) every view bound to the old tables from its own definition.
   f. Live checkpoints := shadow offsets, with the next checkpoint generation: a running
      projector's next compare-and-set (offset and the generation it loaded) fails in every
      partition, idle ones included, so it abandons that batch and reloads its partitions from
      the new tables (the fence for its in-memory state). Shadow checkpoints deleted; this
      projection's dead letters replaced by the shadow's (first-refusal times kept); records
      only the shadow refused are produced to the dead-letter topic before the commit.
   g. Commit. Then the old tables are dropped unless `keep_old`.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import psycopg
from confluent_kafka import Consumer, Message, TopicPartition
from psycopg import errors as pg_errors
from psycopg import sql
from sqlalchemy.engine import make_url

from backbone import deadletters
from backbone.deadletters import DeadLetter
from backbone.errors import BackboneError, KafkaError
from backbone.gc_policy import fewer_collections
from backbone.kafka import log_bounds, reader
from backbone.kafka.consumer import consumer_config
from backbone.kafka.batches import next_batch, partitions_of, refetch, watermarks
from backbone.settings import Settings
from consumers.deadletter_relay import DeadLetterRelay
from projections import ddl, snapshots, store
from projections.state import Changes
from projections.trading import NAME as TRADING
from projections.trading import TradingProjection
from consumers.checkpoints import advance_checkpoints, read_checkpoints, read_generation

log = logging.getLogger(__name__)

TP = tuple[str, int]
PROJECTIONS = (TRADING,)
TABLES = ddl.TABLES  # orders, executions, positions, marks
APPLICATION_NAME = "backbone rebuild"
SHADOW_PATTERN = re.compile(r"^rebuild_\d{14}$")
NO_PROGRESS_S = 60.0
_LETTER_COLS = "source_topic, source_partition, source_offset, reason, detail, record_key, payload"


class RebuildError(BackboneError):
    """The rebuild could not finish; nothing was swapped unless the message says otherwise."""


class _Interrupted(RebuildError):
    """Stop requested (SIGTERM/SIGINT) before the swap."""


class _Retry(Exception):
    """A swap attempt lost a lock race; it rolled back completely and may be tried again."""


@dataclass(frozen=True)
class RebuildOptions:
    batch_size: int = 5000
    keep_old: bool = False
    checksum: bool = True
    lock_timeout_s: float = 0.2  # per attempt to lock out readers (capped at deadlock_timeout / 2)
    freeze_timeout_s: float = 5.0  # per attempt to pause the live projector's writes
    swap_timeout_s: float = 120.0  # all attempts at the swap together
    reader_wait_s: float = 60.0  # how long to wait for transactions older than the shadow
    max_passes: int = 50
    from_snapshot: bool = False  # seed the shadow with the live projection's newest snapshots


@dataclass(frozen=True)
class TableChecksum:
    rows: int
    checksum: str


@dataclass(frozen=True)
class TableComparison:
    table: str
    old: TableChecksum
    new: TableChecksum

    @property
    def match(self) -> bool:
        return self.old == self.new


@dataclass
class RebuildResult:
    projection: str
    shadow_schema: str
    old_schema: str
    old_schema_kept: bool = False
    events: int = 0
    dead_letters: int = 0
    passes: int = 0
    swap_attempts: int = 0
    reader_lock_attempts: int = 0  # tries at locking out readers, all swap attempts together
    old_offsets: dict[TP, int] = field(default_factory=dict)  # the live checkpoints when frozen
    compared_offsets: dict[TP, int | None] = field(default_factory=dict)  # the shadow's at the comparison
    new_offsets: dict[TP, int] = field(default_factory=dict)  # the checkpoints swapped in
    comparison: list[TableComparison] | None = None
    differing_partitions: list[TP] = field(default_factory=list)
    generation: int | None = None  # of the checkpoints swapped in (fences running projectors)
    newly_refused: int = 0
    no_longer_refused: int = 0
    older_transactions_ignored: list[int] = field(default_factory=list)
    seeded_offsets: dict[TP, int] = field(default_factory=dict)  # --from-snapshot: where the shadow started
    warnings: list[str] = field(default_factory=list)
    seconds_total: float = 0.0
    seconds_live_paused: float = 0.0
    seconds_readers_blocked: float = 0.0

    @property
    def comparable(self) -> bool:
        """Old and new were checksummed at the same offsets in every partition."""
        return self.comparison is not None and all(
            self.compared_offsets.get(tp) == self.old_offsets.get(tp)
            for tp in set(self.compared_offsets) | set(self.old_offsets))

    @property
    def identical(self) -> bool | None:
        if self.comparison is None or not self.comparable:
            return None
        return all(c.match for c in self.comparison)

    def as_json(self) -> dict[str, Any]:
        def tp_name(tp: TP) -> str:
            return f"{tp[0]}[{tp[1]}]"

        return {
            "projection": self.projection,
            "shadow_schema": self.shadow_schema,
            "old_schema": self.old_schema,
            "old_schema_kept": self.old_schema_kept,
            "events": self.events,
            "dead_letters": self.dead_letters,
            "passes": self.passes,
            "swap_attempts": self.swap_attempts,
            "reader_lock_attempts": self.reader_lock_attempts,
            "seeded_from_snapshots": {tp_name(tp): o for tp, o in sorted(self.seeded_offsets.items())},
            "old_offsets": {tp_name(tp): o for tp, o in sorted(self.old_offsets.items())},
            "new_offsets": {tp_name(tp): o for tp, o in sorted(self.new_offsets.items())},
            "compared_at_same_offsets": self.comparable,
            "identical": self.identical,
            "tables": None if self.comparison is None else [
                {"table": c.table, "old": {"rows": c.old.rows, "checksum": c.old.checksum},
                 "new": {"rows": c.new.rows, "checksum": c.new.checksum}, "match": c.match}
                for c in self.comparison],
            "differing_partitions": [tp_name(tp) for tp in self.differing_partitions],
            "generation": self.generation,
            "dead_letters_newly_refused": self.newly_refused,
            "dead_letters_no_longer_refused": self.no_longer_refused,
            "older_transactions_ignored": self.older_transactions_ignored,
            "warnings": self.warnings,
            "seconds": {"total": round(self.seconds_total, 3), "live_paused": round(self.seconds_live_paused, 3),
                        "readers_blocked": round(self.seconds_readers_blocked, 3)},
        }


Event = Callable[[str, dict[str, Any]], None]


def rebuild(settings: Settings, name: str = TRADING, options: RebuildOptions | None = None, *,
            on_event: Event | None = None, stop_requested: Callable[[], bool] = lambda: False) -> RebuildResult:
    """Rebuild projection `name` from the log (or its snapshots, `options.from_snapshot`) and swap
    it in (see the module doc).

    `on_event(kind, info)` reports progress: shadow, seeded, pass, batch, waiting, frozen, locked,
    swapped, warning, dropped. `stop_requested` is polled between batches; a stop before the swap drops the
    shadow and raises `RebuildError`.
    """
    if name not in PROJECTIONS:
        raise RebuildError(f"unknown projection {name!r} (known: {', '.join(PROJECTIONS)})")
    procedure = _Rebuild(settings, options or RebuildOptions(), on_event or (lambda _k, _i: None), stop_requested)
    try:
        with fewer_collections():  # the shadow's fold keeps what it allocates (backbone.gc_policy)
            return procedure.run()
    except psycopg.Error as e:
        hint = ""
        if procedure.phase == "swap":
            hint = (f"; nothing was swapped, unless the connection was lost while committing: the swap "
                    f"happened exactly when schema {procedure.old_schema} exists")
        raise RebuildError(f"database error during the {procedure.phase}: {_first_line(e)}{hint}") from e


def psycopg_url(settings: Settings) -> str:
    return make_url(settings.database_url_value).set(drivername="postgresql").render_as_string(hide_password=False)


# -- the shadow projector ----------------------------------------------------------------------------

class _Shadow:
    """Feeds the shadow schema from the log, with an exact stopping offset per partition.

    Each batch is one transaction on the given connection (a savepoint when the caller already
    holds a transaction, as the swap does): changed rows, the shadow's dead letters and the
    shadow's checkpoints (compare-and-set, key `trading@<shadow>`)."""

    def __init__(self, settings: Settings, schema: str, batch_size: int, stop_requested: Callable[[], bool],
                 on_batch: Callable[[int], None], warn: Callable[[str], None]) -> None:
        self.settings, self.schema, self.batch_size = settings, schema, batch_size
        self.stop_requested, self.on_batch, self.warn = stop_requested, on_batch, warn
        self.name = f"{TRADING}@{schema}"
        self.projection = TradingProjection(settings, schema=schema, name=self.name)
        # auto.offset.reset=error (CONSUMER_DEFAULTS): an offset that left the log is _out_of_range
        self.consumer = Consumer(consumer_config(settings, **{
            "group.id": f"backbone-rebuild-{schema}",  # never joined (manual assignment), never committed
        }))
        try:
            self.tps = self._partitions()
        except BaseException:
            self.consumer.close()
            raise
        self.pos: dict[TP, int | None] = dict.fromkeys(self.tps)  # next offset to read; None: nothing read
        #: partitions of expiring topics whose records below this offset expired unread
        self.skip_to: dict[TP, int] = {}
        self.events = 0
        self.dead_letters = 0

    def _partitions(self) -> list[TP]:
        found = {topic: partitions_of(self.consumer, topic) for topic in self.projection.topics()}
        self.projection.place({topic: len(ps) for topic, ps in found.items()})
        return [(topic, p) for topic, ps in found.items() for p in ps]

    def watermarks(self) -> dict[TP, tuple[int, int]]:
        return {(t, p): watermarks(self.consumer, t, p) for t, p in self.tps}

    def behind(self, targets: dict[TP, int]) -> int:
        return sum(max(target - self._start(tp), 0) for tp, target in targets.items())

    def _start(self, tp: TP) -> int:
        """The next offset to read: explicit, never OFFSET_BEGINNING, which would resolve to
        wherever the log starts when the fetch begins, past records deleted meanwhile."""
        return max(self.pos[tp] or 0, self.skip_to.get(tp, 0))

    def advance(self, conn: psycopg.Connection, targets: dict[TP, int]) -> int:
        """Apply every record below its partition's target; returns how many were applied."""
        need = {tp: target for tp, target in targets.items() if target > self._start(tp)}
        if not need:
            return 0
        self.consumer.assign([TopicPartition(t, p, self._start((t, p))) for t, p in sorted(need)])
        pending, applied, last_progress = set(need), 0, time.monotonic()

        def gone(tp: TP, offset: int) -> None:
            if tp in pending:
                self._out_of_range(tp, offset)

        try:
            while pending:
                if self.stop_requested():
                    raise _Interrupted("interrupted")
                expected = dict(self.pos)
                batch: list[Message] = []
                ended: list[TP] = []  # done once this batch's records (all before the end) are taken
                records = reader.sort(next_batch(self.consumer, self.batch_size, 0.5),
                                      on_eof=lambda tp, _end: ended.append(tp), on_out_of_range=gone)
                for msg in records:
                    tp = (msg.topic(), msg.partition())
                    if tp not in pending:
                        continue
                    offset, nxt = msg.offset(), expected[tp]
                    if nxt is not None and offset < nxt:
                        continue
                    if offset >= need[tp]:
                        pending.discard(tp)
                        continue
                    batch.append(msg)
                    expected[tp] = offset + 1
                    if offset + 1 >= need[tp]:
                        pending.discard(tp)
                pending.difference_update(ended)
                if batch:
                    self._write(conn, batch)
                    applied += len(batch)
                    last_progress = time.monotonic()
                    self.on_batch(len(batch))
                elif time.monotonic() - last_progress > NO_PROGRESS_S:
                    raise KafkaError(f"no records from Kafka for {NO_PROGRESS_S:.0f} s while "
                                     f"{len(pending)} partitions were behind their targets")
        finally:
            self.consumer.unassign()
        return applied

    def _out_of_range(self, tp: TP, requested: int) -> None:
        """The broker refused a fetch: records the shadow had not read yet were deleted (retention
        or `delete_records`), or the topic was recreated. Orders: the rebuild is refused, its
        state would miss them. Expiring marks: said and skipped."""
        t, p = tp
        low, high = watermarks(self.consumer, t, p)
        start = requested if requested >= 0 else self._start(tp)
        bounds = log_bounds.Bounds(t, p, start, low, high)
        verdict = log_bounds.classify(bounds, expiring=self.projection.expiring(t))
        if verdict in ("deleted", "beyond_end"):
            raise RebuildError(log_bounds.refusal(bounds, verdict, "the rebuild stops here; nothing was swapped"))
        if verdict == "expired":
            self.skip_to[tp] = low
            self.warn(f"{t}[{p}]: records {start}..{low - 1} expired (retention) before the rebuild read them; "
                      "marks older than that are not in the rebuilt state")
        refetch(self.consumer, tp, low if verdict == "expired" else start, self._start)

    def _write(self, conn: psycopg.Connection, batch: list[Message]) -> None:
        letters: list[tuple[Message, DeadLetter]] = []
        moves: dict[TP, tuple[int | None, int]] = {}
        for msg in batch:
            tp = (msg.topic(), msg.partition())
            offset = msg.offset()
            letter = self.projection.apply_at(msg, tp[0], tp[1], offset)
            if letter is not None:
                letters.append((msg, letter))
            moves[tp] = (moves[tp][0] if tp in moves else self.pos[tp], offset + 1)
        with conn.transaction():
            captured = self.projection.write(conn)
            deadletters.insert(conn, [replace(d, projection=TRADING) for _m, d in letters],
                               table=sql.Identifier(self.schema, "dead_letters").as_string(conn))
            advance_checkpoints(conn, self.name, moves)
        self.projection.committed(captured)
        for tp, (_old, nxt) in moves.items():
            self.pos[tp] = nxt
        self.events += len(batch)
        self.dead_letters += len(letters)

    def seed(self, conn: psycopg.Connection, live: dict[TP, int], wm: dict[TP, tuple[int, int]]) -> dict[TP, int]:
        """Start the shadow from the live projection's newest snapshot of each partition at or
        before its live checkpoint (so old and new can still be compared at the same offsets);
        partitions without one are read from the beginning. One transaction: the restored rows,
        a copy of each snapshot under the shadow's name (its snapshot bookkeeping resumes from
        it), the shadow's checkpoints, and the live dead letters below each snapshot (records
        the shadow will not read again). Returns the offset each seeded partition starts at."""
        chosen: dict[TP, tuple[snapshots.SnapshotMeta, bytes]] = {}
        with conn.transaction():
            if not snapshots.table_exists(conn):
                raise RebuildError("--from-snapshot: table projection_snapshots is missing (run `backbone db upgrade`)")
            for tp in self.tps:
                if tp not in live:
                    continue  # the live projection has consumed nothing there: nothing to compare with
                meta = snapshots.newest_at_or_before(conn, TRADING, tp[0], tp[1], live[tp])
                if meta is None:
                    continue
                low, high = wm[tp]
                if not low <= meta.next_offset <= high:
                    raise RebuildError(
                        f"--from-snapshot: {meta.where} does not fit the log of {tp[0]}[{tp[1]}] "
                        f"(offsets {low}..{high}): records after it were deleted or the topic was recreated; "
                        "rebuild from the beginning")
                payload = snapshots.payload(conn, meta.id)
                snapshots.restore(self.projection.state, snapshots.kind_of(self.settings, tp[0]), tp[1], payload,
                                  where=meta.where)
                chosen[tp] = (meta, payload)
            if not chosen:
                return {}
            state = self.projection.state
            store.write_changes(conn, state, Changes(set(state.orders), set(state.executions),
                                                     set(state.positions), set(state.marks)), schema=self.schema)
            snapshots.insert(conn, [snapshots.NewSnapshot(self.name, m.topic, m.partition, m.next_offset,
                                                          m.max_timestamp, m.events_covered, payload)
                                    for m, payload in chosen.values()])
            advance_checkpoints(conn, self.name, {tp: (None, m.next_offset) for tp, (m, _) in chosen.items()})
            for (t, p), (m, _) in chosen.items():
                conn.execute(sql.SQL("insert into {}.dead_letters (projection, " + _LETTER_COLS + ", created_at) "
                                     "select projection, " + _LETTER_COLS + ", created_at from public.dead_letters "
                                     "where projection = %s and source_topic = %s and source_partition = %s "
                                     "and source_offset < %s order by id").format(sql.Identifier(self.schema)),
                             (TRADING, t, p, m.next_offset))
            self.projection.resume_bookkeeping(conn, sorted(chosen))  # from the snapshot copies
        self.projection.state.take_changes()  # the restored rows are in the shadow's tables now
        for tp, (m, _) in chosen.items():
            self.pos[tp] = m.next_offset
        return {tp: m.next_offset for tp, (m, _) in chosen.items()}

    def resync(self, conn: psycopg.Connection) -> None:
        """After a rolled-back swap attempt: forget what it applied, reload from the shadow tables."""
        stored = read_checkpoints(conn, self.name)
        self.pos = {tp: stored.get(tp) for tp in self.tps}
        self.projection.load(conn, self.tps)
        self.projection.abandon()  # what the rolled-back attempt folded is gone with the reload

    def close(self) -> None:
        self.consumer.close()


# -- checksums ---------------------------------------------------------------------------------------

_ROW_HASH = "coalesce(sum(('x' || left(md5({row}::text), 16))::bit(64)::bigint), 0)"


def _partition_sums(conn: psycopg.Connection, schema: str, settings: Settings) -> dict[str, dict[TP, tuple[int, int]]]:
    """Per table and Kafka partition: (rows, sum of 64-bit row hashes): order-independent, streaming."""
    topic_of = {"orders": settings.topic_orders, "executions": settings.topic_orders,
                "positions": settings.topic_orders, "marks": settings.topic_marketdata}
    out: dict[str, dict[TP, tuple[int, int]]] = {}
    s = sql.Identifier(schema)
    for table in TABLES:
        # orders.state is json, kept as written: rows from before migration 0005 hold jsonb's
        # spelling of the same value, so the row is hashed as jsonb (canonical: one spelling a value)
        row = "to_jsonb(t)" if table == "orders" else "t"
        query = sql.SQL("select kafka_partition, count(*), " + _ROW_HASH.format(row=row) +
                        " from {}.{} t group by 1").format(s, sql.Identifier(table))
        out[table] = {(topic_of[table], p): (n, int(h)) for p, n, h in conn.execute(query)}
    row = f"row({', '.join('t.' + c.strip() for c in _LETTER_COLS.split(','))})"
    query = sql.SQL("select source_topic, source_partition, count(*), " + _ROW_HASH.format(row=row) +
                    " from {}.dead_letters t where projection = %s group by 1, 2").format(s)
    out["dead_letters"] = {(t, p): (n, int(h)) for t, p, n, h in conn.execute(query, (TRADING,))}
    return out


def _table_checksum(parts: dict[TP, tuple[int, int]]) -> TableChecksum:
    text = ";".join(f"{t}:{p}:{n}:{h}" for (t, p), (n, h) in sorted(parts.items()))
    return TableChecksum(sum(n for n, _h in parts.values()), hashlib.md5(text.encode()).hexdigest()[:16])


# -- the procedure -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _View:
    oid: int
    schema: str
    name: str
    options: list[str] | None
    definition: str


class _Rebuild:

    def __init__(self, settings: Settings, options: RebuildOptions, on_event: Event,
                 stop_requested: Callable[[], bool]) -> None:
        self.settings, self.options, self.emit, self.stop_requested = settings, options, on_event, stop_requested
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        self.shadow_schema = f"rebuild_{stamp}"
        self.old_schema = f"rebuild_old_{stamp}"
        self.result = RebuildResult(TRADING, self.shadow_schema, self.old_schema)
        self.shadow: _Shadow | None = None
        self._relay_after_swap: list[TP] = []  # source partitions with letters only the shadow refused
        self._applied_since_event = 0
        self._last_batch_event = time.monotonic()
        self.phase = "preparation"

    # -- connections and guards ------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(psycopg_url(self.settings), autocommit=True, application_name=APPLICATION_NAME)
        except psycopg.OperationalError as e:
            raise RebuildError(f"cannot reach the database at {self.settings.database_url_safe()}: "
                               f"{str(e).strip().splitlines()[0]}") from e

    def run(self) -> RebuildResult:
        started = time.monotonic()
        self.admin = self._connect()
        try:
            locked = self.admin.execute("select pg_try_advisory_lock(hashtext(%s))",
                                        (f"backbone rebuild {TRADING}",)).fetchone()[0]
            if not locked:
                raise RebuildError(f"another rebuild of {TRADING} is running on this database")
            self._preflight()
            self._drop_orphans()
            self.work = self._connect()
            try:
                self._create_shadow()
                try:
                    self.shadow = _Shadow(self.settings, self.shadow_schema, self.options.batch_size,
                                          self.stop_requested, self._on_batch, self._warn)
                    if self.options.from_snapshot:
                        self.phase = "seeding from snapshots"
                        self._seed()
                    self._check_log_start()
                    self.phase = "catch-up"
                    self._catch_up(self.options.max_passes)
                    self._wait_for_older_transactions()
                    self._catch_up(3)
                    if self.stop_requested():
                        raise _Interrupted("interrupted")
                    with self.work.transaction():
                        self.work.execute(sql.SQL("analyze {}").format(sql.SQL(", ").join(
                            sql.Identifier(self.shadow_schema, t) for t in TABLES)))
                    self.phase = "swap"
                    self._swap()
                    self.phase = "clean-up after the swap"
                    self._relay_newly_refused()
                except _Interrupted:
                    self._drop_shadow()
                    raise RebuildError("interrupted before the swap: nothing was swapped, "
                                       f"the shadow schema {self.shadow_schema} was dropped") from None
                except BaseException:
                    self._drop_shadow()
                    raise
                finally:
                    if self.shadow is not None:
                        self.shadow.close()
            finally:
                self.work.close()
            self._drop_old()
        finally:
            self.admin.close()  # releases the advisory lock
        self.result.seconds_total = time.monotonic() - started
        return self.result

    def _warn(self, message: str) -> None:
        self.result.warnings.append(message)
        self.emit("warning", {"message": message})

    def _on_batch(self, n: int) -> None:
        self._applied_since_event += n
        if time.monotonic() - self._last_batch_event >= 2.0:
            assert self.shadow is not None
            self.emit("batch", {"events": self.shadow.events, "applied": self._applied_since_event})
            self._applied_since_event, self._last_batch_event = 0, time.monotonic()

    def _table_oids(self, conn: psycopg.Connection, schema: str) -> list[int]:
        return [conn.execute("select %s::regclass::oid", (f"{schema}.{t}",)).fetchone()[0] for t in TABLES]

    def _preflight(self) -> None:
        """Refuse what a schema swap would silently break, before any work is done."""
        a = self.admin
        missing = [t for t in TABLES if a.execute("select to_regclass(%s)", (f"public.{t}",)).fetchone()[0] is None]
        if missing:
            raise RebuildError(f"table(s) {', '.join(missing)} missing in public: run `backbone db upgrade`")
        oids = self._table_oids(a, "public")
        not_owned = [r[0] for r in a.execute(
            "select c.oid::regclass::text from pg_class c where c.oid = any(%s) "
            "and not pg_has_role(current_user, c.relowner, 'MEMBER')", (oids,))]
        if not_owned:
            raise RebuildError(f"the rebuild must run as the owner of the projection tables "
                               f"(not owned by {a.info.user}: {', '.join(not_owned)})")
        checks = {
            "triggers": "select tgrelid::regclass::text || ' ' || tgname from pg_trigger "
                        "where tgrelid = any(%s) and not tgisinternal",
            "row-level security": "select oid::regclass::text from pg_class where oid = any(%s) and relrowsecurity",
            "publications": "select prrelid::regclass::text || ' in ' || p.pubname from pg_publication_rel r "
                            "join pg_publication p on p.oid = r.prpubid where prrelid = any(%s)",
            "foreign keys referencing them": "select conrelid::regclass::text || ' ' || conname from pg_constraint "
                                             "where contype = 'f' and confrelid = any(%s)",
            "materialized views": "select distinct v.oid::regclass::text from pg_depend d "
                                  "join pg_rewrite r on d.classid = 'pg_rewrite'::regclass and d.objid = r.oid "
                                  "join pg_class v on v.oid = r.ev_class where d.refclassid = 'pg_class'::regclass "
                                  "and d.refobjid = any(%s) and v.relkind = 'm'",
        }
        for what, query in checks.items():
            found = [r[0] for r in a.execute(query, (oids,))]
            if found:
                raise RebuildError(f"the projection tables have {what} that a swap would not carry over: "
                                   f"{', '.join(found)}")

    def _drop_orphans(self) -> None:
        """Shadows of interrupted rebuilds (we hold the lock, so none is in use)."""
        for (schema,) in self.admin.execute("select nspname from pg_namespace where nspname like 'rebuild\\_%%' "
                                            "order by 1").fetchall():
            if SHADOW_PATTERN.match(schema):
                self._drop_schema(schema)
                self._warn(f"dropped {schema}, the shadow of an interrupted rebuild")
        # ... and their checkpoints and snapshots (projection `trading@<shadow schema>`)
        for table in ("projection_checkpoints", "projection_snapshots"):
            if table == "projection_checkpoints" or snapshots.table_exists(self.admin):
                self.admin.execute(sql.SQL("delete from {} where projection like %s and not exists (select 1 from "
                                           "pg_namespace where nspname = split_part(projection, '@', 2))")
                                   .format(sql.Identifier(table)), (f"{TRADING}@rebuild\\_%",))

    def _drop_schema(self, schema: str) -> None:
        with self.admin.transaction():
            ddl.drop_schema(self.admin, schema)
            self.admin.execute("delete from projection_checkpoints where projection = %s", (f"{TRADING}@{schema}",))
            snapshots.delete_projection(self.admin, f"{TRADING}@{schema}")

    def _drop_shadow(self) -> None:
        try:
            self._drop_schema(self.shadow_schema)
        except psycopg.Error as e:
            log.warning("could not drop the shadow schema %s: %s", self.shadow_schema, e)

    def _create_shadow(self) -> None:
        with self.admin.transaction():
            # No grants for readers: the shadow is partial by definition. The swapped-in tables get
            # exactly the old tables' grants (_take_over_identity).
            ddl.create_schema(self.admin, self.shadow_schema)
            self.admin.execute(sql.SQL("create table {}.dead_letters (like public.dead_letters including all)").format(
                sql.Identifier(self.shadow_schema)))
            for table in TABLES:
                if _shape(self.admin, "public", table) != _shape(self.admin, self.shadow_schema, table):
                    raise RebuildError(f"the shadow copy of {table} differs from public.{table}")
        self.emit("shadow", {"schema": self.shadow_schema})

    # -- catching up -------------------------------------------------------------------------------

    def _targets(self, live: dict[TP, int], wm: dict[TP, tuple[int, int]]) -> dict[TP, int]:
        """Follow the live projection (so old and new can be compared at the same offsets); where it
        has consumed nothing yet, the end of the log."""
        assert self.shadow is not None
        return {tp: min(live[tp], wm[tp][1]) if tp in live else wm[tp][1] for tp in self.shadow.tps}

    def _seed(self) -> None:
        assert self.shadow is not None
        seeded = self.shadow.seed(self.work, read_checkpoints(self.admin, TRADING), self.shadow.watermarks())
        self.result.seeded_offsets = seeded
        self.emit("seeded", {"partitions": len(seeded), "records": sum(seeded.values()),
                             "of": len(self.shadow.tps)})

    def _check_log_start(self) -> None:
        """A partition read from the beginning whose log no longer starts at offset 0 lost records to
        retention (or `delete_records`). Orders: refused, the state would silently miss them. Marks:
        old marks expiring is what the marketdata retention is for; said, since a symbol whose only
        marks expired loses its mark (the comparison shows where)."""
        assert self.shadow is not None
        wm = self.shadow.watermarks()
        verdicts = {tp: log_bounds.classify(log_bounds.Bounds(tp[0], tp[1], 0, *wm[tp]),  # as the projector decides
                                            expiring=self.shadow.projection.expiring(tp[0]))
                    for tp in self.shadow.tps if self.shadow.pos[tp] is None}
        refused = sorted(tp for tp, verdict in verdicts.items() if verdict == "deleted")
        lost = sorted(tp for tp, verdict in verdicts.items() if verdict == "expired")
        if refused:
            raise RebuildError(
                f"the log of {tp_names(refused)} no longer starts at offset 0 (first offset "
                f"{', '.join(str(wm[tp][0]) for tp in refused)}): records were deleted and a rebuild from the "
                "beginning would miss them; use --from-snapshot if snapshots cover them")
        if lost:
            self._warn(f"{tp_names(lost)}: the log starts after offset 0 (retention); marks older than "
                       "that are not in the rebuilt state")
            for tp in lost:  # said once: the fetch starts at the log start, not at 0
                self.shadow.skip_to[tp] = wm[tp][0]

    def _catch_up(self, max_passes: int) -> None:
        assert self.shadow is not None
        for _ in range(max_passes):
            wm = self.shadow.watermarks()
            targets = self._targets(read_checkpoints(self.admin, TRADING), wm)
            behind = self.shadow.behind(targets)
            if behind <= self.options.batch_size and self.result.passes > 0:
                return
            applied = self.shadow.advance(self.work, targets)
            self.result.passes += 1
            self.emit("pass", {"pass": self.result.passes, "applied": applied, "events": self.shadow.events,
                               "behind": self.shadow.behind(targets)})

    def _wait_for_older_transactions(self) -> None:
        """Wait until every transaction that began before now has ended (bounded): afterwards a
        reader's snapshot, whenever it first reads the swapped-in tables, sees a complete shadow."""
        ours = [self.admin.info.backend_pid, self.work.info.backend_pid]
        query = ("select l.pid, l.virtualxid from pg_locks l join pg_stat_activity a on a.pid = l.pid "
                 "where l.locktype = 'virtualxid' and l.granted and l.mode = 'ExclusiveLock' "
                 "and a.datname = current_database() and a.backend_type = 'client backend' "
                 "and l.pid <> all(%s)")
        older = set(self.admin.execute(query, (ours,)).fetchall())
        if not older:
            return
        self.emit("waiting", {"transactions": len(older), "pids": sorted({pid for pid, _ in older})})
        deadline = time.monotonic() + self.options.reader_wait_s
        while True:
            older &= set(self.admin.execute(query, (ours,)).fetchall())
            if not older:
                return
            if time.monotonic() >= deadline:
                pids = sorted({pid for pid, _ in older})
                self.result.older_transactions_ignored = pids
                self._warn(f"transactions older than the shadow still open after {self.options.reader_wait_s:g} s "
                           f"(pids {', '.join(map(str, pids))}): if one runs at REPEATABLE READ and reads the "
                           f"projection tables only after the swap, it sees them as of its old snapshot")
                return
            if self.stop_requested():
                raise _Interrupted("interrupted")
            time.sleep(0.2)

    # -- the swap ----------------------------------------------------------------------------------

    def _swap(self) -> None:
        assert self.shadow is not None
        deadline = time.monotonic() + self.options.swap_timeout_s
        while True:
            self.result.swap_attempts += 1
            counters = (self.shadow.events, self.shadow.dead_letters)
            try:
                with self.work.transaction():
                    frozen, locked = self._swap_once(deadline)
                committed = time.monotonic()
                self.result.seconds_live_paused = committed - frozen
                self.result.seconds_readers_blocked = committed - locked
                self.emit("swapped", {"live_paused_s": self.result.seconds_live_paused,
                                      "readers_blocked_s": self.result.seconds_readers_blocked})
                return
            except _Retry as e:
                if (self.shadow.events, self.shadow.dead_letters) != counters:
                    self.shadow.resync(self.work)
                    self.shadow.events, self.shadow.dead_letters = counters
                if time.monotonic() >= deadline:
                    raise RebuildError(f"could not swap within {self.options.swap_timeout_s:g} s ({e}); "
                                       f"nothing was swapped") from None
                self.emit("retry", {"attempt": self.result.swap_attempts, "reason": str(e)})
                time.sleep(random.uniform(0.05, 0.3))

    def _set_lock_timeout(self, seconds: float) -> None:
        self.work.execute("select set_config('lock_timeout', %s, true)", (f"{max(int(seconds * 1000), 1)}ms",))

    def _swap_once(self, deadline: float) -> tuple[float, float]:
        """One attempt, inside the caller's transaction; returns when the live projection was
        paused and when readers were locked out (monotonic clock)."""
        assert self.shadow is not None
        w, shadow = self.work, self.shadow
        # a. Freeze the live projection: its writers wait, readers go on.
        self._set_lock_timeout(self.options.freeze_timeout_s)
        try:
            w.execute("lock table public.orders, public.executions, public.positions, public.marks in share mode")
            w.execute("lock table public.dead_letters, public.projection_checkpoints in exclusive mode")
        except (pg_errors.LockNotAvailable, pg_errors.DeadlockDetected) as e:
            raise _Retry("the live projection's writes could not be paused: " + _first_line(e)) from e
        frozen = time.monotonic()
        self.emit("frozen", {})
        live = read_checkpoints(w, TRADING)
        wm = shadow.watermarks()
        # b. The shadow exactly at the live offsets; compare like for like.
        shadow.advance(w, {tp: min(o, wm[tp][1]) for tp, o in live.items() if tp in wm})
        self.result.old_offsets = dict(live)
        self.result.compared_offsets = dict(shadow.pos)
        differing: set[TP] = set()
        if self.options.checksum:
            old, new = (_partition_sums(w, s, self.settings) for s in ("public", self.shadow_schema))
            self.result.comparison = [TableComparison(t, _table_checksum(old[t]), _table_checksum(new[t]))
                                      for t in (*TABLES, "dead_letters")]
            differing = {tp for t in old for tp in set(old[t]) | set(new[t]) if old[t].get(tp) != new[t].get(tp)}
            self.result.differing_partitions = sorted(differing)
        # c. On to the end of the log.
        shadow.advance(w, {tp: high for tp, (_low, high) in wm.items()})
        final = dict(shadow.pos)
        generation = read_generation(w, TRADING) + 1
        # d. Lock out readers, briefly, without ever becoming a deadlock victim's cause.
        views = self._dependent_views()
        self.emit("locking", {})
        self._lock_for_swap(views, deadline)
        locked = time.monotonic()
        self.emit("locked", {})
        # The lock timeout of the last attempt (short: readers wait) is still in force: a lock
        # that takes longer from here on (say, a `checkpoints prune` holding snapshot rows) is a
        # retry of the whole attempt, like a timed-out lock before, not the end of the rebuild.
        try:
            self._exchange(views, final, generation)
        except (pg_errors.LockNotAvailable, pg_errors.DeadlockDetected) as e:
            raise _Retry("a lock needed after readers were locked out was not granted in time: "
                         + _first_line(e)) from e
        # g. Commit (when the caller's transaction block ends).
        self.result.new_offsets = {tp: o for tp, o in final.items() if o is not None}
        self.result.events, self.result.dead_letters = shadow.events, shadow.dead_letters
        return frozen, locked

    def _exchange(self, views: list[_View], final: dict[TP, int | None], generation: int) -> None:
        """Swap steps e and f, with readers locked out."""
        assert self.shadow is not None
        w = self.work
        # e. The tables change places; indexes, grants and views follow.
        self._move_tables(views)
        # f. Offsets and dead letters follow the tables. The next generation fences every running
        #    projector at its next batch, in every partition (an idle one's offset is unchanged).
        with w.cursor() as cur:
            cur.execute("delete from projection_checkpoints where projection in (%s, %s)",
                        (TRADING, self.shadow.name))
            cur.executemany("insert into projection_checkpoints (projection, topic, partition, next_offset, "
                            "generation) values (%s, %s, %s, %s, %s)",
                            [(TRADING, t, p, o, generation) for (t, p), o in final.items() if o is not None])
        self.result.generation = generation
        # Snapshots too: the old ones were folded by the code this rebuild replaces.
        snapshots.hand_over(w, self.shadow.name, TRADING)
        self._swap_dead_letters()
        w.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(self.shadow_schema)))

    def _dependent_views(self) -> list[_View]:
        """Every view bound to the public projection tables, with its definition as written against
        `public` (the transaction's search_path), so re-running it binds the new tables."""
        self.work.execute("select set_config('search_path', 'public', true)")
        oids = self._table_oids(self.work, "public")
        rows = self.work.execute(
            "select distinct v.oid, n.nspname, v.relname, v.relkind, v.reloptions, pg_get_viewdef(v.oid) "
            "from pg_depend d join pg_rewrite r on d.classid = 'pg_rewrite'::regclass and d.objid = r.oid "
            "join pg_class v on v.oid = r.ev_class join pg_namespace n on n.oid = v.relnamespace "
            "where d.refclassid = 'pg_class'::regclass and d.refobjid = any(%s) and v.oid <> all(%s) "
            "order by 1", (oids, oids)).fetchall()
        if any(kind != "v" for _o, _s, _n, kind, _opt, _d in rows):
            raise RebuildError("a materialized view depends on the projection tables: refusing to swap")
        return [_View(oid, schema, name, opts, definition.strip().rstrip(";"))
                for oid, schema, name, _k, opts, definition in rows]

    def _lock_for_swap(self, views: list[_View], deadline: float) -> None:
        w = self.work
        deadlock_s = float(w.execute(
            "select extract(epoch from current_setting('deadlock_timeout')::interval)").fetchone()[0])
        per_attempt = min(self.options.lock_timeout_s, deadlock_s / 2)
        shadow_views = [r[0] for r in w.execute(
            "select relname from pg_class where relnamespace = %s::regnamespace and relkind = 'v' order by oid",
            (self.shadow_schema,))]
        targets = ([sql.Identifier(v.schema, v.name) for v in views]
                   + [sql.Identifier(self.shadow_schema, v) for v in shadow_views]  # dropped with the shadow
                   + [sql.Identifier("public", t) for t in TABLES]
                   + [sql.Identifier(self.shadow_schema, t) for t in TABLES])
        statement = sql.SQL("lock table {} in access exclusive mode").format(sql.SQL(", ").join(targets))
        failed = 0
        while True:
            self.result.reader_lock_attempts += 1
            try:
                with w.transaction():  # a savepoint: a timed-out attempt releases what it got
                    # Each lock wait and the whole statement end before deadlock_timeout could make a
                    # waiting reader the victim of a lock cycle with us: we give way, never the reader.
                    self._set_lock_timeout(per_attempt)
                    w.execute("select set_config('statement_timeout', %s, true)",
                              (f"{max(int(per_attempt * 1000), 1)}ms",))
                    w.execute(statement)
                w.execute("reset statement_timeout")
                return
            except (pg_errors.LockNotAvailable, pg_errors.DeadlockDetected, pg_errors.QueryCanceled):
                failed += 1
                self.emit("lock_wait", {"failed": failed})
                if time.monotonic() >= deadline:
                    oids = self._table_oids(w, "public") + [v.oid for v in views]
                    pids = [r[0] for r in w.execute(
                        "select distinct pid from pg_locks where relation = any(%s) and granted "
                        "and pid <> pg_backend_pid() order by 1", (oids,))]
                    raise RebuildError(f"could not lock the projection tables for the swap within "
                                       f"{self.options.swap_timeout_s:g} s: readers hold them "
                                       f"(pids {', '.join(map(str, pids)) or '?'}); nothing was swapped") from None
                time.sleep(random.uniform(0.5, 1.0) * min(0.02 * 2 ** failed, 1.0))  # let queued readers through

    def _move_tables(self, views: list[_View]) -> None:
        w, old, shadow = self.work, sql.Identifier(self.old_schema), sql.Identifier(self.shadow_schema)
        if [v.oid for v in self._dependent_views()] != [v.oid for v in views]:
            raise _Retry("the views on the projection tables changed during the swap")
        for t in TABLES:
            if _shape(w, "public", t) != _shape(w, self.shadow_schema, t):
                raise RebuildError(f"public.{t} changed (a migration?) while the shadow was being built: "
                                   f"nothing was swapped; run the rebuild again")
        w.execute(sql.SQL("create schema {}").format(old))
        for t in TABLES:
            w.execute(sql.SQL("alter table public.{} set schema {}").format(sql.Identifier(t), old))
        for t in TABLES:
            w.execute(sql.SQL("alter table {}.{} set schema public").format(shadow, sql.Identifier(t)))
        for t in TABLES:
            _take_over_identity(w, self.old_schema, t)
        for v in views:
            options = (sql.SQL(" with ({})").format(sql.SQL(", ").join(map(sql.SQL, v.options)))
                       if v.options else sql.SQL(""))
            w.execute(sql.SQL("create or replace view {}{} as {}").format(
                sql.Identifier(v.schema, v.name), options, sql.SQL(v.definition)))

    def _swap_dead_letters(self) -> None:
        """This projection's dead letters become the shadow's: the old ones are kept beside the old
        tables, a letter both refused keeps its first-refusal time, and a record only the shadow
        refused is relayed to the dead-letter topic once the swap commits (consumers.deadletter_relay);
        a letter both refused keeps where it was relayed."""
        w, old, shadow = self.work, sql.Identifier(self.old_schema), sql.Identifier(self.shadow_schema)
        same = sql.SQL("(o.source_topic, o.source_partition, o.source_offset) = "
                       "(n.source_topic, n.source_partition, n.source_offset)")
        w.execute(sql.SQL("create table {}.dead_letters as select * from public.dead_letters where projection = %s")
                  .format(old), (TRADING,))
        newly = w.execute(sql.SQL("select n.source_topic, n.source_partition, n.source_offset from {}.dead_letters n "
                                  "where not exists (select 1 from {}.dead_letters o where {}) order by 1, 2, 3")
                          .format(shadow, old, same)).fetchall()
        self.result.no_longer_refused = w.execute(sql.SQL(
            "select count(*) from {}.dead_letters o where not exists (select 1 from {}.dead_letters n where {})")
            .format(old, shadow, same)).fetchone()[0]
        w.execute("delete from public.dead_letters where projection = %s", (TRADING,))
        cols = sql.SQL(_LETTER_COLS)
        w.execute(sql.SQL("insert into public.dead_letters (projection, {cols}, created_at, source_time, "
                          "relay_partition, relay_from, relayed_offset) "
                          "select n.projection, {ncols}, coalesce(o.created_at, n.created_at), "
                          "coalesce(n.source_time, o.source_time), o.relay_partition, o.relay_from, o.relayed_offset "
                          "from {shadow}.dead_letters n left join {old}.dead_letters o on {same} order by n.id").format(
            cols=cols, ncols=sql.SQL(", ").join(sql.SQL("n." + c.strip()) for c in _LETTER_COLS.split(",")),
            shadow=shadow, old=old, same=same))
        self.result.newly_refused = len(newly)
        self._relay_after_swap = sorted({(t, p) for t, p, _o in newly})

    def _relay_newly_refused(self) -> None:
        """After the swap committed: relay what only the new projection refused (a live projector
        relays whatever this leaves, when it next loads those partitions)."""
        if not self._relay_after_swap:
            return

        @contextmanager
        def transaction() -> Iterator[psycopg.Connection]:
            with psycopg.connect(psycopg_url(self.settings), application_name=APPLICATION_NAME) as conn:
                yield conn  # committed when the block ends

        relay = DeadLetterRelay(self.settings, TRADING, transaction)
        try:
            done = relay.relay(self._relay_after_swap)
        finally:
            relay.close()
        if done.failed is not None:
            self._warn(f"dead letters not relayed to {self.settings.topic_deadletter} yet ({done.failed}): "
                       "a projector relays them when it next loads their partitions")

    def _drop_old(self) -> None:
        if self.options.keep_old:
            self.result.old_schema_kept = True
            return
        old = sql.Identifier(self.old_schema)
        try:
            with self.admin.transaction():
                self.admin.execute("select set_config('lock_timeout', '5s', true)")
                self.admin.execute(sql.SQL("drop table {}").format(sql.SQL(", ").join(
                    sql.Identifier(self.old_schema, t) for t in (*TABLES, "dead_letters"))))
                self.admin.execute(sql.SQL("drop schema {}").format(old))
            self.emit("dropped", {"schema": self.old_schema})
        except psycopg.Error as e:
            self.result.old_schema_kept = True
            self._warn(f"kept {self.old_schema} (could not drop it: {_first_line(e)}); drop it with "
                       f"`drop schema {self.old_schema} cascade` once nothing needs it")


# -- helpers -----------------------------------------------------------------------------------------

_INDEX_DEF = re.compile(r"^CREATE (UNIQUE )?INDEX \S+ ON (?:ONLY )?\S+ (USING .*)$", re.S)


def _indexes(conn: psycopg.Connection, schema: str, table: str) -> dict[str, str]:
    """Index definition without its name and table -> index name."""
    out: dict[str, str] = {}
    for name, definition in conn.execute(
            "select c.relname, pg_get_indexdef(c.oid) from pg_index i join pg_class c on c.oid = i.indexrelid "
            "where i.indrelid = %s::regclass order by 1", (f"{schema}.{table}",)):
        m = _INDEX_DEF.match(definition)
        key = f"{m.group(1) or ''}{m.group(2)}" if m else definition
        if key in out:
            raise RebuildError(f"{schema}.{table} has two identical indexes ({out[key]}, {name})")
        out[key] = name
    return out


def _shape(conn: psycopg.Connection, schema: str, table: str) -> tuple[str, list[str]]:
    """Columns (name, type, nullability, default, in order) and index definitions of a table."""
    columns = conn.execute(
        "select string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull || ' ' "
        "|| coalesce(pg_get_expr(d.adbin, d.adrelid), ''), ', ' order by a.attnum) from pg_attribute a "
        "left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum "
        "where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped", (f"{schema}.{table}",)).fetchone()[0]
    return columns, sorted(_indexes(conn, schema, table))


def _take_over_identity(conn: psycopg.Connection, old_schema: str, table: str) -> None:
    """Make public.<table> (the new one) look like the old one to everything that names it:
    index (and constraint) names, owner, grants, storage options."""
    new_ix, old_ix = _indexes(conn, "public", table), _indexes(conn, old_schema, table)
    renames = [(new_ix[k], old_ix[k]) for k in sorted(new_ix) if new_ix[k] != old_ix[k]]
    for i, (name, _target) in enumerate(renames):  # two steps: the new names may overlap the old ones
        conn.execute(sql.SQL("alter index public.{} rename to {}").format(
            sql.Identifier(name), sql.Identifier(f"rebuild_tmp_{i}")))
    for i, (_name, target) in enumerate(renames):
        conn.execute(sql.SQL("alter index public.{} rename to {}").format(
            sql.Identifier(f"rebuild_tmp_{i}"), sql.Identifier(target)))
    new_t, old_t = sql.Identifier("public", table), f"{old_schema}.{table}"
    old_owner, old_options = conn.execute("select relowner::regrole::text, reloptions from pg_class "
                                          "where oid = %s::regclass", (old_t,)).fetchone()
    new_owner = conn.execute("select relowner::regrole::text from pg_class where oid = %s::regclass",
                             (f"public.{table}",)).fetchone()[0]
    if new_owner != old_owner:
        conn.execute(sql.SQL("alter table {} owner to {}").format(new_t, sql.SQL(old_owner)))
    if old_options:
        conn.execute(sql.SQL("alter table {} set ({})").format(new_t, sql.SQL(", ").join(map(sql.SQL, old_options))))
    old_acl, new_acl = _acl(conn, old_t), _acl(conn, f"public.{table}")
    for grantee, privilege, grantable in sorted(new_acl - old_acl):
        conn.execute(sql.SQL("revoke {} on table {} from {}").format(sql.SQL(privilege), new_t, sql.SQL(grantee)))
    for grantee, privilege, grantable in sorted(old_acl - new_acl):
        conn.execute(sql.SQL("grant {} on table {} to {}{}").format(
            sql.SQL(privilege), new_t, sql.SQL(grantee), sql.SQL(" with grant option" if grantable else "")))


def _acl(conn: psycopg.Connection, table: str) -> set[tuple[str, str, bool]]:
    """(grantee, privilege, grantable) of everyone but the owner; grantee quoted, PUBLIC as such."""
    return set(conn.execute(
        "select case when a.grantee = 0 then 'public' else a.grantee::regrole::text end, "
        "a.privilege_type, a.is_grantable "
        "from pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a "
        "where c.oid = %s::regclass and a.grantee <> c.relowner", (table,)).fetchall())


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def tp_names(tps: Iterable[TP]) -> str:
    return ", ".join(f"{t}[{p}]" for t, p in tps)
