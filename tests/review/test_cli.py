"""`forgerl review` / `forgerl rm` commands through typer's runner (no server started)."""

from __future__ import annotations

from typer.testing import CliRunner

from forgerl.cli.main import run_cli
from forgerl.cli.review import review_app
from forgerl.review.auth import verify_password
from forgerl.store import TrajectoryStore

runner = CliRunner()


def _user_error(capsys, argv: list[str], monkeypatch=None, stdin: str | None = None) -> str:
    """Run `forgerl <argv>` as the entry point does: a refusal is exit 2 with error + hint lines (cli/errors.py)."""
    if stdin is not None:
        import io

        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = run_cli(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 2, err
    assert lines[0].startswith("error: ") and lines[1].startswith("hint: ")
    return err


def test_demo_add_expert_and_refusals(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    result = runner.invoke(review_app, ["demo", "--run", str(run), "--tasks", "2", "--rollouts", "2", "--label"])
    assert result.exit_code == 0, result.output
    assert "stored 4 trajectories" in result.output and "scripted expert: 4 rubric labels" in result.output

    result = runner.invoke(review_app, ["add-expert", "alice", "--run", str(run), "--password-stdin"],
                           input="correct horse battery\n")
    assert result.exit_code == 0, result.output
    with TrajectoryStore(run) as store:
        assert verify_password(store.get_expert("alice").password_hash, "correct horse battery")
    capsys.readouterr()
    assert "already exists" in _user_error(capsys, ["review", "add-expert", "alice", "--run", str(run),
                                                    "--password-stdin"], monkeypatch, "another-pass\n")
    assert "at least 8" in _user_error(capsys, ["review", "add-expert", "bob", "--run", str(run), "--password-stdin"],
                                       monkeypatch, "short\n")
    assert "--allow-remote" in _user_error(capsys, ["review", "--run", str(run), "--host", "0.0.0.0"])
    assert "no store" in _user_error(capsys, ["review", "--run", str(tmp_path / "nope")])


def test_rm_train_without_labels_says_what_to_do(tmp_path, capsys):
    run = tmp_path / "run"
    runner.invoke(review_app, ["demo", "--run", str(run), "--tasks", "1", "--rollouts", "2"])
    capsys.readouterr()
    assert "no labels to train on" in _user_error(capsys, ["rm", "train", "--run", str(run)])


def test_scripted_label_on_a_tool_reasoning_run(tmp_path, capsys):
    from forgerl.types import Message, ToolCall, Trajectory

    def episode(tid: str, expression: str, reward: float) -> Trajectory:
        return Trajectory(id=tid, task_id="t", reward=reward, messages=[
            Message(role="user", content="What is the price of 2 figs?"),
            Message(role="assistant", tool_calls=[ToolCall(id="l", name="lookup", arguments={"table": "price", "item": "fig"})]),
            Message(role="tool", tool_call_id="l", name="lookup", content="4"),
            Message(role="assistant", tool_calls=[ToolCall(id="c", name="calculator", arguments={"expression": expression})]),
            Message(role="tool", tool_call_id="c", name="calculator", content="8"),
            Message(role="assistant", tool_calls=[ToolCall(id="s", name="submit_answer", arguments={"answer": 8})]),
            Message(role="tool", tool_call_id="s", name="submit_answer", content="Answer 8 submitted.")])

    run = tmp_path / "run"
    with TrajectoryStore(run) as store:
        store.add_run({}, run_id="r")
        store.add_trajectories([episode("a", "2*4", 1.0), episode("b", "3*4", 0.0)], "r")
    result = runner.invoke(review_app, ["scripted-label", "--run", str(run)])
    assert result.exit_code == 0, result.output
    assert "2 rubric labels, 1 preferences; 0.50 of the trajectories are grounded" in result.output
    capsys.readouterr()
    assert "already holds labels" in _user_error(capsys, ["review", "scripted-label", "--run", str(run)])
