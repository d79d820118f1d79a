"""Golden scenarios for backbone.domain.positions: every expected value is computed by hand."""

from __future__ import annotations

import dataclasses
import decimal
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from backbone.domain.events import Side
from backbone.domain.positions import (
    Fill,
    Position,
    PositionError,
    _new_position,
    apply_fill,
    apply_fills,
    bust,
    correct,
    empty_position,
    total_pnl,
    unrealized_pnl,
)
from backbone.errors import BackboneError, InvalidRecord

ACCOUNT = "ACC-1"
SYMBOL = "XYZ"
ORDER = "O-1"
T0 = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
BUY, SELL, SHORT = Side.BUY, Side.SELL, Side.SELL_SHORT


def D(text: str) -> Decimal:
    return Decimal(text)


def fill(
    exec_id: str,
    side: Side,
    qty: str,
    price: str,
    commission: str = "0",
    seconds: int = 0,
    account: str = ACCOUNT,
    symbol: str = SYMBOL,
    order_id: str = ORDER,
) -> Fill:
    return Fill(
        order_id, exec_id, account, symbol, side, D(qty), D(price), D(commission),
        T0 + timedelta(seconds=seconds),
    )  # fmt: skip


def fold(*fills: Fill) -> Position:
    position = empty_position(ACCOUNT, SYMBOL)
    for f in fills:
        position = apply_fill(position, f)
    return position


def assert_state(
    p: Position,
    *,
    qty: str,
    avg_px: str,
    realized_pnl: str,
    realized_commission: str,
    open_commission: str,
) -> None:
    """Compare by value (Decimal('11') == Decimal('11.000000000000')) and check the totals."""
    assert (p.qty, p.avg_px, p.realized_pnl, p.realized_commission, p.open_commission) == (
        D(qty), D(avg_px), D(realized_pnl), D(realized_commission), D(open_commission),
    )  # fmt: skip
    assert p.commission == p.realized_commission + p.open_commission
    assert p.net_realized_pnl == p.realized_pnl - p.realized_commission


# --- empty ---------------------------------------------------------------------------------------


def test_empty_position() -> None:
    p = empty_position(ACCOUNT, SYMBOL)
    assert (p.account, p.symbol) == (ACCOUNT, SYMBOL)
    assert_state(
        p, qty="0", avg_px="0", realized_pnl="0", realized_commission="0", open_commission="0"
    )
    assert (p.commission, p.last_fill_time, p.fill_count, p.fills) == (D("0"), None, 0, ())
    assert unrealized_pnl(p, D("123.45")) == 0
    assert total_pnl(p, D("123.45")) == 0


# --- long: build-up, partial reduce, close -------------------------------------------------------


def test_long_build_up_reduce_and_close() -> None:
    b1 = fill("b1", BUY, "100", "10", "1.00", seconds=1)
    b2 = fill("b2", BUY, "50", "13", "0.50", seconds=2)
    s1 = fill("s1", SELL, "60", "12", "0.60", seconds=3)
    s2 = fill("s2", SELL, "90", "9", "0.90", seconds=4)

    p = fold(b1)
    assert_state(
        p, qty="100", avg_px="10", realized_pnl="0", realized_commission="0",
        open_commission="1.00",
    )  # fmt: skip

    # (100·10 + 50·13) / 150 = 1650 / 150 = 11
    p = apply_fill(p, b2)
    assert_state(
        p, qty="150", avg_px="11", realized_pnl="0", realized_commission="0",
        open_commission="1.50",
    )  # fmt: skip
    assert unrealized_pnl(p, D("12")) == D("150")  # (12 − 11) · 150

    # (12 − 11) · 60 = 60; open commission share 1.50 · 60/150 = 0.60, + the fill's 0.60
    p = apply_fill(p, s1)
    assert_state(
        p, qty="90", avg_px="11", realized_pnl="60", realized_commission="1.20",
        open_commission="0.90",
    )  # fmt: skip
    assert p.commission == D("2.10")
    assert p.net_realized_pnl == D("58.80")
    assert unrealized_pnl(p, D("12.5")) == D("135")  # (12.5 − 11) · 90
    assert total_pnl(p, D("12.5")) == D("192.90")  # 60 + 135 − 2.10

    # (9 − 11) · 90 = −180 → −120; flat: all 0.90 open commission moves, + the fill's 0.90
    p = apply_fill(p, s2)
    assert_state(
        p, qty="0", avg_px="0", realized_pnl="-120", realized_commission="3.00",
        open_commission="0",
    )  # fmt: skip
    assert p.commission == D("3.00")  # 1 + 0.5 + 0.6 + 0.9
    assert p.net_realized_pnl == D("-123.00")
    assert unrealized_pnl(p, D("50")) == 0
    assert total_pnl(p, D("50")) == D("-123.00")
    assert (p.fill_count, p.fills, p.last_fill_time) == (4, (b1, b2, s1, s2), s2.time)


