"""`audit order --verify` reads an order's records back from Kafka in as few reads as the
record spread allows: `read_passes` groups the offsets (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from backbone.kafka.reader import ReadRange
from projections.audit_queries import read_passes

A, B = ("orders", 0), ("orders", 3)


def test_close_offsets_of_a_partition_are_one_range_and_partitions_share_a_read() -> None:
    assert read_passes([(A, 7), (A, 3), (A, 40), (B, 5), (A, 3)], span=100) == [
        {A: ReadRange(3, 41), B: ReadRange(5, 6)}]


def test_a_range_is_never_wider_than_the_span() -> None:
    assert read_passes([(A, 0), (A, 99), (A, 100), (A, 250), (B, 1)], span=100) == [
        {A: ReadRange(0, 100), B: ReadRange(1, 2)}, {A: ReadRange(100, 101)}, {A: ReadRange(250, 251)}]


def test_nothing_to_read() -> None:
    assert read_passes([]) == []


@given(st.lists(st.tuples(st.sampled_from([A, B]), st.integers(0, 2000)), max_size=60), st.integers(1, 500))
def test_every_offset_is_read_once_in_ranges_within_the_span(offsets: list, span: int) -> None:
    passes = read_passes(offsets, span=span)
    covered = [(tp, r) for ranges in passes for tp, r in ranges.items()]
    assert all(0 < r.end - r.start <= span for _tp, r in covered)
    for tp in (A, B):  # a partition's ranges come in offset order, one per read, never overlapping
        mine = [r for t, r in covered if t == tp]
        assert all(a.end <= b.start for a, b in zip(mine, mine[1:], strict=False))
    assert {(tp, o) for tp, o in offsets} <= {(tp, o) for tp, r in covered for o in range(r.start, r.end)}
    assert all(any(o == r.start for t, o in offsets if t == tp) and any(o == r.end - 1 for t, o in offsets
                                                                         if t == tp) for tp, r in covered)
