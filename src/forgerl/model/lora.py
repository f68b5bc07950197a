"""LoRA (peft) for the trainer: wrap the policy, reach its decoder and head, and export merged
weights under the base model's parameter names for the engine (which never sees adapters)."""

from __future__ import annotations

from typing import Any

import torch

from forgerl.errors import ConfigError


def is_peft(model: torch.nn.Module) -> bool:
    return hasattr(model, "get_base_model") and hasattr(model, "merge_adapter")


def causal_lm(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers causal LM inside a peft wrapper (its layers carry the adapters)."""
    return model.get_base_model() if is_peft(model) else model


def decoder_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    lm = causal_lm(model)
    return lm.base_model, lm.get_output_embeddings()


def add_lora(model: torch.nn.Module, rank: int, alpha: float, targets: list[str]) -> torch.nn.Module:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError("lora.rank > 0 needs peft: pip install 'forgerl[lora]' (or pip install peft)") from None
    return get_peft_model(model, LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0))


@torch.no_grad()
def inference_weights(model: torch.nn.Module) -> dict[str, Any]:
    """Weights as the engine's plain copy of the model names them: for a LoRA policy the adapters
    are merged in (then unmerged again, so training continues on the adapters)."""
    if not is_peft(model):
        return model.state_dict()
    model.merge_adapter()
    try:
        merged = {}
        for name, tensor in causal_lm(model).state_dict().items():
            if "lora_" in name:
                continue
            merged[name.replace(".base_layer.", ".")] = tensor.clone()
        return merged
    finally:
        model.unmerge_adapter()
