"""`backbone schemas check`: every schema version stays backward compatible."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from backbone.codec import compatibility
from cli.common import console, err_console

app = typer.Typer(help="Avro schema tools.", no_args_is_help=True)


@app.command()
def check(directory: Annotated[Path | None, typer.Option("--dir", help="schemas directory (default: shipped)")] = None
          ) -> None:
    """Check every version of each schema is backward compatible with all earlier ones.

    Uses the Apache Avro library's compatibility checker (readers of the newer schema must read
    data written with every older one). Exit 1 naming the record, versions and field otherwise.
    """
    from schemas import SCHEMAS_DIR

    problems = compatibility.check_schemas(directory or SCHEMAS_DIR)
    for problem in problems:
        err_console.print(compatibility.format_problem(problem), markup=False)
    if problems:
        raise typer.Exit(code=1)
    console.print("all schema versions are backward compatible")