# --- flips ---------------------------------------------------------------------------------------


def test_flip_long_to_short_and_back_splits_commission() -> None:
    p = fold(fill("b1", BUY, "100", "20", "2"))
    assert_state(
        p, qty="100", avg_px="20", realized_pnl="0", realized_commission="0", open_commission="2"
    )

    # close 100: (22 − 20) · 100 = 200; commission 3 on 150: 3·100/150 = 2 closing, 1 opening;
    # realized commission = 2 (all the old open commission) + 2
    p = apply_fill(p, fill("s1", SELL, "150", "22", "3"))
    assert_state(
        p, qty="-50", avg_px="22", realized_pnl="200", realized_commission="4",
        open_commission="1",
    )  # fmt: skip

    # cover 50: (21 − 22) · 50 · (−1) = +50; commission 1.6 on 80: 1.6·50/80 = 1 closing,
    # 0.6 opening; realized commission = 4 + 1 (old open) + 1
    p = apply_fill(p, fill("b2", BUY, "80", "21", "1.6"))
    assert_state(
        p, qty="30", avg_px="21", realized_pnl="250", realized_commission="6",
        open_commission="0.6",
    )  # fmt: skip
    assert p.commission == D("6.6")  # 2 + 3 + 1.6
    assert total_pnl(p, D("25")) == D("363.4")  # 250 + (25 − 21)·30 − 6.6


# --- shorts --------------------------------------------------------------------------------------


def test_short_sell_add_cover_and_close() -> None:
    # sell short 200 @ 50, then 100 @ 47: (200·50 + 100·47) / 300 = 14700/300 = 49
    p = fold(fill("ss1", SHORT, "200", "50", "2"), fill("ss2", SHORT, "100", "47", "1"))
    assert_state(
        p, qty="-300", avg_px="49", realized_pnl="0", realized_commission="0", open_commission="3"
    )
    assert unrealized_pnl(p, D("48")) == D("300")  # (48 − 49) · −300

    # buy to cover 150 @ 45: (45 − 49) · 150 · (−1) = 600; share 3·150/300 = 1.5, + 1.5
    p = apply_fill(p, fill("c1", BUY, "150", "45", "1.5"))
    assert_state(
        p, qty="-150", avg_px="49", realized_pnl="600", realized_commission="3",
        open_commission="1.5",
    )  # fmt: skip
    assert unrealized_pnl(p, D("48")) == D("150")  # (48 − 49) · −150
    assert total_pnl(p, D("48")) == D("745.5")  # 600 + 150 − 4.5

    # cover the rest at a loss, no commission: (50 − 49) · 150 · (−1) = −150
    p = apply_fill(p, fill("c2", BUY, "150", "50"))
    assert_state(
        p, qty="0", avg_px="0", realized_pnl="450", realized_commission="4.5", open_commission="0"
    )


def test_sell_and_sell_short_net_the_same_way() -> None:
    a = fold(fill("b", BUY, "10", "5"), fill("s", SELL, "30", "6"), fill("x", SELL, "5", "4"))
    b = fold(fill("b", BUY, "10", "5"), fill("s", SHORT, "30", "6"), fill("x", SHORT, "5", "4"))
    # short 20 @ 6 then add 5 @ 4: (20·6 + 5·4)/25 = 140/25 = 5.6; realized (6 − 5)·10 = 10
    assert_state(
        a, qty="-25", avg_px="5.6", realized_pnl="10", realized_commission="0", open_commission="0"
    )
    assert (a.qty, a.avg_px, a.realized_pnl) == (b.qty, b.avg_px, b.realized_pnl)


