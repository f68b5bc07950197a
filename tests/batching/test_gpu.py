"""Tree attention on CUDA (FlexAttention block mask). Needs a GPU: `pytest -m gpu tests/batching`.

fp32: the same 1e-5 logprob tolerance as on CPU (TF32 is off for matmuls by default in torch).
bf16: each kernel rounds differently, so the tree is compared with the per-call bf16 forward using
a self-calibrated bound: twice the per-call bf16 error against the fp32 reference, + 1e-3. Tree
and per-call bf16 are two roundings of the same fp32 computation, so their distance is at most
the sum of their distances to it; the factor 2 assumes the tree's rounding error is no larger
than per-call's (same dtype, same depth of accumulation).
"""

from __future__ import annotations

import copy

import pytest
import torch

from forgerl.batching import build_tree_batch, tree_token_logprobs
from forgerl.testing import build_micro_moe
from forgerl.types import chain_samples

from .conftest import Shape, random_batch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def per_call(model, s):
    ids = torch.tensor([s.input_ids], device="cuda")
    lp = torch.log_softmax(model(ids).logits[0].float(), -1)
    mask = torch.tensor(s.loss_mask, dtype=torch.bool, device="cuda")
    mask[0] = False
    cols = mask.nonzero().flatten()
    return lp[cols - 1].gather(-1, ids[0, cols].unsqueeze(-1)).squeeze(-1)


def tree_logprobs(model, samples, budget=512):
    out = {}
    for mb in build_tree_batch(samples, budget, pad_to_multiple=128).micro_batches:
        mb = mb.to("cuda")
        logp, _ = tree_token_logprobs(model, mb, mode="flex")
        for row, s in enumerate(mb.samples):
            out[id(s)] = logp[row][mb.loss_mask[row] > 0]
    return out


def test_flex_tree_logprobs_equal_per_call_fp32():
    model = build_micro_moe().cuda()
    samples = [s for g in random_batch(1, Shape(groups=2, group_size=4, turns=3)) for t in g
               for s in chain_samples(t, [1.0] * len(t.calls), merge=False)]
    with torch.no_grad():
        got = tree_logprobs(model, samples)
        for s in samples:
            assert torch.allclose(got[id(s)], per_call(model, s), atol=1e-5, rtol=0)


def test_flex_tree_logprobs_bf16_within_rounding_noise_and_gradients_flow():
    ref32 = build_micro_moe().cuda()
    model = copy.deepcopy(ref32).to(torch.bfloat16)
    samples = [s for g in random_batch(2, Shape(groups=2, group_size=4, turns=3)) for t in g
               for s in chain_samples(t, [1.0] * len(t.calls), merge=False)]
    with torch.no_grad():
        got = tree_logprobs(model, samples)
        for s in samples:
            exact = per_call(ref32, s)
            call16 = per_call(model, s)
            bound = 2 * float((call16 - exact).abs().max()) + 1e-3
            assert float((got[id(s)] - call16).abs().max()) <= bound
    mb = build_tree_batch(samples, 4096, pad_to_multiple=128).micro_batches[0].to("cuda")
    logp, _ = tree_token_logprobs(model, mb, mode="flex")
    (logp * mb.loss_mask).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad
               and p.grad is not None)
    assert model.get_output_embeddings().weight.grad is not None
