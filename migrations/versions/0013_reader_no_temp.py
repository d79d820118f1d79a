"""The read-only role reads and nothing else: no temporary tables, no objects in `public`.

PostgreSQL grants TEMPORARY on every database, and (before version 15) CREATE on schema
`public`, to PUBLIC, so every login, a reader's too, could create temporary tables (and fill the
server's disk with them) or objects in `public`. Both are revoked from PUBLIC and from the
read-only role; the application's role keeps them as the owner of the database. Revoking needs
the grantor's rights: run by a role that does not own the database, PostgreSQL only warns, and
the owner has to revoke (docs/sql.md, "Roles").

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import context, op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _reader_role() -> str:
    return context.config.attributes.get("readonly_role", "backbone_reader")


def _on_database(statement: str) -> None:
    """`statement` with %I for the current database: its name is known only when run."""
    op.execute(f"do $$ begin execute format('{statement}', current_database()); end $$")


def upgrade() -> None:
    role = _reader_role()
    _on_database(f"revoke temporary on database %I from public, {role}")
    op.execute(f"revoke create on schema public from public, {role}")


def downgrade() -> None:
    _on_database("grant temporary on database %I to public")
