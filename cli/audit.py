"""`backbone audit verify | order | trades | export`: the audit archive's hash chains against the
log, an order's lineage, the executions of a window, the evidence pack of an order or an account
window (docs/audit.md)."""

from __future__ import annotations

import enum
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from backbone.codec.avro import AvroCodec
from backbone.db import psycopg_connection
from backbone.errors import UsageError
from cli import lineage as view
from cli.common import (
    EXIT_FAILURE,
    canonical_value,
    console,
    err_console,
    kafka_reachable,
    load_settings,
    print_json,
    user_errors,
)
from cli.replaying import JsonOpt, QuietOpt, database
from projections import audit_export as ex
from projections import audit_queries as aq
from projections.audit_verify import TP, PartitionReport, verify
from projections.replay import check_time_range, parse_time

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


@app.command("export")
def export_cmd(
    out: Annotated[Path, typer.Option("--out", help="a new (or empty) directory for the pack")],
    order_id: Annotated[str | None, typer.Argument(help="the order's id (or --account with --from and --to)")] = None,
    account: Annotated[str | None, typer.Option(help="every record of this account between --from and --to")] = None,
    from_time: Annotated[str | None, typer.Option("--from", help=(
        "with --account: from this event time, included (ISO-8601 with its UTC offset, to the microsecond)"))] = None,
    to_time: Annotated[str | None, typer.Option("--to", help="with --account: to this event time, included")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write the evidence pack of one order, or of one account over a time window, from the
    audit archive: events.jsonl and events.csv (every record in the canonical JSON form with its
    coordinates), report.html (timeline and price chart, opens offline) and manifest.json (the
    query, the verified chain heads, each file's SHA-256).

    The partitions searched are verified first, like `backbone audit verify`: a divergence
    refuses the export (exit 1), as does an order id the archive does not hold. An account
    window without records gives a pack marked empty.
    """
    settings = load_settings()
    with user_errors():
        query = _export_query(order_id, account, from_time, to_time)
        ex.check_out_dir(out)  # usage errors before any service is asked
    kafka_reachable(settings)
    with user_errors(), database(settings) as engine, \
            engine.connect().execution_options(isolation_level="REPEATABLE READ") as sa_conn:
        evidence = ex.collect(settings, psycopg_connection(sa_conn), query, datetime.now(UTC))
        files, manifest = ex.contents(evidence, settings)
        ex.write(out, files, manifest)
    if json_out:
        print_json({"out": str(out), **manifest})
        return
    what = "EMPTY: no archived record matches" if manifest["empty"] else f"{manifest['records']} records"
    console.print(f"{what}; {len(manifest['chain_heads'])} partitions verified; pack written to {out}")


def _export_query(order_id: str | None, account: str | None, from_text: str | None,
                  to_text: str | None) -> ex.ExportQuery:
    if (order_id is None) == (account is None):
        raise UsageError("give an ORDER_ID or --account A --from T1 --to T2, not both")
    if order_id is not None:
        if from_text is not None or to_text is not None:
            raise UsageError("--from and --to go with --account; an order is exported whole")
        return ex.ExportQuery(order_id=order_id)
    if from_text is None or to_text is None:
        raise UsageError("--account needs both --from and --to")
    start, end = parse_time(from_text), parse_time(to_text)
    check_time_range(start, end, options=("--from", "--to"))
    return ex.ExportQuery(account=account, from_time=start, to_time=end)
@app.command("order")
def order_cmd(
    order_id: Annotated[str | None, typer.Argument(help="the order id (or give --cl-ord-id / --exec-id)")] = None,
    cl_ord_id: Annotated[str | None, typer.Option("--cl-ord-id", help="the order with this ClOrdID")] = None,
    exec_id: Annotated[str | None, typer.Option("--exec-id", help="the order with this ExecID")] = None,
    check: Annotated[bool, typer.Option("--verify", help=(
        "re-read each record from Kafka, refold the order, compare with the orders row"))] = False,
    json_out: JsonOpt = False,
) -> None:
    """An order's whole lineage from the audit archive, in log order.

    Every event with its times, coordinates, status before and after, quantities and prices,
    and the mark, bid and ask in force; the replace chain; every fill with its busts and
    corrections and its slippage in bp; the refused records that named the order. Sequence
    numbers the archive lacks are marked `missing`. Exit 1: an unknown id, or --verify disagrees.
    """
    settings = load_settings()
    with user_errors():
        if sum(x is not None for x in (order_id, cl_ord_id, exec_id)) != 1:
            raise UsageError("give exactly one of ORDER_ID, --cl-ord-id, --exec-id")
        if check:
            kafka_reachable(settings)
        with database(settings) as engine, \
                engine.connect().execution_options(isolation_level="REPEATABLE READ") as sa_conn:
            conn = psycopg_connection(sa_conn)
            codec = AvroCodec()
            found = aq.resolve_order(conn, settings.topic_orders, order_id=order_id, cl_ord_id=cl_ord_id,
                                     exec_id=exec_id)
            lineage = aq.order_lineage(conn, settings, codec, found)
            findings = aq.verify_order(settings, conn, lineage) if check else None
    if json_out:
        print_json(view.lineage_json(lineage, findings))
    else:
        header, table, lines = view.lineage_text(lineage)
        console.print(header)
        console.print(table)
        for line in lines:
            console.print(line)
        if findings is not None:
            for f in findings:
                console.print(f"DIVERGES {f}")
            console.print("verify: OK" if not findings else f"verify: DIVERGES ({len(findings)})")
    if findings:
        raise typer.Exit(code=EXIT_FAILURE)


class TradeFormat(enum.StrEnum):
    table = "table"
    jsonl = "jsonl"
    csv = "csv"


@app.command("trades")
def trades_cmd(
    from_time: Annotated[str, typer.Option("--from", help="ISO-8601 with a UTC offset, to the microsecond")],
    to_time: Annotated[str, typer.Option("--to", help="ISO-8601 with a UTC offset; the window includes both ends")],
    account: Annotated[str | None, typer.Option("--account", "-a", help="only this account")] = None,
    symbol: Annotated[str | None, typer.Option("--symbol", "-s", help="only this symbol")] = None,
    fmt: Annotated[TradeFormat, typer.Option("--format", help="table, jsonl or csv")] = TradeFormat.table,
    out_file: Annotated[Path | None, typer.Option("--out", help="write here instead of stdout")] = None,
) -> None:
    """Every execution whose event time is in [--from, --to], from the audit archive.

    Each with its order (ClOrdID chain, status), its busts and corrections and how it stands,
    its coordinates, the mark, bid and ask in force and its slippage in bp. A naive or inverted
    window exits 2; an empty one prints no rows.
    """
    settings = load_settings()
    with user_errors():
        start, end = parse_time(from_time), parse_time(to_time)
        check_time_range(start, end, options=("--from", "--to"))
        with database(settings) as engine, \
                engine.connect().execution_options(isolation_level="REPEATABLE READ") as sa_conn:
            conn = psycopg_connection(sa_conn)
            lineages = aq.trade_lineages(conn, settings, AvroCodec(), start, end, account=account, symbol=symbol)
        rows = view.trade_rows(lineages, start, end)
        if not rows:
            err_console.print(f"no executions from {canonical_value(start)} to {canonical_value(end)}")
        if fmt is TradeFormat.table:
            if out_file is None:
                if rows:
                    console.print(view.trades_table(rows))
                return
            text = view.render_table(view.trades_table(rows)) if rows else ""
        else:
            text = view.trades_csv(rows) if fmt is TradeFormat.csv else view.trades_jsonl(rows)
        if out_file is None:
            sys.stdout.write(text)
        else:
            view.write_file(out_file, text)
