"""Snapshots of the live tables at their checkpoints, taken outside the projector's batches:
by `backbone checkpoints create` (`snapshot_jobs.snapshot_live`) and, in a child process its
loop starts and polls, by a projector with the bounded live state (`SnapshotBuild`,
docs/live-state.md). `python -m projections.live_snapshots` is that child."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

import psycopg
from pydantic import SecretStr
from sqlalchemy import Engine

from backbone import db
from backbone.codec.avro import AvroCodec
from backbone.db import first_line, psycopg_connection
from backbone.domain.events import OrderEvent
from backbone.errors import DecodeError, KafkaError
from backbone.gc_policy import fewer_collections
from backbone.kafka.reader import LogReader, ReadRange, Record
from backbone.record_time import from_timestamp_ms, timestamp_ms
from backbone.settings import Settings
from consumers.checkpoints import read_checkpoints
from projections import snapshots, store
from projections.snapshots import SnapshotMeta
from projections.state import TradingState


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
    change_on: int | None = None  # a change on the snapshot at this offset (format 3); None: whole


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
            changes = _changes_to_take(settings, conn, reader, projection, todo, bases)
            kind = {tp: snapshots.kind_of(settings, tp[0]) for tp in todo}
            payloads = {}
            if changes:
                changed = _load_changed(conn, projection, settings.topic_orders, changes)
                for tp in changes:
                    base = bases[tp]
                    assert base is not None
                    payloads[(kind[tp], tp[1])] = snapshots.serialize_change(changed, tp[1], base.next_offset)
            whole = [tp for tp in todo if tp not in changes]
            if whole:
                state = TradingState()
                store.load_partitions(conn, state, [p for t, p in whole if t == settings.topic_orders],
                                      [p for t, p in whole if t == settings.topic_marketdata])
                payloads.update(snapshots.serialize_many(state, [(kind[tp], tp[1]) for tp in whole]))
            known = {tp: (nxt, None if (b := bases[tp]) is None or b.max_timestamp is None
                          else timestamp_ms(b.max_timestamp)) for tp, nxt in todo.items()}
            max_ts = reader.max_timestamps_below(known)
            rows = []
            for tp, nxt in sorted(todo.items()):
                base = bases[tp]
                covered = snapshots.events_covered_at(base, nxt)
                when = None if (ms := max_ts[tp]) is None else from_timestamp_ms(ms)
                data = payloads[(kind[tp], tp[1])]
                change_on = base.next_offset if tp in changes and base is not None else None
                rows.append(snapshots.NewSnapshot(projection, tp[0], tp[1], nxt, when, covered, data, change_on))
                out.append(Taken(tp[0], tp[1], nxt, "created", when, covered, len(data), change_on=change_on))
            snapshots.insert(conn, rows)
        return sorted(out, key=lambda t: (t.topic, t.partition))


def _changes_to_take(settings: Settings, conn: psycopg.Connection, reader: LogReader, projection: str,
                     todo: dict[tuple[str, int], int], bases: dict[tuple[str, int], SnapshotMeta | None],
                     ) -> dict[tuple[str, int], set[str]]:
    """The orders partitions whose snapshot is a change on their newest one, each with the order
    ids its records since that one name (what changed is among those orders).

    A partition is snapshotted whole when it has no snapshot yet, when its newest one closes a
    chain of `snapshot_whole_every` links, when that chain starts from a format-1 payload, or
    when records since it were deleted (an expiring topic): a change is only ever taken over a
    tail that is all there."""
    every = settings.snapshot_whole_every
    candidates: dict[tuple[str, int], SnapshotMeta] = {}
    listed = snapshots.list_snapshots(conn, projection, settings.topic_orders) if every > 1 else []
    for tp in todo:
        base = bases[tp]
        if tp[0] != settings.topic_orders or base is None or every <= 1:
            continue
        chain = snapshots.chain_of(listed, base)  # (it keeps the snapshots of base's partition)
        if len(chain) < every and snapshots.framed(conn, chain[0].id):
            candidates[tp] = base
    if not candidates:
        return {}
    lows = reader.watermarks(candidates)
    ranges = {tp: ReadRange(base.next_offset, todo[tp]) for tp, base in candidates.items()
              if lows[tp][0] <= base.next_offset}
    named: dict[tuple[str, int], set[str]] = {tp: set() for tp in ranges}
    decode = AvroCodec().decoder()

    def on_message(msg: Record, tp: tuple[str, int], _offset: int) -> None:
        value = msg.value()
        if not value:
            return
        try:
            record = decode(value)
        except DecodeError:
            return  # dead-lettered by the projector: it changed nothing
        if isinstance(record, OrderEvent):
            named[tp].add(record.order_id)

    def on_gone(tp: tuple[str, int], offset: int, _limit: int) -> int:
        raise KafkaError(f"{tp[0]}[{tp[1]}]: records from offset {offset} were deleted while they were read")

    reader.read(ranges, on_message, on_gone)
    return named


def _load_changed(conn: psycopg.Connection, projection: str, topic: str,
                  changes: dict[tuple[str, int], set[str]]) -> TradingState:
    """The open book of each partition of `changes` (its positions' summaries; their fills are
    never read) and the orders its records named, with their executions, as the transaction
    sees them: what `snapshots.serialize_change` writes."""
    state = TradingState()
    parts = sorted(p for _t, p in changes)
    store.load_partitions(conn, state, parts, [],
                          history_of=lambda p, summary: lambda: store.position_history(conn, p, summary))
    wanted = {o for (_t, p), ids in changes.items() for o in ids if o not in state.orders}
    if not wanted:
        return state
    got = store.fetch_orders(conn, wanted, projection=projection, topic=topic)
    ours: set[str] = set()
    for order, p in got.orders:
        if (topic, p) in changes and order.order_id in changes[(topic, p)]:
            state.orders[order.order_id] = order
            state.order_partition[order.order_id] = p
            ours.add(order.order_id)
    for x in got.executions:
        if x.order_id in ours:
            state.executions[(x.order_id, x.exec_id)] = x
    return state


MODULE = "projections.live_snapshots"
#: The child runs below the loop's CPU priority: on shared cores the batches go first.
NICE = 10
#: Lines of a failed child's standard error kept in the message that reports it.
STDERR_LINES = 5


def child_environment(settings: Settings) -> dict[str, str]:
    """The environment of a child that reads `settings` back with `Settings()`: every setting as
    its `BACKBONE_*` variable (secrets included: an environment is not shown by `ps`, a command
    line is), over this process's environment without its own `BACKBONE_*` settings."""
    fields = type(settings).model_fields
    env = {k: v for k, v in os.environ.items() if not (k.startswith("BACKBONE_") and k[9:].lower() in fields)}
    for name in fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[f"BACKBONE_{name.upper()}"] = str(value)
    return env


