"""A scripted order tape for tests: build valid order event sequences by intent.

    tape = Tape()
    tape.order("O1", "ACC1", "GOLD", Side.BUY, 100, price=10)   # SUBMITTED + ACCEPTED
    tape.fill("O1", 100, 10, commission="1")                    # FILLED, exec id X1
    tape.bust("O7", "X6"); tape.correct("O7", "X7", qty=10, px=21)
    tape.mark("GOLD", 25)
    tape.records  -> the OrderEvent / MarketMark list, in event-time order

Every order event goes through the state machine's `complete`, so it is valid by construction.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from backbone.domain import order_state
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
from backbone.domain.order_state import OrderState

T0 = datetime(2026, 11, 20, 14, 30, 0, 0, tzinfo=UTC)


class Tape:
    def __init__(self, start: datetime = T0, step: timedelta = timedelta(milliseconds=1)) -> None:
        self.clock, self.step = start, step
        self.states: dict[str, OrderState] = {}
        self.records: list[OrderEvent | MarketMark] = []
        self._exec = 0

    def _tick(self) -> datetime:
        self.clock += self.step
        return self.clock

    def _emit(self, order_id: str, draft: OrderEvent) -> OrderEvent:
        state = self.states.get(order_id)
        event = order_state.complete(state, draft)
        self.states[order_id] = order_state.apply(state, event)
        self.records.append(event)
        return event

    def _draft(self, order_id: str, event_type: EventType, **fields: object) -> OrderEvent:
        s = self.states[order_id]
        when = self._tick()
        base = OrderEvent(
            event_id=deterministic_event_id("tape", order_id, str(s.seq + 1)), event_type=event_type,
            event_time=when, ingest_time=when, seq=s.seq + 1, account=s.account, symbol=s.symbol, side=s.side,
            order_type=s.order_type, time_in_force=s.time_in_force, order_id=order_id, cl_ord_id=s.cl_ord_id,
            order_qty=s.order_qty, cum_qty=s.cum_qty, leaves_qty=s.leaves_qty, avg_px=s.avg_px,
            order_status=s.status, price=s.price, stop_price=s.stop_price, currency="USD")
        return base.replace(**fields)

    def order(self, order_id: str, account: str, symbol: str, side: Side, qty: int | str | Decimal,
              price: int | str | Decimal | None = None, tif: TimeInForce = TimeInForce.DAY,
              accept: bool = True) -> None:
        when = self._tick()
        q = Decimal(qty)
        draft = OrderEvent(
            event_id=deterministic_event_id("tape", order_id, "1"), event_type=EventType.SUBMITTED,
            event_time=when, ingest_time=when, seq=1, account=account, symbol=symbol, side=side,
            order_type=OrderType.MARKET if price is None else OrderType.LIMIT, time_in_force=tif,
            order_id=order_id, cl_ord_id=f"{order_id}-c0", order_qty=q, cum_qty=Decimal(0), leaves_qty=q,
            avg_px=Decimal(0), order_status=OrderStatus.PENDING_NEW,
            price=None if price is None else Decimal(price), currency="USD")
        self._emit(order_id, draft)
        if accept:
            self.event(order_id, EventType.ACCEPTED)

    def event(self, order_id: str, event_type: EventType, **fields: object) -> OrderEvent:
        return self._emit(order_id, self._draft(order_id, event_type, **fields))

    def fill(self, order_id: str, qty: int | str | Decimal, px: int | str | Decimal,
             commission: int | str | Decimal = 0, exec_id: str | None = None) -> str:
        self._exec += 1
        exec_id = exec_id or f"X{self._exec}"
        self.event(order_id, EventType.FILLED, exec_id=exec_id, last_qty=Decimal(qty), last_px=Decimal(px),
                   commission=Decimal(commission))
        return exec_id

    def bust(self, order_id: str, exec_ref: str) -> None:
        self._exec += 1
        self.event(order_id, EventType.TRADE_CANCELED, exec_id=f"X{self._exec}", exec_ref_id=exec_ref)

    def correct(self, order_id: str, exec_ref: str, qty: int | str | Decimal, px: int | str | Decimal,
                commission: int | str | Decimal | None = None) -> None:
        self._exec += 1
        self.event(order_id, EventType.TRADE_CORRECTED, exec_id=f"X{self._exec}", exec_ref_id=exec_ref,
                   last_qty=Decimal(qty), last_px=Decimal(px),
                   commission=None if commission is None else Decimal(commission))

    def mark(self, symbol: str, price: int | str | Decimal) -> MarketMark:
        when = self._tick()
        mark = MarketMark(deterministic_event_id("tape-mark", symbol, when.isoformat()), symbol, when,
                          Decimal(price), source="tape")
        self.records.append(mark)
        return mark
