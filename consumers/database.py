"""The consumer loop's side of Postgres: one connection held from batch to batch (the batch
transactions), loads on pooled connections of their own, and one retry policy for both: a
connection loss or a serialization failure is retried with backoff, never past a stop request
or the run's deadline."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, RootTransaction
from sqlalchemy.exc import OperationalError

from backbone.db import first_line, psycopg_connection
from backbone.errors import BackboneError, DatabaseUnavailable

log = logging.getLogger(__name__)

#: A connection held idle longer than this goes back to the pool before the next batch, which
#: checks out one the pool pings first: a connection dropped by the server or a firewall during a
#: quiet spell is then replaced silently instead of failing a batch (a retry and a warning).
HELD_DB_IDLE_S = 30.0

#: Errors a retry may cure: the connection went away, or a serialization failure.
RETRIABLE = (OperationalError, psycopg.OperationalError)


class Database:
    """Not thread-safe; no hidden threads."""

    def __init__(self, engine: Engine, *, max_backoff_s: float, stop_requested: Callable[[], bool],
                 while_waiting: Callable[[], None]) -> None:
        """`while_waiting` runs before each backoff sleep (the loop's status report)."""
        self.engine, self.max_backoff_s = engine, max_backoff_s
        self.stop_requested, self.while_waiting = stop_requested, while_waiting
        self.held: Connection | None = None  # from batch to batch; any error gives it back
        self.used_at = 0.0
        self.deadline: float | None = None  # monotonic; every wait gives up then
        self.down: str | None = None  # why the database is being waited for (None: it is not)
        self.retries = 0

    def begin(self) -> tuple[RootTransaction, psycopg.Connection]:
        """A transaction on the held connection (checked out, pinged, when none is held or it
        sat idle too long)."""
        if self.held is not None and time.monotonic() - self.used_at > HELD_DB_IDLE_S:
            self.drop()  # a quiet hour (a closed market): check out a pinged one instead
        if self.held is None:
            self.held = self.engine.connect()
        self.used_at = time.monotonic()
        return self.held.begin(), psycopg_connection(self.held)

    def failed(self, e: Exception) -> None:
        """A batch's transaction failed on a connection error: give the connection back, count it."""
        self.drop()
        self.retries += 1
        log.warning("database unavailable or conflict (%s); the batch is sent again", first_line(e))

    def pause(self, e: Exception, delay: float) -> float:
        """Wait `delay` before retrying after `e` (unless stopping, or past the deadline);
        returns the next delay."""
        self.down = first_line(e)
        if self.stop_requested():
            raise BackboneError("stopped while the database was unavailable; nothing was committed (run "
                                "`backbone project run` again: it resumes from its checkpoints)") from e
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline:
            raise DatabaseUnavailable(f"--max-seconds passed while waiting for the database ({self.down}); "
                                      "the batch in flight was not committed (run `backbone project run` again "
                                      "once the database answers: it resumes from its checkpoints)") from e
        self.while_waiting()
        log.warning("retrying in %.1fs, offsets not advanced", delay)
        time.sleep(delay if self.deadline is None else max(min(delay, self.deadline - now), 0))
        return min(delay * 2, self.max_backoff_s)

    def load(self, work: Callable[[psycopg.Connection], Any], *, isolation_level: str) -> Any:
        """Run `work` (a load) in one transaction at `isolation_level`, on a connection of its own
        from the pool; retry on connection loss or serialization failure."""
        delay = 0.2
        while True:
            try:
                with self.engine.connect() as sa_conn:
                    sa_conn.execution_options(isolation_level=isolation_level)
                    with sa_conn.begin():
                        done = work(psycopg_connection(sa_conn))
                self.down = None
                return done
            except RETRIABLE as e:
                self.retries += 1
                log.warning("database unavailable or conflict (%s) loading partitions", first_line(e))
                delay = self.pause(e, delay)

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """A connection of the pool in a transaction of its own (not the held one: a batch may be in
        flight on it), committed at the block's end."""
        with self.engine.connect() as sa_conn, sa_conn.begin():
            yield psycopg_connection(sa_conn)

    def drop(self) -> None:
        """Give the held connection back (the pool discards it if it was found broken)."""
        if self.held is not None:
            held, self.held = self.held, None
            try:
                held.close()
            except RETRIABLE as e:
                log.warning("closing a failed database connection: %s", first_line(e))
