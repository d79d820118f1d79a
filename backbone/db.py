"""Database plumbing: the engine and the Alembic migrations (`backbone db upgrade|current`)."""

from __future__ import annotations

import time
from importlib import resources
from typing import TypeVar

import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from psycopg import sql
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError

from backbone.errors import DatabaseAuthError, DatabaseError, DatabaseUnavailable, InvariantViolation
from backbone.settings import Settings, normalize_database_url

# libpq says why a connection failed only in words (no SQLSTATE before the session exists)
_REFUSED_CREDENTIALS = ("password authentication failed", "authentication failed", "no pg_hba.conf entry",
                        "no password supplied", "role \"")
# the TLS handshake failed: the server's certificate, or one side that will not speak TLS
_TLS_REFUSED = ("certificate verify failed", "ssl error", "does not support ssl", "tlsv1 alert")
_UNREACHABLE = ("connection refused", "could not translate host name", "failed to resolve host",
                "name or service not known", "timeout expired", "connection timeout", "timed out",
                "no route to host", "network is unreachable", "server closed the connection unexpectedly",
                "the database system is starting up", "the database system is shutting down")


def first_line(e: BaseException) -> str:
    """The driver's message without the lines after the first (libpq's hints, the statement)."""
    orig = getattr(e, "orig", None) or e
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


#: what a statement or a connection attempt raises when the database fails it (not a bug of ours)
DATABASE_FAILURES: tuple[type[Exception], ...] = (SQLAlchemyError, psycopg.Error, DatabaseError)


def connection_error(e: BaseException, where: str | None = None) -> DatabaseError:
    """A driver's failure to connect as one line, classified: DatabaseAuthError when the server
    refused the credentials or the TLS handshake failed, DatabaseUnavailable when it could not be
    reached, DatabaseError otherwise (a database that does not exist, ...). `where` names the
    server in the message (a URL with its password masked)."""
    first = first_line(e)
    lowered = first.lower()
    at = f" at {where}" if where else ""
    if any(marker in lowered for marker in _REFUSED_CREDENTIALS):
        return DatabaseAuthError(f"the database{at} refused the credentials: {first}")
    if any(marker in lowered for marker in _TLS_REFUSED):
        return DatabaseAuthError(f"TLS with the database{at} failed: {first}")
    if any(marker in lowered for marker in _UNREACHABLE):
        return DatabaseUnavailable(f"cannot reach the database{at}: {first}")
    return DatabaseError(f"cannot use the database{at}: {first}")


def psycopg_connection(sa_conn: Connection) -> psycopg.Connection:
    """The psycopg connection under an open SQLAlchemy connection (SQLAlchemy types it as optional:
    it is gone only once the SQLAlchemy connection was closed or invalidated)."""
    raw = sa_conn.connection.driver_connection
    if raw is None:
        raise DatabaseError("the database connection was closed or invalidated")
    return raw


R = TypeVar("R")


def one_row(cursor: psycopg.Cursor[R]) -> R:
    """The row of a statement that always returns exactly one (an aggregate, a function call);
    psycopg types fetchone() as optional since other statements may return none."""
    row = cursor.fetchone()
    if row is None:
        raise InvariantViolation("a statement that returns one row returned none")
    return row


def _with_connect_timeout(settings: Settings, url: str) -> str:
    """`url` with libpq's connect_timeout (unless it names its own): an address that never
    answers fails after that long instead of after the operating system's TCP timeout."""
    parsed = make_url(normalize_database_url(url))
    if "connect_timeout" in parsed.query:
        return parsed.render_as_string(hide_password=False)
    return parsed.update_query_dict({"connect_timeout": str(settings.database_connect_timeout_s)}).render_as_string(
        hide_password=False)


def _masked(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def make_engine(settings: Settings, url: str | None = None, **kwargs: object) -> Engine:
    return create_engine(_with_connect_timeout(settings, url or settings.database_url_value), pool_pre_ping=True,
                         **kwargs)


def alembic_config(url: str, readonly_role: str = "backbone_reader") -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("migrations")))
    config.attributes["database_url"] = url
    config.attributes["readonly_role"] = readonly_role
    return config


def upgrade(settings: Settings, revision: str = "head", url: str | None = None) -> str | None:
    """Apply migrations up to `revision`; returns the revision now current."""
    url = url or settings.database_url_value
    try:
        command.upgrade(alembic_config(_with_connect_timeout(settings, url), settings.database_readonly_role),
                        revision)
    except OperationalError as e:
        raise connection_error(e, _masked(url)) from e
    return current(settings, url=url)


def current(settings: Settings, url: str | None = None) -> str | None:
    url = url or settings.database_url_value
    engine = make_engine(settings, url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except OperationalError as e:
        raise connection_error(e, _masked(url)) from e
    finally:
        engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


def create_reader(settings: Settings, name: str, password: str, url: str | None = None) -> None:
    """A login role for analysts: member of the read-only role, so it can SELECT the tables and
    views and cannot write. Idempotent (re-running resets the password of a reader); an existing
    role that is not a reader (the application's own, an admin) is refused, never altered."""
    from psycopg import sql

    if not name.replace("_", "").isalnum() or not name[0].isalpha():
        raise DatabaseError(f"role name {name!r}: use letters, digits and _ only, starting with a letter")
    engine = make_engine(settings, url)
    try:
        with engine.begin() as sa_conn:
            conn = psycopg_connection(sa_conn)
            exists = conn.execute("select 1 from pg_roles where rolname = %s", (name,)).fetchone()
            reader = conn.execute(
                "select 1 from pg_auth_members m join pg_roles g on g.oid = m.roleid "
                "join pg_roles r on r.oid = m.member "
                "where g.rolname = %s and r.rolname = %s", (settings.database_readonly_role, name)).fetchone()
            if exists and (not reader or name == conn.info.user):
                raise DatabaseError(f"role {name} exists and is not a reader created by this command: refusing to "
                                    "change its password or memberships (choose another name)")
            verb = "alter" if exists else "create"
            conn.execute(sql.SQL(verb + " role {} login password {}").format(sql.Identifier(name),
                                                                             sql.Literal(password)))
            conn.execute(sql.SQL("grant {} to {}").format(sql.Identifier(settings.database_readonly_role),
                                                          sql.Identifier(name)))
            dbname = one_row(conn.execute("select current_database()"))[0]
            conn.execute(sql.SQL("grant connect on database {} to {}").format(sql.Identifier(dbname),
                                                                              sql.Identifier(name)))
    except OperationalError as e:
        raise connection_error(e, _masked(url or settings.database_url_value)) from e
    except ProgrammingError as e:  # e.g. no CREATEROLE privilege
        raise DatabaseError(f"cannot create the reader role {name}: {e.orig}") from e
    finally:
        engine.dispose()


def drop_database(admin_conninfo: str, name: str, *, attempts: int = 20) -> None:
    """Drop database `name` (a throwaway one: tests, benchmarks), ending its sessions.

    WITH (FORCE) refuses to terminate a session it may not signal (another role's connection
    still closing, a background worker): wait for it a little rather than fail."""
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        for attempt in range(attempts):
            try:
                conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
                return
            except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
                if attempt == attempts - 1:
                    raise
                time.sleep(0.5)
