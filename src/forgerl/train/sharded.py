"""Sharded training state (FSDP2 under torchrun): the process group, the sharded policy, the split
of a batch between ranks, the full weights for the engine and the sharded checkpoint.

Why a module of its own: everything here is a collective (every rank must call it, in the same
order), and keeping the collectives in one place keeps that order auditable. World size 1 never
reaches this module: `Sharding` is None and train/ runs exactly today's one-process code.

How the gradient stays the one-process gradient: every rank sees the whole batch (rank 0 sends it),
takes its share by token count, a prompt's samples together (`share`), and normalises the loss by the batch's *global* trainable
token count; FSDP's reduce-scatter then sums (its default averaging is switched off with
`set_gradient_divide_factor(1)`). Every rank runs the same number of micro-batches (an all-reduce
MAX of the counts); a rank with fewer runs zero-weight ones, because FSDP's collectives inside
forward and backward must match across ranks.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from forgerl.errors import ConfigError
from forgerl.model.lora import causal_lm, decoder_and_head, is_peft
from forgerl.types import TrainingSample

COMMAND_TIMEOUT = timedelta(days=30)
"""How long a follower rank waits for rank 0's next command: rank 0 may roll out or evaluate for
hours between steps. A dead rank 0 does not leave followers waiting: torchrun stops them."""


@dataclass
class Sharding:
    """This process's place in the group. `commands` is a gloo group with a long timeout used only
    to hand commands from rank 0 to the followers (`send` / `receive`). `lock`: rank 0 issues
    collectives from two threads (the optimizer step runs in a worker thread, checkpoints and
    weight pushes in the loop's), so each command and its collectives hold it: a checkpoint asked
    for by a stop signal waits for the step in flight instead of interleaving with it."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    commands: Any = None
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    def send(self, kind: str, payload: Any = None) -> None:
        """Rank 0: tell every follower what to do next (they call the matching collective)."""
        box = [(kind, payload)]
        dist.broadcast_object_list(box, src=0, group=self.commands)

    def receive(self) -> tuple[str, Any]:
        box: list[Any] = [None]
        dist.broadcast_object_list(box, src=0, group=self.commands)
        return box[0]


def world_from_env() -> tuple[int, int, int, int]:
    """(rank, world size, local rank, local world size) as torchrun sets them; (0, 1, 0, 1) outside it."""
    env = os.environ
    return (int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)),
            int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", 1))))


def is_follower_rank() -> bool:
    """Inside torchrun, a rank other than 0 (it holds a shard and follows rank 0's commands)."""
    rank, world, _, _ = world_from_env()
    return world > 1 and rank != 0


def set_threads_per_rank(local_world_size: int) -> None:
    """Ranks on one host split its cores (N ranks with all cores each thrash: measured 2 ranks on 2
    cores); OMP_NUM_THREADS, when the user set it, wins."""
    if "OMP_NUM_THREADS" in os.environ or local_world_size <= 1:
        return
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world_size))


def init_sharding(device: torch.device | str, timeout_s: float) -> Sharding | None:
    """Join the process group torchrun describes (None outside torchrun or with one process): NCCL
    on CUDA, gloo on CPU, and an explicit timeout, so a dead or stuck rank fails the run instead of
    hanging it."""
    rank, world, local_rank, local_world = world_from_env()
    if world == 1:
        return None
    device = torch.device(device)
    check_world(device, local_world)
    set_threads_per_rank(local_world)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout_s),
                                device_id=device if device.type == "cuda" else None)
    commands = dist.new_group(backend="gloo", timeout=COMMAND_TIMEOUT)
    return Sharding(rank, world, local_rank, device, commands)


def check_world(device: torch.device | str, local_world_size: int) -> None:
    """A world size the device cannot serve is a ConfigError, before any process group exists."""
    device = torch.device(device)
    if device.type == "mps":
        raise ConfigError("sharded training (--nproc-per-node > 1) runs on CPU (gloo) or CUDA (NCCL), not on mps",
                          hint="set device = 'cpu' or drop --nproc-per-node")
    if device.type == "cuda" and local_world_size > torch.cuda.device_count():
        raise ConfigError(f"{local_world_size} ranks per node need {local_world_size} GPUs, but this node has "
                          f"{torch.cuda.device_count()}", hint="set --nproc-per-node to the GPUs per node (one rank each)")


def close_sharding(sharding: Sharding | None) -> None:
    if sharding is not None and dist.is_initialized():
        dist.destroy_process_group()


# -- the sharded policy ------------------------------------------------------------------------


