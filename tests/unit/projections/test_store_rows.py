"""The executions row written to Postgres and the Execution read back from it (no services)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from backbone.domain.events import Liquidity, Side
from projections.state import Execution
from projections.store import EXEC_COLS, _exec_row, _execution

X = Execution("X1", "O1", 3, 41, "ACC1", "GOLD", Side.SELL_SHORT, Decimal("12.5"), Decimal("101.25"),
              Decimal("0.75"), "USD", Liquidity.ADDED, datetime(2026, 11, 20, 14, 30, 0, 123456, tzinfo=UTC), True,
              True, Decimal("13"), Decimal("101.5"), "E9", datetime(2026, 11, 20, 14, 31, tzinfo=UTC))


@pytest.mark.parametrize("x", [X, replace(X, liquidity=None, currency=None, original_qty=None, original_price=None,
                                           busted=False, corrected=False, side=Side.BUY)])
def test_an_executions_row_reads_back_as_the_execution_it_stores(x: Execution) -> None:
    row = _exec_row(x)
    assert len(row) == len(EXEC_COLS)
    back = _execution(*row)
    assert back == x and type(back.side) is Side
    assert back.liquidity is None or type(back.liquidity) is Liquidity


def test_an_unknown_side_or_liquidity_is_refused() -> None:
    row = list(_exec_row(X))
    with pytest.raises(ValueError):
        _execution(*[*row[:6], "sideways", *row[7:]])
    with pytest.raises(ValueError):
        _execution(*[*row[:11], "both", *row[12:]])
