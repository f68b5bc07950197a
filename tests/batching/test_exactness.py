"""The tree is exact: per-token logprobs, the loss, the parameter gradients and the MoE expert
choices from packed prefix trees equal those of per-call computation (each LLM call its own
unpadded forward pass), for random batches with branching, varied depths and lengths,
context-manager rewrites, multi-agent sub-agents and shared sampled tokens.

Tolerances (fp32, CPU): logprobs |Δ| <= 1e-5 (values are O(1..10): summation order in attention
differs, nothing else); loss relative 1e-5; gradients, per parameter tensor,
||g_tree - g_ref|| <= 1e-5 * ||g_ref|| (+1e-8 absolute for tensors whose gradient is ~0, e.g.
experts no token chose). Expert choices: identical top-k sets for every token.
"""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from forgerl.batching import (
    build_tree_batch,
    tree_sequence_logprobs,
    tree_token_logprobs,
)
from forgerl.model.logprobs import collate, token_logprobs
from forgerl.rl import get_loss
from forgerl.testing import build_micro_moe
from forgerl.types import chain_samples

from .conftest import Shape, random_batch

LOGP_ATOL = 1e-5
REL = 1e-5


def samples_of(groups, merge: bool):
    return [s for g in groups for t in g for s in chain_samples(t, [t.reward - 0.5] * len(t.calls), merge=merge)]


def per_call_logprobs(model, sample) -> torch.Tensor:
    """Reference: one unpadded causal forward of this sequence alone; logp at its trainable positions."""
    ids = torch.tensor([sample.input_ids])
    lp = torch.log_softmax(model(ids).logits[0].float(), -1)
    mask = torch.tensor(sample.loss_mask, dtype=torch.bool)
    mask[0] = False
    cols = mask.nonzero().flatten()
    return lp[cols - 1].gather(-1, ids[0, cols].unsqueeze(-1)).squeeze(-1)


def tree_rows(model, batch, mode):
    """{id(sample): logp at its trainable positions}, plus the per-micro-batch (logp, mb) pairs."""
    out, parts = {}, []
    for mb in batch.micro_batches:
        logp, _ = tree_token_logprobs(model, mb, mode=mode)
        parts.append((logp, mb))
        for row, s in enumerate(mb.samples):
            out[id(s)] = logp[row][mb.loss_mask[row] > 0]
    return out, parts


def tiny_models():
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    common = {"vocab_size": 300, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512}
    torch.manual_seed(0)
    llama = AutoModelForCausalLM.from_config(LlamaConfig(**common), dtype=torch.float32).eval()
    qwen = AutoModelForCausalLM.from_config(Qwen2Config(**common), dtype=torch.float32).eval()
    return {"minimax_m2": build_micro_moe(), "llama": llama, "qwen2": qwen}


MODELS = tiny_models()


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), budget=st.sampled_from([60, 150, 10_000]), merge=st.booleans(),
       mode=st.sampled_from(["sparse", "dense"]),
       shape=st.builds(Shape, groups=st.integers(1, 3), group_size=st.integers(1, 3), turns=st.integers(1, 4),
                       prompt_len=st.integers(2, 20), subagents=st.integers(0, 2)))
def test_logprobs_equal_per_call_forward(seed, budget, merge, mode, shape):
    model = MODELS["minimax_m2"]
    samples = samples_of(random_batch(seed, shape), merge)
    if not samples:
        return
    batch = build_tree_batch(samples, budget)
    with torch.no_grad():
        got, _ = tree_rows(model, batch, mode)
        for s in samples:
            ref = per_call_logprobs(model, s)
            assert got[id(s)].shape == ref.shape
            assert torch.allclose(got[id(s)], ref, atol=LOGP_ATOL, rtol=0), float((got[id(s)] - ref).abs().max())


@pytest.mark.parametrize("name", ["llama", "qwen2"])
@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_logprobs_equal_per_call_forward_for_standard_decoders(name, mode):
    model = MODELS[name]
    samples = samples_of(random_batch(7, Shape(groups=2, group_size=3, turns=3, subagents=1)), merge=False)
    batch = build_tree_batch(samples, 200)
    with torch.no_grad():
        got, _ = tree_rows(model, batch, mode)
        for s in samples:
            assert torch.allclose(got[id(s)], per_call_logprobs(model, s), atol=LOGP_ATOL, rtol=0)


