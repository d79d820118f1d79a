"""The optional compiled modules, and the switch that runs without them.

Two kinds, both built by `pip install` where a C compiler is available (setup.py):

* `backbone._speedups`: format-level fast paths (Avro codec, record timestamps, row text), each
  the accelerator of a Python path that stays in place; `compiled(name)` gives one of them.
* `RULE_MODULES`: the business rules of backbone/domain compiled by Cython from their own
  Python source, unchanged. Python imports a built extension module in preference to the
  source beside it; nothing else differs.

``BACKBONE_INTERPRETED=1`` in the environment makes the process import the Python source of
every rule module and leave `backbone._speedups` out, as on an install without a compiler (the
unit suite runs once this way, see the Makefile). A rule module whose source is newer than its
build also runs from the source. Both take effect through an import finder this module installs
when first imported, which `backbone.domain` does before any of its modules loads.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

SWITCH = "BACKBONE_INTERPRETED"

#: The modules compiled from their Python source where built (setup.py, RULE_SOURCES).
RULE_MODULES = ("backbone.domain.history", "backbone.domain.order_fields", "backbone.domain.order_state",
                "backbone.domain.plain", "backbone.domain.positions")


def interpreted() -> bool:
    """Whether this process runs without the compiled modules (BACKBONE_INTERPRETED=1)."""
    return os.environ.get(SWITCH, "") not in ("", "0")


def compiled(name: str) -> Any | None:
    """`backbone._speedups.<name>`, or None where the extension is not built (or lacks it, or
    the process runs interpreted)."""
    try:
        from backbone import _speedups
    except ImportError:
        return None
    return getattr(_speedups, name, None)


def is_compiled(module: ModuleType) -> bool:
    """Whether `module` was loaded from a built extension rather than its Python source."""
    return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)


class _RuleSources:
    """Import finder of the rule modules: their Python source when the process runs interpreted,
    or when the source was changed after the extension was built (an edited rule is never
    shadowed by a stale build: it runs interpreted until the next `pip install`). Otherwise it
    steps aside and the extension loads. Interpreted, it also refuses `backbone._speedups`."""

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None,
                  ) -> importlib.machinery.ModuleSpec | None:
        if name == "backbone._speedups" and interpreted():
            raise ModuleNotFoundError(f"{SWITCH} is set: no compiled {name}", name=name)
        if name not in RULE_MODULES:
            return None
        tail = name.rpartition(".")[2]
        for entry in path or sys.path:
            source = os.path.join(entry, tail + ".py")
            if not os.path.exists(source):
                continue
            if not interpreted() and not _stale(entry, tail, os.path.getmtime(source)):
                return None
            return importlib.util.spec_from_file_location(name, source)
        return None


def _stale(entry: str, tail: str, source_mtime: float) -> bool:
    """Whether the built extension of module `tail` in `entry` is older than its source (False
    when none is built: the normal import then finds the source)."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        built = os.path.join(entry, tail + suffix)
        if os.path.exists(built):
            return os.path.getmtime(built) < source_mtime
    return False


if not any(isinstance(f, _RuleSources) for f in sys.meta_path):
    sys.meta_path.insert(0, _RuleSources())
