"""Trainer-side logprobs equal a straightforward full forward per call (abs tolerance 1e-5, fp32),
whether calls are trained one by one or merged into chains; chains keep every call's tokens."""

from __future__ import annotations

import random

import torch

from forgerl.model.logprobs import collate, pack_micro_batches, token_logprobs
from forgerl.testing import build_micro_moe
from forgerl.types import LLMCall, Trajectory, chain_samples


def episode(rng: random.Random, turns: int, rewrite_at: int | None = None) -> Trajectory:
    """Calls where each prompt extends the previous prompt + completion (+ a tool result)."""
    ctx, calls = [rng.randrange(1, 300) for _ in range(rng.randrange(3, 12))], []
    for t in range(turns):
        if t == rewrite_at:
            ctx = ctx[:2] + [7, 7, 7]  # a context-manager rewrite: a new root
        comp = [rng.randrange(1, 300) for _ in range(rng.randrange(1, 6))]
        calls.append(LLMCall(prompt_ids=list(ctx), completion_ids=comp, completion_logprobs=[-0.5] * len(comp),
                             loss_mask=[1] * len(comp), policy_version=0, finish_reason="stop"))
        ctx = ctx + comp + [rng.randrange(1, 300) for _ in range(rng.randrange(1, 5))]
    return Trajectory(calls=calls)


def reference(model, call: LLMCall) -> torch.Tensor:
    ids = torch.tensor([call.prompt_ids + call.completion_ids])
    lp = torch.log_softmax(model(ids).logits[0].float(), -1)
    n = len(call.prompt_ids)
    return lp[n - 1:-1].gather(-1, torch.tensor(call.completion_ids).unsqueeze(-1)).squeeze(-1)


def test_chains_merge_calls_and_split_at_rewrites():
    rng = random.Random(0)
    traj = episode(rng, 4)
    assert len(chain_samples(traj, [1.0] * 4)) == 1
    assert len(chain_samples(traj, [1.0] * 4, merge=False)) == 4
    rewritten = episode(rng, 4, rewrite_at=2)
    chains = chain_samples(rewritten, [1.0, 2.0, 3.0, 4.0])
    assert [c.calls for c in chains] == [[0, 1], [2, 3]]
    assert sum(c.num_tokens for c in chains) == sum(len(c.completion_ids) for c in rewritten.calls)
    assert sorted({a for c in chains for a, m in zip(c.advantages, c.loss_mask) if m}) == [1.0, 2.0, 3.0, 4.0]


def test_logprobs_match_per_call_reference_for_chains_and_single_calls():
    model = build_micro_moe()
    rng = random.Random(1)
    trajs = [episode(rng, 3) for _ in range(3)]
    for merge in (True, False):
        samples = [s for t in trajs for s in chain_samples(t, [0.5] * 3, merge=merge)]
        mb = collate(samples, "cpu")
        with torch.no_grad():
            logp, entropy = token_logprobs(model, mb)
            got = {}
            for row, s in enumerate(samples):
                values = logp[row][mb.loss_mask[row].bool()]
                got.setdefault(s.trajectory_id, []).append(values)
            for t in trajs:
                ref = torch.cat([reference(model, c) for c in t.calls])
                assert torch.allclose(torch.cat(got[t.id]), ref, atol=1e-5)
        assert float(entropy[mb.loss_mask == 0].abs().sum()) == 0.0
        assert mb.num_tokens == sum(len(c.completion_ids) for t in trajs for c in t.calls)


def test_gradients_flow_to_the_model():
    model = build_micro_moe()
    mb = collate(chain_samples(episode(random.Random(2), 2), [1.0, 1.0]), "cpu")
    logp, _ = token_logprobs(model, mb)
    (logp * mb.loss_mask).sum().backward()
    assert model.get_output_embeddings().weight.grad is not None


def test_packing_respects_the_token_budget():
    rng = random.Random(3)
    samples = [s for _ in range(20) for s in chain_samples(episode(rng, 2), [1.0, 1.0])]
    batches = pack_micro_batches(samples, token_budget=60)
    assert sorted(id(s) for b in batches for s in b) == sorted(id(s) for s in samples)
    for b in batches:
        assert len(b) == 1 or max(len(s.input_ids) for s in b) * len(b) <= 60