# --- rounding ------------------------------------------------------------------------------------


def test_avg_px_is_rounded_to_12_places_and_realized_is_exact() -> None:
    # (1·10 + 2·11) / 3 = 10.666… → 10.666666666667
    p = fold(fill("b1", BUY, "1", "10"), fill("b2", BUY, "2", "11"))
    assert p.avg_px == D("10.666666666667")
    assert p.avg_px.as_tuple().exponent == -12
    # realized uses the rounded average, exactly: 12 − 10.666666666667
    p = apply_fill(p, fill("s1", SELL, "1", "12"))
    assert p.realized_pnl == D("1.333333333333")
    assert p.avg_px == D("10.666666666667")
    assert unrealized_pnl(p, D("11")) == D("0.666666666666")  # (11 − 10.666666666667) · 2


def test_avg_px_rounds_half_to_even() -> None:
    # 0.00000001 / 32 = 0.0000000003125 → 0.000000000312 (2 is even: down)
    p = fold(fill("b1", BUY, "1", "0.00000001"), fill("b2", BUY, "31", "0"))
    assert p.avg_px == D("0.000000000312")
    # 0.00000003 / 32 = 0.0000000009375 → 0.000000000938 (7 is odd: up)
    p = fold(fill("b1", BUY, "3", "0.00000001"), fill("b2", BUY, "29", "0"))
    assert p.avg_px == D("0.000000000938")


def test_commission_shares_round_half_to_even_and_flat_leaves_no_residual() -> None:
    # open 0.00000005, close half: 0.000000025 → 0.00000002 (even: down)
    p = fold(fill("b", BUY, "2", "10", "0.00000005"), fill("s", SELL, "1", "10"))
    assert (p.realized_commission, p.open_commission) == (D("0.00000002"), D("0.00000003"))
    # open 0.00000003, close half: 0.000000015 → 0.00000002 (odd: up)
    p = fold(fill("b", BUY, "2", "10", "0.00000003"), fill("s", SELL, "1", "10"))
    assert (p.realized_commission, p.open_commission) == (D("0.00000002"), D("0.00000001"))

    # 0.0000001 over 3 units closed one by one: 1/3 → 0.00000003; then 0.00000007/2 =
    # 0.000000035 → 0.00000004; then the last unit takes all 0.00000003 left, no residual
    p = fold(fill("b", BUY, "3", "10", "0.0000001"), fill("s1", SELL, "1", "10"))
    assert (p.realized_commission, p.open_commission) == (D("0.00000003"), D("0.00000007"))
    p = apply_fill(p, fill("s2", SELL, "1", "10"))
    assert (p.realized_commission, p.open_commission) == (D("0.00000007"), D("0.00000003"))
    p = apply_fill(p, fill("s3", SELL, "1", "10"))
    assert (p.realized_commission, p.open_commission) == (D("0.0000001"), D("0"))


def test_flip_commission_split_rounds_to_8_places() -> None:
    # commission 0.00000002 on a 3-lot closing 1: 0.00000002 · 1/3 = 0.0000000066… → 0.00000001
    p = fold(fill("b", BUY, "1", "10"), fill("s", SELL, "3", "10", "0.00000002"))
    assert_state(
        p, qty="-2", avg_px="10", realized_pnl="0", realized_commission="0.00000001",
        open_commission="0.00000001",
    )  # fmt: skip
    # commission 0.00000001 on a 3-lot closing 1: 0.0000000033… → 0
    p = fold(fill("b", BUY, "1", "10"), fill("s", SELL, "3", "10", "0.00000001"))
    assert (p.realized_commission, p.open_commission) == (D("0"), D("0.00000001"))


