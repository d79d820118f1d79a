"""The desk's page: the Streamlit script `backbone dashboard` serves (dashboard.server).

Everything on it comes from one `queries.read` (one transaction, as the read-only role) and is
written by `dashboard.formatting`; the page redraws itself every --refresh seconds
(a Streamlit fragment with run_every), and events/s compare two consecutive reads.
"""

from __future__ import annotations

import argparse
import html
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import altair as alt
import pandas as pd
import sqlalchemy as sa
import streamlit as st
from sqlalchemy import Engine

from backbone import db
from backbone.errors import BackboneError
from backbone.settings import Settings
from dashboard import formatting as fmt
from dashboard import lag, queries

_READ_FAILURES: tuple[type[Exception], ...] = (BackboneError, *db.DATABASE_FAILURES)
Column = tuple[str, str, Callable[[Any], str], bool]  # key, heading, formatter, right-aligned


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _yes(value: Any) -> str:
    return "yes" if value else ""


def _rate(value: float | None) -> str:
    return "" if value is None else f"{value:,.1f}"


def _age(at: datetime) -> Callable[[Any], str]:
    def age(t: datetime | None) -> str:
        if t is None:
            return ""
        seconds = max((at - t).total_seconds(), 0)
        if seconds < 120:
            return f"{seconds:.0f} s ago"
        return f"{seconds / 60:,.0f} min ago" if seconds < 7200 else f"{seconds / 3600:,.0f} h ago"
    return age


PNL = [("account", "account", _text, False), ("open_positions", "open positions", _text, True),
       ("realized_pnl", "realized", fmt.money, True), ("unrealized_pnl", "unrealized", fmt.money, True),
       ("commission", "commission", fmt.money, True), ("total_pnl", "total P&L", fmt.money, True),
       ("missing_marks", "missing marks", _yes, False)]
POSITIONS = [("account", "account", _text, False), ("symbol", "symbol", _text, False), ("qty", "qty", fmt.qty, True),
             ("avg_px", "avg price", fmt.price, True), ("mark_price", "mark", fmt.price, True),
             ("mark_time", "mark time", fmt.when, False), ("exposure", "exposure", fmt.money, True),
             ("realized_pnl", "realized", fmt.money, True), ("unrealized_pnl", "unrealized", fmt.money, True),
             ("commission", "commission", fmt.money, True), ("total_pnl", "total P&L", fmt.money, True)]
EXPOSURE = [("symbol", "symbol", _text, False), ("net_qty", "net qty", fmt.qty, True),
            ("mark_price", "mark", fmt.price, True), ("net_notional", "net exposure", fmt.money, True),
            ("gross_notional", "gross exposure", fmt.money, True), ("accounts", "accounts", _text, True)]
FILLS = [("exec_time", "time", fmt.when, False), ("account", "account", _text, False),
         ("symbol", "symbol", _text, False), ("side", "side", _text, False), ("qty", "qty", fmt.qty, True),
         ("price", "price", fmt.price, True), ("commission", "commission", fmt.money, True),
         ("liquidity", "liq.", _text, False), ("order_id", "order", _text, False),
         ("busted", "busted", _yes, False), ("corrected", "corrected", _yes, False)]
ORDERS = [("last_event_time", "time", fmt.when, False), ("order_id", "order", _text, False),
          ("account", "account", _text, False), ("symbol", "symbol", _text, False), ("side", "side", _text, False),
          ("order_type", "type", _text, False), ("status", "status", _text, False),
          ("order_qty", "qty", fmt.qty, True), ("price", "price", fmt.price, True),
          ("cum_qty", "filled", fmt.qty, True), ("leaves_qty", "leaves", fmt.qty, True),
          ("avg_px", "avg price", fmt.price, True)]
REASONS = [("reason", "reason", _text, False), ("count", "count", lambda n: f"{n:,}", True),
           ("last", "last", fmt.when, False)]
DEAD = [("created_at", "time", fmt.when, False), ("reason", "reason", _text, False),
        ("source_topic", "topic", _text, False), ("source_partition", "partition", _text, True),
        ("source_offset", "offset", _text, True), ("detail", "detail", _text, False)]
ALERTS = [("group_id", "group", _text, False), ("topic", "topic", _text, False), ("rule", "rule", _text, False),
          ("phase", "phase", _text, False), ("severity", "severity", _text, False), ("value", "value", _text, True),
          ("since", "since", fmt.when, False)]
LAG = [("group", "group", _text, False), ("source", "source", _text, False), ("topic", "topic", _text, False),
       ("status", "status", _text, False), ("lag_records", "lag (records)", fmt.count, True),
       ("lag_seconds", "lag (s)", fmt.seconds, True),
       ("lagging", "partitions lagging", lambda n: f"{n:,}", True), ("reason", "why", _text, False)]

