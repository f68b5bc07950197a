"""Rooms with one job (issue 18 item 2): which package may import which, checked on the source.

Every import counts here, function-local ones included: a local import hides a dependency from
readers but not from the package graph. The package-level cycle test is tests/test_architecture.py;
these are the specific separations this issue made.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "forgerl"


def imported_modules(package: str) -> dict[str, set[str]]:
    """{file relative to src/forgerl: the forgerl modules it imports anywhere in the file}."""
    found: dict[str, set[str]] = {}
    for path in sorted((SRC / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[str(path.relative_to(SRC))] = {n for n in names if n.startswith("forgerl.")}
    return found


def offenders(package: str, forbidden: str) -> list[str]:
    """Files of `package` that import `forbidden` (a package or module) or anything below it."""
    return sorted(f"{file}: {name}" for file, names in imported_modules(package).items() for name in names
                  if name == forbidden or name.startswith(forbidden + "."))


@pytest.mark.parametrize(("package", "forbidden", "why"), [
    ("batching", "forgerl.train", "padded logprobs and LoRA helpers live in forgerl.model"),
    ("engine", "forgerl.train", "merged LoRA weights come from forgerl.model.lora"),
    ("engine", "forgerl.rollout", "weight transports live in forgerl.weights"),
    ("weights", "forgerl.rollout", "the transports know engines, not the rollout scheduler"),
])
def test_building_blocks_do_not_import_the_orchestrator(package: str, forbidden: str, why: str) -> None:
    assert offenders(package, forbidden) == [], f"forgerl.{package} must not import {forbidden}: {why}"


def test_offenders_sees_function_local_imports() -> None:
    """The checker itself: a local import inside a function body counts."""
    rollout = imported_modules("rollout")
    assert any(name.startswith("forgerl.train") for names in rollout.values() for name in names)