def test_dense_mask_through_eager_attention():
    """The eager implementation adds the mask to the scores: the tree's mask must be additive there."""
    from transformers import AutoModelForCausalLM

    model = build_micro_moe()
    eager = AutoModelForCausalLM.from_config(copy.deepcopy(model.config), attn_implementation="eager").eval()
    eager.load_state_dict(model.state_dict())
    assert eager.config._attn_implementation == "eager"
    samples = samples_of(random_batch(11, Shape()), merge=False)
    batch = build_tree_batch(samples, 10_000)
    with torch.no_grad():
        got, _ = tree_rows(eager, batch, "dense")
        for s in samples:
            assert torch.allclose(got[id(s)], per_call_logprobs(model, s), atol=LOGP_ATOL, rtol=0)


def loss_and_grads(model, logp_parts, loss_name, total, sequences):
    loss_fn = get_loss(loss_name)
    model.zero_grad(set_to_none=True)
    loss = 0.0
    for logp, mb in logp_parts():
        out = loss_fn(logp, mb.old_logprobs, mb.advantages, mb.loss_mask, num_tokens=total, num_sequences=sequences)
        out.loss.backward()
        loss += float(out.loss.detach())
    return loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 10_000), budget=st.sampled_from([80, 10_000]), loss_name=st.sampled_from(["cispo", "gspo"]))
def test_loss_and_gradients_equal_per_call_training(seed, budget, loss_name):
    base = MODELS["minimax_m2"]
    # sequence-level losses see one sequence per call; token-level ones may use chains (the trainer's choice)
    samples = samples_of(random_batch(seed, Shape(groups=2, group_size=3, turns=3)), merge=loss_name == "cispo")
    calls = samples_of(random_batch(seed, Shape(groups=2, group_size=3, turns=3)), merge=False)
    total = sum(s.num_tokens for s in calls)
    assert total == sum(s.num_tokens for s in samples)

    ref_model, tree_model = copy.deepcopy(base).train(), copy.deepcopy(base).train()

    def per_call():
        for s in calls:  # one call per micro-batch: no padding at all
            mb = collate([s], "cpu")
            yield token_logprobs(ref_model, mb)[0], mb

    def tree():
        for mb in build_tree_batch(samples, budget).micro_batches:
            yield tree_token_logprobs(tree_model, mb, mode="sparse")[0], mb

    sequences = len(calls) if loss_name == "gspo" else len(samples)
    ref_loss, ref_grads = loss_and_grads(ref_model, per_call, loss_name, total, len(calls))
    got_loss, got_grads = loss_and_grads(tree_model, tree, loss_name, total, sequences)
    assert got_loss == pytest.approx(ref_loss, rel=REL, abs=1e-7)
    assert ref_grads.keys() == got_grads.keys()
    for name, ref in ref_grads.items():
        err = float((got_grads[name] - ref).norm())
        assert err <= REL * float(ref.norm()) + 1e-8, (name, err, float(ref.norm()))


def router_choices(model, run) -> list[torch.Tensor]:
    """top-k expert indices [tokens, k] of every MoE layer during `run()`, sorted per token."""
    picked = []
    hooks = [m.gate.register_forward_hook(lambda mod, inp, out: picked.append(out[2].sort(-1).values))
             for m in model.modules() if hasattr(m, "e_score_correction_bias")]
    try:
        with torch.no_grad():
            run()
    finally:
        for h in hooks:
            h.remove()
    return picked


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_moe_expert_choices_are_the_same_in_the_tree(seed):
    """Routing is per token (no capacity limit, no batch statistics), so packing cannot change it
    as long as each token's hidden state is the same; checked, not assumed, for every layer."""
    model = build_micro_moe()
    with torch.no_grad():  # a non-zero selection bias, as after some training
        for m in model.modules():
            if hasattr(m, "e_score_correction_bias"):
                m.e_score_correction_bias.uniform_(-0.05, 0.05)
    samples = samples_of(random_batch(seed, Shape()), merge=False)
    mb = build_tree_batch(samples, 10_000).micro_batches[0]
    tree = router_choices(model, lambda: tree_token_logprobs(model, mb, mode="sparse"))
    layers = len(tree)
    for row, s in enumerate(mb.samples):
        ref = router_choices(model, lambda ids=s.input_ids: model(torch.tensor([ids])))
        index = mb.row_packed[row, : len(s.input_ids)]
        for layer in range(layers):
            assert torch.equal(tree[layer][index], ref[layer]), (row, layer)


