"""A rank other than 0 in sharded training: it holds a shard of the policy and of the optimizer
state, and nothing else (no engine, store, rollouts, evaluation or logging: rank 0 runs those).

Why a command loop: the training loop (train/loop.py) stays one loop, run by rank 0 only. Whenever
rank 0 reaches a collective — an optimizer step, gathering the full weights for the engine, writing
or loading a sharded checkpoint — it first sends the command (train/sharded.py `Sharding.send`) and
the followers run the same function with it, so the collectives meet in the same order.

    until "stop":  command = receive()  ->  optimize(samples) | export | save(dir) | load(dir)

A follower waits for commands without a deadline (rank 0 may roll out for hours); the collectives
themselves keep `[distributed] timeout_s`. When rank 0 dies, torchrun stops the followers.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from forgerl.model.loading import resolve_device
from forgerl.model.moe import ExpertLoadTracker
from forgerl.train.config import TrainConfig
from forgerl.train.run import build_optimizer, build_policy
from forgerl.train.sharded import (
    Sharding,
    close_sharding,
    full_weights,
    init_sharding,
    load_training_state,
    save_training_state,
)
from forgerl.train.step import optimize


@dataclass
class Shard:
    """What `optimize` needs of a run, on a follower rank."""

    config: TrainConfig
    policy: torch.nn.Module
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    tracker: ExpertLoadTracker
    compute_dtype: torch.dtype
    sharding: Sharding


def follow(config: TrainConfig) -> None:
    """Join the group, build this rank's shard exactly as rank 0 builds its own, then run rank 0's
    commands until it says stop."""
    # Ctrl-C reaches every rank (torchrun forwards it): rank 0 alone decides to finish the step and
    # checkpoint, which needs this rank until it says stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sharding = init_sharding(resolve_device(config.device), config.distributed.timeout_s)
    if sharding is None or sharding.is_leader:
        raise RuntimeError("follow() is for ranks other than 0 of a torchrun world")
    try:
        policy, tokenizer, _, compute_dtype = build_policy(config, sharding, engine_copy=False)
        shard = Shard(config, policy, tokenizer, build_optimizer(config, policy), ExpertLoadTracker(policy),
                      compute_dtype, sharding)
        while True:
            kind, payload = sharding.receive()
            if kind == "stop":
                return
            run_command(shard, kind, payload)
    finally:
        close_sharding(sharding)


def run_command(shard: Shard, kind: str, payload: Any) -> None:
    if kind == "optimize":
        optimize(shard, payload)
    elif kind == "export":
        full_weights(shard.policy)
    elif kind == "save":
        save_training_state(Path(payload), shard.policy, shard.optimizer)
    elif kind == "load":
        load_training_state(Path(payload), shard.policy, shard.optimizer)
    else:
        raise RuntimeError(f"rank {shard.sharding.rank}: unknown command {kind!r} from rank 0 (mixed forgerl versions?)")


__all__ = ["Shard", "follow", "run_command"]
