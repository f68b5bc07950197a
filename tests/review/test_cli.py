"""`forgerl review` / `forgerl rm` commands through typer's runner (no server started)."""

from __future__ import annotations

from typer.testing import CliRunner

from forgerl.review.auth import verify_password
from forgerl.review.cli import review_app, rm_app
from forgerl.store import TrajectoryStore

runner = CliRunner()


def test_demo_add_expert_and_refusals(tmp_path):
    run = tmp_path / "run"
    result = runner.invoke(review_app, ["demo", "--run", str(run), "--tasks", "2", "--rollouts", "2", "--label"])
    assert result.exit_code == 0, result.output
    assert "stored 4 trajectories" in result.output and "scripted expert: 4 rubric labels" in result.output

    result = runner.invoke(review_app, ["add-expert", "alice", "--run", str(run), "--password-stdin"],
                           input="correct horse battery\n")
    assert result.exit_code == 0, result.output
    with TrajectoryStore(run) as store:
        assert verify_password(store.get_expert("alice").password_hash, "correct horse battery")
    again = runner.invoke(review_app, ["add-expert", "alice", "--run", str(run), "--password-stdin"],
                          input="another-pass\n")
    assert again.exit_code == 2 and "already exists" in again.output
    short = runner.invoke(review_app, ["add-expert", "bob", "--run", str(run), "--password-stdin"], input="short\n")
    assert short.exit_code == 2 and "at least 8" in short.output

    remote = runner.invoke(review_app, ["--run", str(run), "--host", "0.0.0.0"])
    assert remote.exit_code == 2 and "--allow-remote" in remote.output
    missing = runner.invoke(review_app, ["--run", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no store" in missing.output


def test_rm_train_without_labels_says_what_to_do(tmp_path):
    run = tmp_path / "run"
    runner.invoke(review_app, ["demo", "--run", str(run), "--tasks", "1", "--rollouts", "2"])
    result = runner.invoke(rm_app, ["train", "--run", str(run)])
    assert result.exit_code == 2 and "no labels to train on" in result.output
