"""`backbone dashboard`: the desk's web page (docs/dashboard.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from backbone.errors import ConfigError
from cli.common import console, load_settings, user_errors

_DESK = ("streamlit", "pandas")  # what the desk extra installs


def dashboard(
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="HTTP port")] = 8501,
    address: Annotated[str, typer.Option("--address", help="address to listen on (0.0.0.0: every interface)")]
    = "127.0.0.1",
    refresh: Annotated[float, typer.Option("--refresh", min=0.5, help="seconds between redraws")] = 5.0,
) -> None:
    """Serve the desk's page: P&L and positions by account, intraday P&L and exposure, recent
    fills and orders, dead letters, projector health and consumer lag. Reads Postgres as
    BACKBONE_READER_DATABASE_URL, a login of the read-only role, only, and Kafka only to sample
    the lag (no group joined, no offset committed). Runs in the foreground; Ctrl-C stops it."""
    settings = load_settings()
    with user_errors():
        try:
            from dashboard import queries, server
        except ModuleNotFoundError as e:
            if e.name not in _DESK:
                raise
            raise ConfigError(f"the dashboard needs {e.name}: pip install 'trading-backbone[desk]'") from e
        server.check_port(address, port)
        engine = queries.reader_engine(settings)
        try:
            role = queries.check_read_only(engine, settings)
        finally:
            engine.dispose()
    shown = "localhost" if address in ("0.0.0.0", "::") else address  # noqa: S104
    console.print(f"dashboard: http://{shown}:{port} (reads as {role}; Ctrl-C stops)")
    server.serve(port=port, address=address, refresh=refresh)
