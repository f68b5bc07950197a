"""Logprobs of a packed prefix tree, returned in the per-sample row layout the losses take.

The decoder runs once over the packed row (tree attention, tree-depth positions); the LM head runs
in FP32 only on the hidden states that predict a distinct trainable token (as
`forgerl.model.logprobs.token_logprobs` does for padded rows); the results are then gathered back
into [B, W] rows, so every loss in `forgerl.rl` works unchanged and a target shared by several
samples (e.g. two rollouts that sampled the same first token) is computed once and used by each.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from forgerl.batching.attention import (
    ATTN_NAME,
    TreeAttention,
    TreeAttentionMode,
    attention_implementation,
    dense_mask_for,
    flex_block_mask,
    register,
    resolve_mode,
    sparse_plan,
)
from forgerl.batching.tree import TreeMicroBatch, build_tree_batch
from forgerl.model.logprobs import head_logits
from forgerl.model.lora import decoder_and_head
from forgerl.types import TrainingSample


def _decoder_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    return decoder_and_head(model)


def tree_hidden_states(decoder: torch.nn.Module, mb: TreeMicroBatch, mode: TreeAttentionMode = "auto",
                       block: int = 256) -> torch.Tensor:
    """Last hidden states [L, H] of the packed row under tree attention. `dense` always applies the
    explicit mask (the reference); otherwise a row that is a single chain runs as plain causal
    attention (the model's own kernel: flash/SDPA), and a branched row through `sparse`/`flex`."""
    device = mb.input_ids.device
    resolved = resolve_mode(mode, device)
    config = decoder.config
    other = sorted({t for t in (getattr(config, "layer_types", None) or []) if t != "full_attention"})
    if other:
        raise ValueError(f"tree attention implements full causal attention only; this model also has {', '.join(other)} "
                         "layers: train it with batch_mode 'chain' or 'call'")
    if resolved == "dense":
        dtype = next(decoder.parameters()).dtype
        mask = dense_mask_for(config, mb.subtree_end, dtype)
        out = decoder(input_ids=mb.input_ids, attention_mask=mask, position_ids=mb.position_ids, use_cache=False)
        return out.last_hidden_state[0]
    if mb.is_chain:  # e.g. one long trajectory per micro-batch: FlexAttention would only be slower
        # Only the real tokens, and no position_ids (they are 0..n-1 anyway): the end padding's
        # positions restart at 0, which transformers reads as packed sequences and answers with a
        # materialised [L, L] mask instead of the fused causal kernel (seen on an H200: 121 GiB).
        n = mb.real_length
        hidden = decoder(input_ids=mb.input_ids[:, :n], use_cache=False).last_hidden_state[0]
        return torch.nn.functional.pad(hidden, (0, 0, 0, mb.length - n))
    register()
    if resolved == "flex":
        plan = TreeAttention("flex", block_mask=flex_block_mask(mb.subtree_end))
    else:
        plan = TreeAttention("sparse", plan=sparse_plan(mb.subtree_end, block))
    with attention_implementation(config, ATTN_NAME):
        out = decoder(input_ids=mb.input_ids, position_ids=mb.position_ids, use_cache=False, tree_attention=plan)
    return out.last_hidden_state[0]


def tree_token_logprobs(model: torch.nn.Module, mb: TreeMicroBatch, fp32_head: bool = True,
                        mode: TreeAttentionMode = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """logp [B, W] of each trainable target token (differentiable) and the entropy [B, W] at the
    predicting position (detached); both 0 where `mb.loss_mask` is 0. Same contract as
    `forgerl.model.logprobs.token_logprobs`."""
    logp, entropy, _ = tree_token_logprobs_and_hidden(model, mb, fp32_head, mode)
    return logp, entropy


def tree_token_logprobs_and_hidden(model: torch.nn.Module, mb: TreeMicroBatch, fp32_head: bool = True,
                                   mode: TreeAttentionMode = "auto") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`tree_token_logprobs` plus the decoder's last hidden states [L, H] of the packed row (the
    same forward; `hidden[mb.row_packed]` gives them per sample): what the MTP heads read when
    they are co-trained in the RL step (train/mtp_cotrain.py)."""
    decoder, head = _decoder_and_head(model)
    hidden = tree_hidden_states(decoder, mb, mode)
    if mb.target_index.numel() == 0:  # nothing trainable: a zero that still depends on the model
        zero = hidden.sum() * 0.0
        return torch.zeros_like(mb.loss_mask) + zero.float(), torch.zeros_like(mb.loss_mask), hidden
    picked = hidden[mb.source_index]  # [N, H]
    # lazy, like _decoder_and_head (train/ imports batching/)

    logits = head_logits(head, picked, fp32_head)
    logp_all = torch.log_softmax(logits, dim=-1)  # [N, V]
    flat = logp_all.gather(-1, mb.input_ids[0, mb.target_index].unsqueeze(-1)).squeeze(-1)  # [N]
    keep = mb.loss_mask > 0
    logp = torch.where(keep, flat[mb.row_target], torch.zeros((), dtype=flat.dtype, device=flat.device))
    with torch.no_grad():
        ent = -(logp_all.exp() * logp_all).sum(-1)
        entropy = torch.where(keep, ent[mb.row_target], torch.zeros((), dtype=ent.dtype, device=ent.device))
    return logp, entropy, hidden


def tree_sequence_logprobs(model: torch.nn.Module, sequences: Sequence[tuple[Sequence[int], Sequence[int]]],
                           device: torch.device | str | None = None, *, fp32_head: bool = True,
                           mode: TreeAttentionMode = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """For SFT: token sequences with loss masks (e.g. conversations sharing the system prompt +
    tools prefix) merged into ONE tree micro-batch. Returns (logp [B, W], mask [B, W]): logp of
    every masked-in token given its prefix (differentiable), 0 elsewhere; row i is sequence i and
    column t its position t (position 0 is never a target). `-(logp * mask).sum()` is the summed
    next-token cross-entropy."""
    if not sequences:
        raise ValueError("tree_sequence_logprobs needs at least one sequence")
    samples = []
    for i, (ids, mask) in enumerate(sequences):
        if len(ids) != len(mask):
            raise ValueError(f"sequence {i}: {len(ids)} token ids but {len(mask)} loss-mask entries")
        samples.append(TrainingSample(input_ids=list(ids), loss_mask=list(mask), old_logprobs=[0.0] * len(ids),
                                      advantages=[0.0] * len(ids), trajectory_id=f"seq{i}", calls=[], policy_versions=[]))
    if device is None:
        device = next(model.parameters()).device
    batch = build_tree_batch(samples, token_budget=10**12)
    mb = batch.micro_batches[0].to(device)
    # build_tree_batch orders samples depth-first; put the rows back in the caller's order.
    row_of = {id(s): j for j, s in enumerate(mb.samples)}
    order = [row_of[id(sample)] for sample in samples]
    logp, _ = tree_token_logprobs(model, mb, fp32_head, mode)
    index = torch.tensor(order, device=logp.device)
    return logp[index], mb.loss_mask[index]
