"""What every command shares: settings from the environment, user-error handling, JSON output.

Exit codes (README, "Exit codes"): 0 success; 1 a failure; 2 bad configuration or usage (typer's
own usage errors are 2 as well); 3 a service (Kafka, PostgreSQL) cannot be reached; 4 a service
refused our credentials.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
import sqlalchemy as sa
import typer
from confluent_kafka import KafkaException
from pydantic import ValidationError
from rich.console import Console

from backbone import db
from backbone.codec import json_form
from backbone.errors import (
    BackboneError,
    ConfigError,
    DatabaseAuthError,
    DatabaseUnavailable,
    KafkaAuthError,
    KafkaUnavailable,
)
from backbone.kafka import health
from backbone.settings import Settings

EXIT_FAILURE, EXIT_CONFIG, EXIT_UNAVAILABLE, EXIT_AUTH = 1, 2, 3, 4
_EXIT_CODES: tuple[tuple[tuple[type[BackboneError], ...], int], ...] = (
    ((ConfigError,), EXIT_CONFIG),
    ((KafkaUnavailable, DatabaseUnavailable), EXIT_UNAVAILABLE),
    ((KafkaAuthError, DatabaseAuthError), EXIT_AUTH),
)

# Piped output is read by people too: never truncate table columns to 80 characters there.
_WIDTH = None if sys.stdout.isatty() else 250
# Plain text: printed values come from records and users ("ACC[/]" crashed the table, "[red]X"
# lost its brackets, "file:100:" printed as an emoji); styles are given as rich.text.Text where wanted.
console = Console(highlight=False, soft_wrap=True, width=_WIDTH, markup=False, emoji=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, width=_WIDTH, markup=False, emoji=False)


def load_settings(**overrides: Any) -> Settings:
    """Read the settings once (`overrides`: a command's options, over the environment); bad
    configuration is a user error, not a traceback."""
    try:
        return Settings(**overrides)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        env = f"BACKBONE_{field.upper()}" if first["loc"] else "BACKBONE_*"
        err_console.print(f"error: invalid configuration {env}: {first['msg']}")
        raise typer.Exit(code=EXIT_CONFIG) from e
    except ConfigError as e:  # raised by a validator that names the variable itself
        err_console.print(f"error: {e}", markup=False)
        raise typer.Exit(code=EXIT_CONFIG) from e


def exit_code(error: BackboneError) -> int:
    return next((code for kinds, code in _EXIT_CODES if isinstance(error, kinds)), EXIT_FAILURE)


@contextmanager
def user_errors() -> Iterator[None]:
    """Expected failures end with a one-line message and their exit code. Driver errors that
    reach this far (the connection lost mid-command) are translated here, so they end the same
    way instead of with a traceback."""
    try:
        try:
            yield
        except KafkaException as e:
            raise health.translate(e, "Kafka") from e
        except (sa.exc.OperationalError, psycopg.OperationalError) as e:
            raise db.connection_error(e) from e
    except BackboneError as e:
        err_console.print(f"error: {e}", markup=False)
        raise typer.Exit(code=exit_code(e)) from e


def kafka_reachable(settings: Settings, *, reads: Sequence[str] = (), writes: Sequence[str] = ()) -> None:
    """Before a command's work: end it in one line if no broker answers within
    BACKBONE_KAFKA_CONNECT_TIMEOUT_S, or at once if the broker refuses us, or refuses reading
    `reads` or writing `writes` (its ACLs)."""
    with user_errors():
        health.check_reachable(settings)
        health.check_access(settings, reads=reads, writes=writes)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def canonical_value(value: Any) -> Any:
    """A database value in the canonical JSON form (the rules of backbone.codec.json_form):
    decimals as exact plain strings, times ISO-8601 UTC with microseconds and Z."""
    if isinstance(value, Decimal):
        return json_form.format_decimal(value)
    if isinstance(value, datetime):
        return json_form.format_datetime(value)
    return value
