"""Fixtures of the domain tests."""

from __future__ import annotations

import pytest

from backbone.domain import order_state


@pytest.fixture(params=["compiled", "python"])
def both_machines(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the compiled order state machine (when built) and with the Python one
    (its transitions and its check of the reported fields)."""
    if request.param == "python":
        monkeypatch.setattr(order_state, "_next", order_state._next_python)
        monkeypatch.setattr(order_state, "_reported_as_computed", order_state._reported_as_computed_python)
    elif order_state._next is order_state._next_python:
        pytest.skip("the compiled machine is not built here")
    return str(request.param)
