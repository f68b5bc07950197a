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

Sharded training (train/sharded.py): each rank counts its own share of the batch; the counts are
summed over ranks (`all_reduce_counts`) before the update, so every rank applies the same bias
change and the replicated bias buffers never diverge. The zero-weight micro-batches a rank runs to
keep FSDP's collectives in step are not counted (`counting(False)`). Loads count the tokens the
forwards compute, so they depend on how the batch is cut, in one process too: a prefix-tree
micro-batch computes (and counts) a shared prefix once. Ranks keep each prompt's samples together,
but a prefix that different prompts share (the system prompt, the tool list) is computed once per
rank holding any of them, where one process computes it once; the sign rule usually absorbs that,
but the sharded bias is not guaranteed to equal the one-process bias (seen: a 2-step LoRA run of
the tiny MoE, 3 of 16 bias entries one or two steps of `moe_bias_step` apart).
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
            top_k_index = output[2]  # (router_logits, weights, top_k_index)
            self.counts[name] += torch.bincount(top_k_index.reshape(-1).cpu(), minlength=self.counts[name].numel())

        return record

    @contextlib.contextmanager
    def counting(self, enabled: bool) -> Iterator[None]:
        """Count (or, False, ignore) the selections of the forwards inside."""
        previous, self._counting = self._counting, enabled
        try:
            yield
        finally:
            self._counting = previous

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
