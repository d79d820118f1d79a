"""The dashboard's numbers: money with 2 decimals, prices with 2 to 8, quantities as they are."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from dashboard import formatting as fmt


@pytest.mark.parametrize(("value", "shown"), [
    ("-753313.476999411387", "-753,313.48"),
    ("-3158145.71274459918700000000", "-3,158,145.71"),
    ("2.345", "2.34"),  # half-even
    ("2.355", "2.36"),
    ("-0.004", "0.00"),  # never "-0.00"
    ("1234567", "1,234,567.00"),
    ("0E-8", "0.00"),
])
def test_money_has_two_decimals_and_thousands_separators(value: str, shown: str) -> None:
    assert fmt.money(Decimal(value)) == shown


@pytest.mark.parametrize(("value", "shown"), [
    ("65.709999999992", "65.71"),
    ("150.00000000", "150.00"),
    ("1E+3", "1,000.00"),
    ("1234.5", "1,234.50"),
    ("0.000123456789", "0.00012346"),
    ("232.123456785", "232.12345678"),  # 8 places, half-even
])
def test_prices_keep_their_significant_decimals_up_to_eight(value: str, shown: str) -> None:
    assert fmt.price(Decimal(value)) == shown


@pytest.mark.parametrize(("value", "shown"), [
    ("1200.00000000", "1,200"), ("0.50", "0.5"), ("1E+3", "1,000"), ("-12925.00000000", "-12,925")])
def test_quantities_have_no_trailing_zeros(value: str, shown: str) -> None:
    assert fmt.qty(Decimal(value)) == shown


def test_missing_values_are_empty() -> None:
    assert fmt.money(None) == fmt.price(None) == fmt.qty(None) == fmt.when(None) == ""
    assert fmt.when(datetime(2024, 1, 2, 14, 30, 5, 123456, tzinfo=UTC)) == "2024-01-02 14:30:05"
