"""Inference engines behind one protocol (engine/base.py): the built-in engine, a scripted fake."""

from __future__ import annotations

from typing import Any

from forgerl.chat import get_format
from forgerl.engine.base import Engine, GenerationResult, SamplingParams, TokenEvent
from forgerl.model.loading import load_policy

__all__ = ["Engine", "GenerationResult", "SamplingParams", "TokenEvent", "load_engine"]


def load_engine(
    model: str = "tiny-random",
    *,
    chat_format: str | None = "minimax_m2",
    device: str = "auto",
    dtype: str = "auto",
    max_context: int = 2048,
    num_slots: int = 32,
    fp32_lm_head: bool = True,
    seed: int = 0,
    speculative: int | None = None,
) -> Any:
    """The built-in engine over `model` (a built-in name such as `tiny-random`, or an HF directory),
    its tokenizer prepared for `chat_format`, stopping on the format's end-of-message marker.
    `speculative`: draft tokens per step from the model's MTP heads (None = one per head, 0 = off)."""
    from forgerl.engine.llm import LLMEngine  # cycle: forgerl.engine.llm imports forgerl.engine

    policy, tokenizer = load_policy(model, device=device, dtype=dtype, chat_format=chat_format, seed=seed)
    stop_ids: list[int] = []
    if chat_format is not None:
        stop_ids.append(tokenizer.convert_tokens_to_ids(get_format(chat_format).end_of_message))
    if tokenizer.eos_token_id is not None:
        stop_ids.append(tokenizer.eos_token_id)
    limit = getattr(policy.config, "max_position_embeddings", max_context) or max_context
    return LLMEngine(policy, tokenizer, model_name=model, max_context=min(max_context, limit), num_slots=num_slots,
                     stop_token_ids=tuple(stop_ids), fp32_lm_head=fp32_lm_head, speculative=speculative)
