"""The compiled netting step (backbone/_speedups.c, PositionStep) against the Python one.

The compiled step is an accelerator: for the plain case it computes the position after a fill
itself, in the same decimal context and with the same operations in the same order; for
anything else (and any decimal signal) it calls the Python path. So for every (position, fill)
it must give exactly what `positions._apply_fill_python` gives, field for field and decimal
exponent for exponent, fills and prior states included, or the same error. The stream test
also checks that it really takes the plain cases (a step that always fell back would pass the
equality trivially).
"""

from __future__ import annotations

import dataclasses
import decimal
import shutil
import sysconfig
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backbone.domain import positions as p
from backbone.domain.events import Side
from backbone.domain.positions import Fill, Position, PositionError, empty_position
from tests.unit.domain.test_positions_properties import ACCOUNT, SYMBOL, T0, fill_streams

COMPILED = p._compiled_step()
needs_compiled = pytest.mark.skipif(COMPILED is None, reason="the compiled step is not built here")
CHECKS = settings(max_examples=300, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def state_of(position: Position) -> tuple:
    """Every field as its repr (so Decimal('1.0') != Decimal('1.00')), the histories item by item."""
    plain = tuple((f.name, repr(getattr(position, f.name))) for f in dataclasses.fields(position)
                  if f.name not in ("fills", "prior_states"))
    return plain, tuple(map(repr, position.fills)), tuple(map(repr, position.prior_states))


def outcome(step, position: Position, fill: Fill) -> tuple:  # noqa: ANN001 - either step
    context = decimal.getcontext()
    try:
        after = step(position, fill)
    except PositionError as e:
        result: tuple = ("refused", e.rule, str(e))
    except (AttributeError, TypeError) as e:  # not a fill at all (a time that is not a datetime)
        result = ("error", type(e), str(e))
    else:
        result = ("applied", type(after), state_of(after))
    assert decimal.getcontext() is context  # the caller's context is back, whatever happened
    return result


def test_the_step_runs_compiled_where_a_c_compiler_exists() -> None:
    if not (shutil.which(sysconfig.get_config_var("CC").split()[0]) or shutil.which("cc")):
        pytest.skip("no C compiler: the install keeps to the Python path")
    assert COMPILED is not None and p._step is not None
    assert type(p._step).__name__ == "PositionStep" and p._step.fallback is p._apply_fill_python


@needs_compiled
@CHECKS
@given(fill_streams(max_size=30))
def test_on_any_stream_of_valid_fills_it_computes_every_step_itself(fills: list[Fill]) -> None:
    fell_back = []

    def counting(position: Position, fill: Fill) -> Position:
        fell_back.append(fill)
        return p._apply_fill_python(position, fill)

    step = p._compiled_step(counting)
    compiled = python = empty_position(ACCOUNT, SYMBOL)
    for fill in fills:
        expected = outcome(p._apply_fill_python, python, fill)
        assert outcome(step, compiled, fill) == expected
        if expected[0] == "applied":
            python = p._apply_fill_python(python, fill)
            compiled = step(compiled, fill)
    # only a result wider than the exact context (a signal) may go back to Python
    assert all(outcome(p._apply_fill_python, empty_position(ACCOUNT, SYMBOL), f)[0] == "applied" for f in fell_back)
    assert len(fell_back) <= len(fills) // 10


DECIMALS = [Decimal(s) for s in ("0", "-0", "1", "1.0", "1E+2", "0.00000001", "-5", "1E-30", "NaN", "Infinity",
                                 "sNaN", "100.000000000", "3.33333333", "0.5", "2.5", "99.99999999",
                                 "1234567890123456789012345678901234567890.5", "9" * 61, "0.000000015")]
VALUES = st.sampled_from([*DECIMALS, 5, 2.5, "10", None])
TIMES = st.sampled_from([T0, T0 + timedelta(hours=1), T0 - timedelta(days=1), datetime(2024, 1, 2, 12),
                         T0.astimezone(timezone(timedelta(hours=-5))), "2024-01-02"])


@st.composite
def changed(draw: st.DrawFn, fill: Fill) -> Fill:
    """`fill` with up to three fields replaced by unusual values, valid or not."""
    out = {}
    for name in draw(st.lists(st.sampled_from(["qty", "price", "commission", "side", "time", "account", "symbol"]),
                              max_size=3)):
        if name == "side":
            out[name] = draw(st.sampled_from([Side.BUY, Side.SELL, Side.SELL_SHORT, "BUY", "SELL", "SIDEWAYS"]))
        elif name == "time":
            out[name] = draw(TIMES)
        elif name in ("account", "symbol"):
            out[name] = draw(st.sampled_from([ACCOUNT, SYMBOL, "OTHER"]))
        else:
            out[name] = draw(VALUES)
    return dataclasses.replace(fill, **out)


@needs_compiled
@CHECKS
@given(fill_streams(max_size=12), st.data())
def test_any_fill_on_any_reached_position_gives_what_the_python_path_gives(fills: list[Fill],
                                                                           data: st.DataObject) -> None:
    position = empty_position(ACCOUNT, SYMBOL)
    for fill in fills:
        fill = data.draw(changed(fill)) if data.draw(st.booleans()) else fill
        expected = outcome(p._apply_fill_python, position, fill)
        assert outcome(COMPILED, position, fill) == expected
        if expected[0] == "applied":
            position = COMPILED(position, fill)


@needs_compiled
def test_histories_shared_by_versions_fork_like_the_python_path() -> None:
    """A restatement restarts from an earlier version: appending to a version that is not the
    newest must copy its prefix, never see the later version's fills."""
    fills = [Fill(f"E{i}", ACCOUNT, SYMBOL, side, Decimal(q), Decimal(px), Decimal("0.5"), T0 + timedelta(minutes=i))
             for i, (side, q, px) in enumerate([(Side.BUY, "10", "100"), (Side.SELL, "4", "101"),
                                                (Side.SELL, "10", "99"), (Side.BUY, "6", "98")])]
    base = p._apply_fill_python(empty_position(ACCOUNT, SYMBOL), fills[0])
    newer = COMPILED(base, fills[1])
    fork = COMPILED(base, fills[2])  # base's list already holds fills[1]
    assert state_of(fork) == state_of(p._apply_fill_python(base, fills[2]))
    assert state_of(newer) == state_of(p._apply_fill_python(base, fills[1]))
    assert list(fork.fills) == [fills[0], fills[2]] and list(newer.fills) == [fills[0], fills[1]]
    assert state_of(COMPILED(fork, fills[3])) == state_of(p._apply_fill_python(fork, fills[3]))


@needs_compiled
def test_a_result_too_wide_for_the_exact_context_is_refused_like_the_python_path() -> None:
    position = empty_position(ACCOUNT, SYMBOL)
    huge = Fill("E1", ACCOUNT, SYMBOL, Side.BUY, Decimal("9" * 40), Decimal("9" * 30 + ".5"), Decimal(0), T0)
    position = COMPILED(position, huge)
    more = dataclasses.replace(huge, exec_id="E2", price=Decimal("1." + "3" * 40))
    assert outcome(COMPILED, position, more) == outcome(p._apply_fill_python, position, more)
    assert outcome(COMPILED, position, more)[:2] == ("refused", "arithmetic")
