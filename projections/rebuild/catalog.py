"""Catalog surgery for the swap: views bound to the tables, indexes, identities, grants."""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
from psycopg import sql

from backbone.db import one_row
from projections.rebuild.model import RebuildError


@dataclass(frozen=True)
class View:
    oid: int
    schema: str
    name: str
    options: list[str] | None
    definition: str



_INDEX_DEF = re.compile(r"^CREATE (UNIQUE )?INDEX \S+ ON (?:ONLY )?\S+ (USING .*)$", re.S)


def _indexes(conn: psycopg.Connection, schema: str, table: str) -> dict[str, str]:
    """Index definition without its name and table -> index name."""
    out: dict[str, str] = {}
    for name, definition in conn.execute(
            "select c.relname, pg_get_indexdef(c.oid) from pg_index i join pg_class c on c.oid = i.indexrelid "
            "where i.indrelid = %s::regclass order by 1", (f"{schema}.{table}",)):
        m = _INDEX_DEF.match(definition)
        key = f"{m.group(1) or ''}{m.group(2)}" if m else definition
        if key in out:
            raise RebuildError(f"{schema}.{table} has two identical indexes ({out[key]}, {name})")
        out[key] = name
    return out


def table_shape(conn: psycopg.Connection, schema: str, table: str) -> tuple[str, list[str]]:
    """Columns (name, type, nullability, default, in order) and index definitions of a table."""
    columns = one_row(conn.execute(
        "select string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull || ' ' "
        "|| coalesce(pg_get_expr(d.adbin, d.adrelid), ''), ', ' order by a.attnum) from pg_attribute a "
        "left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum "
        "where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped", (f"{schema}.{table}",)))[0]
    return columns, sorted(_indexes(conn, schema, table))


def take_over_identity(conn: psycopg.Connection, old_schema: str, table: str) -> None:
    """Make public.<table> (the new one) look like the old one to everything that names it:
    index (and constraint) names, owner, grants, storage options."""
    new_ix, old_ix = _indexes(conn, "public", table), _indexes(conn, old_schema, table)
    renames = [(new_ix[k], old_ix[k]) for k in sorted(new_ix) if new_ix[k] != old_ix[k]]
    for i, (name, _target) in enumerate(renames):  # two steps: the new names may overlap the old ones
        conn.execute(sql.SQL("alter index public.{} rename to {}").format(
            sql.Identifier(name), sql.Identifier(f"rebuild_tmp_{i}")))
    for i, (_name, target) in enumerate(renames):
        conn.execute(sql.SQL("alter index public.{} rename to {}").format(
            sql.Identifier(f"rebuild_tmp_{i}"), sql.Identifier(target)))
    new_t, old_t = sql.Identifier("public", table), f"{old_schema}.{table}"
    old_owner, old_options = one_row(conn.execute("select relowner::regrole::text, reloptions from pg_class "
                                                  "where oid = %s::regclass", (old_t,)))
    new_owner = one_row(conn.execute("select relowner::regrole::text from pg_class where oid = %s::regclass",
                                     (f"public.{table}",)))[0]
    if new_owner != old_owner:
        conn.execute(sql.SQL("alter table {} owner to {}").format(new_t, sql.SQL(old_owner)))
    if old_options:
        conn.execute(sql.SQL("alter table {} set ({})").format(new_t, sql.SQL(", ").join(map(sql.SQL, old_options))))
    old_acl, new_acl = _acl(conn, old_t), _acl(conn, f"public.{table}")
    for grantee, privilege, _grantable in sorted(new_acl - old_acl):
        conn.execute(sql.SQL("revoke {} on table {} from {}").format(sql.SQL(privilege), new_t, sql.SQL(grantee)))
    for grantee, privilege, grantable in sorted(old_acl - new_acl):
        conn.execute(sql.SQL("grant {} on table {} to {}{}").format(
            sql.SQL(privilege), new_t, sql.SQL(grantee), sql.SQL(" with grant option" if grantable else "")))


def _acl(conn: psycopg.Connection, table: str) -> set[tuple[str, str, bool]]:
    """(grantee, privilege, grantable) of everyone but the owner; grantee quoted, PUBLIC as such."""
    return set(conn.execute(
        "select case when a.grantee = 0 then 'public' else a.grantee::regrole::text end, "
        "a.privilege_type, a.is_grantable "
        "from pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a "
        "where c.oid = %s::regclass and a.grantee <> c.relowner", (table,)).fetchall())
