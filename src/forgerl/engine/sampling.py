"""Sampling one token per row from logits, and the behaviour-policy logprob of what was sampled.

Logprobs are the raw model's log-softmax in FP32 (no temperature, no truncation): the quantity the
trainer recomputes for the CISPO importance ratio (M2_NOTES §1). Each request owns a
`torch.Generator`, so a seeded request samples the same tokens whatever else shares its batch.
"""

from __future__ import annotations

import torch

from forgerl.engine.base import SamplingParams


def filter_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Temperature, top-k and top-p applied to one row of logits [V] (float32)."""
    logits = logits / params.temperature
    vocab = logits.shape[-1]
    if 0 < params.top_k < vocab:
        kth = torch.topk(logits, params.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the mass strictly before it already reaches top_p (the first always stays)
        drop = (torch.cumsum(probs, dim=-1) - probs) >= params.top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.empty_like(logits).scatter_(-1, order, sorted_logits)
    return logits


def sample_rows(
    logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator]
) -> tuple[list[int], list[float]]:
    """logits: [rows, V] in any dtype. Returns the sampled token and its raw logprob per row."""
    logits = logits.float()
    raw_logprobs = torch.log_softmax(logits, dim=-1)  # [rows, V]
    tokens: list[int] = []
    for row, (p, gen) in enumerate(zip(params, generators)):
        if p.temperature == 0:
            tok = int(torch.argmax(logits[row]))
        else:
            probs = torch.softmax(filter_logits(logits[row], p), dim=-1)
            tok = int(torch.multinomial(probs, 1, generator=gen))
        tokens.append(tok)
    index = torch.tensor(tokens, device=logits.device).unsqueeze(-1)
    lps = raw_logprobs.gather(-1, index).squeeze(-1).tolist()
    return tokens, lps
