"""`state --as-of`, `replay --dry-run` and `checkpoints create --as-of` on more than one core:
partitions folded (and snapshotted) by helper processes.

Why: the fold is Python, so one process folds on one core (~15-20 µs a record here), while
the partitions are independent (keys are symbols: a position lives in one orders partition, a
mark in one marketdata partition). A helper process folds some partitions (its own Kafka
consumer, its own database connection) while this one folds the others, and each answers with
what the printed state needs of its partitions: position figures, marks, open orders,
per-partition reports, and when asked the serialized snapshots of its partitions' cuts (the
command inserts them all in one transaction). Merged, that is exactly what one process folding every partition gives
(tests/integration/test_parallel_as_of.py compares them); the whole state (`--into`,
`--verify`) stays single-process.

How the helpers start: forked when this process runs a single thread (nothing to import), else
spawned (a fresh interpreter: ~1 s of imports on the other core). Forking a process that runs
other threads copies only the calling one, and a lock another thread held (librdkafka's
included) stays held in the child for ever. So callers create the helpers before any Kafka
client: `backbone state` and `backbone replay` do it first thing.

Protocol on each helper's pipe (all pickled): the parent sends `_Job` or None (stop); the
helper answers ("progress", records) every 1000 records, then ("done", `FoldSummary`) or
("error", exception), and waits for the next job.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

from backbone import db
from backbone.domain.events import MarketMark
from backbone.errors import BackboneError, InvariantViolation
from backbone.gc_policy import fewer_collections
from backbone.settings import Settings
from projections import snapshots
from projections.read_model import PositionSummary, open_order_rows, pnl_rows, position_rows_of, sort_open_orders
from projections.replay import TP, PartitionPlan, PartitionReport, Replayer, ReplayResult, ReportTotals
from projections.snapshot_jobs import Taken, snapshot_payloads, snapshot_rows
from projections.snapshots import Kind
from projections.state import mark_recency

# Below this many records to read, this process folds them alone: a helper's round trip (its
# own fetch, the answer's pickling) costs about what it saves. Medians, 2 processes against 1
# (benchmarks.replay, 2026-12-02): 200k-record log, tails of 2,000 records 0.15-0.18 vs
# 0.11-0.16 s, of 20,000 0.35-0.37 vs 0.44-0.46 s; 1M-record log, 10,000 0.43 vs 0.42 s,
# 100,000 1.35-1.47 vs 1.69-1.99 s (early snapshot) and 1.56-1.75 vs 2.07-2.60 s (late).
SPLIT_FROM_RECORDS = 20_000


class HelperFailed(BackboneError):
    """A helper process ended without an answer (killed, out of memory)."""


@dataclass(frozen=True)
class FoldSummary:
    """What one process's fold of some partitions gives the commands to print."""

    positions: dict[tuple[str, str], PositionSummary]
    marks: dict[str, MarketMark]
    open_orders: list[dict[str, Any]]
    reports: dict[TP, PartitionReport]
    letters: list[tuple[str, str, str]]
    read_seconds: float
    snapshot_seconds: float
    payloads: dict[tuple[Kind, int], bytes] = field(default_factory=dict)  # snapshots asked for


@dataclass(frozen=True)
class Folded(ReportTotals):
    """What the processes' folds give the commands: the rows of views positions_pnl,
    pnl_by_account and open_orders that `state --as-of` prints, and the per-partition reports
    that `replay --dry-run` prints."""

    positions: list[dict[str, Any]]  # filtered as asked (flat ones only with include_flat)
    pnl: list[dict[str, Any]]
    open_orders: list[dict[str, Any]]
    reports: dict[TP, PartitionReport]
    letters: list[tuple[str, str, str]]
    read_seconds: float  # the longest process's
    snapshot_seconds: float  # the longest process's
    processes: int
    payloads: dict[tuple[Kind, int], bytes] = field(default_factory=dict)  # snapshots at the cuts, if asked


