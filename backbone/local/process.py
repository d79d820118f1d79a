"""Small process and port helpers for the local stack: pid files, port checks, waiting.

A pid file alone is not trusted: pids are reused, so a process counts as ours only when
`/proc/<pid>/cmdline` still contains the marker we started it with (its config path).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from backbone.errors import ServiceError


def cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def stat_fields(pid: int) -> list[str] | None:
    """The fields of `/proc/<pid>/stat` after the command name (state first: field 3 of proc(5)),
    or None when the process is gone. Split after the last ')': a command name may hold spaces."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def running_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in `pid_file` if that process is alive and was started with `marker`."""
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0].strip())
    except (OSError, ValueError):
        return None
    line = cmdline(pid)
    if line is None or marker not in line:
        return None
    fields = stat_fields(pid)
    return None if not fields or fields[0] == "Z" else pid


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def can_bind(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def who_listens(port: int) -> str | None:
    """A description of the process listening on `port`, when `ss` can tell."""
    if shutil.which("ss") is None:
        return None
    out = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not out:
        return None
    users = out.split("users:", 1)
    return users[1].strip() if len(users) == 2 else out.splitlines()[0]


def ensure_port_free(port: int, service: str) -> None:
    if port_open(port):
        holder = who_listens(port)
        detail = f" (held by {holder})" if holder else ""
        raise ServiceError(
            f"port {port} needed by {service} is already in use{detail}; stop that process or "
            f"choose another port (see `backbone config show` for the BACKBONE_*_PORT settings)"
        )


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, log_files: list[Path],
               alive: Callable[[], bool] | None = None, interval: float = 0.5) -> None:
    """Poll `check` until it is true; fail with the logs' tails on timeout or early death."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if alive is not None and not alive():
            raise ServiceError(f"{what} exited during start-up; {_tails(log_files)}")
        time.sleep(interval)
    raise ServiceError(f"{what} not ready after {timeout:.0f}s; {_tails(log_files)}")


def _tails(log_files: list[Path]) -> str:
    present = [p for p in log_files if p.exists() and p.stat().st_size > 0] or log_files[:1]
    return "\n".join(f"last lines of {p}:\n{tail(p)}" for p in present)


def stop_pid(pid: int, marker: str, *, timeout: float = 30.0) -> bool:
    """SIGTERM the process (if it is still ours), SIGKILL after `timeout`. True if it stopped."""
    if marker not in (cmdline(pid) or ""):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = cmdline(pid)
        if line is None or marker not in line or _is_zombie(pid):
            return True
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    return True


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except (OSError, IndexError):
        return True


def require_tool(name: str, install_hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ServiceError(f"{name} not found on PATH: {install_hint}")
    return path
