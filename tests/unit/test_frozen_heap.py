"""backbone.gc_policy.FrozenHeap: the projector's state is never rescanned, and the cycles a
batch leaves behind are collected before they are frozen."""

from __future__ import annotations

import gc
import weakref

from backbone.gc_policy import FrozenHeap


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_freezes_after_each_batch_and_unfreezes_at_the_end() -> None:
    kept = [[i] for i in range(1000)]
    with FrozenHeap() as heap:
        heap.after_batch()
        assert gc.get_freeze_count() >= len(kept)
        assert gc.get_count()[0] < 10  # the young generation starts empty again
    assert gc.get_freeze_count() == 0


def test_a_cycle_a_batch_leaves_behind_is_collected_not_frozen() -> None:
    with FrozenHeap() as heap:
        heap.after_batch()
        frozen = gc.get_freeze_count()
        garbage = Node()
        dead = weakref.ref(garbage)
        del garbage
        kept = Node()
        heap.after_batch()
        assert dead() is None  # garbage when the batch ended: collected, not frozen
        assert gc.get_freeze_count() > frozen  # what the batch kept is frozen
        # alive when frozen, garbage later: out of the collector's reach until the end
        later = weakref.ref(kept)
        del kept
        heap.after_batch()
        gc.collect()
        assert later() is not None
    gc.collect()
    assert later() is None


def test_the_frozen_state_is_not_examined_by_the_batch_collections() -> None:
    with FrozenHeap() as heap:
        state = [[i] for i in range(50_000)]
        heap.after_batch()
        frozen_at_start: list[int] = []

        def record(phase: str, info: dict) -> None:
            if phase == "start":
                frozen_at_start.append(gc.get_freeze_count())

        gc.callbacks.append(record)
        try:
            small = [[i] for i in range(10)]
            heap.after_batch()
        finally:
            gc.callbacks.remove(record)
        # it collected, and every collection ran with the state frozen, out of its reach (an
        # after_batch that unfroze to collect in full fails here)
        assert frozen_at_start and all(count >= len(state) for count in frozen_at_start), frozen_at_start
        assert len(small) == 10
    assert gc.get_freeze_count() == 0


def test_a_bounded_fold_never_collects_before_the_end() -> None:
    with FrozenHeap(collect_batches=False) as heap:
        garbage = Node()
        dead = weakref.ref(garbage)
        del garbage
        heap.after_batch()
        gc.collect()
        assert dead() is not None  # frozen with the batch
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert dead() is None  # unfrozen at the end: the cycle is garbage like any other
