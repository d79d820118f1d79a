"""cli.tables (pure): how a table shows money, prices, quantities, counts, times and NULL."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from cli import tables

# plain notation, thousands grouped: never an exponent, never an ungrouped run of 4 digits
GROUPED = re.compile(r"-?\d{1,3}(,\d{3})*(\.\d+)?")

decimals = st.decimals(allow_nan=False, allow_infinity=False, min_value=Decimal("-1e40"),
                       max_value=Decimal("1e40")) | st.builds(
    lambda digits, exponent: Decimal(digits).scaleb(exponent),
    st.integers(min_value=-10**30, max_value=10**30), st.integers(min_value=-30, max_value=30))


def _value(shown: str) -> Decimal:
    assert GROUPED.fullmatch(shown), shown
    return Decimal(shown.replace(",", ""))


def _rounded(value: Decimal, places: int) -> Decimal:
    with localcontext(prec=200):
        return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


MONEY = [("-753313.476999411387", "-753,313.48"), ("65.709999999992", "65.71"), ("1E+3", "1,000.00"),
         ("0.125", "0.12"), ("0.135", "0.14"), ("-0.125", "-0.12"), ("2.5E-1", "0.25"), ("-0.004", "0.00"),
         ("0", "0.00"), ("999.995", "1,000.00"), ("1E+30", "1,000,000,000,000,000,000,000,000,000,000.00"),
         ("-3158145.71274459918700000000", "-3,158,145.71"), ("12.345", "12.34")]
PRICES = [("65.709999999992", "65.71"), ("10", "10.00"), ("101.5", "101.50"), ("0.00012345", "0.00012345"),
          ("1234.123456789", "1,234.12345679"), ("1E+3", "1,000.00"), ("0.000000005", "0.00"),
          ("0.000000015", "0.00000002"), ("-42.10000000", "-42.10"), ("121.731235663995", "121.73123566")]
QUANTITIES = [("100.00000000", "100"), ("1E+3", "1,000"), ("-0", "0"), ("0E-8", "0"), ("1234567.5", "1,234,567.5"),
              ("-2086", "-2,086"), ("0.00000001", "0.00000001")]


@pytest.mark.parametrize(("show", "value", "shown"), [
    *((tables.money, v, s) for v, s in MONEY), *((tables.price, v, s) for v, s in PRICES),
    *((tables.quantity, v, s) for v, s in QUANTITIES)])
def test_money_to_the_cent_prices_to_eight_places_quantities_exact(show: Callable[[Decimal], str], value: str,
                                                                   shown: str) -> None:
    assert show(Decimal(value)) == shown


@given(decimals)
def test_money_shows_the_value_rounded_half_even_to_the_cent(value: Decimal) -> None:
    shown = tables.money(value)
    assert len(shown.split(".")[1]) == 2
    assert _value(shown) == _rounded(value, 2)
    assert not shown.startswith("-0.00")


@given(decimals)
def test_price_is_the_value_rounded_half_even_at_eight_places(value: Decimal) -> None:
    shown = tables.price(value)
    fraction = shown.split(".")[1]
    assert 2 <= len(fraction) <= 8 and (len(fraction) == 2 or not fraction.endswith("0"))
    assert _value(shown) == _rounded(value, 8)


@given(decimals)
def test_quantity_reads_back_as_the_same_value(value: Decimal) -> None:
    shown = tables.quantity(value)
    assert _value(shown) == value
    assert "." not in shown or not shown.endswith("0")


@given(st.integers(min_value=-10**20, max_value=10**20))
def test_counts_are_grouped_integers(value: int) -> None:
    shown = tables.count(value)
    assert shown == f"{value:,}" and _value(shown) == value


def test_counts_seconds_times_and_refusals() -> None:
    assert [tables.count(32513), tables.count(Decimal("1E+3")), tables.thousandths(Decimal("1234.5678905"))] == \
        ["32,513", "1,000", "1,234.568"]
    assert tables.bps(Decimal("-96.15")) == "-96.15 bp"
    when = datetime(2026, 11, 20, 15, 15, 0, 250, tzinfo=UTC)
    assert tables.timestamp(when) == "2026-11-20T15:15:00.000250Z" == tables.timestamp("2026-11-20T15:15:00.000250Z")
    assert [tables.flag(True), tables.flag(False)] == ["yes", "no"]
    with pytest.raises(ValueError, match="not a whole number"):
        tables.count(Decimal("1.5"))
    for not_exact in (1.5, True, "1"):  # a float shows its binary error: refused, never printed
        with pytest.raises(TypeError):
            tables.money(not_exact)  # type: ignore[arg-type]
    assert [tables.money(Decimal("NaN")), tables.price(Decimal("-Infinity"))] == ["NaN", "-Infinity"]


def _render(table: object) -> list[str]:
    console = Console(file=io.StringIO(), width=250, color_system=None)
    console.print(table)
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue().splitlines()


def _cells(line: str) -> list[str]:
    return re.split(r"[│┃]", line)[1:-1]


def test_a_table_declares_its_columns_right_aligns_numbers_and_leaves_null_empty() -> None:
    rows = [{"account": "A1", "qty": Decimal("2086.00000000"), "avg_px": Decimal("121.731235663995"),
             "mark_time": None, "total_pnl": Decimal("-753313.476999411387"), "missing_marks": False},
            {"account": "A2", "qty": Decimal(-5), "avg_px": Decimal("9"), "mark_time": None,
             "total_pnl": Decimal("0.5"), "missing_marks": True}]
    columns = ["account", "qty", "avg_px", "mark_time", "total_pnl", "missing_marks"]
    lines = _render(tables.table(columns, rows))
    header, first, second = (_cells(line) for line in (lines[1], lines[3], lines[4]))
    assert [c.strip() for c in header] == columns
    assert [c.strip() for c in first] == ["A1", "2,086", "121.73123566", "", "-753,313.48", "no"]
    assert [c.strip() for c in second] == ["A2", "-5", "9.00", "", "0.50", "yes"]
    for i, name in enumerate(columns):
        right = tables.KINDS[name].right
        assert right == (name in ("qty", "avg_px", "total_pnl"))
        for cells in (header, first, second):
            text = cells[i].strip()
            if text:
                assert cells[i] == (f" {text.rjust(len(cells[i]) - 2)} " if right else
                                    f" {text.ljust(len(cells[i]) - 2)} "), (name, cells[i])


def test_positional_rows_per_table_kinds_and_undeclared_names() -> None:
    table = tables.table(["partition", tables.column("replayed", tables.COUNT),
                          tables.column("mark", tables.PRICE, null="missing")], [(3, 32513, None)])
    assert [c.strip() for c in _cells(_render(table)[3])] == ["3", "32,513", "missing"]
    with pytest.raises(KeyError):
        tables.column("not_declared_anywhere")