@dataclass(frozen=True)
class _Job:
    plans: list[PartitionPlan]
    account: str | None
    symbol: str | None
    snapshots: bool  # also serialize the snapshots of the plans' cuts (`checkpoints create --as-of`)


# == pure: splitting and merging ===================================================================

def split_plans(plans: Sequence[PartitionPlan], ways: int) -> list[list[PartitionPlan]]:
    """`plans` in up to `ways` groups of about equal records to read, a partition number's plans
    of both topics together (heaviest number first, each to the lightest group so far); no
    empty group."""
    by_number: dict[int, list[PartitionPlan]] = {}
    for plan in plans:
        by_number.setdefault(plan.partition, []).append(plan)
    groups: list[list[PartitionPlan]] = [[] for _ in range(max(ways, 1))]
    loads = [0] * len(groups)
    for number in sorted(by_number, key=lambda n: (-sum(p.to_read for p in by_number[n]), n)):
        lightest = loads.index(min(loads))
        groups[lightest].extend(by_number[number])
        loads[lightest] += sum(p.to_read for p in by_number[number])
    return [g for g in groups if g]


def summarize(result: ReplayResult, *, account: str | None = None, symbol: str | None = None,
              payloads: dict[tuple[Kind, int], bytes] | None = None) -> FoldSummary:
    """The part of a fold's state that `state --as-of` prints (positions unfiltered by
    flatness: P&L by account counts flat positions too), with the snapshot `payloads` made
    from it, if any."""
    state = result.state
    positions = {key: PositionSummary.of(p) for key, p in state.positions.items()
                 if not (account and key[0] != account) and not (symbol and key[1] != symbol)}
    return FoldSummary(positions, {sym: row.mark for sym, row in state.marks.items()},
                       open_order_rows(state, account=account, symbol=symbol), result.reports,
                       result.letters, result.read_seconds, result.snapshot_seconds, payloads or {})


def merge(parts: Sequence[FoldSummary], *, account: str | None = None, symbol: str | None = None,
          include_flat: bool = False, keep_letters: int = 100) -> Folded:
    """The rows of several processes' folds of disjoint partitions."""
    positions: dict[tuple[str, str], PositionSummary] = {}
    marks: dict[str, MarketMark] = {}
    reports: dict[TP, PartitionReport] = {}
    orders: list[dict[str, Any]] = []
    for part in parts:
        if reports.keys() & part.reports.keys():
            raise ValueError("a partition was folded by two processes")
        reports.update(part.reports)
        both = positions.keys() & part.positions.keys()
        if both:
            acc, sym = sorted(both)[0]
            raise InvariantViolation(
                f"position {acc}/{sym} has fills in partitions folded by different processes: the orders "
                "topic is not partitioned by symbol, so only one process can fold it (--processes 1)")
        positions.update(part.positions)
        for symbol_, mark in part.marks.items():  # the newest, as one state keeps (TradingState.apply_mark)
            current = marks.get(symbol_)
            if current is None or mark_recency(mark) > mark_recency(current):
                marks[symbol_] = mark
        orders.extend(part.open_orders)
    sort_open_orders(orders)
    letters = sorted((x for part in parts for x in part.letters), key=_letter_order)[:keep_letters]
    rows = position_rows_of(positions, marks, account=account, symbol=symbol)  # flat ones count in the P&L
    return Folded(
        rows if include_flat else [r for r in rows if r["qty"] != 0], pnl_rows(rows), orders, reports, letters,
        max(part.read_seconds for part in parts), max(part.snapshot_seconds for part in parts), len(parts),
        {key: data for part in parts for key, data in part.payloads.items()})


def _letter_order(letter: tuple[str, str, str]) -> tuple[str, int, int]:
    """Log order of a letter's coordinates, topic[partition]@offset."""
    found = re.fullmatch(r"(.*)\[(\d+)\]@(\d+)", letter[0])
    return (found[1], int(found[2]), int(found[3])) if found else (letter[0], -1, -1)


