"""CSV cells a spreadsheet cannot run (backbone.csv_cells): a text that starts a formula gets a
single quote in front; numbers, negative ones included, stay as they are."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backbone.csv_cells import FORMULA_STARTS, cell


@pytest.mark.parametrize("text", ["=1+2", '=HYPERLINK("http://x","y")', "+1+2", "-2+3", "@SUM(A1)", "\tX", "\rY",
                                  "-", "+5", "-5-5", "-1e5", "-.5", "-5."])
def test_a_text_that_starts_a_formula_is_quoted(text: str) -> None:
    assert cell(text) == "'" + text


@pytest.mark.parametrize("value", ["-5", "-5.25", "0", "12.5", "A=1", " =1", "'=1", "", "ACC001", "x@y"])
def test_numerals_and_other_texts_stay_as_they_are(value: str) -> None:
    assert cell(value) == value


def test_numbers_none_and_bools() -> None:
    assert cell(-5) == -5 and cell(Decimal("-5.25")) == Decimal("-5.25")
    assert cell(None) == "" and cell(True) == "true" and cell(False) == "false"


@given(st.text())
def test_no_cell_starts_a_formula_unless_it_is_a_numeral(text: str) -> None:
    out = cell(text)
    assert isinstance(out, str)
    assert not out.startswith(FORMULA_STARTS) or (out == text and out.lstrip("-").replace(".", "", 1).isdigit())
    assert out in (text, "'" + text)
