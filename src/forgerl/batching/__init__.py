"""Prefix-tree batching (M2_NOTES §4): all LLM calls of a batch merged into one token tree, packed
into micro-batches with tree attention, exact w.r.t. per-call training.

    build_tree_batch(samples, token_budget) -> TreeBatch (micro-batches + reduction stats)
    tree_token_logprobs(model, micro_batch)  -> (logp, entropy) in the losses' [B, W] row layout
    tree_sequence_logprobs(model, [(ids, mask), ...]) -> SFT helper: one tree micro-batch
"""

from __future__ import annotations

from forgerl.batching.tree import (
    PrefixTree,
    TreeBatch,
    TreeMicroBatch,
    TreeStats,
    build_tree_batch,
)

__all__ = [
    "PrefixTree",
    "TreeBatch",
    "TreeMicroBatch",
    "TreeStats",
    "build_tree_batch",
    "tree_sequence_logprobs",
    "tree_token_logprobs",
]


def __getattr__(name: str):  # the forward helpers import transformers-facing code: load on use
    if name in ("tree_token_logprobs", "tree_sequence_logprobs"):
        from forgerl.batching import forward  # heavy: torch; lazy attribute, and forward imports this package

        return getattr(forward, name)
    raise AttributeError(name)
