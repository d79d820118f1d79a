"""Database plumbing: the engine and the Alembic migrations (`backbone db upgrade|current`)."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import OperationalError

from backbone.errors import BackboneError
from backbone.settings import Settings


class DatabaseError(BackboneError):
    pass


def make_engine(settings: Settings, url: str | None = None, **kwargs: object) -> Engine:
    return create_engine(url or settings.database_url_value, pool_pre_ping=True, **kwargs)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("migrations")))
    config.attributes["database_url"] = url
    return config


def upgrade(settings: Settings, revision: str = "head", url: str | None = None) -> str | None:
    """Apply migrations up to `revision`; returns the revision now current."""
    url = url or settings.database_url_value
    try:
        command.upgrade(alembic_config(url), revision)
    except OperationalError as e:
        raise DatabaseError(f"cannot reach the database at {settings.database_url_safe()}: {e.orig}") from e
    return current(settings, url=url)


def current(settings: Settings, url: str | None = None) -> str | None:
    engine = make_engine(settings, url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except OperationalError as e:
        raise DatabaseError(f"cannot reach the database at {settings.database_url_safe()}: {e.orig}") from e
    finally:
        engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()
