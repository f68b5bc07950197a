"""Sampling one token per row from logits, and the behaviour-policy logprob of what was sampled.

Logprobs are the raw model's log-softmax in FP32 (no temperature, no truncation): the quantity the
trainer recomputes for the CISPO importance ratio (M2_NOTES §1). Each request owns a
`torch.Generator`, so a seeded request samples the same tokens whatever else shares its batch.
Temperature, top-k and top-p are applied to all rows at once with per-row settings.
"""

from __future__ import annotations

import torch

from forgerl.engine.base import SamplingParams


def filter_logits(logits: torch.Tensor, params: list[SamplingParams]) -> torch.Tensor:
    """Temperature, top-k and top-p applied row by row's own settings. logits: [rows, V] float32;
    rows with temperature 0 are left untouched (they are sampled greedily)."""
    rows, vocab = logits.shape
    device = logits.device
    temps = torch.tensor([p.temperature if p.temperature > 0 else 1.0 for p in params], device=device)
    logits = logits / temps.unsqueeze(1)
    if all(not 0 < p.top_k < vocab and p.top_p >= 1.0 for p in params):
        return logits  # nothing to truncate: skip the sort
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    rank = torch.arange(vocab, device=device).unsqueeze(0)
    top_k = torch.tensor([p.top_k if 0 < p.top_k < vocab else vocab for p in params], device=device)
    drop = rank >= top_k.unsqueeze(1)
    top_p = torch.tensor([p.top_p for p in params], device=device)
    if bool((top_p < 1.0).any()):
        probs = torch.softmax(sorted_logits.masked_fill(drop, float("-inf")), dim=-1)
        # drop a token when the mass strictly before it already reaches top_p (the first always stays)
        drop |= ((torch.cumsum(probs, dim=-1) - probs) >= top_p.unsqueeze(1)) & (top_p < 1.0).unsqueeze(1)
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits)


def sample_rows(
    logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator]
) -> tuple[list[int], list[float]]:
    """logits: [rows, V] in any dtype. Returns the sampled token and its raw logprob per row."""
    logits = logits.float()
    raw_logprobs = torch.log_softmax(logits, dim=-1)  # [rows, V]
    # inverse-CDF sampling: one uniform draw per row from that row's own generator, then one
    # batched search (a multinomial call per row cost more than the rest of the step on CPU)
    cdf = torch.cumsum(torch.softmax(filter_logits(logits, params), dim=-1), dim=-1)
    uniform = torch.stack([torch.rand((), generator=g, device=logits.device) for g in generators])
    sampled = torch.searchsorted(cdf, (uniform * cdf[:, -1]).unsqueeze(1), right=True).squeeze(1)
    greedy = torch.tensor([p.temperature == 0 for p in params], device=logits.device)
    index = torch.where(greedy, torch.argmax(logits, dim=-1), sampled.clamp(max=logits.shape[1] - 1))
    tokens = index.tolist()
    index = index.unsqueeze(-1)
    lps = raw_logprobs.gather(-1, index).squeeze(-1).tolist()
    return tokens, lps
