"""Property tests for backbone.domain.positions against an independent reference model.

The reference (`reference_states`) is a plain average-cost loop over signed quantities in exact
rational arithmetic (`fractions.Fraction`), with its own half-even rounding: it shares no code
with the module under test, only the documented quantization rules.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backbone.domain.events import Side
from backbone.domain.history import Deferred
from backbone.domain.positions import (
    Fill,
    Position,
    apply_fill,
    apply_fills,
    bust,
    correct,
    empty_position,
    total_pnl,
    unrealized_pnl,
)

ACCOUNT = "ACC-P"
SYMBOL = "PROP"
T0 = datetime(2024, 1, 2, tzinfo=UTC)

# No example database: the tests do no I/O and leave nothing in the tree.
PROPS = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- strategies ----------------------------------------------------------------------------------


def scaled(low: int, high: int) -> st.SearchStrategy[Decimal]:
    """Decimals with 8 places in [low·1e-8, high·1e-8]."""
    return st.integers(low, high).map(lambda n: Decimal(n).scaleb(-8))


QTY = st.one_of(
    st.integers(1, 1_000).map(Decimal),  # round lots: flats and flips happen
    scaled(1, 10**17),  # up to 1e9, 8 places
    scaled(1, 1_000),  # dust
)
PRICE = st.one_of(
    st.integers(1, 200).map(Decimal),
    scaled(0, 10**14),  # up to 1e6, 8 places
    scaled(-(10**14), 10**14),  # negative prices exist (futures)
)
COMMISSION = st.one_of(
    st.just(Decimal(0)),
    scaled(0, 10),  # a few units of 1e-8: rounding of the shares matters
    scaled(0, 10**12),  # up to 1e4
)
SIDE = st.sampled_from([Side.BUY, Side.SELL, Side.SELL_SHORT])


@st.composite
def fill_streams(draw: st.DrawFn, max_size: int = 25) -> list[Fill]:
    """Random fills of two orders that reuse each other's exec ids (E0 of O0 and of O1, ...), each
    (order_id, exec_id) once; some exactly close or flip the running net quantity."""
    n = draw(st.integers(0, max_size))
    # the running signed quantity: only a sum, no position math; at most 25 · 2e9 with 8 places,
    # so well inside the default 28 digits (exact)
    net = Decimal(0)
    fills: list[Fill] = []
    for i in range(n):
        kind = draw(st.sampled_from(["random", "random", "random", "close", "flip"]))
        if kind != "random" and net != 0:
            side = Side.BUY if net < 0 else draw(st.sampled_from([Side.SELL, Side.SELL_SHORT]))
            qty = abs(net) if kind == "close" else abs(net) + draw(QTY)
        else:
            side, qty = draw(SIDE), draw(QTY)
        seconds = draw(st.integers(0, 10_000))  # times need not be in application order
        fills.append(
            Fill(f"O{i % 2}", f"E{i // 2}", ACCOUNT, SYMBOL, side, qty, draw(PRICE), draw(COMMISSION),
                 T0 + timedelta(seconds=seconds))
        )  # fmt: skip
        net += qty if side is Side.BUY else -qty
    return fills


# --- the reference model -------------------------------------------------------------------------


def round_half_even(x: Fraction, places: int) -> Fraction:
    scale = 10**places
    scaled_x = x * scale
    floor = math.floor(scaled_x)
    rest = scaled_x - floor
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and floor % 2 == 1):
        floor += 1
    return Fraction(floor, scale)


@dataclass
class Ref:
    qty: Fraction = Fraction(0)
    avg: Fraction = Fraction(0)
    realized: Fraction = Fraction(0)
    realized_commission: Fraction = Fraction(0)
    open_commission: Fraction = Fraction(0)


def reference_states(fills: list[Fill]) -> list[Ref]:
    """The reference state after each fill."""
    r = Ref()
    states = []
    for f in fills:
        sq = Fraction(f.qty) if f.side is Side.BUY else -Fraction(f.qty)
        px, c = Fraction(f.price), Fraction(f.commission)
        if r.qty == 0 or (r.qty > 0) == (sq > 0):
            held, add = abs(r.qty), abs(sq)
            r.avg = round_half_even((held * r.avg + add * px) / (held + add), 12)
            r.qty += sq
            r.open_commission += c
            states.append(Ref(**vars(r)))
            continue
        direction = 1 if r.qty > 0 else -1
        closed = min(abs(sq), abs(r.qty))
        r.realized += (px - r.avg) * closed * direction
        if abs(sq) < abs(r.qty):
            share = round_half_even(r.open_commission * abs(sq) / abs(r.qty), 8)
            r.open_commission -= share
            r.realized_commission += share + c
            r.qty += sq
        elif abs(sq) == abs(r.qty):
            r.realized_commission += r.open_commission + c
            r.open_commission = Fraction(0)
            r.qty = Fraction(0)
            r.avg = Fraction(0)
        else:
            closing = round_half_even(c * abs(r.qty) / abs(sq), 8)
            r.realized_commission += r.open_commission + closing
            r.open_commission = c - closing
            r.qty += sq
            r.avg = round_half_even(px, 12)
        states.append(Ref(**vars(r)))
    return states


def fold(fills: list[Fill]) -> Position:
    position = empty_position(ACCOUNT, SYMBOL)
    for f in fills:
        position = apply_fill(position, f)
    return position


# --- properties ----------------------------------------------------------------------------------


@PROPS
@given(fills=fill_streams(), cuts=st.lists(st.integers(0, 25), max_size=6))
def test_fold_one_by_one_equals_any_batch_split(fills: list[Fill], cuts: list[int]) -> None:
    one_by_one = fold(fills)
    bounds = sorted({0, len(fills), *(min(c, len(fills)) for c in cuts)})
    chunked = empty_position(ACCOUNT, SYMBOL)
    for start, end in itertools.pairwise(bounds):
        chunked = apply_fills(chunked, fills[start:end])
    assert chunked == one_by_one
    # and a refold of the live fills from empty gives the very same position
    assert apply_fills(empty_position(ACCOUNT, SYMBOL), one_by_one.fills) == one_by_one


@PROPS
@given(fills=fill_streams())
def test_position_matches_the_reference_model(fills: list[Fill]) -> None:
    position = empty_position(ACCOUNT, SYMBOL)
    ref = Ref()
    for f, ref in zip(fills, reference_states(fills), strict=True):
        position = apply_fill(position, f)
        assert Fraction(position.qty) == ref.qty
        assert Fraction(position.avg_px) == ref.avg
        assert Fraction(position.realized_pnl) == ref.realized
        assert Fraction(position.realized_commission) == ref.realized_commission
        assert Fraction(position.open_commission) == ref.open_commission
    if fills:
        mark = fills[-1].price
        assert Fraction(unrealized_pnl(position, mark)) == (Fraction(mark) - ref.avg) * ref.qty
        assert Fraction(total_pnl(position, mark)) == (
            ref.realized
            + (Fraction(mark) - ref.avg) * ref.qty
            - ref.realized_commission
            - ref.open_commission
        )


@PROPS
@given(fills=fill_streams(max_size=15).filter(bool), data=st.data())
def test_bust_and_correct_equal_the_fold_without_or_with_the_corrected_fill(
    fills: list[Fill], data: st.DataObject
) -> None:
    position = fold(fills)
    i = data.draw(st.integers(0, len(fills) - 1), label="index")
    target = fills[i]

    assert bust(position, target.order_id, target.exec_id) == fold(fills[:i] + fills[i + 1 :])

    qty, price = data.draw(QTY, label="qty"), data.draw(PRICE, label="price")
    commission = data.draw(st.none() | COMMISSION, label="commission")
    fixed = Fill(
        target.order_id, target.exec_id, target.account, target.symbol, target.side, qty, price,
        target.commission if commission is None else commission, target.time,
    )  # fmt: skip
    assert correct(position, target.order_id, target.exec_id, qty, price, commission) == fold(
        fills[:i] + [fixed] + fills[i + 1 :]
    )


@PROPS
@given(fills=fill_streams())
def test_conservation_and_flat_invariants(fills: list[Fill]) -> None:
    position = empty_position(ACCOUNT, SYMBOL)
    for f in fills:
        position = apply_fill(position, f)
        live = position.fills
        # sums as Fractions: the test's own arithmetic must not round either
        paid = sum((Fraction(g.commission) for g in live), Fraction(0))
        assert Fraction(position.realized_commission) + Fraction(position.open_commission) == paid
        assert Fraction(position.commission) == paid
        assert position.open_commission >= 0 and position.realized_commission >= 0
        assert Fraction(position.qty) == sum(
            (Fraction(g.qty) if g.side is Side.BUY else -Fraction(g.qty) for g in live),
            Fraction(0),
        )
        assert position.fill_count == len(live)
        assert position.last_fill_time == max(g.time for g in live)
        assert position.avg_px.as_tuple().exponent >= -12
        if position.qty == 0:
            assert position.avg_px == 0
            assert position.open_commission == 0
        mark = f.price
        assert Fraction(total_pnl(position, mark)) == (
            Fraction(position.net_realized_pnl)
            + Fraction(unrealized_pnl(position, mark))
            - Fraction(position.open_commission)
        )
        assert Fraction(position.net_realized_pnl) == Fraction(position.realized_pnl) - Fraction(
            position.realized_commission
        )


@PROPS
@given(fills=fill_streams())
def test_realized_pnl_of_a_round_trip_is_the_cash_flow_up_to_avg_rounding(
    fills: list[Fill],
) -> None:
    """Flat ⇒ realized = −Σ signed qty × px, within the 12-place rounding of avg_px. A stream that
    does not end flat is closed with one more fill at its last price, so every example counts."""
    position = fold(fills)
    if position.qty != 0:
        last = fills[-1]
        closing = Fill(last.order_id, f"close-{len(fills)}", last.account, last.symbol,
                       Side.SELL if position.qty > 0 else Side.BUY, abs(position.qty), last.price, Decimal(0),
                       last.time)
        fills = [*fills, closing]
        position = fold(fills)
    assert position.qty == 0
    cash = Fraction(0)
    net, peak = Fraction(0), Fraction(0)
    for f in fills:
        signed = Fraction(f.qty) if f.side is Side.BUY else -Fraction(f.qty)
        cash -= signed * Fraction(f.price)
        net += signed
        peak = max(peak, abs(net))
    # each re-weighting moves avg_px by at most 0.5e-12 per unit held, at most `peak` units
    bound = len(fills) * peak * Fraction(1, 2 * 10**12)
    assert abs(Fraction(position.realized_pnl) - cash) <= bound


@PROPS
@given(fills=fill_streams(max_size=15).filter(bool), data=st.data())
def test_a_position_with_deferred_fills_restates_like_the_whole_fold(fills: list[Fill], data: st.DataObject) -> None:
    """A position restored lazily (its first k fills deferred) takes the later fills, busts and
    corrections exactly as the eager fold does, and loads its old fills only to restate one of them."""
    k = data.draw(st.integers(0, len(fills)), label="deferred")
    head = fold(fills[:k])
    loads: list[str] = []

    def loader(name: str, history: Sequence[object]) -> Callable[[], Sequence[object]]:
        return lambda: loads.append(name) or history

    position = dataclasses.replace(head, fills=Deferred(loader("fills", head.fills), k),
                                   prior_states=Deferred(loader("prior_states", head.prior_states), k))
    position = apply_fills(position, fills[k:], exec_ids_are_new=True)
    assert not loads
    i = data.draw(st.integers(0, len(fills) - 1), label="index")
    target = fills[i]
    busted = bust(position, target.order_id, target.exec_id)
    assert summary(busted) == summary(fold(fills[:i] + fills[i + 1 :]))
    fixed = dataclasses.replace(target, price=data.draw(PRICE, label="price"))
    corrected = correct(position, target.order_id, target.exec_id, fixed.qty, fixed.price)
    assert summary(corrected) == summary(fold(fills[:i] + [fixed] + fills[i + 1 :]))
    assert bool(loads) == (i < k)  # a fill applied since the restore restates without loading
    assert busted == fold(fills[:i] + fills[i + 1 :]) and position == fold(fills)


def summary(p: Position) -> tuple:
    return (p.qty, p.avg_px, p.realized_pnl, p.realized_commission, p.open_commission, p.commission,
            p.last_fill_time, p.fill_count)
