"""Expert-load counting and the sign-rule bias update on the real `minimax_m2` router."""

from __future__ import annotations

import torch

from forgerl.model.moe import ExpertLoadTracker
from forgerl.testing import build_micro_moe


def test_loads_are_counted_in_training_forwards_only():
    model = build_micro_moe()
    tracker = ExpertLoadTracker(model)
    assert tracker.is_moe and len(tracker.counts) == model.config.num_hidden_layers
    with torch.no_grad():
        model.eval()
        model(torch.randint(0, 300, (2, 16)))
        assert all(int(c.sum()) == 0 for c in tracker.counts.values())
        model.train()
        model(torch.randint(0, 300, (2, 16)))
    k = model.config.num_experts_per_tok
    for counts, load in zip(tracker.counts.values(), tracker.loads().values()):
        assert int(counts.sum()) == 2 * 16 * k  # every token picks k experts
        assert abs(float(load.sum()) - 1.0) < 1e-6
    assert tracker.metrics()["moe/max_over_mean_load"] >= 1.0


def test_bias_moves_toward_under_loaded_experts():
    model = build_micro_moe()
    tracker = ExpertLoadTracker(model)
    name, block = next(iter(tracker._blocks.items()))
    tracker.counts[name] = torch.tensor([10, 0, 5, 5])
    before = block.e_score_correction_bias.clone()
    tracker.update_bias(step_size=0.01)
    delta = (block.e_score_correction_bias - before).tolist()
    assert delta[0] < 0 and delta[1] > 0 and abs(delta[2]) < 1e-9 and abs(delta[3]) < 1e-9
    assert int(tracker.counts[name].sum()) == 0  # counts reset after an update


def test_dense_models_have_no_moe_metrics():
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    tracker = ExpertLoadTracker(model)
    assert not tracker.is_moe and tracker.metrics() == {}
