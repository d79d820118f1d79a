"""A real PostgreSQL server for the local stack, from the system's server binaries.

The cluster lives in `<state_dir>/postgres/data`, listens on 127.0.0.1:<postgres_port> only
(no Unix socket, so it never collides with a system cluster), and requires passwords
(scram-sha-256). The superuser password is generated once into `superuser.pw` (mode 600).
`initdb` and `postgres` refuse to run as root; as root they run as the `postgres` system user.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from backbone.errors import ServiceError
from backbone.local import process, security
from backbone.settings import Settings

INSTALL_HINT = "install the PostgreSQL server (Debian: apt-get install postgresql) or run `make deps`"


@dataclass(frozen=True)
class PostgresPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    @property
    def password_file(self) -> Path:
        return self.root / "superuser.pw"

    @classmethod
    def of(cls, settings: Settings) -> PostgresPaths:
        return cls(settings.state_dir / "postgres")


def bin_dir(data: Path | None = None, root: Path = Path("/usr/lib/postgresql")) -> Path:
    """The server's bin directory (Debian keeps them versioned under `root`): the version of an
    existing data directory (a data dir only starts under its own major version), else the
    newest installed."""
    candidates = sorted(root.glob("*/bin/postgres"),
                        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    version_file = None if data is None else data / "PG_VERSION"
    if candidates and version_file is not None and version_file.exists():
        wanted = version_file.read_text().strip()
        for candidate in candidates:
            if candidate.parent.parent.name == wanted:
                return candidate.parent
        raise ServiceError(f"the data directory {data} is PostgreSQL {wanted}, but the installed servers are "
                           f"{', '.join(c.parent.parent.name for c in candidates)}: install postgresql-{wanted}, "
                           "or move the data directory away (BACKBONE_STATE_DIR) to start afresh")
    if candidates:
        return candidates[-1].parent
    for name in ("pg_ctl", "postgres"):
        found = subprocess.run(["which", name], capture_output=True, text=True, check=False).stdout.strip()
        if found:
            return Path(found).resolve().parent
    raise ServiceError(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}")


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    try:
        pwd.getpwnam("postgres")
    except KeyError as e:
        raise ServiceError("running as root needs a `postgres` system user to run the server; "
                           + INSTALL_HINT) from e
    return ["runuser", "-u", "postgres", "--", *cmd]


def _run(cmd: list[str], what: str) -> str:
    result = subprocess.run(_as_server_user(cmd), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServiceError(f"{what} failed:\n{(result.stdout + result.stderr).strip()}")
    return result.stdout


def server_version() -> str:
    out = subprocess.run([str(bin_dir() / "postgres"), "--version"], capture_output=True, text=True,
                         check=False).stdout
    match = re.search(r"(\d+(?:\.\d+)*)", out)
    return match.group(1) if match else "unknown"


def _chown_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)


def ensure_initialized(settings: Settings, paths: PostgresPaths) -> None:
    if (paths.data / "PG_VERSION").exists():
        return
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.root.chmod(0o700)
    _chown_to_server_user(paths.root)
    if not paths.password_file.exists():
        paths.password_file.write_text(secrets.token_urlsafe(24))
        paths.password_file.chmod(0o600)
        _chown_to_server_user(paths.password_file)
    _run([str(bin_dir() / "initdb"), "-D", str(paths.data), "-U", "postgres", "-E", "UTF8",
          "--locale=C", "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
          f"--pwfile={paths.password_file}"], "initdb")


def superuser_conninfo(settings: Settings, dbname: str = "postgres") -> str:
    password = PostgresPaths.of(settings).password_file.read_text().strip()
    tls = security.postgres_client_parameters(settings) if security.enabled(settings) else {}
    return psycopg.conninfo.make_conninfo(host="127.0.0.1", port=settings.postgres_port, user="postgres",
                                          password=password, dbname=dbname, connect_timeout=3, **tls)


def running(settings: Settings) -> int | None:
    paths = PostgresPaths.of(settings)
    return process.running_pid(paths.data / "postmaster.pid", str(paths.data))


def is_ready(settings: Settings) -> bool:
    try:
        with psycopg.connect(superuser_conninfo(settings)) as conn:
            conn.execute("select 1")
    except psycopg.Error:
        return False
    return True


def start(settings: Settings) -> int:
    """Start our cluster unless it runs; wait for connections; create the app role and db."""
    paths = PostgresPaths.of(settings)
    pid = running(settings)
    if pid is None:
        process.ensure_port_free(settings.postgres_port, "PostgreSQL")
        ensure_initialized(settings, paths)
        # pg_ctl -w waits for the server; our own readiness check below covers auth too.
        options = f"-p {settings.postgres_port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        if security.enabled(settings):
            options += " " + security.postgres_server_options(settings, paths.root, _chown_to_server_user)
        _run([str(bin_dir(paths.data) / "pg_ctl"), "start", "-D", str(paths.data), "-l", str(paths.log_file),
              "-o", options, "-w", "-t", str(int(settings.startup_timeout_s))], "pg_ctl start")
    process.wait_until(lambda: is_ready(settings), timeout=settings.startup_timeout_s,
                       what="PostgreSQL", log_files=[paths.log_file])
    ensure_app_database(settings)
    found = running(settings)
    if found is None:
        raise ServiceError(f"PostgreSQL answered but its postmaster.pid is missing; see {paths.log_file}")
    return found


def ensure_app_database(settings: Settings) -> None:
    """Create the role and database named by the database URL (idempotent)."""
    url = make_url(settings.database_url_value)
    user, password, dbname = url.username or "backbone", url.password or "", url.database or "backbone"
    with psycopg.connect(superuser_conninfo(settings), autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_roles where rolname = %s", (user,)).fetchone()
        verb = "alter" if exists else "create"
        conn.execute(sql.SQL(verb + " role {} login createdb createrole password {}").format(
            sql.Identifier(user), sql.Literal(password)))
        if not conn.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone():
            conn.execute(sql.SQL("create database {} owner {}").format(sql.Identifier(dbname), sql.Identifier(user)))


def stop(settings: Settings) -> bool:
    paths = PostgresPaths.of(settings)
    if running(settings) is None:
        return False
    _run([str(bin_dir(paths.data) / "pg_ctl"), "stop", "-D", str(paths.data), "-m", "fast", "-w", "-t", "60"],
         "pg_ctl stop")
    return True
