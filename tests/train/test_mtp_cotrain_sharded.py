"""Sharded training (FSDP2, 2 ranks over gloo) of a policy with MTP heads: co-training is off there
(`cotrain = None`) and refused when asked for (`cotrain = true`, a ConfigError on every rank), and
the heads riding along in FSDP's root group change nothing: the main weights equal the one-process
step without heads (1e-5, as tests/train/test_distributed_step.py) and the heads keep their weights.

This file is also the ranks' program: `python -m torch.distributed.run --nproc-per-node 2 THIS_FILE OUT`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from test_distributed_step import fake_run, samples_for, train_config  # noqa: E402

from forgerl.errors import ConfigError  # noqa: E402
from forgerl.model.mtp import MTPShape, attach_mtp  # noqa: E402
from forgerl.testing import build_micro_moe  # noqa: E402
from forgerl.train.step import optimize  # noqa: E402


def model_with_heads() -> torch.nn.Module:
    model = build_micro_moe().train()
    attach_mtp(model, MTPShape(2, 1, 4), seed=1)
    return model


def ranks_main(out: str) -> None:
    from forgerl.train import sharded

    torch.set_num_threads(1)
    sharding = sharded.init_sharding(torch.device("cpu"), timeout_s=60)
    assert sharding is not None and sharding.world_size == 2
    config = train_config("moe")
    model = model_with_heads()
    sharded.shard_policy(model, sharding, torch.float32, config.fp32_lm_head)
    run = fake_run(model, config)
    run.sharding = sharding
    for step in range(2):
        optimize(run, samples_for("moe", step)) if sharding.is_leader else optimize(run, sharding.receive()[1])
    weights = sharded.full_weights(model)
    refused = ""
    run.config = config.model_copy(update={"mtp": config.mtp.model_copy(update={"cotrain": True})})
    try:  # every rank checks before any collective: all of them refuse
        optimize(run, samples_for("moe", 0)) if sharding.is_leader else optimize(run, sharding.receive()[1])
    except ConfigError as exc:
        refused = str(exc)
    if sharding.is_leader:
        torch.save({"weights": weights, "refused": refused}, Path(out) / "moe.pt")
    sharded.close_sharding(sharding)


@pytest.mark.slow
def test_sharded_training_leaves_the_heads_and_the_main_update_alone(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--max-restarts", "0", "--standalone",
           __file__, str(tmp_path)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    saved = torch.load(tmp_path / "moe.pt", weights_only=True)
    assert "sharded training" in saved["refused"] and "cotrain = false" in saved["refused"]
    reference = build_micro_moe().train()
    run = fake_run(reference, train_config("moe"))
    for step in range(2):
        optimize(run, samples_for("moe", step))
    expected, fresh = reference.state_dict(), model_with_heads().state_dict()
    got = saved["weights"]
    assert set(got) == set(expected) | {k for k in fresh if k.startswith("mtp.")}
    for name, tensor in expected.items():
        assert torch.allclose(got[name], tensor, atol=1e-5, rtol=0), name
    for name in (k for k in fresh if k.startswith("mtp.")):
        assert torch.equal(got[name], fresh[name]), name


if __name__ == "__main__":
    ranks_main(sys.argv[1])