_STYLE = """<style>
table.desk { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 0.85rem; width: 100%; }
table.desk th, table.desk td { padding: 2px 8px; border-bottom: 1px solid #e6e6e6; white-space: nowrap; }
table.desk th { text-align: left; font-weight: 600; }
table.desk .num { text-align: right; }
table.desk tr.total td { font-weight: 700; border-top: 2px solid #999; }
table.desk td.neg { color: #b00020; }
div.desk-wrap { overflow-x: auto; }
div.desk-wrap.tall { max-height: 420px; overflow-y: auto; }
</style>"""


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], *, name: str,
          total: Mapping[str, Any] | None = None) -> str:
    """An HTML table of `rows` (numbers right-aligned, negative money red), `total` as its last row."""
    head = "".join(f'<th class="{"num" if right else ""}">{html.escape(h)}</th>' for _, h, _, right in columns)
    body = []
    for row, css in [*((r, "") for r in rows), *([(total, "total")] if total else [])]:
        cells = []
        for key, _, render, right in columns:
            text = render(row.get(key))
            classes = " ".join(c for c in ("num" if right else "", "neg" if text.startswith("-") else "") if c)
            cells.append(f'<td class="{classes}" data-column="{key}">{html.escape(text)}</td>')
        body.append(f'<tr class="{css}">{"".join(cells)}</tr>')
    if not rows:
        body.append(f'<tr><td colspan="{len(columns)}">none</td></tr>')
    return (f'<table class="desk" data-table="{name}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _show(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], name: str,
          total: Mapping[str, Any] | None = None) -> None:
    """The table, scrolling within 420 px when it is long (positions: one row per account and symbol)."""
    tall = " tall" if len(rows) > 15 else ""
    st.html(f'{_STYLE}<div class="desk-wrap{tall}">{table(rows, columns, name=name, total=total)}</div>')


