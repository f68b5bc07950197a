from __future__ import annotations

from forgerl.bench.sandbox import run_sandbox_bench


def test_bench_runs_with_small_numbers(capsys):
    report = run_sandbox_bench(calls=3, concurrent=2, calls_per_rollout=2)
    assert set(report["commands"]) == {"echo", "python3"}
    for row in report["commands"].values():
        assert row["bare_calls_per_s"] > 0 and row["sandbox_calls_per_s"] > 0 and row["overhead_ratio"] > 0
    assert report["rollouts_per_s"] > 0
    assert "rollouts/s" in capsys.readouterr().out