def test_an_inexact_operation_raises_instead_of_rounding() -> None:
    # 38 digits × 29 digits = 67 digits > 60: refused, never silently rounded
    p = fold(fill("b1", BUY, "1", "1"))
    huge = fill(
        "b2", BUY, "123456789012345678901234567890.12345678", "123456789012345678901.12345678"
    )
    with pytest.raises(PositionError) as info:
        apply_fill(p, huge)
    assert info.value.rule == "arithmetic"


def test_the_callers_decimal_context_neither_leaks_in_nor_is_changed() -> None:
    # apply_fill switches to its exact context and back, on success and on refusal alike
    caller = decimal.Context(prec=3, rounding=decimal.ROUND_DOWN, traps=[])
    p = fold(fill("b1", BUY, "100", "10.5"))
    with decimal.localcontext(caller) as mine:
        after = apply_fill(p, fill("b2", BUY, "3", "11.123456789"))
        assert decimal.getcontext() is mine
        with pytest.raises(PositionError):
            apply_fill(after, fill("b3", BUY, "123456789012345678901234567890.12345678",
                                   "123456789012345678901.12345678"))  # 67 digits: refused
        assert decimal.getcontext() is mine and mine.prec == 3 and not mine.traps[decimal.Inexact]
        assert not mine.flags[decimal.Inexact]
    # exact despite prec=3 outside: 100 × 10.5 + 3 × 11.123456789 over 103, to 12 places
    assert after.avg_px == D("10.518158935602")


# --- busts and corrections -----------------------------------------------------------------------

A = fill("A", BUY, "100", "10", "1", seconds=1)
B = fill("B", BUY, "50", "13", "0.5", seconds=2)
C = fill("C", SELL, "60", "12", "0.6", seconds=3)


def test_bust_restates_as_if_the_fill_never_happened() -> None:
    p = fold(A, B, C)
    busted = bust(p, ORDER, "B")
    # A then C: (12 − 10) · 60 = 120; open share 1 · 60/100 = 0.6, + 0.6
    assert_state(
        busted, qty="40", avg_px="10", realized_pnl="120", realized_commission="1.2",
        open_commission="0.4",
    )  # fmt: skip
    assert busted == fold(A, C)
    assert (busted.fills, busted.fill_count, busted.last_fill_time) == ((A, C), 2, C.time)

    # bust of the first fill: B then C, and C (60) now flips the 50 long: realize
    # (12 − 13) · 50 = −50, open 10 short at 12; commission 0.6 · 50/60 = 0.5 closing,
    # 0.1 opening; realized commission 0.5 (B's, all open) + 0.5
    busted = bust(p, ORDER, "A")
    assert_state(
        busted, qty="-10", avg_px="12", realized_pnl="-50", realized_commission="1.0",
        open_commission="0.1",
    )  # fmt: skip
    assert busted == fold(B, C)

    assert bust(bust(bust(p, ORDER, "C"), ORDER, "A"), ORDER, "B") == empty_position(ACCOUNT, SYMBOL)


def test_bust_of_the_latest_fill_restores_last_fill_time() -> None:
    late = fill("late", BUY, "1", "10", seconds=100)
    early = fill("early", BUY, "1", "10", seconds=5)  # arrives after, but happened earlier
    p = fold(late, early)
    assert p.last_fill_time == late.time  # the latest time, not the last applied
    assert bust(p, ORDER, "late").last_fill_time == early.time
    assert bust(bust(p, ORDER, "late"), ORDER, "early").last_fill_time is None


def test_a_busted_exec_id_may_be_applied_again() -> None:
    p = bust(fold(A, B), ORDER, "B")
    assert apply_fill(p, B) == fold(A, B)


def test_correction_restates_as_if_the_fill_had_been_right() -> None:
    p = fold(A, B, C)
    corrected = correct(p, ORDER, "B", D("100"), D("16"), D("1"))
    # A + B': (100·10 + 100·16) / 200 = 13, open 2; C: (12 − 13) · 60 = −60;
    # share 2 · 60/200 = 0.6, + 0.6
    assert_state(
        corrected, qty="140", avg_px="13", realized_pnl="-60", realized_commission="1.2",
        open_commission="1.4",
    )  # fmt: skip
    b_fixed = fill("B", BUY, "100", "16", "1", seconds=2)
    assert corrected == fold(A, b_fixed, C)
    assert corrected.fills == (A, b_fixed, C)  # same place in the order of application


