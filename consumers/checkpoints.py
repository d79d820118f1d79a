"""Checkpoints: a projection's next offset per partition in `projection_checkpoints`, moved by
compare-and-set from the offset and the generation its owner loaded. Another owner's commit
(a rebalance) or a rebuild's swap (a new generation) makes the move fail as a whole
(`FencedError`), so two owners of a partition can never both commit the same offsets. Every
statement runs on the caller's connection, in the caller's transaction (the batch's)."""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from backbone.db import one_row

TP = tuple[str, int]


def read_checkpoints(conn: psycopg.Connection, projection: str) -> dict[tuple[str, int], int]:
    with conn.cursor() as cur:
        cur.execute("select topic, partition, next_offset from projection_checkpoints where projection = %s",
                    (projection,))
        return {(t, p): o for t, p, o in cur}


def read_generation(conn: psycopg.Connection, projection: str) -> int:
    """The projection's checkpoint generation (0 before any rebuild); bumped by a rebuild's swap."""
    with conn.cursor() as cur:
        cur.execute("select coalesce(max(generation), 0) from projection_checkpoints where projection = %s",
                    (projection,))
        return int(one_row(cur)[0])


class FencedError(Exception):
    """Another owner advanced a checkpoint this projector expected to own: abandon the batch."""


def advance_checkpoints(conn: psycopg.Connection, projection: str,
                        moves: dict[tuple[str, int], tuple[int | None, int]], generation: int = 0) -> None:
    """Move each (topic, partition) from its expected offset to the next one, or fail as a whole.

    `generation` is the one the caller loaded its state under: a checkpoint of another generation
    (a rebuild swapped the tables since) fences the caller even where the offsets still match.

    One statement for the moves and one for first checkpoints, whatever the number of
    partitions a batch touched: a statement per partition was a round trip each, the larger
    part of a small batch's transaction."""
    send_checkpoint_moves(conn, projection, moves, generation)()


def send_checkpoint_moves(conn: psycopg.Connection, projection: str,
                          moves: dict[tuple[str, int], tuple[int | None, int]],
                          generation: int = 0) -> Callable[[], None]:
    """`advance_checkpoints` in two halves, for a pipeline: send the statements, and return the
    check to run once their results are in (it raises `FencedError`). Outside a pipeline the
    statements have run when this returns."""
    ordered = sorted(moves.items())
    updates = [(t, p, expected, nxt) for (t, p), (expected, nxt) in ordered if expected is not None]
    inserts = [(t, p, nxt) for (t, p), (expected, nxt) in ordered if expected is None]
    sent: list[tuple[psycopg.Cursor, list[tuple[str, int, int | None]]]] = []
    if updates:
        cur = conn.cursor()
        topics, partitions, expected, nxt = (list(column) for column in zip(*updates, strict=True))
        cur.execute("update projection_checkpoints c set next_offset = m.nxt, updated_at = now() "
                    "from unnest(%s::text[], %s::int[], %s::bigint[], %s::bigint[]) "
                    "as m(topic, partition, expected, nxt) "
                    "where c.projection = %s and c.topic = m.topic and c.partition = m.partition "
                    "and c.next_offset = m.expected and c.generation = %s returning c.topic, c.partition",
                    (topics, partitions, expected, nxt, projection, generation))
        sent.append((cur, [(t, p, e) for t, p, e, _n in updates]))
    if inserts:
        cur = conn.cursor()
        topics, partitions, nxt = (list(column) for column in zip(*inserts, strict=True))
        # Only under the projection's current generation: a partition the swap left without a
        # checkpoint (nothing read) would otherwise get one of the old generation, and every
        # later compare-and-set on it would be fenced, reload after reload.
        cur.execute("insert into projection_checkpoints (projection, topic, partition, next_offset, generation) "
                    "select %s, m.topic, m.partition, m.nxt, %s "
                    "from unnest(%s::text[], %s::int[], %s::bigint[]) as m(topic, partition, nxt) "
                    "where %s = (select coalesce(max(generation), 0) from projection_checkpoints "
                    "where projection = %s) "
                    "on conflict do nothing returning topic, partition",
                    (projection, generation, topics, partitions, nxt, generation, projection))
        sent.append((cur, [(t, p, None) for t, p, _n in inserts]))

    def check() -> None:
        try:
            for cur, wanted in sent:
                _check_moved(projection, {(t, p) for t, p in cur.fetchall()}, wanted)
        finally:  # a fenced update leaves the inserts' cursor unread: closed all the same
            for cur, _wanted in sent:
                cur.close()

    return check


def _check_moved(projection: str, moved: set[tuple[str, int]], wanted: list[tuple[str, int, int | None]]) -> None:
    for topic, partition, expected in wanted:
        if (topic, partition) not in moved:
            raise FencedError(f"checkpoint {projection} {topic}[{partition}] is no longer at {expected} "
                              "(moved by another owner, or a rebuild swapped the tables)")
