"""A seeded, realistic trading session as a stream of order events and marks (no I/O).

N accounts trade M symbols with skewed (Zipf-like) activity. Limit and market orders, DAY,
GTC, IOC and FOK; partial fills, cancels (some rejected, some overtaken by a fill), replaces
(up, down, below the filled quantity), requests before the acknowledgement, a cancel while a
replace is pending, answers in either order, venue rejects, expiries, done-for-day (GTC orders
work again the next day), late fills after a cancel, trade busts and corrections; marks for
every symbol. Every request carries its own ClOrdID and the order's current one as
orig_cl_ord_id, and its answer that request's ClOrdID. Every order event is built by
the order state machine's `complete`, so the stream is valid by construction; the same seed
gives the identical stream (event ids included), because the only sources of variation are the
seeded RNG and the configured start time.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from backbone.domain import order_state
from backbone.domain.events import (
    EventType,
    Liquidity,
    MarketMark,
    OrderEvent,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    deterministic_event_id,
)
from backbone.domain.order_state import OrderState

E = EventType
CENT = Decimal("0.01")
COMMISSION_PER_SHARE = Decimal("0.0035")
TICKERS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "JPM", "V", "XOM", "UNH", "JNJ", "WMT",
           "PG", "MA", "HD", "CVX", "KO", "PEP", "BAC")
#: The start of `SimulationConfig()`: a fixed date, so that tests get the same stream on any day.
#: `backbone simulate` and the demo default to `session_start` instead.
DEFAULT_START = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)


@dataclass(frozen=True)
class SimulationConfig:
    events: int = 10_000
    seed: int = 7
    symbols: int = 20
    accounts: int = 10
    start: datetime = DEFAULT_START
    mean_gap_us: int = 2_000  # average event-time gap between consecutive events
    working_orders: int = 150  # how many live orders the session keeps around
    mark_every: int = 10  # roughly one mark per this many events


@dataclass
class _Book:
    mid: Decimal


@dataclass
class _Sim:
    cfg: SimulationConfig
    rng: random.Random
    symbols: list[str]
    weights: list[float]
    accounts: list[str]
    books: dict[str, _Book]
    clock: datetime
    orders: dict[str, OrderState] = field(default_factory=dict)
    working: list[str] = field(default_factory=list)
    closed_recent: list[str] = field(default_factory=list)
    fills_recent: list[tuple[str, str]] = field(default_factory=list)  # (order_id, exec_id)
    next_order: int = 0
    next_exec: int = 0


def session_start(now: datetime, events: int) -> datetime:
    """UTC midnight of the latest day on which a session of `events` would have ended an hour
    before `now` (the broker refuses records stamped more than an hour ahead).

    Retention goes by record time, so a session on a fixed past date would see its marks
    deleted at once by the market-data topic's time retention; this one starts less than a day,
    an hour and the session's length before `now`. The same day gives the same start, hence
    the same stream for the same seed."""
    duration = timedelta(microseconds=events * SimulationConfig.mean_gap_us)
    day = (now - duration - timedelta(hours=1)).date()
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def symbol_names(count: int) -> list[str]:
    return [TICKERS[i] if i < len(TICKERS) else f"SYM{i:04d}" for i in range(count)]


def simulate(cfg: SimulationConfig) -> Iterator[OrderEvent | MarketMark]:
    """Exactly `cfg.events` records in event-time order."""
    if cfg.events < 0 or cfg.symbols < 1 or cfg.accounts < 1:
        raise ValueError("events must be >= 0, symbols and accounts >= 1")
    rng = random.Random(cfg.seed)
    symbols = symbol_names(cfg.symbols)
    books = {s: _Book(Decimal(rng.randint(2_000, 50_000)) * CENT) for s in symbols}
    sim = _Sim(cfg, rng, symbols, [1.0 / (i + 1) ** 1.1 for i in range(len(symbols))],
               [f"ACC{i + 1:03d}" for i in range(cfg.accounts)], books, cfg.start)
    emitted = 0
    for symbol in symbols:  # every symbol is marked before the first trade
        if emitted == cfg.events:
            return
        yield _mark(sim, symbol)
        emitted += 1
    while emitted < cfg.events:
        sim.clock += timedelta(microseconds=max(1, int(rng.expovariate(1.0 / cfg.mean_gap_us))))
        record = _step(sim)
        if record is not None:
            yield record
            emitted += 1


def _step(sim: _Sim) -> OrderEvent | MarketMark | None:
    rng = sim.rng
    roll = rng.random()
    if roll < 1.0 / sim.cfg.mark_every:
        return _mark(sim, rng.choices(sim.symbols, sim.weights)[0])
    if roll < 0.11 and sim.closed_recent and rng.random() < 0.15:
        return _late_fill(sim)
    if roll < 0.115 and sim.fills_recent:
        return _restate(sim)
    if not sim.working or (len(sim.working) < sim.cfg.working_orders and rng.random() < 0.3):
        return _new_order(sim)
    order_id = sim.working[rng.randrange(len(sim.working))]
    return _advance(sim, sim.orders[order_id])


# -- marks ---------------------------------------------------------------------------------------

def _mark(sim: _Sim, symbol: str) -> MarketMark:
    book = sim.books[symbol]
    move = Decimal(sim.rng.randint(-5, 5)) * CENT
    book.mid = max(CENT, book.mid + move)
    spread = Decimal(sim.rng.randint(1, 4)) * CENT
    bid, ask = max(CENT, book.mid - spread), book.mid + spread
    event_id = deterministic_event_id("sim-mark", str(sim.cfg.seed), symbol, sim.clock.isoformat())
    return MarketMark(event_id, symbol, sim.clock, book.mid, bid, ask, book.mid, "simulator")


# -- orders ----------------------------------------------------------------------------------------

def _emit(sim: _Sim, state: OrderState | None, draft: OrderEvent) -> OrderEvent:
    event = order_state.complete(state, draft)
    after = order_state.apply(state, event)  # a refusal here is a simulator bug: let it raise
    sim.orders[event.order_id] = after
    if after.is_terminal:
        if event.order_id in sim.working:
            sim.working.remove(event.order_id)
        if after.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.DONE_FOR_DAY):
            sim.closed_recent.append(event.order_id)
            del sim.closed_recent[:-50]
    elif event.order_id not in sim.working:
        sim.working.append(event.order_id)
    return event


def _draft(sim: _Sim, state: OrderState, event_type: EventType, **fields: object) -> OrderEvent:
    seq = state.seq + 1
    base = OrderEvent(
        event_id=deterministic_event_id("sim", str(sim.cfg.seed), state.order_id, str(seq)),
        event_type=event_type, event_time=sim.clock,
        ingest_time=sim.clock + timedelta(microseconds=sim.rng.randint(50, 900)),
        seq=seq, account=state.account, symbol=state.symbol, side=state.side, order_type=state.order_type,
        time_in_force=state.time_in_force, order_id=state.order_id, cl_ord_id=state.cl_ord_id,
        order_qty=state.order_qty, cum_qty=state.cum_qty, leaves_qty=state.leaves_qty, avg_px=state.avg_px,
        order_status=state.status, price=state.price, stop_price=state.stop_price, currency="USD",
        actor=f"algo-{state.account[-1]}", correlation_id=state.order_id,
    )
    return base.replace(**fields)


def _new_order(sim: _Sim) -> OrderEvent:
    rng = sim.rng
    sim.next_order += 1
    order_id = f"O{sim.cfg.seed}-{sim.next_order:08d}"
    symbol = rng.choices(sim.symbols, sim.weights)[0]
    market = rng.random() < 0.15
    tif = TimeInForce.DAY
    r = rng.random()
    if r < 0.10:
        tif = TimeInForce.IOC
    elif r < 0.14:
        tif = TimeInForce.FOK
    elif r < 0.35:
        tif = TimeInForce.GTC
    qty = Decimal(rng.choice((1, 5, 10, 25, 50, 100, 100, 200, 300, 500, 1000)))
    mid = sim.books[symbol].mid
    price = None if market else max(CENT, mid + Decimal(rng.randint(-20, 20)) * CENT)
    draft = OrderEvent(
        event_id=deterministic_event_id("sim", str(sim.cfg.seed), order_id, "1"),
        event_type=E.SUBMITTED, event_time=sim.clock, ingest_time=sim.clock + timedelta(microseconds=300),
        seq=1, account=rng.choice(sim.accounts), symbol=symbol,
        side=rng.choice((Side.BUY, Side.BUY, Side.SELL, Side.SELL, Side.SELL_SHORT)),
        order_type=OrderType.MARKET if market else OrderType.LIMIT, time_in_force=tif, order_id=order_id,
        cl_ord_id=f"C{sim.cfg.seed}-{sim.next_order:08d}-0", order_qty=qty, cum_qty=Decimal(0),
        leaves_qty=qty, avg_px=Decimal(0), order_status=OrderStatus.PENDING_NEW, price=price, currency="USD",
        actor=f"trader-{rng.randint(1, 9)}", correlation_id=order_id,
    )
    return _emit(sim, None, draft)


def _fill_px(sim: _Sim, state: OrderState) -> Decimal:
    mid = sim.books[state.symbol].mid
    px = max(CENT, mid + Decimal(sim.rng.randint(-3, 3)) * CENT)
    if state.price is not None:  # a limit is never traded through
        px = min(px, state.price) if state.side == Side.BUY else max(px, state.price)
    return px


def _fill(sim: _Sim, state: OrderState, qty: Decimal | None = None) -> OrderEvent:
    rng = sim.rng
    open_qty = state.order_qty - state.cum_qty
    if qty is None:
        if state.time_in_force == TimeInForce.FOK or rng.random() < 0.45 or open_qty <= 1:
            qty = open_qty
        else:
            qty = Decimal(rng.randint(1, int(open_qty)))
            qty = min(qty, open_qty)
    sim.next_exec += 1
    exec_id = f"X{sim.cfg.seed}-{sim.next_exec:09d}"
    px = _fill_px(sim, state)
    event = _emit(sim, state, _draft(sim, state, E.FILLED, exec_id=exec_id, last_qty=qty, last_px=px,
                                     commission=(qty * COMMISSION_PER_SHARE).quantize(Decimal("0.0001")),
                                     liquidity=rng.choice(tuple(Liquidity))))
    sim.fills_recent.append((state.order_id, exec_id))
    del sim.fills_recent[:-200]
    return event


def _request(sim: _Sim, state: OrderState, event_type: EventType) -> OrderEvent:
    """A cancel or replace request with a ClOrdID of its own, chained on the order's current one."""
    cl_ord_id = f"{state.cl_ord_id.rsplit('-', 1)[0]}-{state.seq}"
    return _emit(sim, state, _draft(sim, state, event_type, cl_ord_id=cl_ord_id, orig_cl_ord_id=state.cl_ord_id))


