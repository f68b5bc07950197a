"""Checkpoints of policies with tied weights (SmolLM2 ties its embedding and LM head): saved once,
loaded back tied, equal to what was saved (exact)."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from forgerl.store import TrajectoryStore
from forgerl.train.run import _load_latest_checkpoint, save_checkpoint


def tied_llama():
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=1, max_position_embeddings=64, tie_word_embeddings=True)
    return AutoModelForCausalLM.from_config(cfg)


def test_tied_weights_checkpoint_round_trip(tmp_path):
    store = TrajectoryStore(tmp_path / "store.sqlite")
    run_id = store.add_run({})
    pushed = []

    def run_for(policy):
        return SimpleNamespace(run_dir=tmp_path, step=3, version=3, policy=policy, store=store, run_id=run_id,
                               optimizer=torch.optim.AdamW(policy.parameters(), lr=1e-3),
                               engine=SimpleNamespace(update_weights=lambda w, v: pushed.append(v)))

    torch.manual_seed(0)
    trained = tied_llama()
    assert trained.lm_head.weight is trained.model.embed_tokens.weight
    save_checkpoint(run_for(trained))  # save_file(state_dict()) refused the shared tensor here

    fresh = tied_llama()
    resumed = run_for(fresh)
    resumed.step = resumed.version = 0
    _load_latest_checkpoint(resumed)
    assert (resumed.step, resumed.version, pushed) == (3, 3, [3])
    assert fresh.lm_head.weight is fresh.model.embed_tokens.weight  # still one tensor
    for (name, a), (_, b) in zip(trained.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), name
