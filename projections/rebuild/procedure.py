"""The rebuild, step by step (see projections.rebuild for the order and why)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from backbone.db import UNREACHABLE_HINT, one_row
from backbone.kafka import log_bounds
from backbone.settings import Settings
from consumers.checkpoints import read_checkpoints, read_generation
from projections import ddl, snapshots
from projections.rebuild.catalog import View, table_shape, take_over_identity
from projections.rebuild.checksums import partition_sums, table_checksum
from projections.rebuild.letters import relay as relay_letters
from projections.rebuild.letters import swap as swap_letters
from projections.rebuild.model import (
    APPLICATION_NAME,
    SHADOW_PATTERN,
    TABLES,
    TP,
    Event,
    Interrupted,
    RebuildError,
    RebuildOptions,
    RebuildResult,
    Retry,
    TableComparison,
    first_line,
    psycopg_url,
    tp_names,
)
from projections.rebuild.shadow import Shadow
from projections.trading import NAME as TRADING

log = logging.getLogger(__name__)


class Procedure:

    def __init__(self, settings: Settings, options: RebuildOptions, on_event: Event,
                 stop_requested: Callable[[], bool]) -> None:
        self.settings, self.options, self.emit, self.stop_requested = settings, options, on_event, stop_requested
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        self.shadow_schema = f"rebuild_{stamp}"
        self.old_schema = f"rebuild_old_{stamp}"
        self.result = RebuildResult(TRADING, self.shadow_schema, self.old_schema)
        self.shadow: Shadow | None = None
        self._relay_after_swap: list[TP] = []  # source partitions with letters only the shadow refused
        self._applied_since_event = 0
        self._last_batch_event = time.monotonic()
        self.phase = "preparation"

    # -- connections and guards ------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(psycopg_url(self.settings), autocommit=True, application_name=APPLICATION_NAME)
        except psycopg.OperationalError as e:
            raise RebuildError(f"cannot reach the database at {self.settings.database_url_safe()}: "
                               f"{first_line(e)} ({UNREACHABLE_HINT})") from e

    def run(self) -> RebuildResult:
        started = time.monotonic()
        self.admin = self._connect()
        try:
            locked = one_row(self.admin.execute("select pg_try_advisory_lock(hashtext(%s))",
                                                (f"backbone rebuild {TRADING}",)))[0]
            if not locked:
                raise RebuildError(f"another rebuild of {TRADING} is running on this database; wait for it to end")
            self._preflight()
            self._drop_orphans()
            self.work = self._connect()
            try:
                self._create_shadow()
                try:
                    self.shadow = Shadow(self.settings, self.shadow_schema, self.options.batch_size,
                                          self.stop_requested, self._on_batch, self._warn)
                    if self.options.from_snapshot:
                        self.phase = "seeding from snapshots"
                        self._seed()
                    self._check_log_start()
                    self.phase = "catch-up"
                    self._catch_up(self.options.max_passes)
                    self._wait_for_older_transactions()
                    self._catch_up(3)
                    if self.stop_requested():
                        raise Interrupted("interrupted")
                    with self.work.transaction():
                        self.work.execute(sql.SQL("analyze {}").format(sql.SQL(", ").join(
                            sql.Identifier(self.shadow_schema, t) for t in TABLES)))
                    self.phase = "swap"
                    self._swap()
                    self.phase = "clean-up after the swap"
                    self._relay_newly_refused()
                except Interrupted:
                    self._drop_shadow()
                    raise RebuildError("interrupted before the swap: nothing was swapped, "
                                       f"the shadow schema {self.shadow_schema} was dropped") from None
                except BaseException:
                    self._drop_shadow()
                    raise
                finally:
                    if self.shadow is not None:
                        self.shadow.close()
            finally:
                self.work.close()
            self._drop_old()
        finally:
            self.admin.close()  # releases the advisory lock
        self.result.seconds_total = time.monotonic() - started
        return self.result

    def _warn(self, message: str) -> None:
        self.result.warnings.append(message)
        self.emit("warning", {"message": message})

    def _on_batch(self, n: int) -> None:
        self._applied_since_event += n
        if time.monotonic() - self._last_batch_event >= 2.0:
            assert self.shadow is not None
            self.emit("batch", {"events": self.shadow.events, "applied": self._applied_since_event})
            self._applied_since_event, self._last_batch_event = 0, time.monotonic()

    def _table_oids(self, conn: psycopg.Connection, schema: str) -> list[int]:
        return [one_row(conn.execute("select %s::regclass::oid", (f"{schema}.{t}",)))[0] for t in TABLES]

    def _preflight(self) -> None:
        """Refuse what a schema swap would silently break, before any work is done."""
        a = self.admin
        missing = [t for t in TABLES if one_row(a.execute("select to_regclass(%s)", (f"public.{t}",)))[0] is None]
        if missing:
            raise RebuildError(f"table(s) {', '.join(missing)} missing in public: run `backbone db upgrade`")
        oids = self._table_oids(a, "public")
        not_owned = [r[0] for r in a.execute(
            "select c.oid::regclass::text from pg_class c where c.oid = any(%s) "
            "and not pg_has_role(current_user, c.relowner, 'MEMBER')", (oids,))]
        if not_owned:
            raise RebuildError(f"the rebuild must run as the owner of the projection tables "
                               f"(not owned by {a.info.user}: {', '.join(not_owned)}): set BACKBONE_DATABASE_URL "
                               "to the owner's role")
        checks = {
            "triggers": "select tgrelid::regclass::text || ' ' || tgname from pg_trigger "
                        "where tgrelid = any(%s) and not tgisinternal",
            "row-level security": "select oid::regclass::text from pg_class where oid = any(%s) and relrowsecurity",
            "publications": "select prrelid::regclass::text || ' in ' || p.pubname from pg_publication_rel r "
                            "join pg_publication p on p.oid = r.prpubid where prrelid = any(%s)",
            "foreign keys referencing them": "select conrelid::regclass::text || ' ' || conname from pg_constraint "
                                             "where contype = 'f' and confrelid = any(%s)",
            "materialized views": "select distinct v.oid::regclass::text from pg_depend d "
                                  "join pg_rewrite r on d.classid = 'pg_rewrite'::regclass and d.objid = r.oid "
                                  "join pg_class v on v.oid = r.ev_class where d.refclassid = 'pg_class'::regclass "
                                  "and d.refobjid = any(%s) and v.relkind = 'm'",
        }
        for what, query in checks.items():
            found = [r[0] for r in a.execute(query, (oids,))]
            if found:
                raise RebuildError(f"the projection tables have {what} that a swap would not carry over: "
                                   f"{', '.join(found)}")

    def _drop_orphans(self) -> None:
        """Shadows of interrupted rebuilds (we hold the lock, so none is in use)."""
        for (schema,) in self.admin.execute("select nspname from pg_namespace where nspname like 'rebuild\\_%%' "
                                            "order by 1").fetchall():
            if SHADOW_PATTERN.match(schema):
                self._drop_schema(schema)
                self._warn(f"dropped {schema}, the shadow of an interrupted rebuild")
        # ... and their checkpoints and snapshots (projection `trading@<shadow schema>`)
        for table in ("projection_checkpoints", "projection_snapshots"):
            if table == "projection_checkpoints" or snapshots.table_exists(self.admin):
                self.admin.execute(sql.SQL("delete from {} where projection like %s and not exists (select 1 from "
                                           "pg_namespace where nspname = split_part(projection, '@', 2))")
                                   .format(sql.Identifier(table)), (f"{TRADING}@rebuild\\_%",))

    def _drop_schema(self, schema: str) -> None:
        with self.admin.transaction():
            ddl.drop_schema(self.admin, schema)
            self.admin.execute("delete from projection_checkpoints where projection = %s", (f"{TRADING}@{schema}",))
            snapshots.delete_projection(self.admin, f"{TRADING}@{schema}")

    def _drop_shadow(self) -> None:
        try:
            self._drop_schema(self.shadow_schema)
        except psycopg.Error as e:
            log.warning("could not drop the shadow schema %s: %s", self.shadow_schema, e)

    def _create_shadow(self) -> None:
        with self.admin.transaction():
            # No grants for readers: the shadow is partial by definition. The swapped-in tables get
            # exactly the old tables' grants (take_over_identity).
            ddl.create_schema(self.admin, self.shadow_schema)
            self.admin.execute(sql.SQL("create table {}.dead_letters (like public.dead_letters including all)").format(
                sql.Identifier(self.shadow_schema)))
            for table in TABLES:
                if table_shape(self.admin, "public", table) != table_shape(self.admin, self.shadow_schema, table):
                    raise RebuildError(f"the shadow copy of {table} differs from public.{table}")
        self.emit("shadow", {"schema": self.shadow_schema})

    # -- catching up -------------------------------------------------------------------------------

    def _targets(self, live: dict[TP, int], wm: dict[TP, tuple[int, int]]) -> dict[TP, int]:
        """Follow the live projection (so old and new can be compared at the same offsets); where it
        has consumed nothing yet, the end of the log."""
        assert self.shadow is not None
        return {tp: min(live[tp], wm[tp][1]) if tp in live else wm[tp][1] for tp in self.shadow.tps}

    def _seed(self) -> None:
        assert self.shadow is not None
        seeded = self.shadow.seed(self.work, read_checkpoints(self.admin, TRADING), self.shadow.watermarks())
        self.result.seeded_offsets = seeded
        self.emit("seeded", {"partitions": len(seeded), "records": sum(seeded.values()),
                             "of": len(self.shadow.tps)})

    def _check_log_start(self) -> None:
        """A partition read from the beginning whose log no longer starts at offset 0 lost records to
        retention (or `delete_records`). Orders: refused, the state would silently miss them. Marks:
        old marks expiring is what the marketdata retention is for; said, since a symbol whose only
        marks expired loses its mark (the comparison shows where)."""
        assert self.shadow is not None
        wm = self.shadow.watermarks()
        verdicts = {tp: log_bounds.classify(log_bounds.Bounds(tp[0], tp[1], 0, *wm[tp]),  # as the projector decides
                                            expiring=self.shadow.projection.expiring(tp[0]))
                    for tp in self.shadow.tps if self.shadow.pos[tp] is None}
        refused = sorted(tp for tp, verdict in verdicts.items() if verdict == "deleted")
        lost = sorted(tp for tp, verdict in verdicts.items() if verdict == "expired")
        if refused:
            raise RebuildError(
                f"the log of {tp_names(refused)} no longer starts at offset 0 (first offset "
                f"{', '.join(str(wm[tp][0]) for tp in refused)}): records were deleted and a rebuild from the "
                "beginning would miss them; use --from-snapshot if snapshots cover them")
        if lost:
            self._warn(f"{tp_names(lost)}: the log starts after offset 0 (retention); marks older than "
                       "that are not in the rebuilt state")
            for tp in lost:  # said once: the fetch starts at the log start, not at 0
                self.shadow.skip_to[tp] = wm[tp][0]

    def _catch_up(self, max_passes: int) -> None:
        assert self.shadow is not None
        for _ in range(max_passes):
            wm = self.shadow.watermarks()
            targets = self._targets(read_checkpoints(self.admin, TRADING), wm)
            behind = self.shadow.behind(targets)
            if behind <= self.options.batch_size and self.result.passes > 0:
                return
            applied = self.shadow.advance(self.work, targets)
            self.result.passes += 1
            self.emit("pass", {"pass": self.result.passes, "applied": applied, "events": self.shadow.events,
                               "behind": self.shadow.behind(targets)})

    def _wait_for_older_transactions(self) -> None:
        """Wait until every transaction that began before now has ended (bounded): afterwards a
        reader's snapshot, whenever it first reads the swapped-in tables, sees a complete shadow."""
        ours = [self.admin.info.backend_pid, self.work.info.backend_pid]
        query = ("select l.pid, l.virtualxid from pg_locks l join pg_stat_activity a on a.pid = l.pid "
                 "where l.locktype = 'virtualxid' and l.granted and l.mode = 'ExclusiveLock' "
                 "and a.datname = current_database() and a.backend_type = 'client backend' "
                 "and l.pid <> all(%s)")
        older = set(self.admin.execute(query, (ours,)).fetchall())
        if not older:
            return
        self.emit("waiting", {"transactions": len(older), "pids": sorted({pid for pid, _ in older})})
        deadline = time.monotonic() + self.options.reader_wait_s
        while True:
            older &= set(self.admin.execute(query, (ours,)).fetchall())
            if not older:
                return
            if time.monotonic() >= deadline:
                pids = sorted({pid for pid, _ in older})
                self.result.older_transactions_ignored = pids
                self._warn(f"transactions older than the shadow still open after {self.options.reader_wait_s:g} s "
                           f"(pids {', '.join(map(str, pids))}): if one runs at REPEATABLE READ and reads the "
                           f"projection tables only after the swap, it sees them as of its old snapshot")
                return
            if self.stop_requested():
                raise Interrupted("interrupted")
            time.sleep(0.2)

    # -- the swap ----------------------------------------------------------------------------------

    def _swap(self) -> None:
        assert self.shadow is not None
        deadline = time.monotonic() + self.options.swap_timeout_s
        while True:
            self.result.swap_attempts += 1
            counters = (self.shadow.events, self.shadow.dead_letters)
            try:
                with self.work.transaction():
                    frozen, locked = self._swap_once(deadline)
                committed = time.monotonic()
                self.result.seconds_live_paused = committed - frozen
                self.result.seconds_readers_blocked = committed - locked
                self.emit("swapped", {"live_paused_s": self.result.seconds_live_paused,
                                      "readers_blocked_s": self.result.seconds_readers_blocked})
                return
            except Retry as e:
                if (self.shadow.events, self.shadow.dead_letters) != counters:
                    self.shadow.resync(self.work)
                    self.shadow.events, self.shadow.dead_letters = counters
                if time.monotonic() >= deadline:
                    raise RebuildError(f"could not swap within {self.options.swap_timeout_s:g} s ({e}); "
                                       f"nothing was swapped; run the rebuild again, or with a longer "
                                       f"--swap-timeout") from None
                self.emit("retry", {"attempt": self.result.swap_attempts, "reason": str(e)})
                time.sleep(random.uniform(0.05, 0.3))

    def _set_lock_timeout(self, seconds: float) -> None:
        self.work.execute("select set_config('lock_timeout', %s, true)", (f"{max(int(seconds * 1000), 1)}ms",))

    def _swap_once(self, deadline: float) -> tuple[float, float]:
        """One attempt, inside the caller's transaction; returns when the live projection was
        paused and when readers were locked out (monotonic clock)."""
        assert self.shadow is not None
        w, shadow = self.work, self.shadow
        # a. Freeze the live projection: its writers wait, readers go on.
        self._set_lock_timeout(self.options.freeze_timeout_s)
        try:
            w.execute("lock table public.orders, public.executions, public.positions, public.marks in share mode")
            w.execute("lock table public.dead_letters, public.projection_checkpoints in exclusive mode")
        except (pg_errors.LockNotAvailable, pg_errors.DeadlockDetected) as e:
            raise Retry("the live projection's writes could not be paused: " + first_line(e)) from e
        frozen = time.monotonic()
        self.emit("frozen", {})
        live = read_checkpoints(w, TRADING)
        wm = shadow.watermarks()
        # b. The shadow exactly at the live offsets; compare like for like.
        shadow.advance(w, {tp: min(o, wm[tp][1]) for tp, o in live.items() if tp in wm})
        self.result.old_offsets = dict(live)
        self.result.compared_offsets = dict(shadow.pos)
        differing: set[TP] = set()
        if self.options.checksum:
            old, new = (partition_sums(w, s, self.settings) for s in ("public", self.shadow_schema))
            self.result.comparison = [TableComparison(t, table_checksum(old[t]), table_checksum(new[t]))
                                      for t in (*TABLES, "dead_letters")]
            differing = {tp for t in old for tp in set(old[t]) | set(new[t]) if old[t].get(tp) != new[t].get(tp)}
            self.result.differing_partitions = sorted(differing)
        # c. On to the end of the log.
        shadow.advance(w, {tp: high for tp, (_low, high) in wm.items()})
        final = dict(shadow.pos)
        generation = read_generation(w, TRADING) + 1
        # d. Lock out readers, briefly, without ever becoming a deadlock victim's cause.
        views = self._dependent_views()
        self.emit("locking", {})
        self._lock_for_swap(views, deadline)
        locked = time.monotonic()
        self.emit("locked", {})
        # The lock timeout of the last attempt (short: readers wait) is still in force: a lock
        # that takes longer from here on (say, a `checkpoints prune` holding snapshot rows) is a
        # retry of the whole attempt, like a timed-out lock before, not the end of the rebuild.
        try:
            self._exchange(views, final, generation)
        except (pg_errors.LockNotAvailable, pg_errors.DeadlockDetected) as e:
            raise Retry("a lock needed after readers were locked out was not granted in time: "
                         + first_line(e)) from e
        # g. Commit (when the caller's transaction block ends).
        self.result.new_offsets = {tp: o for tp, o in final.items() if o is not None}
        self.result.events, self.result.dead_letters = shadow.events, shadow.dead_letters
        return frozen, locked

    def _exchange(self, views: list[View], final: dict[TP, int | None], generation: int) -> None:
        """Swap steps e and f, with readers locked out."""
        assert self.shadow is not None
        w = self.work
        # e. The tables change places; indexes, grants and views follow.
        self._move_tables(views)
        # f. Offsets and dead letters follow the tables. The next generation fences every running
        #    projector at its next batch, in every partition (an idle one's offset is unchanged).
        with w.cursor() as cur:
            cur.execute("delete from projection_checkpoints where projection in (%s, %s)",
                        (TRADING, self.shadow.name))
            cur.executemany("insert into projection_checkpoints (projection, topic, partition, next_offset, "
                            "generation) values (%s, %s, %s, %s, %s)",
                            [(TRADING, t, p, o, generation) for (t, p), o in final.items() if o is not None])
        self.result.generation = generation
        # Snapshots too: the old ones were folded by the code this rebuild replaces.
        snapshots.hand_over(w, self.shadow.name, TRADING)
        self._swap_dead_letters()
        w.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(self.shadow_schema)))

    def _dependent_views(self) -> list[View]:
        """Every view bound to the public projection tables, with its definition as written against
        `public` (the transaction's search_path), so re-running it binds the new tables."""
        self.work.execute("select set_config('search_path', 'public', true)")
        oids = self._table_oids(self.work, "public")
        rows = self.work.execute(
            "select distinct v.oid, n.nspname, v.relname, v.relkind, v.reloptions, pg_get_viewdef(v.oid) "
            "from pg_depend d join pg_rewrite r on d.classid = 'pg_rewrite'::regclass and d.objid = r.oid "
            "join pg_class v on v.oid = r.ev_class join pg_namespace n on n.oid = v.relnamespace "
            "where d.refclassid = 'pg_class'::regclass and d.refobjid = any(%s) and v.oid <> all(%s) "
            "order by 1", (oids, oids)).fetchall()
        if any(kind != "v" for _o, _s, _n, kind, _opt, _d in rows):
            raise RebuildError("a materialized view depends on the projection tables: refusing to swap (drop it "
                               "before the rebuild and create it again after)")
        return [View(oid, schema, name, opts, definition.strip().rstrip(";"))
                for oid, schema, name, _k, opts, definition in rows]

    def _lock_for_swap(self, views: list[View], deadline: float) -> None:
        w = self.work
        deadlock_s = float(one_row(w.execute(
            "select extract(epoch from current_setting('deadlock_timeout')::interval)"))[0])
        per_attempt = min(self.options.lock_timeout_s, deadlock_s / 2)
        shadow_views = [r[0] for r in w.execute(
            "select relname from pg_class where relnamespace = %s::regnamespace and relkind = 'v' order by oid",
            (self.shadow_schema,))]
        targets = ([sql.Identifier(v.schema, v.name) for v in views]
                   + [sql.Identifier(self.shadow_schema, v) for v in shadow_views]  # dropped with the shadow
                   + [sql.Identifier("public", t) for t in TABLES]
                   + [sql.Identifier(self.shadow_schema, t) for t in TABLES])
        statement = sql.SQL("lock table {} in access exclusive mode").format(sql.SQL(", ").join(targets))
        failed = 0
        while True:
            self.result.reader_lock_attempts += 1
            try:
                with w.transaction():  # a savepoint: a timed-out attempt releases what it got
                    # Each lock wait and the whole statement end before deadlock_timeout could make a
                    # waiting reader the victim of a lock cycle with us: we give way, never the reader.
                    self._set_lock_timeout(per_attempt)
                    w.execute("select set_config('statement_timeout', %s, true)",
                              (f"{max(int(per_attempt * 1000), 1)}ms",))
                    w.execute(statement)
                w.execute("reset statement_timeout")
                return
            except (pg_errors.LockNotAvailable, pg_errors.DeadlockDetected, pg_errors.QueryCanceled):
                failed += 1
                self.emit("lock_wait", {"failed": failed})
                if time.monotonic() >= deadline:
                    oids = self._table_oids(w, "public") + [v.oid for v in views]
                    pids = [r[0] for r in w.execute(
                        "select distinct pid from pg_locks where relation = any(%s) and granted "
                        "and pid <> pg_backend_pid() order by 1", (oids,))]
                    raise RebuildError(f"could not lock the projection tables for the swap within "
                                       f"{self.options.swap_timeout_s:g} s: readers hold them "
                                       f"(pids {', '.join(map(str, pids)) or '?'}); nothing was swapped; run the "
                                       f"rebuild again when they are done, or with a longer --swap-timeout") from None
                time.sleep(random.uniform(0.5, 1.0) * min(0.02 * 2 ** failed, 1.0))  # let queued readers through

    def _move_tables(self, views: list[View]) -> None:
        w, old, shadow = self.work, sql.Identifier(self.old_schema), sql.Identifier(self.shadow_schema)
        if [v.oid for v in self._dependent_views()] != [v.oid for v in views]:
            raise Retry("the views on the projection tables changed during the swap")
        for t in TABLES:
            if table_shape(w, "public", t) != table_shape(w, self.shadow_schema, t):
                raise RebuildError(f"public.{t} changed (a migration?) while the shadow was being built: "
                                   f"nothing was swapped; run the rebuild again")
        w.execute(sql.SQL("create schema {}").format(old))
        for t in TABLES:
            w.execute(sql.SQL("alter table public.{} set schema {}").format(sql.Identifier(t), old))
        for t in TABLES:
            w.execute(sql.SQL("alter table {}.{} set schema public").format(shadow, sql.Identifier(t)))
        for t in TABLES:
            take_over_identity(w, self.old_schema, t)
        for v in views:
            options = (sql.SQL(" with ({})").format(sql.SQL(", ").join(map(sql.SQL, v.options)))
                       if v.options else sql.SQL(""))
            w.execute(sql.SQL("create or replace view {}{} as {}").format(
                sql.Identifier(v.schema, v.name), options, sql.SQL(v.definition)))

    def _swap_dead_letters(self) -> None:
        """This projection's dead letters become the shadow's (projections.rebuild.letters)."""
        newly, self.result.no_longer_refused = swap_letters(self.work, self.old_schema, self.shadow_schema)
        self.result.newly_refused = len(newly)
        self._relay_after_swap = sorted({(t, p) for t, p, _o in newly})

    def _relay_newly_refused(self) -> None:
        failed = relay_letters(self.settings, self._relay_after_swap)
        if failed is not None:
            self._warn(f"dead letters not relayed to {self.settings.topic_deadletter} yet ({failed}): "
                       "a projector relays them when it next loads their partitions")

    def _drop_old(self) -> None:
        if self.options.keep_old:
            self.result.old_schema_kept = True
            return
        old = sql.Identifier(self.old_schema)
        try:
            with self.admin.transaction():
                self.admin.execute("select set_config('lock_timeout', '5s', true)")
                self.admin.execute(sql.SQL("drop table {}").format(sql.SQL(", ").join(
                    sql.Identifier(self.old_schema, t) for t in (*TABLES, "dead_letters"))))
                self.admin.execute(sql.SQL("drop schema {}").format(old))
            self.emit("dropped", {"schema": self.old_schema})
        except psycopg.Error as e:
            self.result.old_schema_kept = True
            self._warn(f"kept {self.old_schema} (could not drop it: {first_line(e)}); drop it with "
                       f"`drop schema {self.old_schema} cascade` once nothing needs it")
