"""The sharded trainer on one GPU (issue 19's GPU check; `scripts/gpu_checks.sh` step `dist`): FSDP2
over NCCL with world size 1, in this process.

- FP32 compute: the sharded step equals the one-process step on the same GPU (parameters within
  1e-5, as the 2-rank CPU test of tests/train/test_distributed_step.py);
- bf16 mixed precision with the FP32 LM head: master weights stay FP32, the head's logits are FP32,
  and the step's loss is within 2% of the FP32 step's (bf16 rounding; the tolerance is the
  measured-noise kind, not a parity claim).
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.gpu

sys.path.insert(0, str(Path(__file__).parent))

from test_distributed_step import build_model, fake_run, samples_for, train_config  # noqa: E402

from forgerl.model.lora import inference_weights  # noqa: E402
from forgerl.train import sharded  # noqa: E402
from forgerl.train.step import optimize  # noqa: E402


@pytest.fixture(scope="module")
def nccl_world():
    """A one-process NCCL group (and the gloo command group the sharded trainer uses)."""
    import torch.distributed as dist

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA (run with -m gpu on a GPU machine)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    device = torch.device("cuda", 0)
    torch.cuda.set_device(device)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1, device_id=device)
    commands = dist.new_group(backend="gloo")
    yield sharded.Sharding(0, 1, 0, device, commands)
    dist.destroy_process_group()


def _step(variant: str, compute_dtype: torch.dtype, sharding: sharded.Sharding | None):
    config = train_config(variant)
    model = build_model(variant, config).cuda()
    if sharding is not None:
        sharded.shard_policy(model, sharding, compute_dtype, config.fp32_lm_head)
    run = fake_run(model, config)
    run.compute_dtype = compute_dtype
    if sharding is not None:
        run.sharding = sharding
    metrics = [optimize(run, samples_for(variant, step)) for step in range(2)]
    weights = sharded.full_weights(model) if sharding is not None else inference_weights(model)
    return model, {k: v.float().cpu() for k, v in weights.items()}, metrics


@pytest.mark.parametrize("variant", ["dense", "moe"])
def test_fp32_sharded_step_equals_the_one_process_step_on_gpu(nccl_world, variant):
    _, sharded_weights, _ = _step(variant, torch.float32, nccl_world)
    _, reference, _ = _step(variant, torch.float32, None)
    for name, tensor in reference.items():
        assert torch.allclose(sharded_weights[name], tensor, atol=1e-5, rtol=0), name


def test_bf16_mixed_precision_keeps_fp32_masters_and_an_fp32_head(nccl_world):
    model, _, bf16_metrics = _step("dense", torch.bfloat16, nccl_world)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # FP32 master shards
    _, fp32_reference, fp32_metrics = _step("dense", torch.float32, None)
    for got, want in zip(bf16_metrics, fp32_metrics):
        assert abs(got["train/loss"] - want["train/loss"]) <= 0.02 * abs(want["train/loss"]) + 1e-4, (got, want)
    from forgerl.model.logprobs import head_logits
    from forgerl.model.lora import decoder_and_head

    _, head = decoder_and_head(model)
    sharded.gather_head(model)
    hidden = torch.randn(3, 32, device="cuda", dtype=torch.bfloat16)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = head_logits(head, hidden, fp32=True)
    assert logits.dtype == torch.float32
    model.reshard()
