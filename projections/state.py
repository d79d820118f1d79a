"""The trading projection's in-memory state and its transitions (no I/O).

`TradingState.apply_order_event` and `apply_mark` take one decoded record with its Kafka
coordinates and either change the state completely or not at all: every new value is computed
first and assigned only when nothing raised. An event the domain refuses raises
`InvalidOrderTransition` (or `PositionError`); the caller dead-letters it. Keys are symbols, so
the state of one Kafka partition never depends on another's: `TradingState` may hold several
partitions and `drop_partitions` forgets some of them.

What changed since the last `take_changes()` is tracked as key sets, so the writer persists
exactly the rows an applied batch touched; and, per UTC day, how each changed position and
mark stood after the day's last change (`Changes.position_days`, `mark_days`: the history
behind view pnl_daily, docs/sql.md). A position's change is booked on the UTC date of the event,
or of the position's last fill if that is later: a late fill never goes back to a day already
booked. A state that `keep_days` keeps every day's rows across `take_changes()` (a replay
writes them all into its schema).

An execution is keyed by (order_id, exec_id), not by its exec id alone: FIX makes an ExecID
unique per sell side, so orders routed to two venues may report the same one, and each is its
own order's fill. A fill reusing an exec id its own order has seen is refused by the order
state machine (`duplicate_exec_id`) before the state changes; any other is new.

A state restored lazily from snapshots (`snapshots.restore(..., lazy=True)`, for `state
--as-of`) keeps the terminal orders and the executions of each (account, symbol) in a
`ColdGroup` until an event names one of them: `cold_orders` indexes them by order id and
`cold_execs` by (account, symbol), and the two lookups that may need one (the order an event
names, the execution a restatement names) thaw its group first, so the fold sees exactly the
eager state. Whatever reads the whole state calls `thaw_all()` first.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal

from backbone.domain import history, order_state, positions
from backbone.domain.events import EventType, Liquidity, MarketMark, OrderEvent, Side
from backbone.domain.order_state import OrderState
from backbone.domain.plain import builder
from backbone.domain.positions import Fill, Position
from backbone.errors import InvalidOrderTransition

Outcome = Literal["applied", "duplicate", "stale"]
#: An execution's key: (order_id, exec_id).
ExecKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Execution:
    """One fill as executed and as restated since (busted, corrected)."""

    exec_id: str
    order_id: str  # with exec_id, the key (an exec id is unique within its order only)
    kafka_partition: int
    source_offset: int
    account: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    commission: Decimal
    currency: str | None
    liquidity: Liquidity | None
    exec_time: datetime
    busted: bool
    corrected: bool
    original_qty: Decimal | None
    original_price: Decimal | None
    last_event_id: str
    updated_at: datetime

    def as_fill(self) -> Fill:
        return _new_fill(self.order_id, self.exec_id, self.account, self.symbol, self.side, self.qty, self.price,
                         self.commission, self.exec_time)


#: (partition, a position's summary) -> what loads the fills it holds (`TradingState.evict`).
HistoryOf = Callable[[int, Position], Callable[[], Position]]

# Execution(...) and Fill(...) with every field, without a frozen __init__'s per-field setattr
new_execution: Callable[..., Execution] = builder(Execution)
_new_fill: Callable[..., Fill] = builder(Fill)
_FILLED, _BUSTED, _CORRECTED = EventType.FILLED, EventType.TRADE_CANCELED, EventType.TRADE_CORRECTED


def _decimal(value: Decimal | None) -> Decimal:
    """`Decimal(value or 0)`: a fill's quantity, price or commission as the execution keeps it.
    A non-zero Decimal (what the decoder gives) is taken as it is instead of copied; a zero of
    any exponent (the decoder's is 0E-8) becomes Decimal(0), as it always was."""
    return value if type(value) is Decimal and value else Decimal(value or 0)


def positions_from_executions(executions: list[Execution]) -> dict[tuple[str, str], Position]:
    """Positions refolded from their live executions in offset order: how a projector that
    restarts rebuilds the fill history that busts and corrections need."""
    live: dict[tuple[str, str], list[Fill]] = {}
    for x in sorted(executions, key=lambda e: (e.kafka_partition, e.source_offset)):
        if not x.busted:
            live.setdefault((x.account, x.symbol), []).append(x.as_fill())
    # distinct fills: `executions` comes from a table (or dict) keyed by (order_id, exec_id)
    return {key: positions.apply_fills(positions.empty_position(*key), fills, exec_ids_are_new=True)
            for key, fills in live.items()}


def _utc_date(when: datetime) -> date:
    """The UTC date of an aware time (the decoder's are UTC already: no conversion then)."""
    return when.date() if when.tzinfo is UTC else when.astimezone(UTC).date()


def deferred(summary: Position, load: Callable[[], Position]) -> Position:
    """`summary` with its fills and prior states read from `load()` on first use (once)."""
    once = functools.cache(load)
    return replace(summary, fills=history.Deferred(lambda: once().fills, summary.fill_count),
                   prior_states=history.Deferred(lambda: once().prior_states, summary.fill_count))


def mark_recency(mark: MarketMark) -> tuple[datetime, str]:
    """Orders a symbol's marks: the greatest is the one the state keeps."""
    return mark.event_time, mark.event_id


@dataclass(frozen=True, slots=True)
class MarkRow:
    symbol: str
    kafka_partition: int
    mark: MarketMark


# MarkRow(...) without a frozen __init__: one a mark, a sixth of the records of a session
new_mark_row: Callable[..., MarkRow] = builder(MarkRow)


@dataclass(eq=False)
class ColdGroup:
    """The terminal orders and the executions of one (account, symbol) of one partition, still
    in their snapshot; `load()` decodes them (and checks them against these ids)."""

    partition: int
    key: tuple[str, str]  # (account, symbol)
    order_ids: list[str]
    exec_ids: list[str]
    load: Callable[[], tuple[list[OrderState], list[Execution]]]


#: A position at the end of a day: (partition, offset of the day's last change, qty, avg_px,
#: realized_pnl, realized_commission, commission).
PositionDay = tuple[int, int, Decimal, Decimal, Decimal, Decimal, Decimal]


@dataclass
class Changes:
    orders: set[str] = field(default_factory=set)
    executions: set[ExecKey] = field(default_factory=set)
    positions: set[tuple[str, str]] = field(default_factory=set)
    marks: set[str] = field(default_factory=set)
    position_days: dict[tuple[str, str, date], PositionDay] = field(default_factory=dict)
    mark_days: dict[tuple[str, date], MarkRow] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.orders or self.executions or self.positions or self.marks)


