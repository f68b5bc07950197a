"""Function-local imports say why they are local (issue 18, item 2).

A function-local import of a forgerl module hides a dependency from readers and tools, so it is
only allowed where it keeps a heavy dependency out of a light import path (`forgerl --help`,
`import forgerl`, the plug-in API) or breaks an import cycle, and the line (or the line above)
says which. Also checks that the light entry points still load no torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "forgerl"

# Not checked yet, each with its reason; delete an entry once its files carry the comments.
NOT_CHECKED: dict[str, str] = {}


def _checked(path: Path) -> bool:
    rel = path.relative_to(SRC).as_posix()
    return not any(rel == key or (key.endswith("/") and rel.startswith(key)) for key in NOT_CHECKED)


def _imports_forgerl(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] == "forgerl"
    return any(alias.name.split(".")[0] == "forgerl" for alias in node.names)


def uncommented_local_imports(path: Path) -> list[str]:
    """`file:line: import` for each function-local forgerl import with no comment on its line(s)
    or on the line above."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    found: dict[int, str] = {}
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if not isinstance(node, ast.Import | ast.ImportFrom) or not _imports_forgerl(node):
                continue
            own_lines = lines[node.lineno - 1: node.end_lineno]
            above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
            if not any("#" in line for line in own_lines) and not above.startswith("#"):
                where = path.relative_to(SRC) if path.is_relative_to(SRC) else path.name
                found[node.lineno] = f"{where}:{node.lineno}: {ast.unparse(node)}"
    return [found[line] for line in sorted(found)]


def test_every_function_local_forgerl_import_says_why() -> None:
    files = [path for path in sorted(SRC.rglob("*.py")) if _checked(path)]
    assert len(files) > 50  # the exclusions must not swallow the tree
    missing = [entry for path in files for entry in uncommented_local_imports(path)]
    assert not missing, ("function-local imports of forgerl modules without a reason; move each to the "
                         "module's top-level imports, or say why on its line (`# cycle: X imports this "
                         "module` / `# heavy: torch, kept out of forgerl --help`):\n" + "\n".join(missing))


def test_the_check_finds_an_uncommented_local_import(tmp_path: Path) -> None:
    module = tmp_path / "_probe_for_test_imports.py"
    module.write_text("def f():\n    from forgerl.errors import ConfigError\n    return ConfigError\n"
                      "\n\ndef g():\n    import forgerl.types  # cycle: example\n    return forgerl.types\n")
    assert uncommented_local_imports(module) == ["_probe_for_test_imports.py:2: from forgerl.errors import ConfigError"]


@pytest.mark.parametrize("statement", ["import forgerl", "import forgerl.plugins", "import forgerl.envs"])
def test_light_entry_points_load_no_torch(statement: str) -> None:
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", statement],
                            capture_output=True, text=True, check=True, timeout=60)
    loaded = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "forgerl" in loaded
    heavy = sorted(name for name in loaded if name.split(".")[0] in {"torch", "transformers", "fastapi", "uvicorn"})
    assert not heavy, f"`{statement}` loads {heavy}; keep them behind a function-local import"
