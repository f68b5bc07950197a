"""Tree attention on CUDA (FlexAttention block mask). Needs a GPU: `pytest -m gpu tests/batching`.

Tolerances:
- fp32 logprobs: |Δ| <= 1e-5, as on CPU (torch keeps TF32 off for fp32 matmuls by default).
- fp32 loss: relative 1e-5. fp32 gradients, per parameter tensor: ||g_tree - g_ref|| <= 1e-4 *
  ||g_ref|| + 1e-8 — ten times the CPU bound: CUDA reductions in the backward pass (atomics in
  the FlexAttention and embedding backward, split-K matmuls) add in a different order on every
  run, which is noise of ~1e-6 relative per tensor, not a difference in what is computed.
- bf16 logprobs: each kernel rounds differently, so the tree is compared with the per-call bf16
  forward using a self-calibrated bound: twice the per-call bf16 error against the fp32 reference,
  + 1e-3. Tree and per-call bf16 are two roundings of the same fp32 computation, so their distance
  is at most the sum of their distances to it; the factor 2 assumes the tree's rounding error is no
  larger than per-call's (same dtype, same depth of accumulation).
- MoE routing: identical top-k expert sets for every token (fp32).

The helpers take (device, mode) so the same checks can be run on CPU with mode "sparse" while
editing (`python -c "from tests.batching import test_gpu as t; t.check_gradients('cpu', 'sparse')"`).
"""

from __future__ import annotations

import copy

import pytest
import torch

from forgerl.batching import build_tree_batch, tree_token_logprobs
from forgerl.model.logprobs import collate, token_logprobs
from forgerl.rl import get_loss
from forgerl.testing import build_micro_moe
from forgerl.types import chain_samples

from .conftest import Shape, random_batch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
              # torch's silent fallback to the unfused kernel (materialises [L, L]) fails the test
              pytest.mark.filterwarnings("error:flex_attention called without torch.compile")]

LOGP_ATOL = 1e-5
LOSS_REL = 1e-5
GRAD_REL = 1e-4


def samples_of(seed: int, shape: Shape, merge: bool) -> list:
    return [s for g in random_batch(seed, shape) for t in g
            for s in chain_samples(t, [t.reward - 0.5] * len(t.calls), merge=merge)]


def per_call(model, s, device):
    ids = torch.tensor([s.input_ids], device=device)
    lp = torch.log_softmax(model(ids).logits[0].float(), -1)
    mask = torch.tensor(s.loss_mask, dtype=torch.bool, device=device)
    mask[0] = False
    cols = mask.nonzero().flatten()
    return lp[cols - 1].gather(-1, ids[0, cols].unsqueeze(-1)).squeeze(-1)


def tree_logprobs(model, samples, device, mode, budget=512):
    out = {}
    pad = 128 if mode == "flex" else 1
    for mb in build_tree_batch(samples, budget, pad_to_multiple=pad).micro_batches:
        mb = mb.to(device)
        logp, _ = tree_token_logprobs(model, mb, mode=mode)
        for row, s in enumerate(mb.samples):
            out[id(s)] = logp[row][mb.loss_mask[row] > 0]
    return out


def standard_decoders(device):
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    common = {"vocab_size": 300, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096}
    torch.manual_seed(0)
    return {name: AutoModelForCausalLM.from_config(cfg(**common), dtype=torch.float32).to(device).eval()
            for name, cfg in (("llama", LlamaConfig), ("qwen2", Qwen2Config))}


def check_logprobs_fp32(device: str, mode: str) -> float:
    """Tree logprobs = per-call logprobs for the MoE policy and Llama/Qwen2; returns the max |Δ|."""
    models = {"minimax_m2": build_micro_moe().to(device), **standard_decoders(device)}
    worst = 0.0
    for name, model in models.items():
        for seed in (1, 2):
            samples = samples_of(seed, Shape(groups=2, group_size=4, turns=3), merge=seed == 2)
            with torch.no_grad():
                got = tree_logprobs(model, samples, device, mode)
                for s in samples:
                    err = float((got[id(s)] - per_call(model, s, device)).abs().max())
                    assert err <= LOGP_ATOL, (name, seed, err)
                    worst = max(worst, err)
    return worst