def _answer(sim: _Sim, state: OrderState, event_type: EventType, request: str | None, **fields: object) -> OrderEvent:
    return _emit(sim, state, _draft(sim, state, event_type, cl_ord_id=request or state.cl_ord_id,
                                    orig_cl_ord_id=state.cl_ord_id, **fields))


def _replaced(sim: _Sim, state: OrderState) -> OrderEvent:
    rng = sim.rng
    new_qty = max(Decimal(1), state.order_qty + Decimal(rng.choice((-300, -100, -50, 50, 100, 200))))
    if state.cum_qty >= state.order_qty:  # filled while pending: the venue's replace re-opens it
        new_qty = state.order_qty + Decimal(rng.choice((50, 100, 200)))
    new_px = max(CENT, sim.books[state.symbol].mid + Decimal(rng.randint(-10, 10)) * CENT)
    return _answer(sim, state, E.REPLACED, state.replace_request, order_qty=new_qty, price=new_px)


def _advance(sim: _Sim, state: OrderState) -> OrderEvent:
    rng = sim.rng
    r = rng.random()
    status, own = state.status, state.own_status
    limit_day = state.time_in_force in (TimeInForce.DAY, TimeInForce.GTC) and state.order_type != OrderType.MARKET
    if status == OrderStatus.PENDING_NEW:
        if r < 0.04:
            return _emit(sim, state, _draft(sim, state, E.REJECTED, reason="venue: price outside band"))
        if r < 0.07 and limit_day:  # the OMS cancels or replaces right after sending
            return _request(sim, state, E.CANCEL_REQUESTED if r < 0.055 else E.REPLACE_REQUESTED)
        return _emit(sim, state, _draft(sim, state, E.ACCEPTED))
    open_qty = state.order_qty - state.cum_qty
    if status == OrderStatus.PENDING_CANCEL:
        if own == OrderStatus.PENDING_NEW and r < 0.3:  # the ack overtakes the cancel
            return _emit(sim, state, _draft(sim, state, E.ACCEPTED))
        if own == OrderStatus.PENDING_NEW and r < 0.34:
            return _emit(sim, state, _draft(sim, state, E.REJECTED, reason="venue: price outside band"))
        if state.replace_request is not None and r < 0.5:  # the replace is answered first
            if r < 0.42:
                return _replaced(sim, state)
            return _answer(sim, state, E.REPLACE_REJECTED, state.replace_request, reason="order pending cancel")
        if open_qty > 0 and r < 0.62:
            return _fill(sim, state)  # overtakes the cancel
        if open_qty <= 0 or r < 0.72:
            return _answer(sim, state, E.CANCEL_REJECTED, state.cancel_request, reason="too late to cancel")
        return _answer(sim, state, E.CANCELED, state.cancel_request)
    if status == OrderStatus.PENDING_REPLACE:
        if own == OrderStatus.PENDING_NEW and r < 0.3:
            return _emit(sim, state, _draft(sim, state, E.ACCEPTED))
        if open_qty > 0 and r < 0.4:
            return _fill(sim, state)
        if r < 0.5 and own != OrderStatus.FILLED:  # the trader wants out before the answer
            return _request(sim, state, E.CANCEL_REQUESTED)
        if r < 0.6:
            return _answer(sim, state, E.REPLACE_REJECTED, state.replace_request, reason="unknown order at venue")
        return _replaced(sim, state)
    if state.time_in_force in (TimeInForce.IOC, TimeInForce.FOK) or state.order_type == OrderType.MARKET:
        if state.time_in_force == TimeInForce.FOK:  # all or nothing, then done
            if r < 0.6:
                return _fill(sim, state)
            return _emit(sim, state, _draft(sim, state, E.CANCELED, reason="FOK not fillable"))
        if state.cum_qty > 0 and r < 0.5 and state.time_in_force == TimeInForce.IOC:
            return _emit(sim, state, _draft(sim, state, E.CANCELED, reason="IOC remainder killed"))
        return _fill(sim, state)
    # NEW or PARTIALLY_FILLED, or a GTC order done for the day (the next day's events)
    if r < 0.55:
        return _fill(sim, state)
    if r < 0.70:
        return _request(sim, state, E.CANCEL_REQUESTED)
    if r < 0.82:
        return _request(sim, state, E.REPLACE_REQUESTED)
    if r < 0.86 and state.time_in_force == TimeInForce.DAY:
        return _emit(sim, state, _draft(sim, state, E.EXPIRED, reason="end of day"))
    if r < 0.88 and (state.time_in_force == TimeInForce.DAY or status != OrderStatus.DONE_FOR_DAY):
        return _emit(sim, state, _draft(sim, state, E.DONE_FOR_DAY))
    return _fill(sim, state)


