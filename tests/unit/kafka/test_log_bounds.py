"""Where a next offset lies against the log bounds (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backbone.kafka.log_bounds import Bounds, classify, refusal


@pytest.mark.parametrize(("next_offset", "low", "high", "expiring", "verdict"), [
    (0, 0, 0, False, "within"),          # empty log, nothing read
    (5, 5, 5, False, "within"),          # caught up with a log that starts at 5
    (5, 0, 10, False, "within"),
    (10, 0, 10, True, "within"),         # at the end: the next record is the next produced
    (3, 5, 10, False, "deleted"),
    (3, 5, 10, True, "expired"),
    (11, 0, 10, False, "beyond_end"),
    (11, 0, 10, True, "beyond_end"),     # expiry never excuses a recreated topic
    (0, 7, 7, False, "deleted"),         # nothing read, everything deleted since
])
def test_verdicts(next_offset: int, low: int, high: int, expiring: bool, verdict: str) -> None:
    assert classify(Bounds("t", 0, next_offset, low, high), expiring=expiring) == verdict


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6), st.booleans())
def test_only_a_readable_offset_is_within_and_missing_counts_the_gap(next_offset: int, low: int, extra: int,
                                                                    expiring: bool) -> None:
    bounds = Bounds("t", 1, next_offset, low, low + extra)
    verdict = classify(bounds, expiring=expiring)
    assert (verdict == "within") == (low <= next_offset <= low + extra)
    assert bounds.missing == (low - next_offset if verdict in ("deleted", "expired") else 0)


def test_refusals_name_the_partition_the_offsets_and_the_remedy() -> None:
    deleted = refusal(Bounds("trading.orders", 3, 10, 15, 20), "deleted", "restore them")
    assert deleted == ("trading.orders[3]: the next offset to project is 10 but the log starts at 15: records "
                       "10..14 were deleted before this projection read them, and its state cannot be exact "
                       "without them: restore them")
    beyond = refusal(Bounds("trading.orders", 3, 30, 15, 20), "beyond_end", "rebuild")
    assert beyond.startswith("trading.orders[3]: the next offset to project is 30 but the log ends at 20: ")
    assert beyond.endswith("; rebuild")
    with pytest.raises(ValueError):
        refusal(Bounds("t", 0, 0, 0, 0), "within", "nothing")