@dataclass(frozen=True)
class Outcome:
    """A finished build: the partitions snapshotted, or why none was (`failure`)."""

    taken: list[Taken]
    failure: str | None = None


class SnapshotBuild:
    """One child process (`python -m projections.live_snapshots`) that snapshots partitions of
    the live tables at their checkpoints (`snapshot_tables`) and prints what it did: a bounded
    projector's snapshots (docs/live-state.md), built beside its loop instead of inside a batch,
    in a process of its own (no thread of the loop's, no share of its GIL). The loop polls it
    between batches; nothing here blocks except `close`."""

    def __init__(self, settings: Settings, projection: str, tps: Sequence[tuple[str, int]]) -> None:
        # Files, not pipes: a child that writes more than a pipe holds never waits for the loop.
        self._out = tempfile.TemporaryFile()
        self._err = tempfile.TemporaryFile()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", MODULE, "--projection", projection, *(f"{t}:{p}" for t, p in tps)],
                stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err, env=child_environment(settings))
        except BaseException:
            self._out.close()
            self._err.close()
            raise

    def poll(self) -> Outcome | None:
        """The outcome once the child has exited (None: still running); never waits."""
        code = self.process.poll()
        return None if code is None else self._outcome(code)

    def close(self, timeout_s: float) -> Outcome:
        """Wait up to `timeout_s` for the child, then terminate it (killed if it does not stop):
        no child outlives the projector."""
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self._close_files()
            return Outcome([], f"still running after {timeout_s:g} s: terminated")
        return self._outcome(code)

    def _outcome(self, code: int) -> Outcome:
        try:
            if code != 0:
                self._err.seek(0)
                lines = [line.strip() for line in self._err.read().decode(errors="replace").splitlines()
                         if line.strip()]
                return Outcome([], f"exit code {code}: {' | '.join(lines[-STDERR_LINES:]) or 'no message'}")
            self._out.seek(0)
            return Outcome([Taken(**{**d, "max_timestamp": None if d["max_timestamp"] is None
                                     else datetime.fromisoformat(d["max_timestamp"])})
                            for d in map(json.loads, self._out.read().splitlines())])
        finally:
            self._close_files()

    def _close_files(self) -> None:
        self._out.close()
        self._err.close()


def _partition(text: str) -> tuple[str, int]:
    topic, _, partition = text.rpartition(":")
    if not topic or not partition.isdigit():
        raise argparse.ArgumentTypeError(f"not TOPIC:PARTITION: {text!r}")
    return topic, int(partition)


def main(argv: Sequence[str] | None = None) -> int:
    """The child of `SnapshotBuild`: settings from the environment (`child_environment`), the
    partitions on the command line; one JSON line per partition on standard output. Exit code 0
    when done, 1 on any failure (one line on standard error), 2 on a bad command line."""
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    parser.add_argument("--projection", required=True)
    parser.add_argument("partitions", nargs="+", type=_partition, metavar="TOPIC:PARTITION")
    args = parser.parse_args(argv)
    os.nice(NICE)
    try:
        settings = Settings(_env_file=None)  # the parent's settings only, not a .env of its own
        engine = db.make_engine(settings)
        try:
            with LogReader(settings) as reader:
                taken = snapshot_tables(settings, engine, reader, projection=args.projection,
                                        only=set(args.partitions))
        finally:
            engine.dispose()
    except Exception as e:  # reported to the projector by exit code and message; never fatal there
        sys.stderr.write(f"error: {type(e).__name__}: {first_line(e)}\n")
        return 1
    for t in taken:
        sys.stdout.write(json.dumps({**asdict(t), "max_timestamp": None if t.max_timestamp is None
                                     else t.max_timestamp.isoformat()}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
