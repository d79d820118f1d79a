"""`backbone positions | pnl | orders`: read the projected state from Postgres."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
import typer

from backbone import db
from backbone.domain.events import OrderStatus
from cli import tables
from cli.common import canonical_value, console, err_console, load_settings, print_json, user_errors

AccountOpt = Annotated[str | None, typer.Option("--account", "-a", help="only this account")]
SymbolOpt = Annotated[str | None, typer.Option("--symbol", "-s", help="only this symbol")]
JsonOpt = Annotated[bool, typer.Option("--json", help="canonical JSON (decimals as strings)")]
LimitOpt = Annotated[int, typer.Option("--limit", min=1, help="at most this many rows")]


def _query(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    settings = load_settings()
    with user_errors():
        engine = db.make_engine(settings)
        try:
            with engine.connect() as conn:
                return [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]
        except sa.exc.OperationalError as e:
            raise db.connection_error(e, settings.database_url_safe()) from e
        except sa.exc.ProgrammingError as e:
            raise db.DatabaseError(f"{db.first_line(e)}; has `backbone db upgrade` run?") from e
        finally:
            engine.dispose()


def _where(**filters: Any) -> tuple[str, dict[str, Any]]:
    clauses = [f"{col} = :{col}" for col, value in filters.items() if value is not None]
    return (" where " + " and ".join(clauses) if clauses else ""), {k: v for k, v in filters.items() if v is not None}


def _emit(rows: list[dict[str, Any]], columns: list[str], as_json: bool, limit: int | None = None) -> None:
    """Print the rows; the query asked for limit + 1, so a cut is said (on stderr, JSON stays JSON)."""
    if limit is not None and len(rows) > limit:
        rows = rows[:limit]
        err_console.print(f"more than {limit:,} rows: showing the first {limit:,} (raise --limit)")
    if as_json:
        print_json([{k: canonical_value(v) for k, v in row.items()} for row in rows])
        return
    console.print(tables.table(columns, rows))
    console.print(f"{len(rows)} row(s)")


def positions(account: AccountOpt = None, symbol: SymbolOpt = None, json_out: JsonOpt = False,
              flat: Annotated[bool, typer.Option("--include-flat", help="also positions with qty 0")] = False,
              limit: LimitOpt = 1000) -> None:
    """Positions with average price, realized/unrealized P&L and the mark used with its time
    (view positions_pnl). Tables show P&L to the cent (rounded half-even), prices to 8 places at
    most; --json gives every value exact."""
    where, params = _where(account=account, symbol=symbol)
    if not flat:
        where += (" and" if where else " where") + " qty <> 0"
    rows = _query(f"select * from positions_pnl_exact{where} order by account, symbol limit :limit",
                  params | {"limit": limit + 1})
    _emit(rows, ["account", "symbol", "qty", "avg_px", "mark_price", "mark_time", "realized_pnl", "unrealized_pnl",
                 "commission", "total_pnl"], json_out, limit)


def pnl(account: AccountOpt = None, json_out: JsonOpt = False) -> None:
    """P&L by account: realized, unrealized, commission, total (view pnl_by_account). The table
    shows money to the cent, rounded half-even; --json gives every value exact."""
    where, params = _where(account=account)
    rows = _query(f"select * from pnl_by_account_exact{where} order by account", params)
    _emit(rows, ["account", "open_positions", "realized_pnl", "unrealized_pnl", "commission", "total_pnl",
                 "missing_marks"], json_out)


def orders(account: AccountOpt = None, symbol: SymbolOpt = None,
           status: Annotated[OrderStatus | None, typer.Option("--status", help="only this order status")] = None,
           open_only: Annotated[bool, typer.Option("--open", help="only working orders (view open_orders)")] = False,
           json_out: JsonOpt = False, limit: LimitOpt = 100) -> None:
    """Orders with status, quantities and average price, newest first."""
    where, params = _where(account=account, symbol=symbol, status=status.value if status else None)
    source = "open_orders" if open_only else "orders"
    rows = _query(f"select order_id, account, symbol, side, order_type, time_in_force, status, order_qty, price, "
                  f"cum_qty, leaves_qty, avg_px, last_event_time from {source}{where} "
                  "order by last_event_time desc, order_id limit :limit", params | {"limit": limit + 1})
    _emit(rows, ["order_id", "account", "symbol", "side", "status", "order_qty", "price", "cum_qty", "leaves_qty",
                 "avg_px", "last_event_time"], json_out, limit)
