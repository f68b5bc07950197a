"""Loading policies: the built-in `tiny-random` M2-style MoE, or any Hugging Face causal-LM directory.

The tiny model uses transformers' own `minimax_m2` architecture (QK-norm, partial RoPE, sigmoid
router with a selection bias, SwiGLU experts) at a size a 2-core laptop trains in minutes, with
the project's small tokenizer so the vocabulary does not dominate the cost (RESOURCES.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgerl.chat import get_format
from forgerl.errors import ConfigError
from forgerl.model.tokenizer import load_default_tokenizer, prepare_tokenizer

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

TINY_RANDOM = {"tiny-random": False, "tiny-random-digits": True}
"""The random-weight built-ins -> whether they use the digit-group tokenizer (model/tokenizer.py
DIGIT_GROUP): `tiny-random-digits` is where pre-training starts (docs/reading.md)."""
BUILTIN_MODELS = ("default", *TINY_RANDOM)
DEFAULT_POLICY_DIR = Path(__file__).resolve().parent.parent / "assets" / "policy"


def default_policy_dir() -> Path:
    """The shipped SFT-bootstrapped policy (`forgerl sft` rebuilds it)."""
    if not (DEFAULT_POLICY_DIR / "config.json").is_file():
        raise ConfigError(f"the default policy is missing from {DEFAULT_POLICY_DIR}; build it with `forgerl sft` "
                          "(a few minutes on CPU) or pass --model tiny-random / a checkpoint directory")
    return DEFAULT_POLICY_DIR


@dataclass(frozen=True)
class TinyMoEShape:
    """Dimensions of the embedded default policy (a few million parameters)."""

    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 32
    rotary_dim: int = 16  # partial RoPE, as in M2 (64 of 128 dims)
    intermediate_size: int = 192  # per-expert SwiGLU width
    num_local_experts: int = 8
    num_experts_per_tok: int = 2
    max_position_embeddings: int = 4096


def tiny_config(vocab_size: int, pad_token_id: int | None, eos_token_id: int | None, shape: TinyMoEShape = TinyMoEShape()) -> Any:
    from transformers import MiniMaxM2Config

    return MiniMaxM2Config(
        vocab_size=vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        head_dim=shape.head_dim,
        rotary_dim=shape.rotary_dim,
        num_local_experts=shape.num_local_experts,
        num_experts_per_tok=shape.num_experts_per_tok,
        max_position_embeddings=shape.max_position_embeddings,
        pad_token_id=pad_token_id,
        bos_token_id=None,
        eos_token_id=eos_token_id,
        tie_word_embeddings=False,
    )


def resolve_model_dir(name_or_dir: str) -> str | Path:
    """What a `--model` value names on disk: a training run (`RUN` = its latest good checkpoint,
    `RUN:best`, `RUN:step_N`) or a checkpoint directory resolves to that checkpoint, verified
    against its checksums; anything else is returned as given. Every command that loads a model
    goes through here, so each accepts run references."""
    from forgerl.model.checkpoints import (  # heavy: the store (sqlite), only when resolving
        CheckpointError,
        resolve_model_reference,
    )

    try:
        resolved = resolve_model_reference(name_or_dir)
    except CheckpointError as exc:
        raise ConfigError(str(exc)) from None
    return name_or_dir if resolved is None else resolved


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise ConfigError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16") from None


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    return device


def load_policy(
    name_or_dir: str,
    *,
    device: str = "cpu",
    dtype: str = "auto",
    chat_format: str | None = "minimax_m2",
    seed: int = 0,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model and its tokenizer, with the chat format's markers as single tokens.

    `tiny-random` (and `tiny-random-digits`, on the digit-group tokenizer) is built from a config
    with a fixed seed (no download). A run directory or run
    reference (`RUN`, `RUN:best`, `RUN:step_N`) resolves to its checkpoint (resolve_model_dir). A directory is loaded with
    `AutoModelForCausalLM`; when the format's markers had to be added to its tokenizer, the
    embedding matrix is resized to match. MTP heads that config.json declares are attached and
    loaded from `mtp.safetensors` beside the weights (model/mtp.py `load_mtp`; a missing file
    warns and loads with MTP off).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a local checkpoint loads in well under a second

    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    fmt = None
    if chat_format is not None:
        fmt = get_format(chat_format)

    if name_or_dir == "default":
        name_or_dir = str(default_policy_dir())
    elif name_or_dir not in TINY_RANDOM:
        name_or_dir = str(resolve_model_dir(name_or_dir))
    if name_or_dir in TINY_RANDOM:
        tokenizer = load_default_tokenizer(digit_groups=TINY_RANDOM[name_or_dir])
        if fmt is not None:
            tokenizer = prepare_tokenizer(tokenizer, fmt)
        eos = tokenizer.convert_tokens_to_ids(fmt.end_of_message) if fmt is not None else tokenizer.eos_token_id
        config = tiny_config(len(tokenizer), tokenizer.pad_token_id, eos)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model = model.to(device=device, dtype=torch_dtype)
    else:
        path = Path(name_or_dir)
        if not path.is_dir():
            raise ConfigError(
                f"model {name_or_dir!r} is neither a built-in model ({', '.join(BUILTIN_MODELS)}) nor a directory "
                "holding a Hugging Face checkpoint (config.json + weights); forgerl never downloads from a hub"
            )
        if not (path / "config.json").is_file():
            raise ConfigError(f"{path} has no config.json: point --model at a Hugging Face checkpoint directory")
        tokenizer = AutoTokenizer.from_pretrained(path)
        if fmt is not None:
            tokenizer = prepare_tokenizer(tokenizer, fmt)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(device)
        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer))
        from forgerl.model.mtp import load_mtp  # heavy: torch, as the rest of this function

        load_mtp(model, path)  # the MTP heads config.json declares, from mtp.safetensors (model/mtp.py)
    model.eval()
    return model, tokenizer
