"""`backbone config show`: the effective settings, secrets masked."""

from __future__ import annotations

import typer

from cli import tables
from cli.common import JsonFlag, console, load_settings, print_json

app = typer.Typer(help="Inspect configuration (BACKBONE_* environment variables and .env).",
                  no_args_is_help=True)


@app.command()
def show(json_out: JsonFlag = False) -> None:
    """Print every setting with its environment variable; secrets are masked."""
    values = load_settings().display()
    if json_out:
        print_json(values)
        return
    console.print(tables.table([tables.column(h, tables.TEXT) for h in ("setting", "environment variable", "value")],
                               ((name, f"BACKBONE_{name.upper()}", value) for name, value in values.items())))
