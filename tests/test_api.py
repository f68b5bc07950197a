"""The Python API (forgerl.train / evaluate / rollout) on the tiny model: what each returns, that it
prints nothing unless asked, bad input refused with ConfigError, and `import forgerl` staying cheap
while `forgerl.train` and `forgerl.rollout` remain the subpackages as well."""

from __future__ import annotations

import subprocess
import sys

import pytest

import forgerl
from forgerl.errors import ConfigError

TINY_TRAIN = dict(model="tiny-random", env="arithmetic", difficulty=[1], steps=1, groups_per_step=1, group_size=2,
                  max_turns=1, max_tokens=8, max_context=512, eval={"every": 1, "tasks": 1}, device="cpu",
                  logging={"backends": []})


def test_import_forgerl_loads_no_torch_and_the_names_stay_subpackages_too():
    code = ("import sys, forgerl; assert 'torch' not in sys.modules and 'pydantic' not in sys.modules; "
            "import forgerl.train.loop, forgerl.rollout.scheduler; "
            "assert callable(forgerl.train) and callable(forgerl.rollout) and callable(forgerl.evaluate); "
            "assert forgerl.train.loop.train and forgerl.rollout.scheduler.RolloutScheduler; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_monkeypatch_by_dotted_path_still_reaches_the_subpackage(monkeypatch):
    import forgerl.train.loop as loop

    monkeypatch.setattr("forgerl.train.loop.optimize", "patched")
    assert loop.optimize == "patched"


def test_train_returns_the_result_writes_the_report_and_quiet(tmp_path, capsys):
    seen = []
    result = forgerl.train(TINY_TRAIN, run_dir=str(tmp_path / "run"), on_step=lambda step, m: seen.append(step))
    assert result.run_dir == str(tmp_path / "run") and [s for s, _ in result.eval_rewards] == [0, 1]
    assert all(0.0 <= r <= 1.0 for _, r in result.eval_rewards) and seen == [1]
    assert (tmp_path / "run" / "report.md").is_file() and (tmp_path / "run" / "checkpoints").is_dir()
    assert "forgerl train" not in capsys.readouterr().out


def test_train_takes_a_config_object_or_toml_with_overrides_and_refuses_bad_ones(tmp_path):
    from forgerl.api import as_train_config
    from forgerl.train.config import dump_config

    config = as_train_config(TINY_TRAIN, {"steps": 4})
    assert config.steps == 4 and as_train_config(config, {"seed": 3}).seed == 3
    (tmp_path / "c.toml").write_text(dump_config(config))
    assert as_train_config(tmp_path / "c.toml", {"steps": 2}).steps == 2
    assert as_train_config({"tool_timeout_s": None}).tool_timeout_s is None  # an explicit None is kept
    with pytest.raises(ConfigError, match="group_size"):
        forgerl.train(TINY_TRAIN, group_size=1, run_dir=str(tmp_path / "never"))
    with pytest.raises(ConfigError, match="not int"):
        as_train_config(7)  # type: ignore[arg-type]
    assert not (tmp_path / "never").exists()


def test_evaluate_returns_the_report_and_stores_trajectories(tmp_path, capsys):
    report = forgerl.evaluate("arithmetic", model="tiny-random", n=2, max_turns=1, max_tokens=8, out_dir=tmp_path)
    assert report.overall.episodes + report.overall.failed_infra == 2 and 0.0 <= report.overall.pass_rate <= 1.0
    assert (tmp_path / "eval_report.json").is_file() and report.run_id
    assert capsys.readouterr().out == ""


def test_rollout_returns_the_trajectory_and_prints_only_when_asked(tmp_path, capsys):
    from forgerl.types import Trajectory

    traj = forgerl.rollout("arithmetic", model="tiny-random", seed=3, max_turns=1, max_tokens=8,
                           save_path=tmp_path / "t.json")
    assert isinstance(traj, Trajectory) and len(traj.calls) == 1 and traj.metadata
    assert Trajectory.model_validate_json((tmp_path / "t.json").read_text()) == traj
    assert capsys.readouterr().out == ""
    forgerl.rollout("arithmetic", model="tiny-random", seed=3, max_turns=1, max_tokens=8, show=True)
    assert "outcome" in capsys.readouterr().out
