"""`forgerl bench scheduler` on a small workload: every mode consumes every task, the bound holds,
and (slow tier) the full workload meets the issue's goals."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgerl.bench.scheduler import MODES, Workload, run_mode, run_scheduler_bench, task_plan


def test_workload_is_seeded_and_long_tailed():
    w = Workload()
    assert task_plan(w, 7) == task_plan(w, 7) and task_plan(w, 7) != task_plan(Workload(seed=1), 7)
    env = sorted(s for i in range(200) for s in task_plan(w, i)["env_s"])
    assert env[-len(env) // 100] > 5 * env[len(env) // 2]  # the top 1% is far beyond the median


def test_small_bench_runs_every_mode(capsys):
    w = Workload(tasks=48, batch_size=8, capacity=24, max_staleness=4, train_s=0.02, scale=0.3)
    results = run_scheduler_bench(w)
    out = capsys.readouterr().out
    assert "windowed / synchronous throughput" in out
    assert set(results) == set(MODES)
    for mode, r in results.items():
        assert r["consumed"] == 48, mode
        assert r["stale_max"] <= w.max_staleness, mode
    assert results["sync"]["stale_max"] == 0 and results["sync"]["idle_frac"] > results["windowed"]["idle_frac"]


@pytest.mark.slow
def test_full_bench_meets_the_goals():
    import asyncio

    w = Workload()
    sync, windowed, greedy = (asyncio.run(run_mode(m, w)) for m in ("sync", "windowed", "greedy"))
    assert windowed["traj_per_s"] >= 2.5 * sync["traj_per_s"]
    assert windowed["stale_max"] <= w.max_staleness
    assert windowed["mix_tv"] < greedy["mix_tv"]


TINY = ["model=tiny-random", "env=arithmetic", "difficulty=[1]", "groups_per_step=2", "group_size=2", "max_turns=1",
        "max_tokens=8", "max_context=512", "eval.every=1", "eval.tasks=1", "logging.backends=[]"]


def test_real_mode_trains_each_arm_in_its_own_process_and_reports_it(capsys, tmp_path):
    """`--real` on a very short main job: each arm is a real `forgerl train` process with its own
    run directory; the report has each arm's wall time, ratio to sync and held-out rewards."""
    from forgerl.bench.scheduler_real import run_real_scheduler_bench

    results = run_real_scheduler_bench(steps=1, seed=3, set_values=TINY, keep=tmp_path, timeout_s=240)
    out = capsys.readouterr().out
    assert set(results) == {"sync", "windowed"}
    for mode, r in results.items():
        assert r.status == "completed" and r.wall_s > 0 and r.train_s > 0, mode
        assert [step for step, _ in r.eval_rewards] == [0, 1], mode  # held-out at step 0 and at the end
        assert 0.0 <= r.eval_first <= 1.0 and 0.0 <= r.eval_last <= 1.0
        assert (tmp_path / f"{mode}.log").is_file() and any((tmp_path / mode).iterdir())  # its own run directory
    assert results["sync"].eval_first == results["windowed"].eval_first  # same seed, same starting policy
    assert "windowed / synchronous wall time" in out and "goal <= 0.8x" in out
    assert "core plan split" in out and "core plan shared" in out  # the plan each arm ran with


def test_real_mode_refuses_unknown_modes_and_steps():
    from forgerl.bench.scheduler_real import run_real_scheduler_bench, train_command
    from forgerl.errors import ConfigError

    with pytest.raises(ConfigError, match="each must be one of"):
        run_real_scheduler_bench(steps=1, modes=("sync", "fast"))
    with pytest.raises(ConfigError, match="--steps must be at least 1"):
        run_real_scheduler_bench(steps=0)
    cmd = train_command("windowed", steps=2, seed=1, run_dir=Path("/tmp/x"), set_values=["optim.lr=1e-5"])
    assert cmd[1:4] == ["-m", "forgerl.cli.main", "train"] and "rollout.mode=windowed" in cmd and "optim.lr=1e-5" in cmd