def test_correction_keeps_the_commission_when_none_is_given() -> None:
    corrected = correct(fold(A, B, C), ORDER, "B", D("100"), D("16"))
    # open 1 + 0.5 = 1.5; C: share 1.5 · 60/200 = 0.45, + 0.6
    assert_state(
        corrected, qty="140", avg_px="13", realized_pnl="-60", realized_commission="1.05",
        open_commission="1.05",
    )  # fmt: skip
    assert corrected == fold(A, fill("B", BUY, "100", "16", "0.5", seconds=2), C)


def test_correction_that_turns_a_reduce_into_a_flip() -> None:
    corrected = correct(fold(A, B, C), ORDER, "C", D("200"), D("12"))
    # from 150 @ 11 (open 1.5): close 150: (12 − 11) · 150 = 150; commission 0.6 · 150/200 =
    # 0.45 closing, 0.15 opening; realized commission 1.5 + 0.45
    assert_state(
        corrected, qty="-50", avg_px="12", realized_pnl="150", realized_commission="1.95",
        open_commission="0.15",
    )  # fmt: skip
    assert corrected == fold(A, B, fill("C", SELL, "200", "12", "0.6", seconds=3))


def test_unknown_exec_id_is_refused_by_bust_and_correct() -> None:
    p = fold(A, B)
    for call in (lambda: bust(p, ORDER, "nope"), lambda: correct(p, ORDER, "nope", D("1"), D("1"))):
        with pytest.raises(PositionError) as info:
            call()
        assert info.value.rule == "unknown_exec_id"
    with pytest.raises(PositionError):
        bust(bust(p, ORDER, "A"), ORDER, "A")  # busted fills are no longer live


def test_a_correction_to_an_invalid_fill_is_refused() -> None:
    with pytest.raises(PositionError) as info:
        correct(fold(A, B), ORDER, "B", D("0"), D("13"))
    assert info.value.rule == "invalid_fill"


# --- refusals ------------------------------------------------------------------------------------


def test_duplicate_exec_id_is_rejected() -> None:
    p = fold(A, B)
    with pytest.raises(PositionError) as info:
        apply_fill(p, fill("A", SELL, "1", "1"))
    assert info.value.rule == "duplicate_exec_id"
    assert isinstance(info.value, InvalidRecord) and isinstance(info.value, BackboneError)
    assert info.value.reason == "duplicate_exec_id"
    assert (info.value.account, info.value.symbol) == (ACCOUNT, SYMBOL)
    with pytest.raises(PositionError):
        apply_fills(empty_position(ACCOUNT, SYMBOL), [A, B, A])


# --- a fill is named by (order_id, exec_id) ------------------------------------------------------


def test_two_orders_sharing_an_exec_id_fold_into_one_position_and_bust_apart() -> None:
    """FIX makes an ExecID unique per sell side: two orders of one account and symbol sent to
    two venues may both report X-1. Both fills count, and a bust names one of them."""
    first = fill("X-1", BUY, "100", "10", "1", seconds=1, order_id="O-A")
    second = fill("X-1", BUY, "50", "13", "0.5", seconds=2, order_id="O-B")
    both = apply_fill(apply_fill(empty_position(ACCOUNT, SYMBOL), first), second)
    # (100·10 + 50·13) / 150 = 11
    assert_state(
        both, qty="150", avg_px="11", realized_pnl="0", realized_commission="0",
        open_commission="1.5",
    )  # fmt: skip
    assert both.fills == (first, second) and both.fill_count == 2
    assert apply_fills(empty_position(ACCOUNT, SYMBOL), [first, second]) == both

    assert bust(both, "O-A", "X-1") == fold(second)
    assert bust(both, "O-B", "X-1") == fold(first)
    corrected = correct(both, "O-B", "X-1", D("50"), D("16"))
    assert corrected == fold(first, fill("X-1", BUY, "50", "16", "0.5", seconds=2, order_id="O-B"))
    with pytest.raises(PositionError) as info:
        bust(both, "O-C", "X-1")
    assert info.value.rule == "unknown_exec_id"


