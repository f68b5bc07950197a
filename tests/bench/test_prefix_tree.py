"""The prefix-tree benchmark runs end to end on a tiny batch and reports consistent token counts."""

from __future__ import annotations

from forgerl.bench.prefix_tree import run_prefix_tree_bench, synthetic_group
from forgerl.testing import build_micro_moe


def test_synthetic_group_matches_the_issue_shape():
    group = synthetic_group(4096, group_size=8, turns=4, seed=0)
    assert len(group) == 8 and all(len(t.calls) == 4 for t in group)
    first = group[0].calls
    assert len(first[0].prompt_ids) == 1000
    assert all(50 <= len(c.completion_ids) <= 300 for t in group for c in t.calls)
    tool = len(first[1].prompt_ids) - len(first[0].prompt_ids) - len(first[0].completion_ids)
    assert 50 <= tool <= 500
    assert len({tuple(t.calls[0].prompt_ids) for t in group}) == 1  # the group shares its prompt


def test_bench_runs_small_and_orders_the_token_counts(capsys):
    results = run_prefix_tree_bench(model=build_micro_moe(), turns=(2,), group_size=3, budget=4096, call_subset=1,
                                    system_tokens=64, generated=(5, 20), tool=(5, 20))
    ((_, rows),) = results
    tokens = {r.mode: r.tokens for r in rows}
    assert tokens["per-call"] > tokens["per-trajectory"] > tokens["tree"]
    per_call = next(r for r in rows if r.mode == "per-call")
    assert per_call.scale == 3.0
    assert all(r.seconds > 0 and r.peak_bytes >= 0 for r in rows)
    out = capsys.readouterr().out
    assert "prefix-tree bench: G=3, T=2" in out
