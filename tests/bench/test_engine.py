"""The engine benchmark runs every method on the same workload (no timing assertions here: speed is
judged by the ratio the benchmark prints, not by a unit test)."""

from __future__ import annotations

import pytest

from forgerl.bench.engine import (
    BUILTIN,
    HF_BATCHED,
    VLLM,
    make_workload,
    run_engine_bench,
    run_engine_bench_models,
)


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
    assert ratios[BUILTIN] == 1.0 and ratios[f"{BUILTIN} tokens/s"] == ratios["forgerl_tokens_per_s"]


def test_vllm_column_is_skipped_with_the_reason_when_vllm_is_missing(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("FORGERL_VLLM_VENV", str(tmp_path / "no-such-venv"))
    results = run_engine_bench_models(["tiny-random", "tiny-random"], sessions=2, turns=1, max_tokens=2,
                                      device="cpu", skip_per_request=True, vllm=True)
    out = capsys.readouterr().out
    assert "vLLM column skipped" in out and "forgerl engine install-vllm" in out  # says how to install it
    assert all(VLLM not in r and HF_BATCHED in r for r in results.values())
    assert "summary" in out  # several models: one side-by-side table at the end


def test_competing_load_bench_reports_every_row_and_ends_its_load(capsys, monkeypatch):
    """`--competing-load`: quiet and loaded rows, with and without the core plan, each as a share
    of the quiet throughput; the load processes are gone afterwards (speed is judged by the
    printed ratio on a quiet machine, not here)."""
    import os

    import forgerl.bench.engine as bench

    started: list[int] = []
    real_enter = bench.CompetingLoad.__enter__

    def recording_enter(self):
        out = real_enter(self)
        started.extend(p.pid for p in self.procs)
        return out

    monkeypatch.setattr(bench.CompetingLoad, "__enter__", recording_enter)
    out = bench.run_engine_load_bench(model="tiny-random", sessions=2, turns=1, max_tokens=2, load_processes=1)
    text = capsys.readouterr().out
    rows = ("quiet, default threads", "quiet, the plan's engine share", "loaded, default threads (no plan)",
            "loaded, engine on the plan", "loaded, engine and load on the plan")
    assert all(out[r] > 0 and out[f"{r} / quiet"] > 0 for r in rows)
    assert out["quiet, default threads / quiet"] == 1.0
    assert "goal >= 40%" in text and "core plan split" in text
    assert len(started) == 2  # one load for the unplanned rows, one planned
    for pid in started:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_competing_load_needs_a_process():
    from forgerl.bench.engine import run_engine_load_bench
    from forgerl.errors import ConfigError

    with pytest.raises(ConfigError, match="at least 1 process"):
        run_engine_load_bench(model="tiny-random", load_processes=0)
