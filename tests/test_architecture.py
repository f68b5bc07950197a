"""Architecture rules checked on the source itself (issue 18, item 2).

* No import cycles between forgerl's first-level packages and top-level modules (forgerl.X ->
  forgerl.Y), counting every import: module level, under `if TYPE_CHECKING:` and inside functions.
  A function-local import keeps a heavy dependency out of `forgerl --help`; it must not be a way
  around the layering. A cycle between packages means neither can be understood, tested or
  imported on its own, and import order starts to matter.
* Nothing outside forgerl.server imports a private (`_name`) from it: the gateway and the server
  share the public chat-completion module (server/chat.py) instead.
"""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "forgerl"

# Package edges that still close a cycle, each with its reason. Removing them must leave the graph
# acyclic, so a NEW cycle fails the test; delete an entry once its edge is gone (the test says so).
ALLOWED_CYCLE_EDGES: dict[tuple[str, str], str] = {}  # none since issue 18: forgerl/training.py wires train, rollout and review


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(tree: ast.Module, module: str, is_package: bool) -> Iterator[str]:
    """Every module name imported when the module runs (not under TYPE_CHECKING, not in a function);
    `from a import b` yields both `a` and `a.b` (b may be a submodule)."""

    def visit(stmts: list[ast.stmt]) -> Iterator[str]:
        for stmt in stmts:
            if isinstance(stmt, ast.If):
                if not _is_type_checking(stmt.test):
                    yield from visit(stmt.body)
                yield from visit(stmt.orelse)
            elif isinstance(stmt, ast.Try):
                for block in (stmt.body, *(h.body for h in stmt.handlers), stmt.orelse, stmt.finalbody):
                    yield from visit(block)
            elif isinstance(stmt, ast.Import):
                yield from (alias.name for alias in stmt.names)
            elif isinstance(stmt, ast.ImportFrom):
                base = stmt.module or ""
                if stmt.level:
                    parts = module.split(".") if is_package else module.split(".")[:-1]
                    parts = parts[: len(parts) - (stmt.level - 1)]
                    base = ".".join([*parts, *([stmt.module] if stmt.module else [])])
                yield base
                yield from (f"{base}.{alias.name}" for alias in stmt.names)

    yield from visit(tree.body)


def _all_imports(tree: ast.Module, module: str, is_package: bool) -> Iterator[str]:
    """Every forgerl module the file imports anywhere: at module level, under TYPE_CHECKING and
    inside functions. A function-local import hides a cycle from Python's import machinery, not
    from a reader: the layering must hold for all of them."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield from _module_level_imports(ast.Module(body=[node], type_ignores=[]), module, is_package)


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "forgerl" and len(parts) > 1 else None


def package_graph() -> dict[tuple[str, str], set[str]]:
    """(from package, to package) -> the imports that make the edge (all of them, see _all_imports)."""
    edges: dict[tuple[str, str], set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(path)
        src = _package(module)
        if src is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name in _all_imports(tree, module, path.name == "__init__.py"):
            dst = _package(name)
            if dst is not None and dst != src:
                edges.setdefault((src, dst), set()).add(f"{module} -> {name}")
    return edges


def test_no_import_cycles_between_packages() -> None:
    edges = package_graph()
    graph: dict[str, set[str]] = {}
    for src, dst in edges:
        if (src, dst) not in ALLOWED_CYCLE_EDGES:
            graph.setdefault(src, set()).add(dst)
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        cycle = list(reversed(exc.args[1]))  # graphlib lists it against the import direction
        where = [sorted(edges[(a, b)])[0] for a, b in zip(cycle, cycle[1:], strict=False)]
        raise AssertionError(
            f"import cycle between packages: {' -> '.join(cycle)}; made by {where}. Move the shared code to a "
            "package below both, or (for a heavy dependency only) import it inside the function that needs it"
        ) from None


def test_allowed_cycle_edges_still_exist() -> None:
    """An allow-list entry whose edge is gone must be deleted, so the list never hides a new cycle."""
    edges = package_graph()
    stale = [edge for edge in ALLOWED_CYCLE_EDGES if edge not in edges]
    assert not stale, f"these allowed edges no longer exist; delete them from ALLOWED_CYCLE_EDGES: {stale}"


def _private_server_imports() -> list[str]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(path)
        if module.startswith("forgerl.server"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("forgerl.server")):
                continue
            if any(part.startswith("_") for part in (node.module or "").split(".")):
                out.append(f"{module}: from {node.module} import ...")
            out += [f"{module}: from {node.module} import {a.name}" for a in node.names if a.name.startswith("_")]
    return out


def test_nothing_imports_private_names_from_the_server() -> None:
    found = _private_server_imports()
    assert not found, f"private server names imported from outside forgerl.server: {found}; use forgerl.server.chat"
