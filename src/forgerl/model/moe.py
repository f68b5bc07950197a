"""Training-side parts of the M2-style MoE that transformers does not ship: expert-load metrics and
aux-loss-free load balancing through the router's selection bias.

M2's router picks the top-k experts on `sigmoid score + e_score_correction_bias`; the bias only
changes *which* experts are chosen, never the mixing weights (M2_NOTES §3). MiniMax does not publish
how the bias is updated. forgerl uses DeepSeek-V3's sign rule, applied after every optimizer step:

    load_e  = fraction of routed (token, slot) pairs that went to expert e since the last update
    bias_e += step_size * sign(mean_load - load_e)

so under-loaded experts become slightly more attractive and over-loaded ones less; `step_size`
(default 1e-3) is a config field. Loads are counted with forward hooks on the router modules, in
training forwards only (rollout-time routing happens in the engine's copy of the weights).

Loads are counted as if every sample ran alone: the trainer passes each micro-batch's token
multiplicities (`counting(weights=...)`: how many of its samples contain each position; 0 for
padding), so a prefix-tree node shared by five samples counts five times and padding never. The bias
update then does not depend on how the batch is packed into micro-batches or trees — nor on how it
is split between ranks.

Sharded training (train/sharded.py): each rank counts its own share of the batch; the counts are
summed over ranks (`all_reduce_counts`) before the update, so every rank applies the same bias
change (the one one process would apply) and the replicated bias buffers never diverge. The
zero-weight micro-batches a rank runs to keep FSDP's collectives in step are not counted
(`counting(False)`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn


def _is_router(module: nn.Module) -> bool:
    return hasattr(module, "top_k") and hasattr(module, "num_experts") and isinstance(getattr(module, "weight", None), torch.Tensor)


@dataclass
class ExpertLoadTracker:
    """Counts expert selections per MoE layer; updates the selection bias from the counts."""

    model: nn.Module
    counts: dict[str, torch.Tensor] = field(default_factory=dict)
    _handles: list = field(default_factory=list)
    _blocks: dict[str, nn.Module] = field(default_factory=dict)
    _counting: bool = True
    _weights: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for name, module in self.model.named_modules():
            bias = getattr(module, "e_score_correction_bias", None)
            gate = getattr(module, "gate", None)
            if isinstance(bias, torch.Tensor) and gate is not None and _is_router(gate):
                self._blocks[name] = module
                self.counts[name] = torch.zeros(bias.numel(), dtype=torch.long)
                self._handles.append(gate.register_forward_hook(self._hook(name)))

    @property
    def is_moe(self) -> bool:
        return bool(self._blocks)

    def _hook(self, name: str):
        def record(module: nn.Module, inputs, output) -> None:
            if not module.training or not self._counting:
                return
            top_k_index = output[2]  # (router_logits, weights, top_k_index): [tokens, k]
            size = self.counts[name].numel()
            if self._weights is None:
                self.counts[name] += torch.bincount(top_k_index.reshape(-1).cpu(), minlength=size)
                return
            # a tree row that is one chain runs only its real tokens: the first ones of the weights
            weights = self._weights[: top_k_index.shape[0]].to(top_k_index.device, torch.float64)
            per_slot = weights.repeat_interleave(top_k_index.shape[1])
            counted = torch.bincount(top_k_index.reshape(-1), weights=per_slot, minlength=size)
            self.counts[name] += counted.round().long().cpu()

        return record

    @contextlib.contextmanager
    def counting(self, enabled: bool = True, weights: torch.Tensor | None = None) -> Iterator[None]:
        """Count (or, False, ignore) the selections of the forwards inside; `weights` [tokens]: how
        many times each token the router sees counts (its flattened input's order)."""
        previous = self._counting, self._weights
        self._counting, self._weights = enabled, None if weights is None else weights.reshape(-1)
        try:
            yield
        finally:
            self._counting, self._weights = previous

    def all_reduce_counts(self) -> None:
        """Sum every layer's counts over the ranks of the default process group (a collective)."""
        import torch.distributed as dist

        for name, block in self._blocks.items():
            total = self.counts[name].to(block.e_score_correction_bias.device)  # NCCL reduces GPU tensors only
            dist.all_reduce(total)
            self.counts[name] = total.cpu()

    def loads(self) -> dict[str, torch.Tensor]:
        """Per layer: the fraction of routed selections each expert received (sums to 1)."""
        return {n: c.float() / c.sum().clamp(min=1) for n, c in self.counts.items()}

    def metrics(self) -> dict[str, float]:
        """Imbalance summary: max load / mean load (1.0 = perfectly balanced), worst layer and mean."""
        ratios = [float(load.max() * load.numel()) for load in self.loads().values() if load.sum() > 0]
        if not ratios:
            return {}
        return {"moe/max_over_mean_load": max(ratios), "moe/mean_max_over_mean_load": sum(ratios) / len(ratios)}

    @torch.no_grad()
    def update_bias(self, step_size: float) -> None:
        """Apply the sign rule to every layer's selection bias, then reset the counts."""
        for name, block in self._blocks.items():
            counts = self.counts[name]
            if counts.sum() == 0:
                continue
            load = counts.float() / counts.sum()
            delta = step_size * torch.sign(load.mean() - load)
            block.e_score_correction_bias += delta.to(block.e_score_correction_bias)
            counts.zero_()

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
