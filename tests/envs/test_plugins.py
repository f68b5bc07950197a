"""A user's family (and format) from the user's own package, with no edit to forgerl: loaded by
`--plugin`, FORGERL_PLUGINS or an entry point, found lazily by name, validated with the no-op the
family declares, and run end to end through the real command line (`envs validate`, `eval`)."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from forgerl import plugins
from forgerl.envs.base import family_info, list_families, unregister_family
from forgerl.testing import ECHO_FAMILY_SOURCE

FAMILY = "acme-echo"

# A whole user package: a family whose agent looks a word up and submits it back.
PLUGIN_SOURCE = ECHO_FAMILY_SOURCE


@pytest.fixture
def fresh_plugins(monkeypatch):
    """No plug-in loaded yet in this process, no FORGERL_PLUGINS; the test's family forgotten after."""
    monkeypatch.setattr(plugins, "_STATE", plugins._State())
    monkeypatch.delenv(plugins.PLUGINS_ENV_VAR, raising=False)
    before = set(sys.modules)
    yield
    for name in (FAMILY, "acme-finish"):
        unregister_family(name)
    for name in set(sys.modules) - before:
        if name.startswith(("acme_", "forgerl_plugin_")):
            del sys.modules[name]


@pytest.fixture
def user_package(tmp_path, monkeypatch, fresh_plugins) -> Path:
    """A user's package in a temp dir (module `acme_envs`, pyproject declaring the entry point),
    importable the way PYTHONPATH would make it."""
    (tmp_path / "acme_envs.py").write_text(PLUGIN_SOURCE)
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent('''
        [project]
        name = "acme-envs"
        version = "0.1"
        [project.entry-points."forgerl.envs"]
        acme = "acme_envs"
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def fake_entry_points(monkeypatch, specs: dict[str, list[tuple[str, str]]]) -> None:
    """Pretend these (name, value) entry points are installed, per group."""
    def entry_points(*, group: str):
        return [importlib.metadata.EntryPoint(name=name, value=value, group=group) for name, value in specs.get(group, [])]

    monkeypatch.setattr(plugins.metadata, "entry_points", entry_points)


def no_entry_points(monkeypatch) -> None:
    fake_entry_points(monkeypatch, {})


# --- loading -------------------------------------------------------------------------------------


def test_plugin_by_module_name_registers_its_family(user_package, monkeypatch):
    no_entry_points(monkeypatch)
    assert FAMILY not in list_families()
    assert plugins.load_plugins(["acme_envs"]) == ["acme_envs"]
    assert family_info(FAMILY).description.startswith("Submit the word")
    assert plugins.load_plugins(["acme_envs"]) == []  # once


def test_plugin_by_file_path(user_package, monkeypatch):
    no_entry_points(monkeypatch)
    plugins.load_plugins([str(user_package / "acme_envs.py")])
    assert FAMILY in list_families()


def test_a_plugin_that_does_not_import_is_one_clear_line(fresh_plugins, monkeypatch):
    no_entry_points(monkeypatch)
    with pytest.raises(plugins.PluginError, match=r"plugin 'no_such_pkg_xyz' could not be imported \(ModuleNotFoundError") as info:
        plugins.load_plugins(["no_such_pkg_xyz"])
    assert "\n" not in str(info.value) and "PYTHONPATH" in str(info.value)
    with pytest.raises(plugins.PluginError, match="does not exist"):
        plugins.load_plugins(["/nowhere/my_env.py"])


def test_unknown_family_loads_plugins_once_then_names_the_options(user_package, monkeypatch):
    """family_info on a miss loads FORGERL_PLUGINS and entry points, so black-box paths see them."""
    no_entry_points(monkeypatch)
    monkeypatch.setenv(plugins.PLUGINS_ENV_VAR, "acme_envs")
    assert family_info(FAMILY).name == FAMILY  # never loaded explicitly
    with pytest.raises(KeyError, match="--plugin MODULE") as info:
        family_info("no-such-family")
    assert "entry point" in str(info.value) and "registered families:" in str(info.value)


def test_entry_points_load_and_a_broken_one_is_a_warning(user_package, monkeypatch):
    fake_entry_points(monkeypatch, {"forgerl.envs": [("broken", "acme_missing_module"), ("acme", "acme_envs")]})
    with pytest.warns(plugins.PluginWarning, match=r"forgerl.envs:broken \(acme_missing_module\) failed to load"):
        assert family_info(FAMILY).name == FAMILY
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list_families()  # entry points are scanned once: no second warning


def test_entry_point_may_name_a_format_class(fresh_plugins, monkeypatch):
    """A format from the user's package (tests/chat/user_format.py) found by `get_format` on a miss."""
    from forgerl.chat import get_format, list_formats, unregister_format

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "chat"))
    import user_format

    name = user_format.TaggedLinesFormat.name
    if name in list_formats():
        unregister_format(name)
    monkeypatch.setattr(plugins, "_STATE", plugins._State())
    fake_entry_points(monkeypatch, {"forgerl.formats": [("tagged", "user_format:TaggedLinesFormat")]})
    try:
        assert type(get_format(name)) is user_format.TaggedLinesFormat
    finally:
        unregister_format(name)


def test_unknown_format_message_names_the_plugin_options(fresh_plugins, monkeypatch):
    from forgerl.chat import get_format

    no_entry_points(monkeypatch)
    with pytest.raises(KeyError, match="unknown chat format 'nope'.*--plugin MODULE"):
        get_format("nope")


# --- validation uses the family's own no-op ------------------------------------------------------

BROKEN_SOURCE = textwrap.dedent('''
    from forgerl.envs import Environment, Family, Task, Verdict, register_env
    from forgerl.types import Message, ToolCall, ToolSpec

    FINISH = ToolSpec(name="finish", description="Finish.", parameters={
        "type": "object", "properties": {"result": {"type": "string"}}, "required": ["result"]})

    class FinishEnv(Environment):
        family = "acme-finish"
        def __init__(self, seed=0): self.result = None
        @property
        def done(self): return self.result is not None
        def tools(self): return [FINISH]
        def reset(self, task):
            self.task, self.result = task, None
            return [Message(role="user", content=task.prompt)]
        async def execute(self, call):
            self.result = call.arguments.get("result")
            return "ok"
        def verify(self, trajectory):  # broken: any submission passes
            return Verdict(outcome=1.0 if self.result is not None else 0.0)
        def gold_solution(self, task):
            return [[ToolCall(name="finish", arguments={"result": "42"})]]

    def sample(seed): return Task(id=f"f-{seed}", family="acme-finish", prompt="What is 6*7?", answer="42")
''')


@pytest.mark.parametrize("noop", ['lambda task: [[ToolCall(name="finish", arguments={"result": ""})]]',
                                  'lambda task: [[ToolCall(name="submit_answer", arguments={"answer": ""})]]'])
def test_a_verifier_that_accepts_any_submission_fails_validation(tmp_path, monkeypatch, fresh_plugins, noop):
    """The old check submitted `submit_answer(answer="")`: refused by a family whose submit tool is
    `finish`, so a verifier scoring every submission 1.0 passed. Now the family's declared no-op
    runs, and a no-op naming a tool the family does not offer is itself a failure."""
    from forgerl.cli.envs import validate_families

    no_entry_points(monkeypatch)
    path = tmp_path / "acme_finish.py"
    path.write_text(BROKEN_SOURCE + f"\nregister_env(Family(name='acme-finish', make_env=FinishEnv, sample_task=sample, noop={noop}))\n")
    plugins.load_plugins([str(path)])
    [row] = validate_families(["acme-finish"], per_difficulty=3)
    assert row.gold_passed == 3 and not row.ok
    assert row.problems and ("a no-op scored 1" in row.problems[0] or "does not offer" in row.problems[0]), row.problems


def test_a_family_without_a_declared_noop_is_validated_with_a_warning(tmp_path, monkeypatch, fresh_plugins):
    from rich.console import Console

    from forgerl.cli.envs import print_validation, validate_families

    no_entry_points(monkeypatch)
    path = tmp_path / "acme_finish.py"
    path.write_text(BROKEN_SOURCE + "\nregister_env(Family(name='acme-finish', make_env=FinishEnv, sample_task=sample))\n")
    plugins.load_plugins([str(path)])
    [row] = validate_families(["acme-finish"], per_difficulty=2)
    assert row.ok and row.warnings and "no no-op declared" in row.warnings[0]
    console = Console(record=True, width=300)
    print_validation(console, [row])
    assert "warning: acme-finish: no no-op declared" in console.export_text()


def test_every_builtin_family_declares_its_noop():
    """Every built-in family declares the no-op `envs validate` plays."""
    builtin = [name for name in list_families() if family_info(name).make_env.__module__.startswith("forgerl.")]
    assert "swe-bugfix" in builtin and "tool-reasoning" in builtin  # (families other tests register are not ours)
    undeclared = [name for name in builtin if family_info(name).noop is None]
    assert undeclared == [], undeclared


# --- end to end through the command line ---------------------------------------------------------


def cli_app() -> typer.Typer:
    """The commands as forgerl's app mounts them (cli/envs.py's envs_app and rollout, eval)."""
    from forgerl.cli.envs import envs_app
    from forgerl.cli.eval import eval_command

    app = typer.Typer()
    app.add_typer(envs_app, name="envs")
    app.command("eval")(eval_command)
    return app


def test_envs_validate_and_list_with_plugin_flag(user_package, monkeypatch):
    no_entry_points(monkeypatch)
    runner = CliRunner()
    result = runner.invoke(cli_app(), ["envs", "validate", FAMILY, "-n", "3", "--plugin", "acme_envs"])
    assert result.exit_code == 0, result.output
    assert "yes" in result.output and "warning" not in result.output
    result = runner.invoke(cli_app(), ["envs", "list"])
    assert FAMILY in result.output


def test_forgerl_envs_validate_finds_an_entry_point_plugin(user_package, monkeypatch):
    """Through forgerl's real app, with no flag: the entry point declared in the package's pyproject."""
    from forgerl.cli.main import app

    fake_entry_points(monkeypatch, {"forgerl.envs": [("acme", "acme_envs")]})
    result = CliRunner().invoke(app, ["envs", "validate", FAMILY, "-n", "2"])
    assert result.exit_code == 0, result.output


def test_a_bad_plugin_flag_is_a_usage_error(fresh_plugins, monkeypatch):
    no_entry_points(monkeypatch)
    result = CliRunner().invoke(cli_app(), ["envs", "list", "--plugin", "no_such_pkg_xyz"])
    assert result.exit_code == 2 and "could not be imported" in result.output


def test_forgerl_eval_on_a_plugin_family(user_package, monkeypatch, tmp_path):
    no_entry_points(monkeypatch)
    out = tmp_path / "eval"
    result = CliRunner().invoke(cli_app(), ["eval", "--env", FAMILY, "--plugin", "acme_envs", "-n", "2", "--model",
                                            "tiny-random", "--max-turns", "1", "--max-tokens", "8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "eval_report.json").is_file()
    import json

    report = json.loads((out / "eval_report.json").read_text())
    assert report["env"] == FAMILY


def test_forgerl_train_on_a_plugin_family_records_the_plugin(user_package, monkeypatch, tmp_path):
    """`forgerl train --plugin acme_envs --env acme-echo`: the family resolves, the run trains, and
    config.toml records the plug-in so that `--resume` (and child processes) find it again."""
    import os

    from forgerl.cli.main import run_cli
    from forgerl.train.config import load_config

    no_entry_points(monkeypatch)
    monkeypatch.setenv("FORGERL_PLUGINS", "")  # restored after the test (the run sets it for its children)
    run_dir = tmp_path / "run"
    args = ["train", "--plugin", "acme_envs", "--env", FAMILY, "--model", "tiny-random", "--steps", "1",
            "--run-dir", str(run_dir), "--set", "groups_per_step=2", "--set", "group_size=2", "--set", "max_turns=1",
            "--set", "max_tokens=8", "--set", "eval.tasks=1", "--set", "difficulty=[1]"]
    assert run_cli(args) == 0
    assert load_config(run_dir / "config.toml").plugins == ["acme_envs"]
    assert os.environ["FORGERL_PLUGINS"] == "acme_envs"
