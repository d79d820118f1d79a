"""Alembic environment: the URL comes from the caller (backbone.db) or BACKBONE_DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from backbone.settings import Settings

config = context.config
# Plain `alembic upgrade` (no caller attributes) grants to the configured read-only role too, not
# to the default name: BACKBONE_DATABASE_READONLY_ROLE is what `db create-reader` and `--into` use.
if "readonly_role" not in config.attributes:
    config.attributes["readonly_role"] = Settings().database_readonly_role


def _url() -> str:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    return url or Settings().database_url_value


def run_migrations_offline() -> None:
    context.configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
