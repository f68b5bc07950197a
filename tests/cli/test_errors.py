"""One error style (issue 27 item 4): a user's mistake is at most two lines on stderr (`error:`,
`hint:`), exit status 2, no traceback, and nothing created; `--debug` shows the traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from forgerl.cli.main import run_cli
from forgerl.train.config import dump_config, load_config

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "configs").glob("*.toml"))


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run_cli(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_user_error(code: int, err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert 1 <= len(lines) <= 2, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in err


def test_typo_in_a_config_key_is_one_error_with_a_suggestion(tmp_path, capsys):
    config = tmp_path / "train.toml"
    config.write_text("stepz = 3\n")
    code, _, err = _run(capsys, "train", str(config), "--run-dir", str(tmp_path / "run"))
    _assert_user_error(code, err, "stepz", "did you mean steps")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("setting", "needle"), [("[optim]\nlr = \"1e-4\"", "optim.lr"), ("temperature = -1", "temperature"),
                                                 ("[loss]\nname = 3", "loss.name"), ("top_p = 1.5", "top_p"),
                                                 ("max_tokens = 0", "max_tokens")])
def test_wrong_types_and_out_of_range_values_are_refused(tmp_path, capsys, setting, needle):
    config = tmp_path / "train.toml"
    config.write_text(setting + "\n")
    code, _, err = _run(capsys, "train", str(config), "--run-dir", str(tmp_path / "run"))
    _assert_user_error(code, err, needle)
    assert not (tmp_path / "run").exists()


def test_a_string_for_a_number_names_the_field_and_the_type(tmp_path):
    from forgerl.errors import ConfigError

    with pytest.raises(ConfigError, match=r"optim.lr: Input should be a valid number, got str '1e-4'"):
        load_config(None, optim={"lr": "1e-4"})
    assert load_config(None, optim={"lr": 1}).optim.lr == 1.0  # an int for a float is fine (TOML `lr = 1`)
    assert load_config(None, optim={"betas": [0.9, 0.99]}).optim.betas == (0.9, 0.99)  # a TOML array for a tuple


def test_a_string_in_a_nested_table_is_refused_too():
    from forgerl.errors import ConfigError

    with pytest.raises(ConfigError, match="perturb.tool_info.probability"):
        load_config(None, perturb={"tool_info": {"probability": "0.5"}})


def test_missing_model_dir_fails_before_the_run_dir_is_made(tmp_path, capsys):
    code, _, err = _run(capsys, "train", "--model", str(tmp_path / "nope"), "--run-dir", str(tmp_path / "run"))
    _assert_user_error(code, err, "nope", "hint:")
    assert not (tmp_path / "run").exists()


def test_unknown_env_fails_before_anything_is_made(tmp_path, capsys):
    code, out, err = _run(capsys, "train", "--env", "nope", "--model", "tiny-random", "--run-dir", str(tmp_path / "run"))
    _assert_user_error(code, err, "unknown task family 'nope'", "--plugin")
    assert not (tmp_path / "run").exists() and "forgerl train" not in out


def test_unknown_chat_format_fails_before_anything_is_made(tmp_path, capsys):
    code, _, err = _run(capsys, "train", "--set", "chat_format=nope", "--model", "tiny-random",
                        "--run-dir", str(tmp_path / "run"))
    _assert_user_error(code, err, "unknown chat format 'nope'")
    assert not (tmp_path / "run").exists()


def test_a_difficulty_the_family_lacks_is_refused(tmp_path, capsys):
    code, _, err = _run(capsys, "train", "--env", "arithmetic", "--set", "difficulty=[99]", "--model", "tiny-random",
                        "--run-dir", str(tmp_path / "run"))
    _assert_user_error(code, err, "no difficulty 99")


def test_port_in_use_is_one_error_before_the_model_loads(capsys):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, _, err = _run(capsys, "serve", "--model", "tiny-random", "--port", str(port))
    _assert_user_error(code, err, f"port {port}", "--port")


def test_debug_shows_the_traceback(tmp_path, capsys):
    code, _, err = _run(capsys, "--debug", "train", "--env", "nope", "--model", "tiny-random",
                        "--run-dir", str(tmp_path / "run"))
    assert code == 2 and "Traceback" in err
    code, _, err = _run(capsys, "train", "--env", "nope", "--debug", "--run-dir", str(tmp_path / "run"))
    assert code == 2 and "Traceback" in err  # --debug may follow the subcommand


def test_debug_from_the_environment(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FORGERL_DEBUG", "1")
    code, _, err = _run(capsys, "train", "--env", "nope", "--run-dir", str(tmp_path / "run"))
    assert code == 2 and "Traceback" in err


def test_a_bug_is_one_line_with_a_pointer_to_debug(monkeypatch, capsys):
    import forgerl.cli.train

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(forgerl.cli.train, "run_train", broken)
    code, _, err = _run(capsys, "train")
    assert code == 1 and "Traceback" not in err and "boom" in err and "--debug" in err
    assert len(err.strip().splitlines()) == 2


def test_typer_usage_errors_keep_their_form(capsys):
    code, _, err = _run(capsys, "train", "--no-such-option")
    assert code == 2 and "No such option" in err


def test_print_config_prints_resolved_toml_and_creates_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, out, err = _run(capsys, "train", "--print-config", "--steps", "4", "--set", "loss.name=grpo",
                          "--set", "optim.lr=3e-4", "--set", f"run_dir={run_dir}", "--set", "difficulty=[1, 2]")
    assert code == 0, err
    config_path = tmp_path / "printed.toml"
    config_path.write_text(out)
    config = load_config(config_path)
    assert (config.steps, config.loss.name, config.optim.lr, config.difficulty) == (4, "grpo", 3e-4, [1, 2])
    assert config.run_dir == str(run_dir) and not run_dir.exists()


def test_set_of_an_unknown_key_is_the_same_error_as_in_a_file(capsys):
    code, _, err = _run(capsys, "train", "--print-config", "--set", "loss.nmae=grpo")
    _assert_user_error(code, err, "loss.nmae: unknown key", "loss.name")


def test_set_keeps_the_other_keys_of_a_table_from_the_file(tmp_path):
    config = tmp_path / "train.toml"
    config.write_text("[loss]\nname = \"dapo\"\neps_high = 0.28\n")
    loaded = load_config(config, set_values=["loss.name=cispo"])
    assert (loaded.loss.name, loaded.loss.eps_high) == ("cispo", 0.28)


def test_train_help_shows_the_config_defaults(capsys):
    code, out, _ = _run(capsys, "train", "--help")
    assert code == 0
    for default in ("tool-reasoning", "runs/latest", "cispo", "--print-config", "--set"):
        assert default in out


def test_there_is_an_example_config_per_builtin_family():
    from forgerl.envs.base import family_info, list_families

    # forgerl's own families (others may have been registered by tests run before this one)
    builtin = {name for name in list_families() if family_info(name).make_env.__module__.startswith("forgerl.")}
    assert {load_config(path).env for path in EXAMPLES} == builtin


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_configs_load_and_round_trip(path, tmp_path, capsys):
    config = load_config(path)
    code, out, err = _run(capsys, "train", str(path), "--print-config")
    assert code == 0, err
    printed = tmp_path / "printed.toml"
    printed.write_text(out)
    assert load_config(printed) == config
    assert dump_config(load_config(printed)) == out


def test_rm_train_refuses_too_few_labels_before_loading_the_encoder():
    from forgerl.review.rm import LabelData, RewardModelConfig, train_reward_model

    one_pair = LabelData(texts={"a": [], "b": []}, tasks={"a": "t1", "b": "t1"}, preferences=[("a", "b")], ratings={})
    with pytest.raises(ValueError, match=r"too few labels for a reward model: 1 preference pair\(s\).*(held-out|training) split"):
        train_reward_model(one_pair, RewardModelConfig(encoder="no-such-encoder"))  # the encoder is never loaded


def _assert_debug_traceback(capsys: pytest.CaptureFixture[str], *argv: str) -> None:
    """The same command with --debug: still exit 2, now with the traceback (the error went through cli/errors.py)."""
    code, _, err = _run(capsys, "--debug", *argv)
    assert code == 2 and "Traceback" in err, err


def _demo_run(tmp_path: Path) -> Path:
    from forgerl.store import TrajectoryStore

    run = tmp_path / "run"
    with TrajectoryStore(run) as store:
        store.add_run({}, run_id="r")
    return run


@pytest.mark.parametrize("argv", [
    ("export", "{tmp}/not-a-run", "--out", "{tmp}/out"),
    ("store", "summary", "{tmp}/nonexistent"),
    ("store", "export", "{tmp}/nonexistent"),
    ("review", "--run", "{tmp}/nonexistent"),
    ("rm", "train", "--run", "{tmp}/nonexistent"),
    ("rm", "eval", "--run", "{tmp}/nonexistent", "--model", "{tmp}/nope"),
    ("review", "scripted-label", "--run", "{tmp}/nonexistent"),
    ("review", "--run", "{run}", "--ssl-certfile", "{tmp}/cert.pem"),
    ("review", "--run", "{run}", "--host", "0.0.0.0"),
    ("review", "--run", "{run}", "--rubric", "{tmp}/no-rubric.toml"),
    ("sft", "--init", "{tmp}/nonexistent", "--examples", "2", "--steps", "1", "--out", "{tmp}/sft"),
], ids=lambda argv: " ".join(a for a in argv if "{" not in a))
def test_each_command_reports_through_the_one_error_style(tmp_path, capsys, argv):
    run = _demo_run(tmp_path)
    args = [a.format(tmp=tmp_path, run=run) for a in argv]
    code, _, err = _run(capsys, *args)
    _assert_user_error(code, err, "hint:")
    _assert_debug_traceback(capsys, *args)


def test_store_export_of_an_unknown_format_says_which_exist(tmp_path, capsys):
    run = _demo_run(tmp_path)
    code, _, err = _run(capsys, "store", "export", str(run), "--format", "nope")
    _assert_user_error(code, err, "jsonl or parquet", "hint:")
    _assert_debug_traceback(capsys, "store", "export", str(run), "--format", "nope")


@pytest.mark.parametrize("argv", [("sft", "--difficulty", "one,two"), ("review",)])
def test_bad_or_missing_option_values_stay_typer_usage_errors(capsys, argv):
    code, _, err = _run(capsys, *argv)
    assert code == 2 and "Traceback" not in err and ("Invalid value" in err or "Missing option" in err), err
