"""The projection's NUL check covers every text field of an order event (Postgres cannot store NUL)."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from backbone.domain.events import OrderEvent
from producers.simulator import SimulationConfig, simulate
from projections import trading
from projections.trading import _any_nul_python, _order_has_nul

TEXT_FIELDS = [f.name for f in dataclasses.fields(OrderEvent)
               if str in (typing.get_args(typing.get_type_hints(OrderEvent)[f.name]) or
                          (typing.get_type_hints(OrderEvent)[f.name],))]


def an_order_event() -> OrderEvent:
    return next(r for r in simulate(SimulationConfig(events=50, seed=1)) if isinstance(r, OrderEvent))


@pytest.fixture(params=["compiled", "python"])
def any_nul(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs against the C check (backbone/_speedups.c) and the Python fallback."""
    if request.param == "python":
        monkeypatch.setattr(trading, "_any_nul", _any_nul_python)
    elif trading._any_nul is _any_nul_python:
        pytest.skip("the compiled check is not built here")


def test_a_clean_event_has_no_nul(any_nul: None) -> None:
    assert not _order_has_nul(an_order_event())


@pytest.mark.parametrize("name", TEXT_FIELDS)  # found from the type: a new text field is checked too
def test_a_nul_in_any_text_field_is_seen(any_nul: None, name: str) -> None:
    event = dataclasses.replace(an_order_event(), **{name: "a\x00b"})
    assert _order_has_nul(event)


@pytest.mark.parametrize("text", ["\x00", "é\x00", "\U0001d11e\x00x", "x" * 1000 + "\x00"])
def test_a_nul_is_found_at_any_width_and_place(any_nul: None, text: str) -> None:
    assert trading._any_nul(None, "clean", text)
    assert not trading._any_nul(None, "clean", text.replace("\x00", "0"))

