"""The projection's NUL check covers every text field of an order event (Postgres cannot store NUL)."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from backbone.domain.events import OrderEvent
from producers.simulator import SimulationConfig, simulate
from projections.trading import _order_text

TEXT_FIELDS = [f.name for f in dataclasses.fields(OrderEvent)
               if str in (typing.get_args(typing.get_type_hints(OrderEvent)[f.name]) or
                          (typing.get_type_hints(OrderEvent)[f.name],))]


def an_order_event() -> OrderEvent:
    return next(r for r in simulate(SimulationConfig(events=50, seed=1)) if isinstance(r, OrderEvent))


def test_a_clean_event_has_no_nul() -> None:
    assert "\x00" not in _order_text(an_order_event())


@pytest.mark.parametrize("name", TEXT_FIELDS)  # found from the type: a new text field is checked too
def test_a_nul_in_any_text_field_is_seen(name: str) -> None:
    event = dataclasses.replace(an_order_event(), **{name: "a\x00b"})
    assert "\x00" in _order_text(event)

