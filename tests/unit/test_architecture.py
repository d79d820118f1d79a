"""The layering the architecture promises, checked on the source: data flows one way
(producers -> Kafka -> consumers -> projections / monitoring -> dashboard -> CLI), nothing
imports upward, and no first-party modules import each other in a cycle (imports inside
functions and under TYPE_CHECKING count too)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("backbone", "producers", "consumers", "projections", "monitoring", "dashboard", "cli")
#: what each layer may import, besides itself
ALLOWED = {
    "backbone": set(),
    "producers": {"backbone"},
    "consumers": {"backbone"},
    "projections": {"backbone", "consumers"},
    "monitoring": {"backbone", "consumers"},
    # the SQL end: the views and the Python read model, and monitoring's lag sampler (read-only);
    # never the projector or the producers
    "dashboard": {"backbone", "projections", "monitoring"},
    "cli": {"backbone", "producers", "consumers", "projections", "monitoring", "dashboard"},
}
#: CLI modules every command may use; commands never import each other
CLI_HELPERS = {"cli.common", "cli.lineage", "cli.replaying", "cli.tables"}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    modules = {_module(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + [base]).strip(".")
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.add(target)
        graph[name] = found
    return graph


def test_nothing_imports_upward() -> None:
    wrong = sorted(f"{a} imports {b}" for a, deps in _imports().items() for b in deps
                   if b.split(".")[0] != a.split(".")[0] and b.split(".")[0] not in ALLOWED[a.split(".")[0]])
    assert wrong == []


def test_commands_share_helpers_through_helper_modules_only() -> None:
    wrong = sorted(f"{a} imports {b}" for a, deps in _imports().items() if a.startswith("cli.") for b in deps
                   if b.startswith("cli.") and b not in CLI_HELPERS and a not in CLI_HELPERS and a != "cli.main")
    assert wrong == []


def test_no_import_cycles() -> None:
    graph = _imports()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == []
