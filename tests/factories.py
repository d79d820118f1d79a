"""Small, deterministic factories for the event model, shared by every test suite.

`tests/conftest.py` puts this directory on sys.path, so tests import it as::

    from factories import make_order_event, make_market_mark, at

Defaults describe one plausible order: a DAY limit BUY of 100 AAPL at 150.25 in account ACC-1,
order id ORD-1, just submitted (seq 1, PENDING_NEW, cum 0, leaves 100). Any field can be
overridden by keyword. Defaults are values, never random, so a failing test reproduces:

* times are timezone-aware UTC with microseconds (`at(seconds)` = T0 + seconds);
* quantities and prices are `Decimal`;
* ``leaves_qty`` defaults to ``order_qty - cum_qty`` of the final values;
* ``event_id`` defaults to a uuid5 of (order_id, seq, event_type, exec_id), so two events that
  differ in any of those get different ids and rebuilding the same event gives the same id.

These factories do not run the order state machine: for a reported status and quantities that
are consistent with an order's history use
``backbone.domain.order_state.complete(state, make_order_event(...))``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from backbone.domain.events import (
    EventType,
    MarketMark,
    OrderEvent,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    deterministic_event_id,
)

#: The instant every factory time is relative to (a Tuesday, US market hours, microseconds set).
T0 = datetime(2024, 1, 2, 14, 30, 0, 123456, tzinfo=UTC)


def at(seconds: float = 0, *, base: datetime = T0) -> datetime:
    """T0 plus `seconds` (fractions keep microsecond precision)."""
    return base + timedelta(seconds=seconds)


def make_order_event(**overrides: Any) -> OrderEvent:
    """An `OrderEvent` with sensible defaults; keyword arguments override any field."""
    fields: dict[str, Any] = {
        "event_type": EventType.SUBMITTED,
        "event_time": T0,
        "seq": 1,
        "account": "ACC-1",
        "symbol": "AAPL",
        "side": Side.BUY,
        "order_type": OrderType.LIMIT,
        "time_in_force": TimeInForce.DAY,
        "order_id": "ORD-1",
        "cl_ord_id": "CL-1",
        "order_qty": Decimal("100"),
        "cum_qty": Decimal("0"),
        "avg_px": Decimal("0"),
        "order_status": OrderStatus.PENDING_NEW,
        "price": Decimal("150.25"),
        "currency": "USD",
    }
    fields.update(overrides)
    fields.setdefault("ingest_time", fields["event_time"] + timedelta(milliseconds=1))
    fields.setdefault("leaves_qty", fields["order_qty"] - fields["cum_qty"])
    fields.setdefault("event_id", deterministic_event_id(
        str(fields["order_id"]), str(fields["seq"]), str(fields["event_type"]),
        str(fields.get("exec_id") or ""),
    ))
    return OrderEvent(**fields)


def make_market_mark(**overrides: Any) -> MarketMark:
    """A `MarketMark` for AAPL at 150.30 (bid 150.29, ask 150.31) at T0."""
    fields: dict[str, Any] = {
        "symbol": "AAPL",
        "event_time": T0,
        "mark_price": Decimal("150.30"),
        "bid": Decimal("150.29"),
        "ask": Decimal("150.31"),
        "last": Decimal("150.30"),
        "source": "test",
    }
    fields.update(overrides)
    fields.setdefault("event_id", deterministic_event_id(
        "mark", str(fields["symbol"]), fields["event_time"].isoformat()))
    return MarketMark(**fields)
