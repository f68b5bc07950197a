"""One RL step: which trajectories become samples, and an optimizer step whose result does not
depend on how the batch is cut into micro-batches (token-level normalisation over the batch)."""

from __future__ import annotations

import copy
import random
from types import SimpleNamespace

import pytest
import torch

from forgerl.model.logprobs import collate, token_logprobs
from forgerl.model.moe import ExpertLoadTracker
from forgerl.testing import build_micro_moe
from forgerl.train.config import TrainConfig
from forgerl.train.step import build_samples, optimize
from forgerl.types import Failure, LLMCall, Trajectory, TrajectoryStatus, chain_samples


def trajectory(model, rng: random.Random, reward: float | None, status=TrajectoryStatus.COMPLETED, turns: int = 2) -> Trajectory:
    """Calls whose recorded logprobs are the model's own (an on-policy rollout)."""
    ctx, calls = [rng.randrange(1, 300) for _ in range(6)], []
    for _ in range(turns):
        comp = [rng.randrange(1, 300) for _ in range(4)]
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([ctx + comp])).logits[0].float(), -1)
        old = [float(lp[len(ctx) - 1 + i, t]) for i, t in enumerate(comp)]
        calls.append(LLMCall(prompt_ids=list(ctx), completion_ids=comp, completion_logprobs=old, loss_mask=[1] * 4,
                             policy_version=0, finish_reason="stop"))
        ctx = ctx + comp + [rng.randrange(1, 300) for _ in range(3)]
    traj = Trajectory(calls=calls, reward=reward, status=status)
    if status == TrajectoryStatus.FAILED:
        traj.failure = Failure(boundary="engine", message="boom")
    return traj


def fake_run(model, config: TrainConfig):
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.optim.lr, betas=config.optim.betas, eps=config.optim.adam_eps)
    return SimpleNamespace(config=config, policy=model, optimizer=optimizer, tracker=ExpertLoadTracker(model),
                           tokenizer=SimpleNamespace(pad_token_id=0), compute_dtype=torch.float32)


def test_build_samples_drops_failures_and_groups_without_signal():
    model = build_micro_moe()
    rng = random.Random(0)
    mixed = [trajectory(model, rng, 1.0), trajectory(model, rng, 0.0), trajectory(model, rng, None, TrajectoryStatus.FAILED)]
    flat = [trajectory(model, rng, 1.0), trajectory(model, rng, 1.0)]
    lonely = [trajectory(model, rng, 1.0), trajectory(model, rng, None, TrajectoryStatus.FAILED)]
    cispo = build_samples([mixed, flat, lonely], TrainConfig())
    assert {s.trajectory_id for s in cispo} == {mixed[0].id, mixed[1].id}
    assert len(cispo) == 2  # each trajectory's two calls merged into one chain
    advantages = {s.trajectory_id: s.advantages[-1] for s in cispo}
    assert advantages[mixed[0].id] > 0 > advantages[mixed[1].id]
    grpo = build_samples([mixed], TrainConfig(loss={"name": "grpo"}))
    assert len(grpo) == 4  # sequence-level loss: one sample per call
    assert len(build_samples([mixed], TrainConfig(batch_mode="call"))) == 4  # the per-call reference
    assert len(build_samples([mixed], TrainConfig(batch_mode="chain"))) == 2


@pytest.mark.parametrize("batch_mode", ["tree", "chain", "call"])
def test_optimizer_step_is_independent_of_micro_batching_and_moves_toward_the_advantage(batch_mode):
    rng = random.Random(1)
    base = build_micro_moe()
    groups = [[trajectory(base, rng, 1.0), trajectory(base, rng, 0.0)], [trajectory(base, rng, 0.0), trajectory(base, rng, 1.0)]]
    results = []
    for budget in (10_000, 30):  # one micro-batch vs one sample per micro-batch
        model = copy.deepcopy(base)
        cfg = TrainConfig(optim={"micro_batch_tokens": budget, "lr": 1e-3}, moe_bias_step=0.0, batch_mode=batch_mode)
        samples = build_samples(groups, cfg)
        metrics = optimize(fake_run(model, cfg), samples)
        results.append((model, metrics, samples))
    (m1, met1, samples), (m2, met2, _) = results
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.allclose(p1, p2, atol=1e-6)
    assert abs(met1["train/loss"] - met2["train/loss"]) < 1e-6
    assert met1["mismatch/mean_abs_logprob"] < 1e-5  # recorded logprobs are the model's own
    assert met1["train/tokens"] == sum(s.num_tokens for s in samples)
    # tokens with positive advantage became more likely, negative less likely
    mb = collate(samples, "cpu")
    with torch.no_grad():
        before, _ = token_logprobs(base, mb)
        after, _ = token_logprobs(m1, mb)
    delta = ((after - before) * mb.loss_mask).sum(1)
    adv = torch.tensor([s.advantages[-1] for s in samples])
    assert bool(((delta > 0) == (adv > 0)).all())


def test_moe_bias_is_updated_after_the_step():
    rng = random.Random(2)
    model = build_micro_moe()
    groups = [[trajectory(model, rng, 1.0), trajectory(model, rng, 0.0)]]
    cfg = TrainConfig(moe_bias_step=0.01)
    bias = {n: b.clone() for n, b in model.named_buffers() if n.endswith("e_score_correction_bias")}
    metrics = optimize(fake_run(model, cfg), build_samples(groups, cfg))
    assert metrics["moe/max_over_mean_load"] >= 1.0
    changed = [not torch.equal(bias[n], b) for n, b in model.named_buffers() if n in bias]
    assert any(changed)


def test_chain_merging_is_exact_for_token_level_losses():
    """CISPO over merged chains == CISPO over separate calls (same loss, same gradients)."""
    rng = random.Random(3)
    base = build_micro_moe()
    group = [trajectory(base, rng, 1.0, turns=3), trajectory(base, rng, 0.0, turns=3)]
    grads = []
    for merge in (True, False):
        model = copy.deepcopy(base)
        samples = [s for t, a in zip(group, (1.0, -1.0)) for s in chain_samples(t, [a] * 3, merge=merge)]
        from forgerl.rl import get_loss

        total = sum(s.num_tokens for s in samples)
        mb = collate(samples, "cpu")
        logp, _ = token_logprobs(model, mb)
        get_loss("cispo")(logp, mb.old_logprobs, mb.advantages, mb.loss_mask, num_tokens=total).loss.backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    for g1, g2 in zip(*grads):
        assert torch.allclose(g1, g2, atol=1e-6)


def test_tree_mode_reports_the_token_reduction():
    rng = random.Random(4)
    model = build_micro_moe()
    prompt_rng = random.Random(5)
    groups = [[trajectory(model, rng, 1.0, turns=3), trajectory(model, rng, 0.0, turns=3)]]
    shared = [prompt_rng.randrange(1, 300) for _ in range(6)]
    for traj in groups[0]:  # a group shares its prompt
        for call in traj.calls:
            call.prompt_ids = shared + call.prompt_ids[6:]
    cfg = TrainConfig(moe_bias_step=0.0)
    metrics = optimize(fake_run(model, cfg), build_samples(groups, cfg))
    assert metrics["batch/processed_tokens"] == metrics["batch/sample_tokens"] - 6
    assert metrics["batch/tree_reduction"] > 1.0 and metrics["batch/micro_batches"] == 1.0