def _late_fill(sim: _Sim) -> OrderEvent | None:
    """A fill that was in flight when the order was canceled/expired."""
    order_id = sim.closed_recent.pop(sim.rng.randrange(len(sim.closed_recent)))
    state = sim.orders[order_id]
    open_qty = state.order_qty - state.cum_qty
    if open_qty <= 0 or state.time_in_force == TimeInForce.FOK:
        return None
    return _fill(sim, state, min(open_qty, Decimal(sim.rng.randint(1, max(1, int(open_qty))))))


def _restate(sim: _Sim) -> OrderEvent | None:
    """Bust or correct a recent execution (about one in three is a correction)."""
    order_id, exec_id = sim.fills_recent.pop(sim.rng.randrange(len(sim.fills_recent)))
    state = sim.orders[order_id]
    fill = next((f for f in state.fills if f.exec_id == exec_id and not f.busted), None)
    if fill is None or state.time_in_force == TimeInForce.FOK:
        return None
    sim.next_exec += 1
    new_exec = f"X{sim.cfg.seed}-{sim.next_exec:09d}"
    if sim.rng.random() < 0.35:
        px = max(CENT, fill.px + Decimal(sim.rng.randint(-5, 5)) * CENT)
        return _emit(sim, state, _draft(sim, state, E.TRADE_CORRECTED, exec_id=new_exec, exec_ref_id=exec_id,
                                        last_qty=fill.qty, last_px=px,
                                        commission=(fill.qty * COMMISSION_PER_SHARE).quantize(Decimal("0.0001")),
                                        reason="price correction"))
    return _emit(sim, state, _draft(sim, state, E.TRADE_CANCELED, exec_id=new_exec, exec_ref_id=exec_id,
                                    reason="trade bust"))
