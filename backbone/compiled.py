"""Access to the compiled fast paths (backbone/_speedups.c), which are optional: a build without a
C compiler runs the Python paths they accelerate."""

from __future__ import annotations

from typing import Any


def compiled(name: str) -> Any | None:
    """`backbone._speedups.<name>`, or None where the extension is not built (or lacks it)."""
    try:
        from backbone import _speedups
    except ImportError:
        return None
    return getattr(_speedups, name, None)
