"""One rank of the sharded-step parity test (tests/train/test_distributed_step.py), run by
`python -m torch.distributed.run --nproc-per-node 2 THIS_FILE VARIANT OUT [CHECKPOINT]`: builds the
variant's tiny model, shards it, takes two optimizer steps on the test's fixed samples, and rank 0
saves the full (merged) weights and its metrics to OUT. With CHECKPOINT it also writes a sharded training state
there (DCP) after the steps. Not collected by pytest (no test_ prefix)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from test_distributed_step import build_model, fake_run, samples_for, train_config  # noqa: E402

from forgerl.train import sharded  # noqa: E402
from forgerl.train.step import optimize  # noqa: E402


def main(variant: str, out: str, checkpoint: str | None = None) -> None:
    if variant == "abandon":
        return abandon(out)
    torch.set_num_threads(1)
    sharding = sharded.init_sharding(torch.device("cpu"), timeout_s=60)
    assert sharding is not None and sharding.world_size == 2
    config = train_config(variant)
    model = build_model(variant, config)
    sharded.shard_policy(model, sharding, torch.float32, config.fp32_lm_head)
    run = fake_run(model, config)
    run.sharding = sharding
    metrics = []
    for step in range(2):
        samples = samples_for(variant, step)
        if sharding.is_leader:
            metrics.append(optimize(run, samples))  # rank 0 sends the batch; the follower receives it
        else:
            kind, payload = sharding.receive()
            assert kind == "optimize"
            optimize(run, payload)
    weights = sharded.full_weights(model)
    if checkpoint is not None:
        sharded.save_training_state(Path(checkpoint), model, run.optimizer)
    if sharding.is_leader:
        torch.save({"weights": weights, "metrics": metrics}, out)
    sharded.close_sharding(sharding)


def abandon(out: str) -> None:
    """Rank 0 abandons its step at the optimizer (a second Ctrl-C): no rank's shard may change."""
    from forgerl.train.interrupt import Abandon, StopControl

    torch.set_num_threads(1)
    sharding = sharded.init_sharding(torch.device("cpu"), timeout_s=60)
    config = train_config("dense")
    model = build_model("dense", config)
    sharded.shard_policy(model, sharding, torch.float32, config.fp32_lm_head)
    before = sharded.full_weights(model)
    run = fake_run(model, config)
    run.sharding = sharding
    if sharding.is_leader:
        run.control = StopControl(stop_requested=True, abandon_requested=True)
        try:
            optimize(run, samples_for("dense", 0))
            raise AssertionError("rank 0's abandoned step did not raise")
        except Abandon:
            pass
    else:
        kind, payload = sharding.receive()
        assert optimize(run, payload) == {"train/samples": 0.0}
    after = sharded.full_weights(model)  # both ranks are still in step: this collective must meet
    if sharding.is_leader:
        torch.save({"before": before, "after": after}, out)
    sharded.close_sharding(sharding)


if __name__ == "__main__":
    main(*sys.argv[1:])