def check_gradients(device: str, mode: str, seed: int = 3) -> tuple[float, float]:
    """CISPO loss and every parameter gradient of the tree vs one unpadded forward per call;
    returns (loss relative error, worst per-tensor gradient relative error)."""
    base = build_micro_moe().to(device).train()
    shape = Shape(groups=2, group_size=3, turns=3)
    chains, calls = samples_of(seed, shape, merge=True), samples_of(seed, shape, merge=False)
    total = sum(s.num_tokens for s in calls)
    loss_fn = get_loss("cispo")

    def run(model, parts):
        model.zero_grad(set_to_none=True)
        loss = 0.0
        for logp, mb in parts(model):
            out = loss_fn(logp, mb.old_logprobs, mb.advantages, mb.loss_mask, num_tokens=total,
                          num_sequences=len(calls))
            out.loss.backward()
            loss += float(out.loss.detach())
        return loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    def per_call_parts(model):
        for s in calls:
            mb = collate([s], device)
            yield token_logprobs(model, mb)[0], mb

    def tree_parts(model):
        pad = 128 if mode == "flex" else 1
        for mb in build_tree_batch(chains, 256, pad_to_multiple=pad).micro_batches:
            mb = mb.to(device)
            yield tree_token_logprobs(model, mb, mode=mode)[0], mb

    ref_loss, ref_grads = run(copy.deepcopy(base), per_call_parts)
    got_loss, got_grads = run(copy.deepcopy(base), tree_parts)
    loss_err = abs(got_loss - ref_loss) / max(abs(ref_loss), 1e-12)
    assert loss_err <= LOSS_REL, (got_loss, ref_loss)
    assert ref_grads.keys() == got_grads.keys()
    worst = 0.0
    for name, ref in ref_grads.items():
        err = float((got_grads[name] - ref).norm())
        assert err <= GRAD_REL * float(ref.norm()) + 1e-8, (name, err, float(ref.norm()))
        worst = max(worst, err / max(float(ref.norm()), 1e-12))
    return loss_err, worst


def check_routing(device: str, mode: str) -> int:
    """Top-k expert sets per token and layer are the same in the tree as per call; returns tokens checked."""
    model = build_micro_moe().to(device)
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "e_score_correction_bias"):
                m.e_score_correction_bias.uniform_(-0.05, 0.05)
    picked: list[torch.Tensor] = []
    hooks = [m.gate.register_forward_hook(lambda mod, inp, out: picked.append(out[2].sort(-1).values))
             for m in model.modules() if hasattr(m, "e_score_correction_bias")]
    checked = 0
    try:
        samples = samples_of(4, Shape(), merge=False)
        mb = build_tree_batch(samples, 10_000, pad_to_multiple=128 if mode == "flex" else 1).micro_batches[0].to(device)
        with torch.no_grad():
            tree_token_logprobs(model, mb, mode=mode)
            tree = list(picked)
            for row, s in enumerate(mb.samples):
                picked.clear()
                model(torch.tensor([s.input_ids], device=device))
                index = mb.row_packed[row, : len(s.input_ids)]
                for layer, ref in enumerate(picked):
                    assert torch.equal(tree[layer][index], ref), (row, layer)
                checked += len(s.input_ids)
    finally:
        for h in hooks:
            h.remove()
    return checked


def test_flex_tree_logprobs_equal_per_call_fp32_moe_llama_qwen2():
    print(f"max |Δlogp| = {check_logprobs_fp32('cuda', 'flex'):.2e}")


def test_flex_tree_loss_and_gradients_equal_per_call_fp32():
    loss_err, grad_err = check_gradients("cuda", "flex")
    print(f"loss rel err {loss_err:.2e}, worst gradient rel err {grad_err:.2e}")


def test_flex_tree_moe_routing_is_the_same():
    assert check_routing("cuda", "flex") > 0


def test_flex_many_row_lengths_stay_exact():
    """Rows of many lengths (a run's micro-batches) through one compiled kernel: still exact."""
    model = build_micro_moe().cuda()
    with torch.no_grad():
        for seed in range(6):
            samples = samples_of(10 + seed, Shape(groups=1 + seed % 3, group_size=2 + seed % 2, turns=2 + seed),
                                 merge=True)
            got = tree_logprobs(model, samples, "cuda", "flex", budget=10_000)
            for s in samples:
                assert torch.allclose(got[id(s)], per_call(model, s, "cuda"), atol=LOGP_ATOL, rtol=0)


def test_flex_tree_logprobs_bf16_within_rounding_noise_and_gradients_flow():
    ref32 = build_micro_moe().cuda()
    model = copy.deepcopy(ref32).to(torch.bfloat16)
    samples = samples_of(2, Shape(groups=2, group_size=4, turns=3), merge=False)
    with torch.no_grad():
        got = tree_logprobs(model, samples, "cuda", "flex")
        for s in samples:
            exact = per_call(ref32, s, "cuda")
            call16 = per_call(model, s, "cuda")
            bound = 2 * float((call16 - exact).abs().max()) + 1e-3
            assert float((got[id(s)] - call16).abs().max()) <= bound
    mb = build_tree_batch(samples, 4096, pad_to_multiple=128).micro_batches[0].to("cuda")
    logp, _ = tree_token_logprobs(model, mb, mode="flex")
    (logp * mb.loss_mask).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.get_output_embeddings().weight.grad is not None
