"""`forgerl envs list`, `forgerl envs validate` (exit codes: 0 when every gold scores 1 and every
no-op <= 0, 1 otherwise, 2 for an unknown family) and `forgerl rollout -n K --out DIR`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from forgerl.chat import get_format
from forgerl.cli.envs import validate_families
from forgerl.engine.scripted import ScriptedEngine
from forgerl.envs import base
from forgerl.envs.arithmetic import ArithmeticEnv
from forgerl.envs.arithmetic import sample_task as arithmetic_task
from forgerl.envs.base import Family, sample_task
from forgerl.envs.rewards import Verdict
from forgerl.types import Message, ToolCall, Trajectory

runner = CliRunner()


def cli(*args: str):
    from forgerl.cli.main import app

    return runner.invoke(app, list(args))


class _WrongGoldEnv(ArithmeticEnv):
    def gold_solution(self, task):
        return [[ToolCall(name="submit_answer", arguments={"answer": task.answer + 1})]]


class _GenerousEnv(ArithmeticEnv):
    def verify(self, trajectory: Trajectory) -> Verdict:
        return Verdict(outcome=1.0)  # scores a no-op: a broken verifier


class _CrashingEnv(ArithmeticEnv):
    def gold_solution(self, task):
        raise RuntimeError("generator bug")


@pytest.fixture()
def broken_families(monkeypatch):
    base.list_families()  # load the built-ins first
    for name, env in [("wrong-gold", _WrongGoldEnv), ("generous", _GenerousEnv), ("crashing", _CrashingEnv)]:
        monkeypatch.setitem(base._FAMILIES, name, Family(name=name, make_env=env, sample_task=arithmetic_task))


def test_list_shows_every_family_with_its_difficulties():
    result = cli("envs", "list")
    assert result.exit_code == 0, result.output
    assert "arithmetic" in result.output and "tool-reasoning" in result.output and "1, 2, 3, 4, 5" in result.output


def test_validate_passes_for_the_builtin_families():
    result = cli("envs", "validate", "-n", "4")
    assert result.exit_code == 0, result.output
    validated = [name for name in base.list_families() if not base.family_info(name).validation_cost]
    levels = sum(len(base.family_info(name).difficulties) for name in validated)
    assert result.output.count("yes") == levels >= 6 and "NO" not in result.output
    assert "skipped appdev" in result.output  # a browser per episode: validated by name (tests/envs/appdev)
    result = cli("envs", "validate", "tool-reasoning", "-n", "2", "--seed", "5")
    assert result.exit_code == 0 and "arithmetic" not in result.output


@pytest.mark.parametrize(
    ("name", "problem"),
    [("wrong-gold", "gold scored 0, expected 1"), ("generous", "a no-op scored 1, expected <= 0"),
     ("crashing", "RuntimeError: generator bug")],
)
def test_validate_fails_with_exit_code_1_and_says_why(broken_families, name, problem):
    result = cli("envs", "validate", name, "-n", "3")
    assert result.exit_code == 1, result.output
    assert "NO" in result.output and problem in result.output
    (row,) = validate_families([name], per_difficulty=3)
    assert not row.ok and len(row.problems) >= 3


class _HalfCreditEnv(ArithmeticEnv):
    """Half credit for an answer off by one: a family with partial solutions."""

    def verify(self, trajectory: Trajectory) -> Verdict:
        verdict = super().verify(trajectory)
        off_by_one = self._submitted is not None and abs(self._submitted - self.task.answer) == 1
        return Verdict(outcome=0.5) if off_by_one else verdict


def _answers(**offsets: float):
    def scripts(task):
        return {name: [[ToolCall(name="submit_answer", arguments={"answer": task.answer + off})]]
                for name, off in offsets.items()}

    return scripts


def test_validate_requires_declared_variants_strictly_between_zero_and_one(monkeypatch):
    base.list_families()
    fine = Family(name="half-credit", make_env=_HalfCreditEnv, sample_task=arithmetic_task,
                  variants=_answers(low=-1, high=1))
    monkeypatch.setitem(base._FAMILIES, "half-credit", fine)
    (row,) = validate_families(["half-credit"], per_difficulty=2)
    assert row.ok and (row.variants, row.variants_between) == (4, 4)
    result = cli("envs", "validate", "half-credit", "-n", "2")
    assert result.exit_code == 0 and "4/4" in result.output

    lax = Family(name="all-or-nothing", make_env=_HalfCreditEnv, sample_task=arithmetic_task,
                 variants=_answers(exact=0, far=7))
    monkeypatch.setitem(base._FAMILIES, "all-or-nothing", lax)
    (row,) = validate_families(["all-or-nothing"], per_difficulty=1)
    assert not row.ok and (row.variants, row.variants_between) == (2, 0)
    assert [p.split(": ", 1)[1] for p in row.problems] == [
        "variant exact scored 1, expected strictly between 0 and 1", "variant far scored 0, expected strictly between 0 and 1"]


def test_validate_without_a_name_skips_costly_families_and_says_how_to_run_them(monkeypatch):
    base.list_families()
    costly = Family(name="costly", make_env=ArithmeticEnv, sample_task=arithmetic_task, validation_cost="needs a GPU")
    monkeypatch.setitem(base._FAMILIES, "costly", costly)
    rows = validate_families(None, per_difficulty=1)
    skipped = [r for r in rows if r.skipped]
    assert {r.family for r in skipped} >= {"costly", "appdev"} and all(r.ok and r.tasks == 0 for r in skipped)
    (row,) = validate_families(["costly"], per_difficulty=1)
    assert row.ok and row.tasks == 1 and not row.skipped


def test_validate_unknown_family_is_a_usage_error():
    result = cli("envs", "validate", "no-such-family")
    assert result.exit_code == 2 and "unknown task family" in result.output


def test_rollout_n_writes_one_trajectory_per_episode_and_a_summary(tokenizer, tmp_path, monkeypatch):
    import forgerl.engine

    n, fmt = 3, get_format("minimax_m2")

    def route(prompt: str) -> str:
        """Episodes run concurrently on one engine: answer each from its own task's gold path, the
        task found by its prompt, the round by the tool-call blocks already in the context."""
        for i in range(n):
            task = sample_task("arithmetic", i)
            if task.prompt in prompt:
                rounds = base.make_env("arithmetic", i).gold_solution(task)
                turn = prompt.split(task.prompt, 1)[1].count("<minimax:tool_call>")
                return fmt.render_assistant_body(Message(role="assistant", reasoning="plan", tool_calls=rounds[turn]))
        raise AssertionError("unknown prompt")

    monkeypatch.setattr(forgerl.engine, "load_engine", lambda *a, **k: ScriptedEngine(tokenizer, [route], cycle=True))
    out = tmp_path / "rollouts"
    result = cli("rollout", "--env", "arithmetic", "-n", str(n), "--out", str(out), "--max-tokens", "300",
                 "--max-turns", "5")
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in out.iterdir())
    assert files == ["episode-0000.json", "episode-0001.json", "episode-0002.json", "summary.json"]
    trajectories = [Trajectory.model_validate_json((out / f).read_text()) for f in files[:-1]]
    assert [t.task_id for t in trajectories] == [sample_task("arithmetic", i).id for i in range(n)]
    assert all(t.reward == 1.0 for t in trajectories)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == n and summary["reward_mean"] == 1.0 and summary["statuses"] == {"completed": n}
    assert "reward mean" in result.output and "completed" in result.output


def test_rollout_without_n_keeps_the_single_episode_demo(monkeypatch):
    import forgerl.cli.transcript

    seen = {}
    monkeypatch.setattr(forgerl.cli.transcript, "run_demo", lambda **kwargs: seen.update(kwargs))
    result = cli("rollout", "--seed", "4", "--save", "t.json")
    assert result.exit_code == 0, result.output
    assert seen["seed"] == 4 and seen["save_path"] == "t.json" and seen["env"] == "tool-reasoning"
    assert cli("rollout", "-n", "2", "--save", "t.json").exit_code == 2  # --save is for one episode
