"""`forgerl train` on a CUDA device: bf16 autocast over FP32 master weights, a bf16 engine copy, full
fine-tuning and LoRA. Needs a GPU: `pytest -m gpu -s tests/train/test_gpu.py` (prints step times).

Tolerance: the engine samples with bf16 weights and the trainer recomputes logprobs under bf16
autocast over FP32 weights, so they differ by rounding: mean |Δlogp| on sampled tokens < 0.05
(the CPU FP32 path is ~1e-7; a wrong mask or a stale engine gives > 0.5)."""

from __future__ import annotations

import math

import pytest
import torch

from forgerl.train.config import TrainConfig
from forgerl.training import run_training

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("lora_rank", [0, 8])
def test_train_on_cuda_with_bf16_autocast(tmp_path, lora_rank):
    cfg = TrainConfig(device="cuda", steps=3, groups_per_step=4, group_size=4, eval={"every": 3, "tasks": 8},
                      difficulty=[1], lora={"rank": lora_rank}, optim={"lr": 1e-4 if lora_rank == 0 else 1e-3},
                      run_dir=str(tmp_path / "run"))
    steps: list[dict[str, float]] = []
    result = run_training(cfg, on_step=lambda step, m: steps.append(dict(m)))
    assert len(steps) == 3
    trained = [m for m in steps if m.get("train/samples", 0) > 0]
    assert trained, "no step had a group with a learning signal"
    for m in trained:
        assert math.isfinite(m["train/loss"]) and math.isfinite(m["train/grad_norm"])
        assert m["mismatch/mean_abs_logprob"] < 0.05, m["mismatch/mean_abs_logprob"]
        assert m["mismatch/prob_corr"] > 0.95
    assert [s for s, _ in result.eval_rewards] == [0, 3]
    for i, m in enumerate(steps, 1):
        print(f"lora_rank={lora_rank} step {i}: rollout {m['time/rollout_s']:.2f} s, train {m.get('time/train_s', 0):.2f} s, "
              f"samples {m.get('train/samples', 0):.0f}, |dlogp| {m.get('mismatch/mean_abs_logprob', float('nan')):.4f}, "
              f"reward {m['rollout/reward']:.3f}")
    print(f"lora_rank={lora_rank}: held-out {result.eval_rewards}, {result.seconds:.1f} s")