def shard_policy(policy: torch.nn.Module, sharding: Sharding, compute_dtype: torch.dtype, fp32_lm_head: bool) -> None:
    """FSDP2 in place: each decoder layer, the decoder (embeddings, final norm), then the root
    (the LM head). Rank 0's weights are broadcast first, so every rank
    starts from the same ones whatever its RNG did. bf16 mixed precision on CUDA only; with
    `fp32_lm_head` the head's parameters stay FP32."""
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

    for tensor in policy.state_dict().values():
        dist.broadcast(tensor.data, src=0)
    low = sharding.device.type == "cuda" and compute_dtype != torch.float32
    mixed = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32) if low else MixedPrecisionPolicy()
    head_mixed = (MixedPrecisionPolicy(param_dtype=torch.float32, reduce_dtype=torch.float32)
             if low and fp32_lm_head else mixed)
    decoder, head = decoder_and_head(policy)
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ConfigError(f"sharded training needs a decoder with a `layers` list; {type(decoder).__name__} has none",
                          hint="train this model with one process (drop --nproc-per-node)")
    for layer in layers:
        fully_shard(layer, mp_policy=mixed)
    if head.weight is not decoder.get_input_embeddings().weight:  # tied: the root group holds the shared tensor
        fully_shard(decoder, mp_policy=mixed)
    # The head's weight is read directly (model/logprobs.py head_logits: an FP32 matmul), never
    # through a forward of its own, so it lives in the root group, which `gather_head` all-gathers
    # before each micro-batch; FSDP's root callback reduce-scatters its gradient after the backward.
    # One forward through the root makes it the root (FSDP picks the first module to run forward).
    fully_shard(policy, mp_policy=head_mixed, reshard_after_forward=False)
    with torch.no_grad():
        policy(input_ids=torch.zeros(1, 1, dtype=torch.long, device=sharding.device))
    policy.reshard()  # the root keeps its group gathered after a forward; the optimizer must see the shards
    for module in policy.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)  # a sum over ranks: the loss is already normalised globally
            module.set_force_sum_reduction_for_comms(True)  # a plain SUM (gloo has no pre-multiplied sum)


def gather_head(policy: torch.nn.Module) -> None:
    """All-gather the root group (the LM head) before a training forward (see shard_policy)."""
    policy.unshard()


def share(samples: list[TrainingSample], sharding: Sharding) -> list[TrainingSample]:
    """This rank's samples: a deterministic, token-balanced split whose unit is a prompt's samples
    (a group's rollouts share their prompt: kept on one rank, its prefix tree stays whole, so the
    shared prompt is still computed once and the MoE expert loads count it once, as in one
    process). Largest unit first, each to the rank with the fewest tokens so far, ties to the lower
    rank; the batch's own order within a rank."""
    units: dict[tuple[int, ...], list[int]] = {}
    for index, sample in enumerate(samples):
        units.setdefault(_prompt_of(sample), []).append(index)
    sizes = {key: sum(len(samples[i].input_ids) for i in members) for key, members in units.items()}
    loads = [0] * sharding.world_size
    mine: set[int] = set()
    for key in sorted(units, key=lambda k: (-sizes[k], units[k][0])):
        rank = min(range(sharding.world_size), key=lambda r: (loads[r], r))
        loads[rank] += sizes[key]
        if rank == sharding.rank:
            mine.update(units[key])
    return [s for i, s in enumerate(samples) if i in mine]


def _prompt_of(sample: TrainingSample) -> tuple[int, ...]:
    """The tokens before the sample's first trainable one: its (first call's) prompt."""
    first = next((i for i, m in enumerate(sample.loss_mask) if m), len(sample.input_ids))
    return tuple(sample.input_ids[:first])


def max_over_ranks(value: int, sharding: Sharding) -> int:
    t = torch.tensor([value], dtype=torch.long, device=sharding.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def agree(go: bool, sharding: Sharding) -> bool:
    """Rank 0's `go` on every rank: one decision (e.g. to abandon a step before the optimizer
    changes any shard) that every rank then follows."""
    flag = torch.tensor([1 if go else 0], dtype=torch.long, device=sharding.device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def gather(value: Any) -> list[Any]:
    """Every rank's `value` (small python objects: metric partial sums)."""
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


# -- full weights and checkpoints --------------------------------------------------------------


def full_weights(policy: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Collective: the full state on CPU at rank 0 ({} elsewhere), named as the engine's plain model
    names it (`inference_weights`): LoRA merged, adapter tensors dropped."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(policy, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not state:
        return {}
    if not is_peft(policy):
        return state
    return merge_lora(policy, state)


def merge_lora(policy: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """W + scaling * B @ A for every peft LoRA layer, under the base model's names (the same weights
    `inference_weights` gets from peft's merge_adapter, computed from the full state instead)."""
    prefix = "base_model.model."
    merged: dict[str, torch.Tensor] = {}
    scaling = {name.removeprefix(prefix): module.scaling["default"] for name, module in policy.named_modules()
               if hasattr(module, "lora_A") and "default" in getattr(module, "scaling", {})}
    for name, tensor in state.items():
        name = name.removeprefix(prefix)
        if "lora_" in name:
            continue
        layer, _, leaf = name.rpartition(".base_layer.")
        if layer in scaling and leaf == "weight":
            a, b = state[f"{prefix}{layer}.lora_A.default.weight"], state[f"{prefix}{layer}.lora_B.default.weight"]
            tensor = tensor + scaling[layer] * (b.float() @ a.float()).to(tensor.dtype)
        merged[name.replace(".base_layer.", ".")] = tensor
    return merged


def model_config(policy: torch.nn.Module) -> Any:
    return getattr(causal_lm(policy), "config", None)


def save_training_state(directory: Path, policy: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Collective: model and optimizer shards with torch.distributed.checkpoint (each rank writes its
    own files into `directory`, which must be on storage every rank sees)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(policy, optimizer)
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(directory))


def load_training_state(directory: Path, policy: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Model and optimizer from a DCP directory, resharded to this world size (one process too)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_state, optim_state = get_state_dict(policy, optimizer)
    state = {"model": model_state, "optim": optim_state}
    dcp.load(state, checkpoint_id=str(directory), no_dist=not dist.is_initialized())
    set_state_dict(policy, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])


__all__ = ["Sharding", "agree", "check_world", "close_sharding", "full_weights", "gather", "init_sharding", "is_follower_rank",
           "load_training_state", "max_over_ranks", "merge_lora", "save_training_state", "shard_policy", "share",
           "world_from_env"]
