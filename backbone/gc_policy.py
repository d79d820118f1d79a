"""Garbage-collector thresholds for the loops that fold the log into state.

A fold keeps almost everything it allocates: every record leaves a few frozen dataclasses and
tuples behind in the state (orders, fills, executions, positions). CPython's default thresholds
(700, 10, 10) run a young collection every ~70 records and promote the whole growing state
through the older generations, where it is scanned again and again, yet the fold creates no
reference cycles for the collector to find (only an exception's traceback does, when a record is
dead-lettered; those wait for the next, rarer, collection). Measured on 300 000 simulated
records, decode + fold in memory: 10 600 events/s with the defaults, 15 400 with
`FOLD_THRESHOLDS`, the same as with the collector switched off.

Thresholds are process-wide, so `fewer_collections` restores the previous ones when the loop
ends, whatever the loop raised; nested uses restore in order.

A long-running projector also freezes its heap after every committed batch (`FrozenHeap`): the
state it keeps moves to the collector's permanent generation, so no collection ever rescans
it. With the thresholds alone, young collections of 100 000 objects still paused the loop: 12-13
of them in 30 s at 5 000 events/s, 200-510 ms in all, the slowest 110-280 ms (three runs, timed
with gc.callbacks), which is what the slowest events waited for. Before each freeze the objects
allocated since the last one (and only those: the rest is frozen) are collected, so the
reference cycles a batch leaves behind (a dead letter's traceback, a settled transaction's
cursors) are freed instead of frozen; that costs what the batch allocated, not what the state
holds. Cycles among objects frozen while alive that become garbage later stay until the heap is
unfrozen: a full collection at the end of 8 s and of 30 s runs at 5 000 events/s found the same
1 450 objects (one-off structures: codec plans, SQLAlchemy metadata), so nothing piles up batch
by batch. Unfreezing the heap and collecting it in full whenever it has grown by a quarter
(at least a million objects) instead paused the projector 0.37-0.46 s about every 35 s at
5 000 events/s (2026-12-03, dc08574), growing with the state (~1 µs an object held), and set the
p99 latency of the run it fell in.

An in-memory replay (projections.replay) freezes every 1 000 records for the same reason, but
never collects in between (`collect_batches=False`): its input is bounded, a full collection
of its state costs ~1 µs per object held (0.88 s for the 874 000 objects after folding 300 000
records), and folding leaves no cyclic garbage to find (0 objects after those 300 000 records,
and after 3 000 dead letters of each of two kinds). Its young collections had cost 0.30-0.44 s
per 300 000 records (gc.callbacks, four folds), ~8-10 % of the fold; frozen, none run.
"""

from __future__ import annotations

import gc
from types import TracebackType

#: (young, middle, old): a young collection every 100 000 net allocations of tracked objects.
FOLD_THRESHOLDS = (100_000, 50, 100)


class fewer_collections:  # noqa: N801 - a context manager used like a function
    """``with fewer_collections():`` runs its body with `FOLD_THRESHOLDS` (or `thresholds`)."""

    __slots__ = ("thresholds", "_previous")

    def __init__(self, thresholds: tuple[int, int, int] = FOLD_THRESHOLDS) -> None:
        self.thresholds = thresholds
        self._previous: tuple[int, int, int] | None = None

    def __enter__(self) -> None:
        self._previous = gc.get_threshold()
        gc.set_threshold(*self.thresholds)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._previous is not None
        gc.set_threshold(*self._previous)
        self._previous = None


class FrozenHeap:
    """``with FrozenHeap() as heap:`` ... ``heap.after_batch()`` once a batch is done.

    `collect_batches=False`: freeze only, never collect before the end (a bounded fold, which
    leaves no cycles)."""

    __slots__ = ("collect_batches",)

    def __init__(self, *, collect_batches: bool = True) -> None:
        self.collect_batches = collect_batches

    def __enter__(self) -> FrozenHeap:
        gc.freeze()  # what the process holds already is not the batches' growth
        return self

    def after_batch(self) -> None:
        if self.collect_batches:
            gc.collect()  # the frozen objects are not examined: only what came since the last freeze
        gc.freeze()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        gc.unfreeze()  # what the loop kept is collectable again once it is dropped