def _health(snapshot: queries.Snapshot) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per projection and topic (its partitions' offsets added up, events/s since the last read,
    the newest and oldest commit), and per partition."""
    previous: dict[tuple[str, str, int], tuple[int, datetime]] = st.session_state.get("checkpoints", {})
    rates = queries.rates(previous, snapshot.checkpoints, snapshot.at)
    st.session_state["checkpoints"] = {(r["projection"], r["topic"], r["partition"]): (r["next_offset"], snapshot.at)
                                       for r in snapshot.checkpoints}
    partitions = [{**r, "rate": rates[(r["projection"], r["topic"], r["partition"])]} for r in snapshot.checkpoints]
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in partitions:
        row = out.setdefault((r["projection"], r["topic"]), {
            "projection": r["projection"], "topic": r["topic"], "partitions": 0, "next_offset": 0, "rate": None,
            "updated_at": r["updated_at"], "oldest_commit": r["updated_at"]})
        row["partitions"] += 1
        row["next_offset"] += r["next_offset"]
        if r["rate"] is not None:
            row["rate"] = (row["rate"] or 0.0) + r["rate"]
        row["updated_at"] = max(row["updated_at"], r["updated_at"])
        row["oldest_commit"] = min(row["oldest_commit"], r["updated_at"])
    return list(out.values()), partitions


def _steps(points: Sequence[queries.Point], value: str, title: str) -> alt.Chart:
    """A line per account that holds its value until the next event (P&L moves only at events)."""
    data = pd.DataFrame({"time": [p.time for p in points], "account": [p.account for p in points],
                         value: [float(getattr(p, value)) for p in points]})  # floats: for drawing only
    return alt.Chart(data, height=280).mark_line(interpolate="step-after").encode(
        x=alt.X("time:T", title="time (UTC)", scale=alt.Scale(type="utc"), axis=alt.Axis(format="%H:%M:%S")),
        y=alt.Y(f"{value}:Q", title=title, axis=alt.Axis(format=",.0f")),
        color=alt.Color("account:N"),
        tooltip=["account", "time:T", alt.Tooltip(f"{value}:Q", format=",.2f")])


def _lag(board: lag.LagBoard) -> None:
    reading = board.read()
    st.caption(f"consumer lag as `backbone lag` computes it (worst partition per group and topic), "
               f"sampled {fmt.when(reading.at)} UTC")
    for problem in reading.problems:
        st.warning(f"lag unavailable: {problem}")
    _show(lag.rows(reading), LAG, "lag")


def render(engine: Engine, refresh: float, board: lag.LagBoard | None = None) -> None:
    try:
        snapshot = queries.read(engine)
    except sa.exc.ProgrammingError as e:  # a view or table missing
        st.error(f"cannot read the database: {db.first_line(e)}; has `backbone db upgrade` run?")
        return
    except _READ_FAILURES as e:  # the next redraw tries again
        st.error(f"cannot read the database: {db.first_line(e)}")
        return
    st.caption(f"as of {fmt.when(snapshot.at)} UTC · refreshes every {refresh:g} s · "
               f"{len(snapshot.pnl)} accounts · read-only")
    t = snapshot.totals
    cols = st.columns(6)
    cols[0].metric("Total P&L", fmt.money(t["total_pnl"]) or "0.00")
    cols[1].metric("Realized", fmt.money(t["realized_pnl"]) or "0.00")
    cols[2].metric("Unrealized", fmt.money(t["unrealized_pnl"]) or "n/a")
    cols[3].metric("Commission", fmt.money(t["commission"]) or "0.00")
    cols[4].metric("Open orders", f"{snapshot.open_orders:,}")
    cols[5].metric("Dead letters", f"{sum(r['count'] for r in snapshot.dead_letter_reasons):,}")

    st.subheader("P&L by account")
    _show(snapshot.pnl, PNL, "pnl", total=t)

    left, right = st.columns(2)
    with left:
        st.subheader("Intraday P&L")
        if snapshot.series:
            st.altair_chart(_steps(snapshot.series, "total_pnl", "total P&L"), width="stretch")
        else:
            st.write("no fills yet")
    with right:
        st.subheader("Gross exposure")
        if snapshot.series:
            st.altair_chart(_steps(snapshot.series, "gross_exposure", "Σ |qty| × price"),
                            width="stretch")
        else:
            st.write("no fills yet")

    st.subheader("Exposure by symbol (qty × mark)")
    marked = [r for r in snapshot.positions if r["exposure"] is not None]
    if marked:
        st.bar_chart(pd.DataFrame({"symbol": [r["symbol"] for r in marked], "account": [r["account"] for r in marked],
                                   "exposure": [float(r["exposure"]) for r in marked]}),
                     x="symbol", y="exposure", color="account", height=260)
    _show(snapshot.exposure, EXPOSURE, "exposure")

    st.subheader("Positions")
    _show(snapshot.positions, POSITIONS, "positions")

    st.subheader("Recent fills")
    _show(snapshot.fills, FILLS, "fills")
    st.subheader("Recent orders")
    _show(snapshot.orders, ORDERS, "orders")

    st.subheader("Dead letters")
    by_reason, recent = st.columns([1, 2])
    with by_reason:
        _show(snapshot.dead_letter_reasons, REASONS, "dead-letter-reasons")
    with recent:
        _show(snapshot.dead_letters, DEAD, "dead-letters")

    st.subheader("Projector health")
    age = _age(snapshot.at)
    by_topic, by_partition = _health(snapshot)
    common: list[Column] = [("projection", "projection", _text, False), ("topic", "topic", _text, False)]
    offsets: list[Column] = [("next_offset", "records applied", lambda n: f"{n:,}", True),
                             ("rate", "events/s", _rate, True), ("updated_at", "last commit", age, True)]
    _show(by_topic, [*common, ("partitions", "partitions", _text, True), *offsets,
                     ("oldest_commit", "oldest partition commit", age, True)], "health")
    _show(by_partition, [*common, ("partition", "partition", _text, True), *offsets], "health-partitions")
    if board is not None:
        _lag(board)  # after everything Postgres gave: a Kafka that does not answer holds up this table only
    st.caption("lag monitor alerts (`backbone lag monitor`)")
    _show(snapshot.alerts, ALERTS, "alerts")


def _refresh_seconds(argv: Sequence[str]) -> float:
    parser = argparse.ArgumentParser()
    parser.add_argument("--refresh", type=float, default=5.0)
    return float(parser.parse_known_args(list(argv))[0].refresh)


@st.cache_resource
def _engine() -> Engine:
    return queries.reader_engine(Settings())


@st.cache_resource
def _lag_board(refresh: float) -> lag.LagBoard:
    return lag.LagBoard(Settings(), refresh)  # one for the server's life: its Kafka clients are reused


def main() -> None:
    refresh = _refresh_seconds(sys.argv[1:])
    st.set_page_config(page_title="Desk · trading-backbone", layout="wide")
    st.title("Desk")
    engine = _engine()
    board = _lag_board(refresh)

    @st.fragment(run_every=refresh)
    def live() -> None:
        render(engine, refresh, board)

    live()


if __name__ == "__main__":
    main()