# == I/O: the helper processes =====================================================================

def _single_threaded() -> bool:
    """Whether this process runs one thread, native ones included (Linux: /proc/self/task)."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _serve(conn: Connection, inherited: list[Connection], settings: Settings, projection: str) -> None:
    """A helper process's life: fold each job's plans, answer with their summary.

    `inherited`: the parent's ends of the helpers' pipes, this one's included, which a fork
    copies into this process: closed first, so that when the parent dies its pipe reads as
    closed here (EOF, or EPIPE on the next progress message) instead of staying open."""
    for end in inherited:
        end.close()
    engine = None
    replayer: Replayer | None = None
    try:
        while True:
            job = conn.recv()
            if job is None:
                return
            try:
                if replayer is None:
                    engine = db.make_engine(settings)
                    replayer = Replayer(settings, engine, projection=projection)
                result = replayer.run(job.plans, progress=lambda n: conn.send(("progress", n)))
                payloads = snapshot_payloads(replayer, job.plans, result) if job.snapshots else None
                answer: tuple[str, Any] = ("done", summarize(result, account=job.account, symbol=job.symbol,
                                                             payloads=payloads))
            except Exception as e:  # answered, and raised again by the parent
                answer = ("error", e)
            _send(conn, answer)
    except (EOFError, BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        return  # the parent is gone (or interrupted, as a Ctrl-C reaches both): nobody to answer
    finally:
        if replayer is not None:
            replayer.close()
        if engine is not None:
            engine.dispose()


def _send(conn: Connection, answer: tuple[str, Any]) -> None:
    try:
        conn.send(answer)
    except Exception as e:  # an exception pickle cannot carry: say what it was instead
        if answer[0] != "error":
            raise
        conn.send(("error", RuntimeError(f"{type(answer[1]).__name__}: {answer[1]} (and it could not be "
                                         f"sent from the helper process: {e})")))


class PartitionWorkers:
    """`processes - 1` helper processes (this process is the other one) that fold partitions
    for `state --as-of`, `replay --dry-run` and `checkpoints create --as-of`.

    Create it before any Kafka client of this process (see the module docstring); close it
    (or use `with`) to stop the helpers."""

    def __init__(self, settings: Settings, processes: int, *, projection: str) -> None:
        self.processes = max(1, processes)
        self.start_method: str | None = None  # "fork" or "spawn" once helpers are started
        self._helpers: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
        if self.processes == 1:
            return
        # one literal per call: typeshed types the context (and its Process) by the method's name
        ctx = multiprocessing.get_context("fork") if _single_threaded() else multiprocessing.get_context("spawn")
        self.start_method = ctx.get_start_method()
        try:
            for _ in range(self.processes - 1):
                mine, theirs = ctx.Pipe()
                ours = [conn for _proc, conn in self._helpers] + [mine]
                proc = ctx.Process(target=_serve, args=(theirs, ours, settings, projection), daemon=True,
                                   name="backbone-fold-helper")
                proc.start()
                theirs.close()
                self._helpers.append((proc, mine))
        except BaseException:
            self.close(now=True)
            raise

    def __enter__(self) -> PartitionWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, *, now: bool = False) -> None:
        """Stop the helpers: ask them to end after their job (they are idle between jobs), or
        with `now`, terminate them (a job nobody will read)."""
        for proc, conn in self._helpers:
            if now:
                proc.terminate()
            else:
                try:
                    conn.send(None)
                except OSError:
                    pass  # already gone: join() below reaps it
            conn.close()
        for proc, _conn in self._helpers:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        self._helpers = []

    def fold(self, replayer: Replayer, plans: Sequence[PartitionPlan], *, account: str | None = None,
             symbol: str | None = None, include_flat: bool = False,
             progress: Callable[[int], None] | None = None, snapshots: bool = False) -> Folded:
        """Fold `plans` (an as-of cut, or a replay's ranges), a share here and the others in the
        helpers. `progress` gets the records read by all processes; `snapshots`: each process
        also serializes the snapshots of its plans' cuts (`Folded.payloads`)."""
        # serializing snapshots costs about as much as folding: worth splitting whatever the tail
        big = snapshots or sum(p.to_read for p in plans) >= SPLIT_FROM_RECORDS
        ways = len(self._helpers) + 1 if big else 1
        groups = split_plans(plans, ways) or [[]]
        busy = [(proc, conn, group) for (proc, conn), group in zip(self._helpers, groups[1:], strict=False)]
        for proc, conn, group in busy:
            try:
                conn.send(_Job(group, account, symbol, snapshots))
            except OSError as e:  # the helper is gone
                self.close(now=True)
                raise HelperFailed(f"the helper process is gone (exit code {proc.exitcode}): {e}; "
                                   "--processes 1 folds everything in one process") from e
        counts = [0] * (len(busy) + 1)  # records read: this process's, then each helper's
        answers: list[tuple[str, Any] | None] = [None] * len(busy)

        def drain(i: int, *, wait: bool) -> None:
            """Read helper i's messages (all that are there; with `wait`, up to its answer)."""
            proc, conn, group = busy[i]
            while answers[i] is None and (wait or conn.poll()):
                try:
                    kind, value = conn.recv()
                except EOFError as e:
                    proc.join(timeout=5)
                    raise HelperFailed(f"the helper process folding partitions {sorted({p.partition for p in group})} "
                                       f"ended without an answer (exit code {proc.exitcode}); "
                                       "--processes 1 folds everything in one process") from e
                if kind == "progress":
                    counts[i + 1] = value
                    if wait and progress is not None:
                        progress(sum(counts))
                else:
                    answers[i] = (kind, value)

        def mine(n: int) -> None:
            counts[0] = n
            for i in range(len(busy)):
                drain(i, wait=False)
            if progress is not None:
                progress(sum(counts))

        try:
            result = replayer.run(groups[0], progress=mine)
            here = summarize(result, account=account, symbol=symbol,
                             payloads=snapshot_payloads(replayer, groups[0], result) if snapshots else None)
            for i in range(len(busy)):
                drain(i, wait=True)
        except BaseException:
            # This fold failed or was interrupted: a helper still folding would answer this job
            # when asked the next one, and nobody waits for its answer now.
            self.close(now=True)
            raise
        parts = [here]
        for answer in answers:
            assert answer is not None
            kind, value = answer
            if kind == "error":
                raise value
            parts.append(value)
        return merge(parts, account=account, symbol=symbol, include_flat=include_flat)


def snapshot_as_of(replayer: Replayer, when: datetime, *, plans: list[PartitionPlan] | None = None,
                   progress: Callable[[int], None] | None = None,
                   fold: Callable[..., Folded] | None = None) -> tuple[list[Taken], ReportTotals]:
    """Snapshot every partition at the as-of cut of `when`, built from snapshots and the log
    (the live tables are not read): for pre-computing points that will be asked for often.
    `plans`: `replayer.plan_as_of(when)` if the caller has it already (it costs lookups).
    `fold(replayer, plans, progress=…, snapshots=True)`: folds the plans elsewhere and answers
    with their totals and the payloads (`PartitionWorkers.fold`); by default this process folds
    them. Every snapshot is inserted in one transaction."""
    with fewer_collections():  # the state is kept while it is serialized (backbone.gc_policy)
        plans = replayer.plan_as_of(when) if plans is None else plans
        done: ReportTotals
        if fold is not None:
            folded = fold(replayer, plans, progress=progress, snapshots=True)
            done, payloads = folded, folded.payloads
        else:
            done = result = replayer.run(plans, progress=progress)
            payloads = snapshot_payloads(replayer, plans, result)
        out, rows = snapshot_rows(replayer, plans, done, payloads)
        with replayer.engine.begin() as sa_conn:
            snapshots.insert(db.psycopg_connection(sa_conn), rows)
        return out, done
