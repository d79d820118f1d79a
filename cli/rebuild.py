"""`backbone rebuild NAME`: rebuild a projection from the log and swap it in, zero downtime."""

from __future__ import annotations

import logging
import signal
from typing import Annotated, Any

import typer
from rich.text import Text

from cli import tables
from cli.common import console, err_console, kafka_reachable, load_settings, print_json, user_errors
from projections import rebuild as procedure
from projections.rebuild.model import tp_names


def _progress(kind: str, info: dict[str, Any]) -> None:
    """Progress lines on stderr (stdout carries the result)."""
    if kind == "shadow":
        err_console.print(f"building shadow schema {info['schema']}…")
    elif kind == "seeded":
        err_console.print(f"seeded from snapshots: {info['partitions']} of {info['of']} partitions, "
                          f"{info['records']:,} records not read again")
    elif kind == "pass":
        err_console.print(f"pass {info['pass']}: {info['applied']:,} records applied ({info['events']:,} in all), "
                          f"{info['behind']:,} behind the live projection")
    elif kind == "batch":
        err_console.print(f"  … {info['events']:,} records")
    elif kind == "waiting":
        err_console.print(f"waiting for {info['transactions']} transaction(s) older than the shadow to end "
                          f"(pids {', '.join(map(str, info['pids']))})…")
    elif kind == "frozen":
        err_console.print("swap: live projection paused, catching up the tail and comparing…")
    elif kind == "retry":
        err_console.print(f"swap: attempt {info['attempt']} gave way ({info['reason']}), retrying…")
    elif kind == "locked":
        err_console.print("swap: tables locked for readers, switching…")
    elif kind == "swapped":
        err_console.print(f"swapped: tables locked for readers {info['readers_blocked_s'] * 1000:,.0f} ms, "
                          f"live projection paused {info['live_paused_s']:,.2f} s")
    elif kind == "dropped":
        err_console.print(f"dropped the old tables ({info['schema']})")
    elif kind == "warning":
        err_console.print(f"warning: {info['message']}", markup=False)


def _report(result: procedure.RebuildResult) -> None:
    source = "the log" if not result.seeded_offsets else (
        f"snapshots of {len(result.seeded_offsets)} partition(s) and the log after them")
    console.print(Text.assemble("rebuilt ", (result.projection, "bold"),
                                f" from {source}: {result.events:,} records read, {result.dead_letters:,} dead "
                                f"letters, {result.passes} pass(es), swapped in one transaction"))
    if result.comparison is not None:
        columns = [tables.column(h, kind) for h, kind in (
            ("table", tables.TEXT), ("old rows", tables.COUNT), ("old checksum", tables.TEXT),
            ("new rows", tables.COUNT), ("new checksum", tables.TEXT), ("", tables.TEXT))]
        console.print(tables.table(columns, (
            (c.table, c.old.rows, c.old.checksum, c.new.rows, c.new.checksum,
             "same" if c.match else Text("DIFFERENT", style="bold red")) for c in result.comparison),
            title="old vs new state, at the same offsets" if result.comparable
            else "old vs new state (offsets differ: not like for like)"))
        if result.identical is True:
            console.print("the rebuilt state is identical to the old one")
        elif result.identical is False:
            console.print(f"the rebuilt state differs in {tp_names(result.differing_partitions)}")
    if result.newly_refused or result.no_longer_refused:
        console.print(f"dead letters: {result.newly_refused} newly refused (sent to the dead-letter topic), "
                      f"{result.no_longer_refused} no longer refused")
    console.print(f"old tables: {'kept in ' + result.old_schema if result.old_schema_kept else 'dropped'}; "
                  f"{result.seconds_total:,.1f} s in all")


def rebuild(
    name: Annotated[str, typer.Argument(help="the projection to rebuild (trading)")],
    keep_old: Annotated[bool, typer.Option("--keep-old",
                                           help="keep the old tables in schema rebuild_old_<ts>")] = False,
    checksum: Annotated[bool, typer.Option(
        "--checksum/--no-checksum",
        help="compare old and new state at the same offsets (pauses the live projection while it runs)")] = True,
    batch_size: Annotated[int, typer.Option(min=1, max=100_000, help="records per shadow transaction")] = 5000,
    swap_timeout: Annotated[float, typer.Option(min=1, help="seconds allowed for the swap, all attempts")] = 120.0,
    lock_timeout: Annotated[float, typer.Option(
        min=0.01, help="seconds a swap attempt may make readers wait (capped at deadlock_timeout / 2)")] = 0.2,
    reader_wait: Annotated[float, typer.Option(
        min=0, help="seconds to wait for transactions older than the shadow before swapping")] = 60.0,
    from_snapshot: Annotated[bool, typer.Option(
        "--from-snapshot",
        help="start each partition from the live projection's newest snapshot instead of the log's beginning "
             "(only when the projection code is unchanged: a snapshot holds what the old code folded)")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Rebuild a projection from the beginning of the log (or its snapshots) and swap it in atomically.

    The rebuild projects into a shadow schema while the live projection keeps serving, catches
    up with it, then swaps the tables in one transaction: SQL readers see the old state or the
    new one, never an empty or partial one, and a running projector resumes exactly once on the
    new tables. Prints a checksum per table of the old and the new state (taken at the same
    offsets). Progress goes to stderr. See docs/rebuild.md.
    """
    if name not in procedure.PROJECTIONS:
        err_console.print(f"error: unknown projection {name!r} (known: {', '.join(procedure.PROJECTIONS)})",
                          markup=False)
        raise typer.Exit(code=1)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    kafka_reachable(settings)
    stop = {"requested": False}

    def handler(signum: int, _frame: object) -> None:
        stop["requested"] = True
        err_console.print(f"{signal.Signals(signum).name}: stopping "
                          "(nothing will be swapped unless the switch is under way)")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with user_errors():
            result = procedure.rebuild(
                settings, name,
                procedure.RebuildOptions(batch_size=batch_size, keep_old=keep_old, checksum=checksum,
                                         lock_timeout_s=lock_timeout, swap_timeout_s=swap_timeout,
                                         reader_wait_s=reader_wait, from_snapshot=from_snapshot),
                on_event=_progress, stop_requested=lambda: stop["requested"])
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if json_out:
        print_json(result.as_json())
    else:
        _report(result)
