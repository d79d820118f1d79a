"""The state machine's exact arithmetic helpers against straightforward rational references."""

from __future__ import annotations

import decimal
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backbone.domain.events import SCALE
from backbone.domain.order_fields import exact_context, round_half_even
from backbone.errors import InvalidOrderTransition

wire = st.decimals(min_value=Decimal("-1e20"), max_value=Decimal("1e20"), places=SCALE,
                   allow_nan=False, allow_infinity=False)
products = st.builds(lambda a, b: a * b, wire, wire)


def reference(numerator: Decimal, denominator: Decimal) -> Decimal:
    """Exact rational quotient, banker's rounding of the scaled value (round(Fraction) is exact)."""
    scaled = round(Fraction(numerator) / Fraction(denominator) * 10**SCALE)
    return Decimal(scaled).scaleb(-SCALE, context=decimal.Context(prec=400))  # scaleb rounds to the context


@given(products, wire.filter(lambda d: d != 0))
def test_round_half_even_is_the_correctly_rounded_quotient(numerator: Decimal, denominator: Decimal) -> None:
    with exact_context("o"):
        got = round_half_even(numerator, denominator)
    expected = reference(numerator, denominator)
    assert got == expected
    assert str(got) == str(expected)  # same scale, never -0


@pytest.mark.parametrize(("numerator", "denominator", "expected"), [
    ("0.000000005", "1", "0E-8"),  # tie, even below
    ("0.000000015", "1", "2E-8"),  # tie, even above
    ("-0.000000015", "1", "-2E-8"),
    ("-0.000000005", "1", "0E-8"),  # not -0E-8
    ("1", "3", "0.33333333"),
    ("2", "-3", "-0.66666667"),
    ("100.5", "0.5", "201.00000000"),
])
def test_round_half_even_ties_and_signs(numerator: str, denominator: str, expected: str) -> None:
    assert str(round_half_even(Decimal(numerator), Decimal(denominator))) == expected


def test_exact_context_turns_an_implicit_rounding_into_a_refusal() -> None:
    with pytest.raises(InvalidOrderTransition) as info, exact_context("ORD-1"):
        Decimal(1) / Decimal(3)
    assert info.value.rule == "arithmetic"
    assert "ORD-1" in str(info.value)
    with exact_context("ORD-2"):
        assert Decimal("1.5") * Decimal("2.25") == Decimal("3.375")  # exact: allowed
