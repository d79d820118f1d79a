"""The compiled order state machine (backbone/_speedups.c, OrderMachine) against the Python one.

The compiled machine is an accelerator: for the plain transitions it computes the next state
itself, for everything else it calls the Python path. So for every (state, event) it must give
exactly what `order_state._next_python` gives, field for field and decimal exponent for
exponent, or the same error. The stream tests below also check that it really takes the plain
cases (a machine that always fell back would pass the equality trivially).
"""

from __future__ import annotations

import shutil
import sysconfig
from collections import Counter
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tape import Tape

from backbone.domain import order_state as o
from backbone.domain.events import EventType, OrderEvent, Side, TimeInForce
from backbone.domain.plain import to_plain
from backbone.errors import InvalidOrderTransition
from producers.simulator import SimulationConfig, simulate

COMPILED = o._compiled_next()
needs_compiled = pytest.mark.skipif(COMPILED is None, reason="the compiled machine is not built here")
PYTHON_ONLY = {EventType.TRADE_CANCELED, EventType.TRADE_CORRECTED}


def outcome(next_state, state: o.OrderState | None, event: OrderEvent) -> tuple:
    try:
        after = next_state(state, event)
    except InvalidOrderTransition as e:
        return "refused", e.rule, str(e)
    return "applied", type(after), to_plain(after)  # to_plain keeps every decimal's exponent


def test_the_state_machine_runs_compiled_where_a_c_compiler_exists() -> None:
    if not (shutil.which(sysconfig.get_config_var("CC").split()[0]) or shutil.which("cc")):
        pytest.skip("no C compiler: the install keeps to the Python path")
    assert COMPILED is not None and o._next is not o._next_python
    assert type(o._next).__name__ == "OrderMachine" and o._next.fallback is o._next_python


@needs_compiled
@pytest.mark.parametrize("seed", range(6))
def test_on_simulated_sessions_it_takes_every_plain_event_itself(seed: int) -> None:
    fell_back: Counter[EventType] = Counter()

    def counting(state: o.OrderState | None, event: OrderEvent) -> o.OrderState:
        fell_back[event.event_type] += 1
        return o._next_python(state, event)

    machine = o._compiled_next(counting)
    orders: dict[str, o.OrderState] = {}
    seen: Counter[EventType] = Counter()
    python_only: Counter[EventType] = Counter()  # what the compiled machine must hand over
    for r in simulate(SimulationConfig(events=4000, seed=seed)):
        if isinstance(r, OrderEvent):
            before = orders.get(r.order_id)
            expected = outcome(o._next_python, before, r)
            assert outcome(machine, before, r) == expected
            assert expected[0] == "applied"
            orders[r.order_id] = o._next_python(before, r)
            seen[r.event_type] += 1
            fok_fill = r.event_type is EventType.FILLED and before.time_in_force is TimeInForce.FOK
            if r.event_type in PYTHON_ONLY or fok_fill:  # FOK fills: its fok_partial_fill rule
                python_only[r.event_type] += 1
    assert fell_back == python_only  # every other event, the machine computed itself
    assert sum(fell_back.values()) < sum(seen.values()) / 5 and seen[EventType.FILLED] > 100


# -- any event, valid or not ----------------------------------------------------------------------

DECIMALS = [Decimal(s) for s in ("0", "-0", "1", "1.0", "1E+2", "0.00000001", "-5", "1E-30", "NaN", "Infinity", "sNaN",
                                 "100.000000000", "3.33333333", "0.5", "2.5", "0.125", "3", "99.99999999",
                                 "1234567890123456789012345678901234567890.5", "0.000000015")]
VALUES = st.sampled_from([*DECIMALS, 5, 2.5, "10", None])
SESSIONS = {seed: [r for r in simulate(SimulationConfig(events=600, seed=seed)) if isinstance(r, OrderEvent)]
            for seed in range(4)}


@st.composite
def changes(draw: st.DrawFn, event: OrderEvent, state: o.OrderState | None, exec_ids: list[str]) -> dict:
    out: dict[str, object] = {}
    for field in draw(st.lists(st.sampled_from([
            "seq", "event_type", "last_qty", "last_px", "exec_id", "order_id", "time_in_force", "event_id",
            "order_qty", "price", "stop_price", "exec_ref_id"]), max_size=3)):
        if field == "seq":
            out[field] = event.seq + draw(st.sampled_from([-1, 0, 1, 5]))
        elif field == "event_type":
            out[field] = draw(st.sampled_from(list(EventType)))
        elif field == "time_in_force":
            out[field] = draw(st.sampled_from(list(TimeInForce)))
        elif field in ("exec_id", "exec_ref_id"):
            out[field] = draw(st.sampled_from([None, "X-new", event.event_id, *exec_ids[-5:]]))
        elif field == "order_id":
            out[field] = draw(st.sampled_from(["O-other", event.order_id]))
        elif field == "event_id":
            out[field] = draw(st.sampled_from(["E-new", *sorted(state.event_ids if state else ())]))
        else:
            out[field] = draw(VALUES)
    return out


