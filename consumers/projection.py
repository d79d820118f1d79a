"""What the consumer loop needs from a projection (`Projection`); state transitions stay inside
the projection. A projection's `send` writes its rows in the caller's transaction and runs the
caller's statements (`Tail`: the dead letters and the checkpoint compare-and-set) in the same
pipeline, so a batch costs one round trip."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from typing import Any, Protocol

import psycopg

from backbone.deadletters import DeadLetter
from backbone.kafka.reader import Record

TP = tuple[str, int]

#: Statements of the caller's sent in the pipeline after the projection's rows; returns what
#: checks their results once they are in (it raises to abandon the transaction).
Tail = Callable[[psycopg.Connection], Callable[[], None]]
#: Refused records of a batch, each with its dead letter.
Letters = list[tuple[Record, DeadLetter]]
#: Per partition, the batch's compare-and-set: from the offset its owner expected (None: nothing
#: read yet) to the one after the batch's last record.
Moves = dict[TP, tuple[int | None, int]]


class Projection(Protocol):
    """What the loop needs from a projection; state transitions stay inside it."""

    name: str
    duplicates: int  # resent records recognised and skipped, in committed batches

    def topics(self) -> list[str]: ...

    def expiring(self, topic: str) -> bool:
        """True if retention may delete records of `topic` before they are projected and the
        projection tolerates it (latest-value data); otherwise a gap is refused."""
        ...

    def load(self, conn: psycopg.Connection, assigned: list[TP]) -> None: ...

    def drop(self, revoked: list[TP]) -> None: ...

    def place(self, counts: dict[str, int]) -> None:
        """The partition count of each topic, as the broker reports it (where records belong)."""
        ...

    def apply_at(self, msg: Record, topic: str, partition: int, offset: int) -> DeadLetter | None:
        """Apply one record whose coordinates the caller has read already."""
        ...

    def prepare(self) -> Any:
        """Capture the rows the records applied since the last `prepare` changed (and whatever
        else the batch writes); the next records may be applied before this batch commits."""
        ...

    def send(self, conn: psycopg.Connection, batch: Any, tail: Tail | None = None) -> Callable[[], int]:
        """Send `batch` in the caller's transaction, `tail` (the caller's statements) after its
        rows, without waiting for the server; the returned check waits for every result, raises
        `FencedError` if the batch must be abandoned, and returns the rows written."""
        ...

    def committed(self, batch: Any) -> None: ...

    def abandon(self) -> None:
        """Forget every batch not committed (in flight, or applied since): its partitions are
        reloaded next."""
        ...


def fold(projection: Projection, records: Iterable[Record], expected: Mapping[TP, int | None]) -> tuple[Letters, Moves]:
    """Step 1 of a batch, for every loop that feeds a projection (the projector and the rebuild's
    shadow): apply each record in memory; a refused one becomes a dead letter. Returns the
    letters and each partition's move from `expected` to the offset after its last record."""
    letters: Letters = []
    moves: Moves = {}
    prefetch = getattr(projection, "prefetch", None)  # optional: a projection that reads rows back first
    if prefetch is not None:
        records = list(records)
        prefetch(records)
    for msg in records:
        tp = (msg.topic(), msg.partition())
        offset = msg.offset()
        letter = projection.apply_at(msg, tp[0], tp[1], offset)
        if letter is not None:
            letters.append((msg, letter))
        moves[tp] = (expected.get(tp), offset + 1)
    return letters, moves


class Pipelined:
    """A batch's statements and the caller's `Tail`, sent in one pipeline without waiting for
    the server (what a projection's `send` does). `wait()` leaves pipeline mode, which raises the
    first error, and gives each statement's row count; `check_tail()` then runs the tail's check.
    Until `wait()`, the connection is in pipeline mode and must not be used otherwise."""

    def __init__(self, conn: psycopg.Connection, statements: Callable[[Callable[[], psycopg.Cursor]], None],
                 tail: Tail | None) -> None:
        """`statements(cursor)` executes the batch's statements, each on a new `cursor()`."""
        self._cursors: list[psycopg.Cursor] = []

        def cursor() -> psycopg.Cursor:
            cur = conn.cursor()
            self._cursors.append(cur)
            return cur

        try:
            with ExitStack() as stack:
                stack.enter_context(conn.pipeline())
                statements(cursor)
                self._tail_check = tail(conn) if tail is not None else None
                self._pending = stack.pop_all()  # sent: the pipeline stays open until wait()
        except BaseException:
            self._close()
            raise

    def wait(self) -> list[int]:
        """Every statement's result: their row counts, in the order they were sent."""
        try:
            self._pending.close()  # leaves pipeline mode: waits for every result, raises the first error
            return [cur.rowcount for cur in self._cursors]
        finally:
            self._close()

    def check_tail(self) -> None:
        if self._tail_check is not None:
            self._tail_check()

    def _close(self) -> None:
        for cur in self._cursors:
            cur.close()