@dataclass
class TradingState:
    """Orders, executions, positions and marks of the partitions a projector owns."""

    orders: dict[str, OrderState] = field(default_factory=dict)
    order_partition: dict[str, int] = field(default_factory=dict)
    executions: dict[ExecKey, Execution] = field(default_factory=dict)
    positions: dict[tuple[str, str], Position] = field(default_factory=dict)
    position_partition: dict[tuple[str, str], int] = field(default_factory=dict)
    marks: dict[str, MarkRow] = field(default_factory=dict)
    changes: Changes = field(default_factory=Changes)
    cold_orders: dict[str, ColdGroup] = field(default_factory=dict)
    cold_execs: dict[tuple[str, str], ColdGroup] = field(default_factory=dict)  # by (account, symbol)
    cold_groups: dict[int, set[ColdGroup]] = field(default_factory=dict)  # by partition
    keep_days: Changes | None = None  # every day's rows since it was set (take_changes keeps them)

    # -- order events -------------------------------------------------------------------------

    def apply_order_event(self, event: OrderEvent, partition: int, offset: int) -> Outcome:
        before = self.orders.get(event.order_id)
        if before is None and self.cold_orders and event.order_id in self.cold_orders:
            self.thaw(self.cold_orders[event.order_id])
            before = self.orders.get(event.order_id)
        try:
            after = order_state.apply(before, event)  # raises InvalidOrderTransition: nothing changed
        except InvalidOrderTransition as e:
            if e.rule == "duplicate_event":  # a resend of an event already applied: recognised, skipped
                return "duplicate"
            raise
        execution: Execution | None = None
        new_position: Position | None = None
        event_type = event.event_type
        if event_type == _FILLED:
            execution = new_execution(
                str(event.exec_id), event.order_id, partition, offset, event.account, event.symbol, event.side,
                _decimal(event.last_qty), _decimal(event.last_px), _decimal(event.commission),
                event.currency, event.liquidity, event.event_time, False, False, None, None,
                event.event_id, event.event_time)
            # new: order_state.apply refuses an exec id the order has seen (duplicate_exec_id)
            new_position = positions.apply_fill(self._position(event), execution.as_fill(), exec_id_is_new=True)
        elif event_type == _BUSTED or event_type == _CORRECTED:
            original = self._restated(after, str(event.exec_ref_id))
            current = self.executions[original]
            position = self._position(event)
            if event_type == _BUSTED:
                execution = replace(current, busted=True, last_event_id=event.event_id,
                                    updated_at=event.event_time)
                new_position = positions.bust(position, *original)
            else:
                commission = current.commission if event.commission is None else Decimal(event.commission)
                execution = replace(current, qty=Decimal(event.last_qty or 0), price=Decimal(event.last_px or 0),
                                    commission=commission, corrected=True,
                                    original_qty=current.original_qty or current.qty,
                                    original_price=current.original_price or current.price,
                                    last_event_id=event.event_id, updated_at=event.event_time)
                new_position = positions.correct(position, *original, execution.qty, execution.price, commission)

        # Everything computed without error: commit to the state.
        self.orders[event.order_id] = after
        self.order_partition[event.order_id] = partition
        self.changes.orders.add(event.order_id)
        if execution is not None:
            key = (execution.order_id, execution.exec_id)
            self.executions[key] = execution
            self.changes.executions.add(key)
        if new_position is not None:
            key = (event.account, event.symbol)
            self.positions[key] = new_position
            self.position_partition[key] = partition
            self.changes.positions.add(key)
            self._book_day(key, partition, offset, event.event_time, new_position)
        return "applied"

    def _book_day(self, key: tuple[str, str], partition: int, offset: int, when: datetime, p: Position) -> None:
        """The position as it ends the day this change is booked on (module doc)."""
        last = p.last_fill_time
        if last is not None and last > when:
            when = last
        self.changes.position_days[(key[0], key[1], _utc_date(when))] = (
            partition, offset, p.qty, p.avg_px, p.realized_pnl, p.realized_commission, p.commission)

    def _position(self, event: OrderEvent) -> Position:
        return (self.positions.get((event.account, event.symbol))
                or positions.empty_position(event.account, event.symbol))

    def _restated(self, order: OrderState, ref: str) -> ExecKey:
        """The key of the execution a bust/correction names (ref may be a correction's id)."""
        for fill in order.fills:
            if fill.answers_to(ref):
                key = (order.order_id, fill.exec_id)
                if key not in self.executions and self.cold_execs:
                    group = self.cold_execs.get((order.account, order.symbol))
                    if group is not None:
                        self.thaw(group)
                if key not in self.executions:
                    raise InvalidOrderTransition(order.order_id, "unknown_exec_ref",
                                                 f"execution {fill.exec_id} is not in the projection")
                return key
        raise InvalidOrderTransition(order.order_id, "unknown_exec_ref", f"no execution answers to {ref}")

    # -- marks ----------------------------------------------------------------------------------

    def apply_mark(self, mark: MarketMark, partition: int) -> Outcome:
        """Keep the newest mark per symbol; an older or equal-time mark is stale, not an error."""
        current = self.marks.get(mark.symbol)
        if current is not None and mark_recency(mark) <= mark_recency(current.mark):
            return "duplicate" if current.mark.event_id == mark.event_id else "stale"
        row = self.marks[mark.symbol] = new_mark_row(mark.symbol, partition, mark)
        self.changes.marks.add(mark.symbol)
        # marks only move forward in time (an older one is stale): the day's last is its close
        self.changes.mark_days[(mark.symbol, _utc_date(mark.event_time))] = row
        return "applied"

    # -- bookkeeping ------------------------------------------------------------------------------

    def add_cold(self, group: ColdGroup) -> None:
        """Index a group left in its snapshot (`snapshots.restore(..., lazy=True)`). A group of
        the same (account, symbol) from a snapshot restored before (only snapshots of two
        processes can give one) is thawed first, so this one's rows win, as when restoring
        eagerly."""
        if group.exec_ids:
            earlier = self.cold_execs.get(group.key)
            if earlier is not None:
                self.thaw(earlier)
            self.cold_execs[group.key] = group
        self.cold_groups.setdefault(group.partition, set()).add(group)
        self.cold_orders.update(dict.fromkeys(group.order_ids, group))

    def thaw(self, group: ColdGroup) -> None:
        """Move a cold group's rows into the state (decoding them). An order id that a snapshot
        restored later also holds is that snapshot's, as when restoring eagerly (and so are the
        executions of an (account, symbol): see `add_cold`)."""
        orders, executions = group.load()
        self.cold_groups[group.partition].remove(group)
        for order in orders:
            if self.cold_orders.get(order.order_id) is group:
                del self.cold_orders[order.order_id]
                self.orders[order.order_id] = order
                self.order_partition[order.order_id] = group.partition
        if self.cold_execs.get(group.key) is group:
            del self.cold_execs[group.key]
        for x in executions:
            self.executions[(x.order_id, x.exec_id)] = x

    def thaw_all(self) -> None:
        """Load everything still cold: every group, and every position's deferred history (which
        checks it against the position's summary)."""
        for group in [g for groups in self.cold_groups.values() for g in groups]:
            self.thaw(group)
        for position in self.positions.values():
            for items in (position.fills, position.prior_states):
                if type(items) is history.Deferred:
                    items.loaded()

    def evict(self, order_ids: Iterable[str], position_keys: Iterable[tuple[str, str]],
              history_of: HistoryOf | None) -> int:
        """Let rows whose latest version is in Postgres leave memory (a bounded live state, see
        docs/live-state.md): the orders among `order_ids` that may not execute again, with
        every execution they had; and the fill histories of the positions among
        `position_keys`, which keep their summary and load their fills from
        `history_of(partition, position)()` on a restatement's first read. The caller names only
        rows no batch still to commit has changed. Returns the orders evicted."""
        evicted = 0
        for order_id in order_ids:
            order = self.orders.get(order_id)
            if order is None or not order.is_terminal:
                continue
            del self.orders[order_id], self.order_partition[order_id]
            for exec_id in order.exec_ids:
                self.executions.pop((order_id, exec_id), None)
            evicted += 1
        if history_of is not None:
            for key in position_keys:
                position = self.positions.get(key)
                if position is None or not position.fill_count:
                    continue
                # the summary alone: what loads the history must not hold the history
                summary = replace(position, fills=(), prior_states=())
                self.positions[key] = deferred(summary, history_of(self.position_partition[key], summary))
        return evicted

    def take_changes(self) -> Changes:
        changes, self.changes = self.changes, Changes()
        if self.keep_days is not None:
            self.keep_days.position_days.update(changes.position_days)
            self.keep_days.mark_days.update(changes.mark_days)
        return changes

    def drop_partitions(self, orders_partitions: Iterable[int] = (), marks_partitions: Iterable[int] = ()) -> None:
        """Forget the state of several partitions: one pass over the state, however many."""
        orders, marks = frozenset(orders_partitions), frozenset(marks_partitions)
        if orders:
            for order_id in [o for o, p in self.order_partition.items() if p in orders]:
                del self.orders[order_id], self.order_partition[order_id]
            for key in [k for k, x in self.executions.items() if x.kafka_partition in orders]:
                del self.executions[key]
            for key in [k for k, p in self.position_partition.items() if p in orders]:
                del self.positions[key], self.position_partition[key]
            for p in orders:
                for group in self.cold_groups.pop(p, ()):
                    for order_id in group.order_ids:
                        if self.cold_orders.get(order_id) is group:
                            del self.cold_orders[order_id]
                    if self.cold_execs.get(group.key) is group:
                        del self.cold_execs[group.key]
        if marks:
            for symbol in [s for s, m in self.marks.items() if m.kafka_partition in marks]:
                del self.marks[symbol]
