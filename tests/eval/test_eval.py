"""forgerl eval: the Wilson interval against an independent computation, grouping (any metadata
key), infra failures kept out of the denominator, and a whole run on a scripted engine that writes
its trajectories to a store."""

from __future__ import annotations

import math

import pytest

from forgerl.eval.run import held_out_tasks, summarize, wilson_interval
from forgerl.types import Trajectory, TrajectoryStatus


def wilson_by_bisection(passed: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Reference: the interval's ends are the p where |p_hat - p| = z * sqrt(p(1-p)/n) (the score
    test's boundary), found by bisection on each side of p_hat."""
    p_hat = passed / n
    f = lambda p: (p_hat - p) ** 2 - z * z * p * (1 - p) / n  # noqa: E731

    def root(lo: float, hi: float) -> float:
        for _ in range(200):
            mid = (lo + hi) / 2
            if (f(lo) > 0) == (f(mid) > 0):
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    low = 0.0 if passed == 0 else root(0.0, p_hat)
    high = 1.0 if passed == n else root(p_hat, 1.0)
    return low, high


@pytest.mark.parametrize("passed,n", [(0, 10), (10, 10), (5, 10), (1, 200), (37, 50), (81, 263)])
def test_wilson_matches_the_score_test_boundary(passed, n):
    low, high = wilson_interval(passed, n)
    ref_low, ref_high = wilson_by_bisection(passed, n)
    assert math.isclose(low, ref_low, abs_tol=1e-9) and math.isclose(high, ref_high, abs_tol=1e-9)
    assert 0 <= low <= passed / n <= high <= 1


def test_wilson_known_value_and_bad_input():
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and math.isclose(high, 0.2775, abs_tol=1e-4)  # the classic 0/10 upper bound
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def traj(category: str, outcome: float | None, **metadata) -> Trajectory:
    t = Trajectory(metadata={"category": category, **metadata})
    if outcome is None:
        t.status = TrajectoryStatus.FAILED
    else:
        t.status, t.reward, t.reward_breakdown = TrajectoryStatus.COMPLETED, outcome, {"outcome": outcome}
    return t


def test_summarize_groups_and_keeps_infra_failures_out_of_the_denominator():
    trajectories = [traj("a", 1.0, scaffold="x"), traj("a", 0.5, scaffold="y"), traj("a", None, scaffold="x"),
                    traj("b", 0.0, scaffold="x"), traj("b", 1.0, scaffold="y")]
    report = summarize(trajectories)
    assert (report.overall.episodes, report.overall.passed, report.overall.failed_infra) == (4, 2, 1)
    by = {g.group: g for g in report.groups}
    assert (by["a"].episodes, by["a"].passed, by["a"].failed_infra) == (2, 1, 1)  # partial credit is no pass
    assert by["b"].pass_rate == 0.5 and by["a"].reward_mean == 0.75
    scaffolds = {g.group: (g.episodes, g.passed) for g in summarize(trajectories, "scaffold").groups}
    assert scaffolds == {"x": (2, 1), "y": (2, 1)}  # another dimension: just a metadata key


def test_passed_is_the_verdict_not_the_shaped_reward():
    # one definition (Trajectory.passed) behind eval pass rates, training's per-domain eval metric and calibration
    assert Trajectory(reward=0.2, reward_breakdown={"outcome": 1.0}).passed
    assert not Trajectory(reward=1.0, reward_breakdown={"outcome": 0.0, "format": 1.0}).passed
    assert not Trajectory(reward=1.0, reward_breakdown={}).passed
    assert not Trajectory(reward_breakdown={"outcome": 1.0}, status=TrajectoryStatus.FAILED).passed


def test_held_out_tasks_cover_categories_and_avoid_training_seeds():
    pytest.importorskip("bfcl_eval")
    tasks = held_out_tasks("bfcl", 22)
    assert len({t.data["category"] for t in tasks}) == 11 and all(t.data["split"] == "eval" for t in tasks)
    assert all(t.data["category"].startswith("multi_turn_base") for t in held_out_tasks("bfcl", 5, difficulty=4))
    arithmetic = held_out_tasks("arithmetic", 3)
    assert all(int(t.id.split("-")[-1]) >= 10_000_000 for t in arithmetic)


def test_run_eval_on_a_scripted_engine_writes_the_store(tokenizer, tmp_path):
    pytest.importorskip("reasoning_gym")
    from rich.console import Console

    from forgerl.chat import get_format
    from forgerl.engine.scripted import ScriptedEngine
    from forgerl.eval.run import run_eval
    from forgerl.store import TrajectoryStore
    from forgerl.types import Message, ToolCall

    fmt = get_format("minimax_m2")
    tasks = held_out_tasks("reasoning-gym:chain_sum*1,leg_counting*1", 6, difficulty=1)  # eval's default: training's level

    def answer(prompt: str) -> str:  # right for chain_sum, wrong for leg_counting
        task = next(t for t in tasks if t.prompt in prompt)
        value = task.answer if task.data["generator"] == "chain_sum" else "-1"
        call = ToolCall(name="submit_answer", arguments={"answer": value})
        return fmt.render_assistant_body(Message(role="assistant", reasoning="done", tool_calls=[call]))

    engine = ScriptedEngine(tokenizer, [answer], cycle=True)
    report = run_eval("reasoning-gym:chain_sum*1,leg_counting*1", "scripted", 6, engine=engine, out_dir=tmp_path,
                      console=Console(width=200, record=True))
    by = {g.group: g for g in report.groups}
    assert by["chain_sum"].pass_rate == 1.0 and by["leg_counting"].pass_rate == 0.0
    assert report.overall.episodes == 6
    with TrajectoryStore(tmp_path) as store:
        (run,) = store.runs()
        assert run.config["kind"] == "eval" and store.count() == 6
        assert {t.metadata["category"] for t in store.iter_trajectories()} == {"chain_sum", "leg_counting"}
    assert (tmp_path / "eval_report.json").is_file()


def test_unknown_env_is_a_clear_error():
    from forgerl.eval.run import run_eval

    with pytest.raises(KeyError, match="unknown task family"):
        run_eval("no-such-family", n=1)


def test_eval_command_reports_bad_input_in_the_clis_error_style(capsys, tmp_path):
    """Through forgerl's command line: one or two lines (error:, hint:), exit 2, no traceback, and
    nothing loaded first."""
    from forgerl.cli.main import run_cli

    cases = [(["eval", "--env", "no-such-family", "-n", "1"], "unknown task family"),
             (["eval", "--env", "arithmetic", "-n", "0"], "-n must be >= 1"),
             (["eval", "--env", "arithmetic", "-n", "1", "--model", str(tmp_path / "missing")], "missing"),
             (["eval", "--env", "arithmetic", "-n", "1", "--format", "nope"], "unknown chat format")]
    for args, needle in cases:
        assert run_cli(args) == 2, args
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert 1 <= len(lines) <= 2 and lines[0].startswith("error: ") and needle in err, err
        assert "Traceback" not in err


def test_the_command_module_imports_light():
    import subprocess
    import sys

    code = ("import sys, forgerl.cli.eval, forgerl.eval.settings; "
            "print(sorted(m for m in ('torch', 'forgerl.envs', 'forgerl.eval.run', 'pydantic') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # `forgerl --help` stays fast with the eval command registered
