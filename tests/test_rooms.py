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
    ("envs", "forgerl.agent", "commands that run episodes live in forgerl.cli (cli/envs.py)"),
    ("envs", "forgerl.engine", "commands that sample live in forgerl.cli (cli/envs.py)"),
])
def test_building_blocks_do_not_import_the_orchestrator(package: str, forbidden: str, why: str) -> None:
    assert offenders(package, forbidden) == [], f"forgerl.{package} must not import {forbidden}: {why}"


def test_offenders_sees_function_local_imports() -> None:
    """The checker itself: a local import inside a function body counts."""
    cli = imported_modules("cli")  # cli/train.py imports forgerl.train.report inside run_train only
    assert any(name.startswith("forgerl.train.report") for names in cli.values() for name in names)


def test_the_trainer_imports_nothing_from_review() -> None:
    """The reward model enters the loop as a reward transform the entry point wires
    (forgerl/training.py default_source, for `forgerl train` and forgerl.train()); train/ only sees
    the RewardTransform protocol and reads the verifier's reward from forgerl.envs.rewards."""
    assert offenders("train", "forgerl.review") == []


def test_a_reward_model_that_cannot_load_leaves_no_run(tmp_path) -> None:
    from forgerl.errors import ConfigError
    from forgerl.train.config import load_config
    from forgerl.training import run_training

    rm = tmp_path / "rm"
    rm.mkdir()
    (rm / "reward_model.json").write_text('{"config": {"encoder": "/nowhere"}}')
    (rm / "head.safetensors").write_bytes(b"")
    config = load_config(None, run_dir=str(tmp_path / "run"), steps=1, reward_model={"path": str(rm), "weight": 1.0})
    with pytest.raises(ConfigError, match="cannot load the reward model"):
        run_training(config)
    assert not (tmp_path / "run" / "store.sqlite").exists()


def test_verifier_reward_reads_the_blended_record() -> None:
    from forgerl.envs.rewards import verifier_reward
    from forgerl.types import Trajectory

    traj = Trajectory(task_id="t", reward=0.75, metadata={"reward_model": {"verifier_reward": 1.0}})
    assert verifier_reward(traj) == 1.0
    traj.metadata.clear()
    assert verifier_reward(traj) == 0.75


def test_the_entry_point_wires_the_reward_model_as_the_sources_transform(tmp_path, monkeypatch) -> None:
    from forgerl.review import train_hook
    from forgerl.train.config import load_config
    from forgerl.training import default_source

    loaded = object()
    monkeypatch.setattr(train_hook, "load_training_reward_model", lambda spec: loaded if spec.path else None)
    (tmp_path / "reward_model.json").write_text("{}")
    (tmp_path / "head.safetensors").write_bytes(b"")
    with_rm = default_source(load_config(None, reward_model={"path": str(tmp_path), "weight": 1.0}))
    transform = with_rm._make_transform(None)
    assert isinstance(transform, train_hook.RewardModelTransform) and transform.model is loaded
    assert default_source(load_config())._make_transform is None


def test_benchmarks_and_experiments_live_in_their_own_rooms() -> None:
    """Benchmark code lives in forgerl/bench, experiment drivers in forgerl/experiments (their
    entry points: `forgerl bench ...` in cli/bench.py, scripts/*.py); no library package carries either."""
    strays = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                    if ("bench" in p.stem or p.stem == "experiment")
                    and p.parent.name not in ("bench", "experiments", "cli"))
    assert strays == []
    assert {p.stem for p in (SRC / "bench").glob("*.py")} >= {"engine", "prefix_tree", "scheduler", "weight_sync",
                                                               "losses", "sandbox"}


def typer_commands_outside_cli() -> list[str]:
    """Places outside forgerl/cli that build a typer app (`typer.Typer(...)`) or register a command
    (a decorator `@<anything>.command(...)` / `.callback(...)`): every command lives in cli/."""
    found: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC)
        if relative.parts[0] == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "Typer":
                found.append(f"{relative}:{node.lineno}: Typer(...)")
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for decorator in node.decorator_list:
                    target = decorator.func if isinstance(decorator, ast.Call) else decorator
                    if isinstance(target, ast.Attribute) and target.attr in ("command", "callback"):
                        found.append(f"{relative}:{node.lineno}: @{target.attr} {node.name}")
    return found


def test_every_command_lives_in_cli() -> None:
    """Issue 18 item 2: the commands were spread over eight packages; now `forgerl.cli` is the one
    place a typer app or command is defined."""
    assert typer_commands_outside_cli() == []


def test_the_command_finder_sees_a_command(tmp_path, monkeypatch) -> None:
    """The checker itself: a decorated command in a library package is reported."""
    fake = tmp_path / "forgerl"
    (fake / "cli").mkdir(parents=True)
    (fake / "store").mkdir()
    (fake / "cli" / "main.py").write_text("import typer\napp = typer.Typer()\n")
    (fake / "store" / "cmd.py").write_text("import typer\napp = typer.Typer()\n@app.command()\ndef show(): ...\n")
    monkeypatch.setitem(globals(), "SRC", fake)
    assert sorted(typer_commands_outside_cli()) == ["store/cmd.py:2: Typer(...)", "store/cmd.py:4: @command show"]


def typer_importers(package: str) -> list[str]:
    """Files of `package` that import typer (the command-line library) anywhere in the file."""
    found: list[str] = []
    for path in sorted((SRC / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name == "typer" or name.startswith("typer.") for name in names):
                found.append(str(path.relative_to(SRC)))
    return sorted(set(found))


@pytest.mark.parametrize("package", ["eval", "gateway", "review", "store", "perturb", "engine", "pretrain"])
def test_library_packages_do_not_import_typer(package: str) -> None:
    assert typer_importers(package) == [], f"forgerl.{package} imports typer: its command belongs in forgerl/cli"