def test_sft_helper_matches_per_sequence_cross_entropy():
    model = build_micro_moe()
    system = list(range(10, 40))
    seqs = [(system + [5, 6, 7, 8], [0] * 30 + [0, 1, 1, 1]), (system + [9, 9], [0] * 30 + [1, 1]),
            ([3, 4, 5], [0, 1, 1])]
    with torch.no_grad():
        logp, mask = tree_sequence_logprobs(model, seqs, "cpu")
        assert mask.shape == logp.shape == (3, 34)
        for row, (ids, m) in enumerate(seqs):
            ref = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
            for t, keep in enumerate(m):
                if keep and t > 0:
                    assert abs(float(logp[row, t]) - float(ref[t - 1, ids[t]])) <= LOGP_ATOL
                else:
                    assert float(mask[row, t]) == 0 and float(logp[row, t]) == 0
    with pytest.raises(ValueError, match="loss-mask"):
        tree_sequence_logprobs(model, [([1, 2], [1])])


def test_optimizer_step_is_the_same_in_every_batch_mode():
    """The trainer's whole step (samples -> micro-batches -> loss -> AdamW) gives the same weights
    whether the batch is trained as a tree, as chains or call by call."""
    from types import SimpleNamespace

    from forgerl.model.moe import ExpertLoadTracker
    from forgerl.train.config import TrainConfig
    from forgerl.train.step import build_samples, optimize

    groups = random_batch(5, Shape(groups=2, group_size=3, turns=3))
    for g in groups:
        g[0].reward, g[1].reward = 1.0, 0.0  # a learning signal in every group
    base = build_micro_moe()
    results = {}
    for mode in ("tree", "chain", "call"):
        model = copy.deepcopy(base)
        cfg = TrainConfig(batch_mode=mode, optim={"micro_batch_tokens": 120, "lr": 1e-3}, moe_bias_step=0.0)
        run = SimpleNamespace(config=cfg, policy=model, tracker=ExpertLoadTracker(model),
                              optimizer=torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.adam_eps),
                              tokenizer=SimpleNamespace(pad_token_id=0), compute_dtype=torch.float32)
        metrics = optimize(run, build_samples(groups, cfg))
        results[mode] = (model, metrics)
    ref_model, ref_metrics = results["call"]
    for mode in ("tree", "chain"):
        model, metrics = results[mode]
        assert metrics["train/loss"] == pytest.approx(ref_metrics["train/loss"], rel=REL, abs=1e-7)
        assert metrics["train/grad_norm"] == pytest.approx(ref_metrics["train/grad_norm"], rel=1e-4)
        for p, q in zip(model.parameters(), ref_model.parameters()):
            assert torch.allclose(p, q, atol=1e-6, rtol=0)
    tree_metrics = results["tree"][1]
    assert tree_metrics["batch/processed_tokens"] < ref_metrics["batch/processed_tokens"]
    assert tree_metrics["batch/tree_reduction"] > 1.0


def test_a_chain_row_runs_as_plain_causal_attention(monkeypatch):
    """A micro-batch that is one unbranched chain (one long trajectory per row) skips the tree
    kernels (the model's fused causal attention is exact for it); a branched row still uses them."""
    import forgerl.batching.forward as forward

    planned = []
    real_plan = forward.sparse_plan
    monkeypatch.setattr(forward, "sparse_plan", lambda *a, **k: planned.append(1) or real_plan(*a, **k))
    chain = samples_of(random_batch(7, Shape(groups=1, group_size=1, turns=4, rewrite_prob=0.0, subagents=0)), merge=True)
    assert len(chain) == 1
    for name in ("minimax_m2", "llama"):
        model = MODELS[name]
        for pad in (1, 128):  # end padding is never seen by a real token
            mb = build_tree_batch(chain, 10_000, pad_to_multiple=pad).micro_batches[0]
            assert mb.is_chain and mb.length >= mb.real_length
            with torch.no_grad():
                logp, _ = tree_token_logprobs(model, mb, mode="sparse")
                ref = per_call_logprobs(model, chain[0])
            assert torch.allclose(logp[0][mb.loss_mask[0] > 0], ref, atol=LOGP_ATOL, rtol=0)
    assert planned == []
    # and it reaches the fused kernel: SDPA with is_causal and no materialised mask, padding or not
    masks = []
    real_sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        masks.append((kwargs.get("attn_mask") is None, bool(kwargs.get("is_causal"))))
        return real_sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    llama = MODELS["llama"]
    assert llama.config._attn_implementation == "sdpa"
    with torch.no_grad():
        tree_token_logprobs(llama, build_tree_batch(chain, 10_000, pad_to_multiple=128).micro_batches[0], mode="sparse")
    assert masks and all(m == (True, True) for m in masks), masks
    branched = build_tree_batch(samples_of(random_batch(7, Shape()), merge=False), 10_000).micro_batches[0]
    assert not branched.is_chain
    with torch.no_grad():
        tree_token_logprobs(MODELS["llama"], branched, mode="sparse")
    assert planned == [1]
