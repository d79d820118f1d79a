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
with gc.callbacks), which is what the slowest events waited for. Freezing costs next to nothing per batch, but frozen reference cycles that become garbage
stay until the heap is unfrozen. Measured: 2 859 and 2 865 such objects after runs of 251 and
~150 batches, mostly one-off structures (codec plans, SQLAlchemy schema metadata), so not a
per-batch leak; still, once the frozen heap has grown by a quarter (and by at least
`MIN_GROWTH` objects) since the last full collection, it is unfrozen and collected in full, as
CPython's own oldest generation is, so nothing can pile up without bound.

An in-memory replay (projections.replay) freezes every 1 000 records for the same reason, but
never collects in between (`full_collections=False`): its input is bounded, a full collection
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


#: Objects the frozen heap grows by, at least, between two full collections.
MIN_GROWTH = 1_000_000


class FrozenHeap:
    """``with FrozenHeap() as heap:`` ... ``heap.after_batch()`` once a batch is committed.

    `full_collections=False`: never unfreeze to collect before the end (a bounded fold)."""

    __slots__ = ("collections", "full_collections", "_base", "_grown")

    def __init__(self, *, full_collections: bool = True) -> None:
        self.full_collections = full_collections
        self.collections = 0  # full collections run by after_batch
        self._base = 0  # frozen objects after the last full collection
        self._grown = 0  # tracked objects frozen since

    def __enter__(self) -> FrozenHeap:
        gc.freeze()  # what the process holds already is not the batches' growth
        self._base = gc.get_freeze_count() if self.full_collections else 0
        self._grown = 0
        return self

    def after_batch(self) -> None:
        if not self.full_collections:
            gc.freeze()  # nothing to count: the growth only decides full collections
            return
        # What this batch adds: everything older is frozen, so the collector's generations hold
        # only the objects tracked since the last freeze (cheap to count, unlike
        # gc.get_freeze_count(), which walks the whole frozen list; gc.get_count() would miss
        # what a young collection during the batch moved on).
        self._grown += sum(len(gc.get_objects(generation)) for generation in range(3))
        gc.freeze()
        if self._grown > max(self._base // 4, MIN_GROWTH):
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self.collections += 1
            self._base = gc.get_freeze_count()
            self._grown = 0

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        gc.unfreeze()  # what the loop kept is collectable again once it is dropped
