"""Alembic migrations of the backbone's Postgres schema (`backbone db upgrade`)."""
