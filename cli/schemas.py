"""`backbone schemas check`: every schema version stays backward compatible."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from backbone.codec import compatibility
from backbone.codec.schemas import read_schemas_dir
from cli.common import JsonFlag, console, err_console, print_json

app = typer.Typer(help="Avro schema tools.", no_args_is_help=True)


@app.command()
def check(directory: Annotated[Path | None, typer.Option("--dir", help="schemas directory (default: shipped)")] = None,
          json_out: JsonFlag = False) -> None:
    """Check every version of each schema is backward compatible with all earlier ones.

    Uses the Apache Avro library's compatibility checker (readers of the newer schema must read
    data written with every older one). Exit 1 naming the record, versions and field otherwise.
    """
    from schemas import SCHEMAS_DIR

    schemas_dir = directory or SCHEMAS_DIR
    problems = compatibility.check_schemas(schemas_dir)
    if json_out:
        records, _ = read_schemas_dir(schemas_dir) if schemas_dir.is_dir() else ({}, [])
        print_json({"ok": not problems, "directory": str(schemas_dir),
                    "records": {name: [f.version for f in files] for name, files in sorted(records.items())},
                    "problems": [{**dataclasses.asdict(p), "text": compatibility.format_problem(p)}
                                 for p in problems]})
    else:
        for problem in problems:
            err_console.print(compatibility.format_problem(problem), markup=False)
    if problems:
        raise typer.Exit(code=1)
    if not json_out:
        console.print("all schema versions are backward compatible")
