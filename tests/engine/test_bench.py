"""The engine benchmark runs all three methods on the same workload (no timing assertions here:
speed is judged by the ratio the benchmark prints, not by a unit test)."""

from __future__ import annotations

from forgerl.engine.bench import make_workload, run_engine_bench


def test_workload_contexts_extend_turn_by_turn():
    w = make_workload(vocab=100, sessions=3, turns=4, new_tokens=5)
    assert w.sessions == 3 and w.turns == 4
    assert len({tuple(s[:160]) for s in w.starts}) == 1  # a shared system prompt
    assert all(10 <= t < 100 for s in w.starts for t in s)


def test_bench_reports_every_method(capsys):
    ratios = run_engine_bench(model="tiny-random", sessions=2, turns=2, max_tokens=3, device="cpu")
    out = capsys.readouterr().out
    assert "hf generate, per request" in out and "prefix reuse" in out
    assert ratios["forgerl_tokens_per_s"] > 0
    assert all(r > 0 for k, r in ratios.items())
