"""The `forgerl store` helpers and their typer commands (run in-process with typer's runner)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from forgerl.cli.store import store_app
from forgerl.store import StoreError, TrajectoryStore
from forgerl.store.run_dir import export_store, summarize_store
from forgerl.types import Trajectory


@pytest.fixture()
def run_dir(tmp_path, make_traj):
    with TrajectoryStore(tmp_path) as store:
        run = store.add_run(run_id="r1")
        store.add_trajectories([make_traj(i, reward=i / 4, family="math" if i % 2 else "code") for i in range(4)], run)
        store.mark_consumed(["traj_000000"], 1)
        store.add_checkpoint(run, 1, "ckpt/1")
    return tmp_path


def test_export_helper_writes_next_to_the_store(run_dir, make_traj):
    target, count = export_store(run_dir, "jsonl", family="math")
    assert (target, count) == (run_dir / "trajectories.jsonl", 2)
    assert [Trajectory.model_validate_json(x) for x in target.read_text().splitlines()] == [
        make_traj(1, reward=0.25, family="math"), make_traj(3, reward=0.75, family="math")]


def test_summary_helper(run_dir):
    assert summarize_store(run_dir) == [{"run": "r1", "status": "running", "trajectories": 4, "consumed": 1,
                                         "superseded": 0, "mean_reward": pytest.approx(0.375), "latest_checkpoint_step": 1}]


def test_helpers_refuse_a_directory_without_a_store(tmp_path):
    with pytest.raises(StoreError, match="no store"):
        export_store(tmp_path / "empty", "jsonl")
    assert not (tmp_path / "empty").exists()  # looking did not create a run directory


def test_commands(run_dir, capsys):
    runner = CliRunner()
    result = runner.invoke(store_app, ["export", str(run_dir), "--format", "parquet", "--min-reward", "0.5"])
    assert result.exit_code == 0, result.output
    assert "wrote 2 trajectories" in result.output
    result = runner.invoke(store_app, ["summary", str(run_dir)])
    assert result.exit_code == 0 and "trajectories=4 consumed=1" in result.output
    from forgerl.cli.main import run_cli  # errors are printed by run_cli (cli/errors.py), not by the command

    code = run_cli(["store", "export", str(run_dir), "--format", "csv"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: unknown export format 'csv'") and "jsonl or parquet" in err
    assert len(err.strip().splitlines()) == 2 and err.splitlines()[1].startswith("hint: ")
