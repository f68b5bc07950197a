"""The two ranks behind tests/train/test_distributed_step.py, run once for all its cases by
`python -m torch.distributed.run --nproc-per-node 2 THIS_FILE OUT_DIR` (one launch: starting ranks
costs seconds each time). For each variant (dense, lora, moe) it builds the tiny model, shards it,
takes two optimizer steps on the test's fixed samples, and rank 0 saves the full (merged) weights
and its metrics to OUT_DIR/VARIANT.pt; the dense variant's sharded training state (DCP) goes to
OUT_DIR/dcp. Then rank 0 abandons a step (OUT_DIR/abandon.pt: the weights before and after). Not
collected by pytest (no test_ prefix)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from test_distributed_step import build_model, fake_run, samples_for, train_config  # noqa: E402

from forgerl.train import sharded  # noqa: E402
from forgerl.train.interrupt import Abandon, StopControl  # noqa: E402
from forgerl.train.step import optimize  # noqa: E402


def main(out: str) -> None:
    torch.set_num_threads(1)
    sharding = sharded.init_sharding(torch.device("cpu"), timeout_s=60)
    assert sharding is not None and sharding.world_size == 2
    for variant in ("dense", "lora", "moe"):
        two_steps(sharding, variant, Path(out))
    abandon(sharding, Path(out) / "abandon.pt")
    sharded.close_sharding(sharding)


def sharded_run(sharding: sharded.Sharding, variant: str):
    config = train_config(variant)
    model = build_model(variant, config)
    sharded.shard_policy(model, sharding, torch.float32, config.fp32_lm_head)
    run = fake_run(model, config)
    run.sharding = sharding
    return model, run


def step(sharding: sharded.Sharding, run, samples) -> dict[str, float]:
    """Rank 0 sends the batch (inside optimize); a follower receives it, as in train/follower.py."""
    if sharding.is_leader:
        return optimize(run, samples)
    kind, payload = sharding.receive()
    assert kind == "optimize"
    return optimize(run, payload)


def two_steps(sharding: sharded.Sharding, variant: str, out: Path) -> None:
    model, run = sharded_run(sharding, variant)
    metrics = [step(sharding, run, samples_for(variant, i)) for i in range(2)]
    weights = sharded.full_weights(model)
    if variant == "dense":
        sharded.save_training_state(out / "dcp", model, run.optimizer)
    if sharding.is_leader:
        torch.save({"weights": weights, "metrics": metrics}, out / f"{variant}.pt")


def abandon(sharding: sharded.Sharding, out: Path) -> None:
    """Rank 0 abandons its step at the optimizer (a second Ctrl-C): no rank's shard may change."""
    model, run = sharded_run(sharding, "dense")
    before = sharded.full_weights(model)
    if sharding.is_leader:
        run.control = StopControl(stop_requested=True, abandon_requested=True)
        try:
            step(sharding, run, samples_for("dense", 0))
            raise AssertionError("rank 0's abandoned step did not raise")
        except Abandon:
            pass
    else:
        assert step(sharding, run, None) == {"train/samples": 0.0}
    after = sharded.full_weights(model)  # both ranks are still in step: this collective must meet
    if sharding.is_leader:
        torch.save({"before": before, "after": after}, out)


if __name__ == "__main__":
    main(*sys.argv[1:])
