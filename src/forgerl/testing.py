"""Tiny models and fakes for tests and examples (no downloads, seconds to build)."""

from __future__ import annotations

from typing import Any

from forgerl.model.loading import TinyMoEShape, tiny_config

MICRO_SHAPE = TinyMoEShape(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           head_dim=16, rotary_dim=8, intermediate_size=64, num_local_experts=4, num_experts_per_tok=2)


class CharTokenizer:
    """Decodes ids as printable characters: enough for code that only needs `decode`."""

    eos_token_id = None

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return "".join(chr(32 + (i % 90)) for i in ids)


def build_micro_moe(vocab_size: int = 300, seed: int = 0) -> Any:
    """A ~100k-parameter `minimax_m2` model in fp32, eval mode, deterministic for a seed."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(tiny_config(vocab_size, None, None, MICRO_SHAPE), dtype=torch.float32)
    return model.eval()