def test_the_same_exec_id_twice_on_one_order_is_still_a_duplicate() -> None:
    first = fill("X-1", BUY, "100", "10", order_id="O-A")
    with pytest.raises(PositionError) as info:
        apply_fill(fold(first), fill("X-1", BUY, "5", "11", order_id="O-A"))
    assert info.value.rule == "duplicate_exec_id"
    assert "of order 'O-A'" in str(info.value)


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"qty": D("0")}, "invalid_fill"),
        ({"qty": D("-1")}, "invalid_fill"),
        ({"commission": D("-0.01")}, "invalid_fill"),
        ({"price": D("NaN")}, "invalid_fill"),
        ({"price": D("Infinity")}, "invalid_fill"),
        ({"qty": 1.5}, "invalid_fill"),
        ({"side": "HOLD"}, "invalid_fill"),
        ({"time": datetime(2024, 3, 1, 14, 30)}, "invalid_fill"),
        ({"account": "ACC-2"}, "wrong_position"),
        ({"symbol": "ABC"}, "wrong_position"),
    ],
)
def test_invalid_fills_are_refused(changes: dict[str, object], rule: str) -> None:
    bad = dataclasses.replace(fill("x", BUY, "1", "10"), **changes)  # type: ignore[arg-type]
    with pytest.raises(PositionError) as info:
        apply_fill(fold(A), bad)
    assert info.value.rule == rule


def test_invalid_mark_is_refused() -> None:
    for mark in (D("NaN"), 12.5):
        with pytest.raises(PositionError):
            unrealized_pnl(fold(A), mark)  # type: ignore[arg-type]


# --- the fast constructor ------------------------------------------------------------------------


def test_new_position_sets_every_field() -> None:
    names = [f.name for f in dataclasses.fields(Position)]
    values = [f"v{i}" for i in range(len(names))]
    fast = _new_position(*values)  # type: ignore[arg-type]
    assert fast == Position(*values)  # type: ignore[arg-type]
    assert [getattr(fast, name) for name in names] == values
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.qty = D("1")  # type: ignore[misc]


# --- restatements restart from the state before the restated fill --------------------------------


def test_a_position_built_by_hand_without_prior_states_is_restated_from_empty() -> None:
    fills = [fill("E1", BUY, "100", "10", "1"), fill("E2", BUY, "50", "12", "0.5", 1),
             fill("E3", SELL, "120", "11", "1.2", 2), fill("E4", SHORT, "80", "9", "0.8", 3)]
    built = fold(*fills)
    assert len(built.prior_states) == len(built.fills) == 4
    by_hand = Position(**{f.name: getattr(built, f.name) for f in dataclasses.fields(Position)
                          if f.name != "prior_states"})
    assert by_hand.prior_states == ()
    for exec_id in ("E1", "E2", "E4"):
        expected = fold(*(f for f in fills if f.exec_id != exec_id))
        assert bust(by_hand, ORDER, exec_id) == bust(built, ORDER, exec_id) == expected
    assert correct(by_hand, ORDER, "E2", D("40"), D("12.5")) == correct(built, ORDER, "E2", D("40"), D("12.5"))


def test_restating_a_restated_position_uses_its_refolded_prior_states() -> None:
    fills = [fill(f"E{i}", BUY if i % 3 else SELL, str(10 + i), str(100 + i), "0.25", i) for i in range(1, 9)]
    built = fold(*fills)
    twice = bust(correct(built, ORDER, "E3", D("7"), D("99.5")), ORDER, "E6")
    corrected = [f if f.exec_id != "E3" else dataclasses.replace(f, qty=D("7"), price=D("99.5")) for f in fills]
    expected = fold(*(f for f in corrected if f.exec_id != "E6"))
    assert twice == expected
    assert twice.prior_states == expected.prior_states
