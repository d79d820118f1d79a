"""Which installed PostgreSQL server runs the local data directory (no server started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backbone.errors import ServiceError
from backbone.local.postgres import bin_dir


def installed(root: Path, *versions: str) -> Path:
    for version in versions:
        (root / version / "bin").mkdir(parents=True)
        (root / version / "bin" / "postgres").touch()
    return root


def test_a_new_data_directory_gets_the_newest_server(tmp_path: Path) -> None:
    root = installed(tmp_path / "pg", "15", "17", "9")
    assert bin_dir(None, root) == root / "17" / "bin"
    assert bin_dir(tmp_path / "no-data-yet", root) == root / "17" / "bin"


def test_an_existing_data_directory_keeps_its_own_major_version(tmp_path: Path) -> None:
    root = installed(tmp_path / "pg", "15", "17")
    data = tmp_path / "data"
    data.mkdir()
    (data / "PG_VERSION").write_text("15\n")
    assert bin_dir(data, root) == root / "15" / "bin"  # 17 would refuse to start it
    (data / "PG_VERSION").write_text("14\n")
    with pytest.raises(ServiceError, match="is PostgreSQL 14, but the installed servers are 15, 17: install "
                                           "postgresql-14"):
        bin_dir(data, root)
