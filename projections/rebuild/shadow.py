"""The shadow projector: the same `TradingProjection`, reading the log into the shadow schema."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

import psycopg
from confluent_kafka import Consumer, TopicPartition
from psycopg import sql

from backbone import deadletters
from backbone.errors import KafkaError
from backbone.kafka import log_bounds, reader
from backbone.kafka.batches import next_batch, partitions_of, refetch, watermarks
from backbone.kafka.consumer import consumer_config
from backbone.settings import Settings
from consumers.checkpoints import advance_checkpoints, read_checkpoints
from consumers.projection import fold
from projections import snapshots, store
from projections.rebuild.model import LETTER_COLS, NO_PROGRESS_S, TP, Interrupted, RebuildError
from projections.state import Changes
from projections.trading import NAME as TRADING
from projections.trading import TradingProjection

log = logging.getLogger(__name__)


class Shadow:
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

        ended: list[TP] = []  # of the batch at hand: done once its records (all before the end) are taken

        def gone(tp: TP, offset: int) -> None:
            if tp in pending:
                self._out_of_range(tp, offset)

        try:
            while pending:
                if self.stop_requested():
                    raise Interrupted("interrupted")
                expected = dict(self.pos)
                batch: list[reader.Record] = []
                ended.clear()
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

    def _write(self, conn: psycopg.Connection, batch: list[reader.Record]) -> None:
        letters, moves = fold(self.projection, batch, self.pos)
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
        a copy of each snapshot's chain under the shadow's name (its snapshot bookkeeping resumes from
        it), the shadow's checkpoints, and the live dead letters below each snapshot (records
        the shadow will not read again). Returns the offset each seeded partition starts at."""
        chosen: dict[TP, tuple[snapshots.SnapshotMeta, list[tuple[snapshots.SnapshotMeta, bytes]]]] = {}
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
                chain = snapshots.read_chain(conn, meta)
                snapshots.restore_chain(self.projection.state, snapshots.kind_of(self.settings, tp[0]), tp[1],
                                        snapshots.links_of(chain), where=meta.where)
                chosen[tp] = (meta, chain)
            if not chosen:
                return {}
            state = self.projection.state
            store.write_changes(conn, state, Changes(set(state.orders), set(state.executions),
                                                     set(state.positions), set(state.marks)), schema=self.schema)
            copies = [snapshots.NewSnapshot(self.name, m.topic, m.partition, m.next_offset, m.max_timestamp,
                                            m.events_covered, data, m.base_next_offset)
                      for _meta, chain in chosen.values() for m, data in chain]
            snapshots.insert(conn, copies)
            advance_checkpoints(conn, self.name, {tp: (None, m.next_offset) for tp, (m, _) in chosen.items()})
            for (t, p), (m, _) in chosen.items():
                conn.execute(sql.SQL("insert into {}.dead_letters (projection, " + LETTER_COLS + ", created_at) "
                                     "select projection, " + LETTER_COLS + ", created_at from public.dead_letters "
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
