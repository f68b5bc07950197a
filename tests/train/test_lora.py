"""LoRA: the engine gets merged weights under the base names (same logits as the adapted policy,
abs tolerance 1e-5), merging leaves the adapters untouched, and a step trains only the adapters."""

from __future__ import annotations

import copy
import random

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from forgerl.model.lora import add_lora, inference_weights
from forgerl.train.config import TrainConfig
from forgerl.train.step import optimize

from .test_step import fake_run, trajectory  # noqa: F401  (shared builders)


def tiny_llama():
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2)).eval()


def test_merged_weights_reproduce_the_adapted_policy():
    base = tiny_llama()
    engine_copy = copy.deepcopy(base)
    policy = add_lora(base, rank=4, alpha=8, targets=["q_proj", "v_proj"])
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a non-trivial adapter (B starts at zero)
    ids = torch.randint(0, 300, (2, 12))
    with torch.no_grad():
        before = policy(ids).logits
        weights = inference_weights(policy)
        after = policy(ids).logits
    assert set(weights) == set(engine_copy.state_dict())
    engine_copy.load_state_dict(weights)
    with torch.no_grad():
        assert torch.allclose(engine_copy(ids).logits, before, atol=1e-5)
    assert torch.allclose(before, after, atol=1e-6)  # unmerged again


def test_a_step_trains_only_the_adapters():
    policy = add_lora(tiny_llama(), rank=4, alpha=8, targets=["q_proj", "v_proj"])
    rng = random.Random(0)
    groups = [[trajectory(policy, rng, 1.0), trajectory(policy, rng, 0.0)]]
    frozen = {n: p.clone() for n, p in policy.named_parameters() if not p.requires_grad}
    adapters = {n: p.clone() for n, p in policy.named_parameters() if p.requires_grad}
    cfg = TrainConfig(lora={"rank": 4}, optim={"lr": 1e-2})
    from forgerl.train.step import build_samples

    optimize(fake_run(policy, cfg), build_samples(groups, cfg))
    assert all(torch.equal(frozen[n], p) for n, p in policy.named_parameters() if n in frozen)
    assert any(not torch.equal(adapters[n], p) for n, p in policy.named_parameters() if n in adapters)
