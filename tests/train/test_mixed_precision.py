"""bf16 training keeps FP32 master weights: the trainer's weights and AdamW state stay FP32, its
forward runs under autocast, the LM head stays FP32 inside autocast, and the engine serves a bf16
copy. Pure bf16 weights would lose small updates: the tests show that they would have here."""

from __future__ import annotations

import random

import torch

from forgerl.model.logprobs import collate, head_logits, mixed_precision, token_logprobs
from forgerl.train.config import TrainConfig
from forgerl.train.run import close_run, open_run
from forgerl.train.step import build_samples, optimize

from .test_step import trajectory


def test_bf16_run_trains_fp32_master_weights_and_serves_a_bf16_copy(tmp_path):
    cfg = TrainConfig(model="tiny-random", device="cpu", dtype="bfloat16", optim={"lr": 1e-6}, moe_bias_step=0.0,
                      run_dir=str(tmp_path / "run"))
    run = open_run(cfg)
    try:
        assert run.compute_dtype == torch.bfloat16
        assert {p.dtype for p in run.policy.parameters()} == {torch.float32}
        assert {p.dtype for p in run.engine.model.parameters()} == {torch.bfloat16}
        before = {n: p.detach().clone() for n, p in run.policy.named_parameters()}
        rng = random.Random(0)
        groups = [[trajectory(run.policy, rng, r) for r in (1.0, 0.0, 1.0, 0.0)] for _ in range(2)]
        metrics = optimize(run, build_samples(groups, cfg))
        assert metrics["train/samples"] == 8
        state = [s for s in run.optimizer.state.values() if "exp_avg" in s]
        assert state and all(s["exp_avg"].dtype == torch.float32 for s in state)
        changed = lost_in_bf16 = 0
        for name, p in run.policy.named_parameters():
            moved = p.detach() != before[name]
            changed += int(moved.sum())
            # the same update applied to bf16 weights: most of it rounds away (lr 1e-6 << bf16's step)
            lost_in_bf16 += int((p.detach()[moved].bfloat16() == before[name][moved].bfloat16()).sum())
        assert changed > 10_000
        assert lost_in_bf16 / changed > 0.9
        run.push_weights()
        engine = dict(run.engine.model.named_parameters())
        for name, p in run.policy.named_parameters():
            assert torch.equal(engine[name], p.detach().bfloat16()), name
    finally:
        close_run(run)


def test_fp32_head_stays_fp32_under_autocast():
    torch.manual_seed(0)
    head = torch.nn.Linear(64, 500, bias=False)
    hidden = torch.randn(7, 64)
    reference = hidden @ head.weight.T
    with mixed_precision("cpu", torch.bfloat16):
        exact = head_logits(head, hidden, fp32=True)
        autocast = head_logits(head, hidden, fp32=False)
    assert exact.dtype == torch.float32
    assert torch.allclose(exact, reference, atol=1e-5, rtol=0)  # FP32 matmul (only summation order may differ)
    assert (autocast - reference).abs().max() > 1e-3  # without the opt-out the matmul ran in bf16


def test_autocast_logprobs_are_close_to_fp32(tmp_path):
    from forgerl.model.loading import load_policy

    model, _ = load_policy("tiny-random", device="cpu", dtype="float32")
    rng = random.Random(1)
    groups = [[trajectory(model, rng, 1.0), trajectory(model, rng, 0.0)]]
    mb = collate(build_samples(groups, TrainConfig()), "cpu")
    with torch.no_grad():
        fp32, _ = token_logprobs(model, mb)
        with mixed_precision("cpu", torch.bfloat16):
            bf16, _ = token_logprobs(model, mb)
    mask = mb.loss_mask.bool()
    diff = (bf16 - fp32)[mask].abs()
    assert 0 < float(diff.max()) < 0.1  # bf16 matmuls: close to FP32, and really not FP32
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast never touches the weights
