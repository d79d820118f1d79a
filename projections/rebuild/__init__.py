"""Rebuild a projection from the Kafka log into shadow tables while the live projection keeps
serving, then swap the shadow in atomically (`backbone rebuild NAME`; docs/rebuild.md).

The procedure, in order:

1. **Shadow.** A schema `rebuild_<utc timestamp>` with empty copies of the projection tables and
   the views (`ddl.create_schema`), plus a `dead_letters` table of its own so the shadow's refusals
   never show in `public.dead_letters` before the swap.
2. **Catch up.** A shadow projector (`Shadow`: the same `TradingProjection`, writing into the
   shadow schema, checkpoint key `trading@<shadow>`) reads every partition from the beginning of
   the log in batches, each batch one transaction (rows + shadow dead letters + shadow offsets),
   in passes that follow the *live projection's* checkpoints, until it is within one batch of
   them. It has its own manually assigned consumer (no group, nothing committed to Kafka) and
   never produces to the dead-letter topic: those records were dead-lettered when first refused.
   With `from_snapshot`, each partition first gets the live projection's newest snapshot at or
   before its live checkpoint (rows, shadow checkpoint, and the live dead letters below it) and is
   read from there (`Shadow.seed`).
3. **Older snapshots.** It waits (bounded) for transactions that began before the shadow caught
   up: a REPEATABLE READ reader whose snapshot predates the swap and that first reads the tables
   after it would otherwise see the shadow as of its old snapshot, i.e. half built.
4. **Swap, one transaction.**
   a. *Freeze the live projection*: `public` projection tables in SHARE mode (writers wait,
      readers go on), `dead_letters` and `projection_checkpoints` in EXCLUSIVE mode; the order is
      the live projector's own write order, so the two cannot deadlock.
   b. Read the live checkpoints L; bring the shadow exactly to L; checksum old (`public`) and new
      (shadow) per table and partition: a like-for-like comparison at the same offsets.
   c. Bring the shadow on to the end of the log.
   d. Lock, for readers, the views bound to the tables and the tables (ACCESS EXCLUSIVE) with a
      lock timeout shorter than `deadlock_timeout`, retried from a savepoint: readers wait at most
      that long per attempt, and never get a deadlock error because of us.
   e. `alter table … set schema`: public tables to `rebuild_old_<ts>`, shadow tables to public;
      rename the new indexes to the old names, copy owner, grants and storage options; recreate
      (`create or replace`) every view bound to the old tables from its own definition.
   f. Live checkpoints := shadow offsets, with the next checkpoint generation: a running
      projector's next compare-and-set (offset and the generation it loaded) fails in every
      partition, idle ones included, so it abandons that batch and reloads its partitions from
      the new tables (the fence for its in-memory state). Shadow checkpoints deleted; this
      projection's dead letters replaced by the shadow's (first-refusal times kept); records
      only the shadow refused are relayed to the dead-letter topic once the swap has committed.
   g. Commit. Then the old tables are dropped unless `keep_old`.
"""


from __future__ import annotations

from collections.abc import Callable

import psycopg

from backbone.gc_policy import fewer_collections
from backbone.settings import Settings
from projections.rebuild.model import (
    PROJECTIONS,
    Event,
    RebuildError,
    RebuildOptions,
    RebuildResult,
    first_line,
    psycopg_url,
)
from projections.rebuild.procedure import Procedure
from projections.trading import NAME as TRADING

__all__ = ["PROJECTIONS", "RebuildError", "RebuildOptions", "RebuildResult", "psycopg_url", "rebuild"]


def rebuild(settings: Settings, name: str = TRADING, options: RebuildOptions | None = None, *,
            on_event: Event | None = None, stop_requested: Callable[[], bool] = lambda: False) -> RebuildResult:
    """Rebuild projection `name` from the log (or its snapshots, `options.from_snapshot`) and swap
    it in (see the module doc).

    `on_event(kind, info)` reports progress: shadow, seeded, pass, batch, waiting, frozen, locked,
    swapped, warning, dropped. `stop_requested` is polled between batches; a stop before the swap drops the
    shadow and raises `RebuildError`.
    """
    if name not in PROJECTIONS:
        raise RebuildError(f"unknown projection {name!r} (known: {', '.join(PROJECTIONS)})")
    procedure = Procedure(settings, options or RebuildOptions(), on_event or (lambda _k, _i: None), stop_requested)
    try:
        with fewer_collections():  # the shadow's fold keeps what it allocates (backbone.gc_policy)
            return procedure.run()
    except psycopg.Error as e:
        hint = ""
        if procedure.phase == "swap":
            hint = (f"; nothing was swapped, unless the connection was lost while committing: the swap "
                    f"happened exactly when schema {procedure.old_schema} exists")
        raise RebuildError(f"database error during the {procedure.phase}: {first_line(e)}{hint}") from e
