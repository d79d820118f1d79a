"""The event model: what travels on `trading.orders` and `trading.marketdata`.

One flat `OrderEvent` record carries every order lifecycle event, in the manner of a FIX 4.4
ExecutionReport: `event_type` plays the role of ExecType and `order_status` of OrdStatus, and
the fields that do not apply to a given type are `None`. A flat record keeps the Avro schema,
the canonical JSON form and the projections simple, and lets one per-order sequence order all
events of an order.

Money and quantities are `Decimal`, times are timezone-aware UTC `datetime` with microsecond
precision. Decimal inputs carry at most `SCALE` fractional digits (the Avro decimal scale).
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

#: Fractional digits of every decimal on the wire (Avro `decimal` scale, Postgres NUMERIC).
SCALE = 8
#: Total digits of every decimal on the wire (Avro `decimal` precision).
PRECISION = 38
QUANTUM = Decimal(1).scaleb(-SCALE)

#: Namespace for deterministic event ids: uuid5(EVENT_ID_NAMESPACE, "<source ids>").
EVENT_ID_NAMESPACE = uuid.UUID("6f1c2d3e-9a4b-5c6d-8e7f-0a1b2c3d4e5f")


class EventType(enum.StrEnum):
    """ExecType-like kind of an order lifecycle event."""

    SUBMITTED = "SUBMITTED"  # order sent, not yet acknowledged (OrdStatus PENDING_NEW)
    ACCEPTED = "ACCEPTED"  # acknowledged by the venue (ExecType NEW)
    REJECTED = "REJECTED"
    REPLACE_REQUESTED = "REPLACE_REQUESTED"  # ExecType PENDING_REPLACE
    REPLACED = "REPLACED"
    REPLACE_REJECTED = "REPLACE_REJECTED"  # OrderCancelReject, CxlRejResponseTo=2
    CANCEL_REQUESTED = "CANCEL_REQUESTED"  # ExecType PENDING_CANCEL
    CANCELED = "CANCELED"
    CANCEL_REJECTED = "CANCEL_REJECTED"  # OrderCancelReject, CxlRejResponseTo=1
    EXPIRED = "EXPIRED"
    DONE_FOR_DAY = "DONE_FOR_DAY"
    FILLED = "FILLED"  # a trade execution, partial or full (ExecType TRADE)
    TRADE_CORRECTED = "TRADE_CORRECTED"  # exec_ref_id names the execution restated
    TRADE_CANCELED = "TRADE_CANCELED"  # a bust: exec_ref_id names the execution undone


class OrderStatus(enum.StrEnum):
    """FIX OrdStatus values used by the state machine."""

    PENDING_NEW = "PENDING_NEW"
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    DONE_FOR_DAY = "DONE_FOR_DAY"
    CANCELED = "CANCELED"
    PENDING_CANCEL = "PENDING_CANCEL"
    REJECTED = "REJECTED"
    PENDING_REPLACE = "PENDING_REPLACE"
    EXPIRED = "EXPIRED"


class Side(enum.StrEnum):
    BUY = "BUY"
    SELL = "SELL"
    SELL_SHORT = "SELL_SHORT"


class OrderType(enum.StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP = "STOP"
    STOP_LIMIT = "STOP_LIMIT"


class TimeInForce(enum.StrEnum):
    DAY = "DAY"
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    GTD = "GTD"


class Liquidity(enum.StrEnum):
    ADDED = "ADDED"
    REMOVED = "REMOVED"
    ROUTED = "ROUTED"
    AUCTION = "AUCTION"


class AlertSeverity(enum.StrEnum):
    INFO = "INFO"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"


class AlertKind(enum.StrEnum):
    LAG_STALLED = "LAG_STALLED"
    LAG_RISING = "LAG_RISING"
    LAG_RECOVERED = "LAG_RECOVERED"
    PROJECTION_ERROR = "PROJECTION_ERROR"


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One order lifecycle event. Field meaning follows FIX 4.4 (tag in brackets)."""

    event_id: str  # deterministic: a resend of the same source event has the same id
    event_type: EventType  # ExecType (150)
    event_time: datetime  # TransactTime (60), UTC, microseconds; also the Kafka timestamp
    ingest_time: datetime  # when the backbone accepted it, UTC
    seq: int  # per-order sequence, 1, 2, 3, ... without gaps
    account: str  # Account (1)
    symbol: str  # Symbol (55); the Kafka key
    side: Side  # Side (54)
    order_type: OrderType  # OrdType (40)
    time_in_force: TimeInForce  # TimeInForce (59)
    order_id: str  # OrderID (37), stable across replaces
    cl_ord_id: str  # ClOrdID (11), changes on every cancel/replace request
    order_qty: Decimal  # OrderQty (38), current (after replaces)
    cum_qty: Decimal  # CumQty (14)
    leaves_qty: Decimal  # LeavesQty (151)
    avg_px: Decimal  # AvgPx (6); 0 before the first fill
    order_status: OrderStatus  # OrdStatus (39) after this event
    orig_cl_ord_id: str | None = None  # OrigClOrdID (41)
    exec_id: str | None = None  # ExecID (17)
    exec_ref_id: str | None = None  # ExecRefID (19): execution corrected or busted
    price: Decimal | None = None  # Price (44), limit price
    stop_price: Decimal | None = None  # StopPx (99)
    last_qty: Decimal | None = None  # LastQty (32)
    last_px: Decimal | None = None  # LastPx (31)
    commission: Decimal | None = None  # Commission (12) of this execution
    currency: str | None = None  # Currency (15)
    liquidity: Liquidity | None = None  # LastLiquidityInd (851)
    reason: str | None = None  # Text (58)
    actor: str | None = None  # trader or algo id
    correlation_id: str | None = None
    causation_id: str | None = None  # event_id of the event that caused this one

    def replace(self, **changes: object) -> OrderEvent:
        from backbone.domain.plain import fast_replace  # plain imports nothing from here

        return fast_replace(self, **changes)


@dataclass(frozen=True, slots=True)
class MarketMark:
    """A market-data mark for one symbol; keyed by symbol on `trading.marketdata`."""

    event_id: str
    symbol: str
    event_time: datetime
    mark_price: Decimal
    bid: Decimal | None = None
    ask: Decimal | None = None
    last: Decimal | None = None
    source: str | None = None

    def replace(self, **changes: object) -> MarketMark:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Alert:
    """A lag or projection alert on `trading.alerts`."""

    event_id: str
    kind: AlertKind
    severity: AlertSeverity
    event_time: datetime
    source: str  # consumer group or projection name
    message: str
    topic: str | None = None
    partition: int | None = None
    lag_messages: int | None = None
    lag_seconds: Decimal | None = None


def deterministic_event_id(*source_ids: str) -> str:
    """An event id derived only from the source's ids, so a resend gets the same id."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, "\x1f".join(source_ids)))
