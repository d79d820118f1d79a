"""The optional compiled modules; everything else is in pyproject.toml.

* backbone._speedups (backbone/_speedups.c): format-level fast paths of the Avro codec, record
  timestamps and row text. No business rule.
* The business rules of backbone/domain (the order state machine, the reported-fields check,
  position netting, and the slot copies they build states with), compiled by Cython from their
  Python source as it is: the same file is the rule whether it runs compiled or interpreted.

Both are optional: without Cython or without a C compiler the install still succeeds and the same
Python source runs interpreted. BACKBONE_INTERPRETED=1 at run time ignores built modules
(backbone.compiled).
"""

from __future__ import annotations

from setuptools import Extension, setup

#: The modules compiled from their own Python source (backbone.compiled.RULE_MODULES lists the same).
RULE_SOURCES = [
    "backbone/domain/history.py",
    "backbone/domain/order_fields.py",
    "backbone/domain/order_state.py",
    "backbone/domain/plain.py",
    "backbone/domain/positions.py",
]

extensions = [
    Extension("backbone._speedups", ["backbone/_speedups.c"], optional=True,
              extra_compile_args=["-O2", "-Wall", "-Wno-missing-field-initializers"]),
]
try:
    from Cython.Build import cythonize
except ImportError:  # pragma: no cover - Cython is a build requirement; a bare setup.py run may lack it
    pass
else:
    rules = [Extension(path[:-3].replace("/", "."), [path], optional=True, extra_compile_args=["-O2"])
             for path in RULE_SOURCES]
    # Python semantics exactly: annotations are documentation, not C types (annotation_typing off),
    # functions keep their introspection (binding).
    extensions += cythonize(rules, compiler_directives={"language_level": 3, "annotation_typing": False,
                                                        "binding": True}, build_dir="build", quiet=True)

setup(ext_modules=extensions)
