"""`forgerl evolve` for real: training through forgerl, the doctor on each run, the evaluation report,
and the log replayed from itself (a tiny model and budget; slow tier)."""

from __future__ import annotations

import json

import pytest

from forgerl.cli.main import run_cli
from forgerl.evolve.log import read_log

SETTINGS = """
out = "{out}"
[base_set]
model = "tiny-random"
env = "arithmetic"
steps = 1
groups_per_step = 1
group_size = 2
max_turns = 2
max_tokens = 16
max_context = 512
"eval.tasks" = 1
"logging.backends" = []
[budget]
max_runs = 3
steps_per_run = 1
wall_s = 600
[objective]
metric = "mean_reward"
validation_tasks = 2
evaluation_tasks = 2
[space.knobs]
"optim.lr" = [1e-4, 1e-3]
[space.scaffold]
response_layout = ["default", "json"]
[halving]
candidates = 2
"""


@pytest.mark.slow
def test_evolve_trains_measures_logs_and_replays(tmp_path, capsys) -> None:
    path = tmp_path / "evolve.toml"
    path.write_text(SETTINGS.format(out=tmp_path / "evolve"))
    assert run_cli(["evolve", "run", str(path)]) == 0
    shown = capsys.readouterr().out
    assert "stopped: run budget reached: 3 of max_runs 3" in shown and "evaluation split, base" in shown
    log = tmp_path / "evolve" / "decisions.jsonl"
    header, lines = read_log(log)
    measured = [r for r in lines if r["kind"] == "measure"]
    assert len(measured) == 3 and measured[0]["decision"] == "baseline"
    for record in measured:  # every run trained through forgerl, in its own directory, and was read
        assert (tmp_path / "evolve" / "runs" / f"{record['index']:03d}" / "train" / "report.md").exists()
        assert "rollout/reward" in record["evidence"]["metrics"], sorted(record["evidence"]["metrics"])
        assert record["evidence"]["doctor_error"] is None
    assert lines[-1]["kind"] == "evaluation" and lines[-1]["rows"]["base"]["evaluation"]["split"] == "evaluation"
    assert run_cli(["evolve", "replay", str(log), "--index", "1"]) == 0
    replayed = capsys.readouterr().out
    assert replayed.splitlines()[0].startswith("ok: [000] incumbent of 1"), replayed  # the baseline it was compared with
    assert replayed.splitlines()[1].startswith("ok: [001]"), replayed
    assert json.loads(log.read_text().splitlines()[0])["base_config"]["model"] == "tiny-random"


@pytest.mark.slow
def test_scaffold_only_search_measures_the_base_policy_in_each_scaffold(tmp_path) -> None:
    """No training: one engine, every candidate a scaffold of the same policy, episodes rendered in it."""
    from forgerl.evolve.run import run_evolve
    from forgerl.evolve.settings import load_settings
    from forgerl.store import TrajectoryStore

    settings = load_settings(None, out=str(tmp_path / "evolve"),
                             base_set={"model": "tiny-random", "max_turns": 1, "max_tokens": 8, "max_context": 1024},
                             budget={"max_runs": 10, "steps_per_run": 0},
                             objective={"metric": "mean_reward", "validation_tasks": 2, "evaluation_tasks": 2},
                             space={"scaffold": {"naming": ["default", "upper"], "chat_format": ["default", "hermes"]}},
                             halving={"candidates": 2, "min_tasks": 1})
    result = run_evolve(settings, use_doctor=False)
    assert "nothing more to propose" in result.stop_reason and len(result.history) == 3  # 2 at 1 task, 1 at 2
    for outcome in result.history:
        with TrajectoryStore(tmp_path / "evolve" / "runs" / f"{outcome.index:03d}" / "validation") as store:
            trajectories = list(store.iter_trajectories())
        assert len(trajectories) == outcome.proposal.tasks
        scaffold = outcome.proposal.candidate.scaffold
        assert {t.chat_format for t in trajectories} == {"minimax_m2" if scaffold.chat_format == "default" else "hermes"}
        assert all(t.metadata["split"] == "validation" and t.metadata["scaffold"] == scaffold.name() for t in trajectories)
    assert result.evaluation["rows"]["base"]["evaluation"]["n"] == 2
