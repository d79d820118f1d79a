"""`backbone audit verify`: the audit archive's hash chains against the log (docs/audit.md)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from backbone.db import psycopg_connection
from cli.common import EXIT_FAILURE, console, err_console, kafka_reachable, load_settings, print_json, user_errors
from cli.replaying import JsonOpt, QuietOpt, database
from projections.audit_verify import TP, PartitionReport, verify

app = typer.Typer(help="The append-only audit archive of every record.", no_args_is_help=True)


class _Progress:
    """A line on stderr every few seconds of a long verification."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.at = quiet, time.monotonic()

    def __call__(self, tp: TP, checked: int) -> None:
        if not self.quiet and time.monotonic() - self.at >= 5:
            self.at = time.monotonic()
            err_console.print(f"verifying {tp[0]}[{tp[1]}]: {checked:,} records checked")


def _line(r: PartitionReport) -> str:
    where = f"{r.topic}[{r.partition}]"
    if r.divergence is not None:
        return f"{where}: DIVERGES {r.divergence}"
    head = "nothing archived" if r.head_hash is None else f"head {r.head_offset} {r.head_hash.hex()}"
    extra = f", {r.archive_only:,} no longer in the log" if r.archive_only else ""
    gaps = f", gaps {', '.join(f'{a}..{b}' for a, b in r.gaps)}" if r.gaps else ""
    return f"{where}: OK {r.checked:,} checked{extra}{gaps}; {head}"


@app.command("verify")
def verify_cmd(
    partition: Annotated[int | None, typer.Option(min=0, help="only this partition of each topic")] = None,
    from_offset: Annotated[int, typer.Option("--from-offset", min=0, help=(
        "start here (trusts the stored hash of the archived row just below)"))] = 0,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Recompute each partition's hash chain from the archive and compare it with the log.

    Prints OK with each partition's chain head (offset and hash), or its first divergence:
    the offset, the side (archive or log) and what differs. Exit code 1 on any divergence.
    """
    settings = load_settings()
    kafka_reachable(settings)
    with user_errors(), database(settings) as engine, \
            engine.connect().execution_options(isolation_level="REPEATABLE READ") as sa_conn:
        conn = psycopg_connection(sa_conn)
        reports = verify(settings, conn, partition=partition, from_offset=from_offset, progress=_Progress(quiet))
    ok = all(r.divergence is None for r in reports)
    if json_out:
        print_json({"ok": ok, "partitions": [r.as_json() for r in reports]})
    else:
        for r in reports:
            console.print(_line(r))
        console.print("OK" if ok else "DIVERGES")
    if not ok:
        raise typer.Exit(code=EXIT_FAILURE)
