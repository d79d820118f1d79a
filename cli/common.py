"""What every command shares: settings from the environment, user-error handling, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console

from backbone.errors import BackboneError, ConfigError
from backbone.settings import Settings

# Piped output is read by people too: never truncate table columns to 80 characters there.
_WIDTH = None if sys.stdout.isatty() else 250
# No markup: printed values come from records and users ("ACC[/]" crashed the table, "[red]X"
# lost its brackets); styles are given as rich.text.Text where wanted.
console = Console(highlight=False, soft_wrap=True, width=_WIDTH, markup=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, width=_WIDTH, markup=False)


def load_settings() -> Settings:
    """Read the settings once; bad configuration is a user error, not a traceback."""
    try:
        return Settings()
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        env = f"BACKBONE_{field.upper()}" if first["loc"] else "BACKBONE_*"
        err_console.print(f"error: invalid configuration {env}: {first['msg']}")
        raise typer.Exit(code=2) from e
    except ConfigError as e:  # raised by a validator that names the variable itself
        err_console.print(f"error: {e}", markup=False)
        raise typer.Exit(code=2) from e


@contextmanager
def user_errors() -> Iterator[None]:
    """Expected failures end with a one-line message and exit code 1."""
    try:
        yield
    except BackboneError as e:
        err_console.print(f"error: {e}", markup=False)
        raise typer.Exit(code=1) from e


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def canonical_value(value: Any) -> Any:
    """A database value in the canonical JSON form (the rules of backbone.codec.json_form):
    decimals as exact plain strings, times ISO-8601 UTC with microseconds and Z."""
    from datetime import datetime
    from decimal import Decimal

    from backbone.codec import json_form

    if isinstance(value, Decimal):
        return json_form.format_decimal(value)
    if isinstance(value, datetime):
        return json_form.format_datetime(value)
    return value
