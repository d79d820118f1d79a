"""Snapshots of the live tables at their checkpoints, taken outside the projector's batches:
by `backbone checkpoints create` (`snapshot_jobs.snapshot_live`) and, beside its loop, by a
projector with the bounded live state (`Snapshotter`, docs/live-state.md)."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Collection, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from backbone.db import first_line, psycopg_connection
from backbone.gc_policy import fewer_collections
from backbone.kafka.reader import LogReader
from backbone.record_time import from_timestamp_ms, timestamp_ms
from backbone.settings import Settings
from consumers.checkpoints import read_checkpoints
from projections import snapshots, store
from projections.state import TradingState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Taken:
    """One partition's outcome of a snapshot request."""

    topic: str
    partition: int
    next_offset: int
    action: str  # "created" | "exists" | "empty"
    max_timestamp: datetime | None = None
    events_covered: int = 0
    size: int = 0
    expired: int = 0  # records below the cut deleted before they were read (an expiring topic): not in it


def snapshot_tables(settings: Settings, engine: Engine, reader: LogReader, *, projection: str,
                    only: Collection[tuple[str, int]] | None = None) -> list[Taken]:
    """Snapshot every partition of `projection` (or those of `only`) at its checkpoint, from
    the live tables.

    Rows and checkpoints commit together, so one REPEATABLE READ transaction sees the state at
    exactly the checkpoint offsets; the snapshots are inserted in that same transaction."""
    with fewer_collections():  # the state is kept while it is serialized (backbone.gc_policy)
        out: list[Taken] = []
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as sa_conn, sa_conn.begin():
            conn = psycopg_connection(sa_conn)
            # Before the first query, which fixes the snapshot: a rebuild's swap in progress holds
            # these tables, so the snapshot is taken after it commits. Otherwise the old checkpoints
            # would be read, then the swapped-in tables with that older snapshot (a state that never
            # existed, labelled with the old offsets).
            conn.execute("lock table orders, executions, positions, marks in access share mode")
            checkpoints = {tp: o for tp, o in read_checkpoints(conn, projection).items()
                           if tp[0] in (settings.topic_orders, settings.topic_marketdata)
                           and (only is None or tp in only)}
            bases = {tp: snapshots.newest_at_or_before(conn, projection, tp[0], tp[1], nxt)
                     for tp, nxt in checkpoints.items()}
            todo = {}
            for tp, nxt in sorted(checkpoints.items()):
                base = bases[tp]
                if nxt == 0:
                    out.append(Taken(tp[0], tp[1], nxt, "empty"))
                elif base is not None and base.next_offset == nxt:
                    out.append(Taken(tp[0], tp[1], nxt, "exists", base.max_timestamp, base.events_covered, base.size))
                else:
                    todo[tp] = nxt
            if not todo:
                return out
            state = TradingState()
            store.load_partitions(conn, state, [p for t, p in todo if t == settings.topic_orders],
                                  [p for t, p in todo if t == settings.topic_marketdata])
            known = {tp: (nxt, None if (b := bases[tp]) is None or b.max_timestamp is None
                          else timestamp_ms(b.max_timestamp)) for tp, nxt in todo.items()}
            max_ts = reader.max_timestamps_below(known)
            kind = {tp: snapshots.kind_of(settings, tp[0]) for tp in todo}
            payloads = snapshots.serialize_many(state, [(kind[tp], tp[1]) for tp in todo])
            rows = []
            for tp, nxt in sorted(todo.items()):
                base = bases[tp]
                covered = snapshots.events_covered_at(base, nxt)
                when = None if (ms := max_ts[tp]) is None else from_timestamp_ms(ms)
                data = payloads[(kind[tp], tp[1])]
                rows.append(snapshots.NewSnapshot(projection, tp[0], tp[1], nxt, when, covered, data))
                out.append(Taken(tp[0], tp[1], nxt, "created", when, covered, len(data)))
            snapshots.insert(conn, rows)
        return sorted(out, key=lambda t: (t.topic, t.partition))


class Snapshotter:
    """A thread that snapshots partitions of the live tables at their checkpoints
    (`snapshot_tables`, on a connection and a log reader of its own), one request at a time: a
    bounded projector's snapshots (docs/live-state.md), built beside its loop instead of inside
    a batch. Most of the work waits for Postgres or runs in zlib, which let the loop run. Started
    on the first request; `done()` polls without waiting."""

    def __init__(self, settings: Settings, engine: Engine, projection: str) -> None:
        self.settings, self.engine, self.projection = settings, engine, projection
        self._requests: queue.Queue[list[tuple[str, int]] | None] = queue.Queue()
        self._answers: queue.Queue[list[Taken] | str] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.busy = False

    def request(self, tps: Sequence[tuple[str, int]]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="backbone-snapshots", daemon=True)
            self._thread.start()
        self._requests.put(list(tps))
        self.busy = True

    def done(self, *, wait: bool = False) -> list[Taken] | None:
        """The outcome of the request in progress once it is over (None: still running); a
        failed request gives no snapshot (logged), and its partitions stay due."""
        if not self.busy:
            return None
        try:
            answer = self._answers.get(block=wait)
        except queue.Empty:
            return None
        self.busy = False
        if isinstance(answer, str):
            log.warning("snapshots not taken: %s", answer)
            return []
        return answer

    def close(self) -> list[Taken] | None:
        """Wait for the request in progress (its outcome), then stop the thread."""
        taken = self.done(wait=True)
        if self._thread is not None:
            self._requests.put(None)
            self._thread.join()
            self._thread = None
        return taken

    def _serve(self) -> None:
        with ExitStack() as stack:
            reader: LogReader | None = None  # opened on the first request, kept for the next
            while (tps := self._requests.get()) is not None:
                try:
                    reader = reader or stack.enter_context(LogReader(self.settings))
                    self._answers.put(snapshot_tables(self.settings, self.engine, reader, projection=self.projection,
                                                    only=set(tps)))
                except Exception as e:  # bookkeeping: reported to the projector, never fatal there
                    self._answers.put(f"{type(e).__name__}: {first_line(e)}")
