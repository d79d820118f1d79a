"""benchmarks.common.ratio: a ratio far below 1 keeps its significant digits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.common import ratio


@pytest.mark.parametrize(("value", "text"), [(0.0, "0.00"), (0.75, "0.75"), (16.2, "16.20"), (0.1, "0.10"),
                                            (0.05, "0.050"), (0.00033, "0.00033"), (0.0000123, "0.000012")])
def test_ratio_text(value: float, text: str) -> None:
    assert ratio(value) == text


@given(st.floats(min_value=1e-12, max_value=1e6))
def test_a_positive_ratio_never_prints_as_zero_or_an_exponent(value: float) -> None:
    text = ratio(value)
    assert "e" not in text and float(text) > 0