@needs_compiled
@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), seed=st.sampled_from(sorted(SESSIONS)), at=st.integers(0, 599))
def test_any_event_on_any_reached_state_gives_what_the_python_path_gives(data: st.DataObject, seed: int,
                                                                         at: int) -> None:
    events = SESSIONS[seed]
    at = min(at, len(events) - 1)
    orders: dict[str, o.OrderState] = {}
    exec_ids: list[str] = []
    for r in events[:at]:
        orders[r.order_id] = o._next_python(orders.get(r.order_id), r)
        if r.exec_id:
            exec_ids.append(r.exec_id)
    event = events[at]
    state = orders.get(event.order_id)
    event = event.replace(**data.draw(changes(event, state, exec_ids), label="changes"))
    assert outcome(COMPILED, state, event) == outcome(o._next_python, state, event)


@needs_compiled
@pytest.mark.parametrize(("fills", "rule"), [
    # average price ties, rounded half-even to 8 places: down to even, up to even
    ([("1", "0.00000001"), ("1", "0.00000002")], None),
    ([("1", "0.00000002"), ("1", "0.00000003")], None),
    ([("3", "1.00000001"), ("1", "1")], None),
    ([("0.5", "-2.5"), ("0.5", "2.50000001")], None),  # negative prices exist (spreads)
    ([("1E+2", "1.0"), ("0.00000001", "7")], None),   # exponents of every kind
    # a product wider than the exact context: refused as arithmetic, never rounded
    ([("1" * 45, "1" * 45)], "arithmetic"),
])
def test_averages_ties_and_exactness_match(fills: list[tuple[str, str]], rule: str | None) -> None:
    t = Tape()
    t.order("O1", "ACC1", "GOLD", Side.BUY, "9" * 50)
    state: o.OrderState | None = None
    for r in t.records:
        state = o._next_python(state, r)
    for qty, px in fills:
        event = OrderEvent(**{**{f: getattr(t.records[-1], f) for f in OrderEvent.__slots__},
                              "event_type": EventType.FILLED, "event_id": f"E{state.seq + 1}", "seq": state.seq + 1,
                              "exec_id": f"X{state.seq + 1}", "last_qty": Decimal(qty), "last_px": Decimal(px)})
        expected = outcome(o._next_python, state, event)
        assert outcome(COMPILED, state, event) == expected
        if expected[0] == "refused":
            assert expected[1] == rule
            return
        state = o._next_python(state, event)
    assert rule is None


# -- the reported-fields check (SlotsMatch) -------------------------------------------------------

REPORTED_CHECK = o._compiled_reported_check()
REPORTED = ["order_status", "cum_qty", "leaves_qty", "avg_px", "order_qty", "price", "stop_price", "order_type",
            "time_in_force", "account", "symbol", "side"]


def check_outcome(check, event: OrderEvent, after: o.OrderState) -> tuple:
    try:
        return "answered", check(event, after)
    except Exception as e:  # noqa: BLE001 - the kind of failure is what is compared
        return "raised", type(e)


@pytest.mark.skipif(REPORTED_CHECK is None, reason="the compiled check is not built here")
@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), seed=st.sampled_from(sorted(SESSIONS)), at=st.integers(0, 599),
       fields=st.lists(st.sampled_from(REPORTED), max_size=3))
def test_the_compiled_reported_check_answers_as_the_python_one(data: st.DataObject, seed: int, at: int,
                                                              fields: list[str]) -> None:
    events = SESSIONS[seed]
    at = min(at, len(events) - 1)
    orders: dict[str, o.OrderState] = {}
    for r in events[:at + 1]:
        orders[r.order_id] = o._next_python(orders.get(r.order_id), r)
    event, after = events[at], orders[events[at].order_id]
    other = data.draw(st.sampled_from([o.OrderStatus.NEW, o.OrderStatus.FILLED, "FILLED", Side.SELL, "ACC-x"]))
    changed = event.replace(**{f: data.draw(st.sampled_from([*DECIMALS, 5, "10", None, other]), label=f)
                               for f in fields})
    expected = check_outcome(o._reported_as_computed_python, changed, after)
    assert check_outcome(REPORTED_CHECK, changed, after) == expected
    if not fields:
        assert expected == ("answered", True)  # the simulator reports what it computed


@pytest.mark.skipif(REPORTED_CHECK is None, reason="the compiled check is not built here")
def test_the_compiled_reported_check_compares_itself_and_falls_back_only_for_other_classes() -> None:
    calls = []

    def fallback(event: object, after: object) -> bool:
        calls.append(type(event).__name__)
        return False

    match = type(REPORTED_CHECK)(OrderEvent, o.OrderState, (("order_id", "order_id", False),), (), fallback)
    events = SESSIONS[0]
    after = o._next_python(None, events[0])
    assert match(events[0], after) is True and calls == []
    assert match(events[0].replace(order_id="O-other"), after) is False and calls == []
    assert match(object(), after) is False and calls == ["object"]
    assert type(o._reported_as_computed).__name__ == "SlotsMatch"  # what `apply` runs, where built
