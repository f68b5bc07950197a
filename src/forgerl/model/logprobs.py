"""Current-policy logprobs of recorded tokens, computed from the exact recorded token ids.

The LM head runs in FP32 (M1's fix for train/inference probability mismatch, M2_NOTES §1) and
only on the positions that predict a trainable token: in agent episodes most tokens are prompt,
tool schemas and observations, so this saves most of the head's cost.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from forgerl.model.lora import decoder_and_head
from forgerl.types import TrainingSample


@dataclass
class MicroBatch:
    samples: list[TrainingSample]
    input_ids: torch.Tensor  # [B, L] right-padded
    attention_mask: torch.Tensor  # [B, L]
    loss_mask: torch.Tensor  # [B, L] float: 1 where position t's token is a trainable target
    old_logprobs: torch.Tensor  # [B, L]
    advantages: torch.Tensor  # [B, L]

    @property
    def num_tokens(self) -> int:
        return int(self.loss_mask.sum())


def pack_micro_batches(samples: Sequence[TrainingSample], token_budget: int) -> list[list[TrainingSample]]:
    """Group samples (longest first) so each micro-batch's padded size B * L_max stays within the
    budget; a sample longer than the budget gets a micro-batch of its own."""
    order = sorted(samples, key=lambda s: len(s.input_ids), reverse=True)
    batches: list[list[TrainingSample]] = []
    for s in order:
        if batches and len(batches[-1][0].input_ids) * (len(batches[-1]) + 1) <= token_budget:
            batches[-1].append(s)
        else:
            batches.append([s])
    return batches


def collate(samples: Sequence[TrainingSample], device: torch.device | str, pad_id: int = 0) -> MicroBatch:
    width = max(len(s.input_ids) for s in samples)
    shape = (len(samples), width)
    ids = torch.full(shape, pad_id, dtype=torch.long)
    attn = torch.zeros(shape, dtype=torch.long)
    mask, old, adv = torch.zeros(shape), torch.zeros(shape), torch.zeros(shape)
    for i, s in enumerate(samples):
        n = len(s.input_ids)
        ids[i, :n] = torch.tensor(s.input_ids)
        attn[i, :n] = 1
        mask[i, :n] = torch.tensor(s.loss_mask, dtype=torch.float)
        old[i, :n] = torch.tensor(s.old_logprobs)
        adv[i, :n] = torch.tensor(s.advantages)
    mask[:, 0] = 0  # the first token has nothing to be predicted from
    return MicroBatch(list(samples), ids.to(device), attn.to(device), mask.to(device), old.to(device), adv.to(device))


def head_logits(head: torch.nn.Module, hidden: torch.Tensor, fp32: bool = True) -> torch.Tensor:
    """FP32 logits [N, V] of the LM head on the picked hidden states [N, H]: with `fp32`, the head's
    matmul itself runs in FP32 (M1's fix for the train/inference probability mismatch), not only
    its output; every trainer-side logprob (chains, trees, SFT) goes through here."""
    if not fp32:
        return head(hidden).float()
    bias = None if head.bias is None else head.bias.float()
    with torch.autocast(hidden.device.type, enabled=False):  # autocast would run the matmul in bf16
        return torch.nn.functional.linear(hidden.float(), head.weight.float(), bias)


def mixed_precision(device: torch.device | str, dtype: torch.dtype) -> contextlib.AbstractContextManager[object]:
    """Autocast to `dtype` for the trainer's forward (FP32 master weights, bf16 matmuls); nothing
    to do for FP32. The FP32 LM head opts out of it (head_logits)."""
    device_type = torch.device(device).type
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype)


def token_logprobs(model: torch.nn.Module, mb: MicroBatch, fp32_head: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """logp [B, L] of each trainable target token under `model` (differentiable) and the policy's
    entropy [B, L] at the predicting position (detached); both 0 where `loss_mask` is 0."""
    logp, entropy, _ = token_logprobs_and_hidden(model, mb, fp32_head)
    return logp, entropy


def token_logprobs_and_hidden(model: torch.nn.Module, mb: MicroBatch, fp32_head: bool = True
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`token_logprobs` plus the decoder's last hidden states [B, L, H] of the same forward (what
    the MTP heads read when they are co-trained in the RL step, train/mtp_cotrain.py)."""
    decoder, head = decoder_and_head(model)
    hidden = decoder(input_ids=mb.input_ids, attention_mask=mb.attention_mask).last_hidden_state
    rows, cols = mb.loss_mask.nonzero(as_tuple=True)  # target positions
    picked = hidden[rows, cols - 1]  # [N, H]: the hidden state that predicts each target
    logits = head_logits(head, picked, fp32_head)
    logp_all = torch.log_softmax(logits, dim=-1)  # [N, V]
    flat = logp_all.gather(-1, mb.input_ids[rows, cols].unsqueeze(-1)).squeeze(-1)  # [N]
    logp = torch.zeros(mb.loss_mask.shape, dtype=flat.dtype, device=flat.device).index_put((rows, cols), flat)
    with torch.no_grad():
        ent = -(logp_all.exp() * logp_all).sum(-1)
        entropy = torch.zeros_like(logp).index_put((rows, cols), ent)
    return logp, entropy, hidden
