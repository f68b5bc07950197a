"""One RL step: advantages -> training samples -> one optimizer step over micro-batches.

Samples come from the recorded token ids of every LLM call (M2: one sample per (state, action)).
For token-level losses (CISPO, DAPO) the calls of a trajectory that extend each other are merged
into one chain (`chain_samples`): the same loss terms, computed once per shared prefix. By default
(`batch_mode = "tree"`) all samples of the batch are then merged into one prefix tree
(`forgerl.batching`), so the prompt a group shares is computed once too; `chain` and `call` modes
train padded rows of chains or of single calls (the references).
Groups whose rollouts all scored the same carry no learning signal under group-normalised
advantages and are dropped (DAPO's dynamic sampling); infrastructure failures are dropped before
normalisation, so they never become fake zero rewards (DESIGN contract 4). The loss is normalised
by the trainable tokens of the whole batch, so accumulating micro-batches gives the full-batch
gradient.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from forgerl.model.logprobs import (
    MicroBatch,
    collate,
    mixed_precision,
    pack_micro_batches,
    token_logprobs_and_hidden,
)
from forgerl.model.mtp import get_mtp
from forgerl.rl import get_loss
from forgerl.rl.advantages import group_normalized
from forgerl.rl.traits import loss_traits
from forgerl.train.config import TrainConfig
from forgerl.train.mtp_cotrain import DraftMetrics, cotrain_heads, draft_kl, micro_batch_rows
from forgerl.train.sharded import Sharding, agree, gather, gather_head, max_over_ranks, share
from forgerl.types import TrainingSample, Trajectory, TrajectoryStatus, chain_samples

if TYPE_CHECKING:
    from forgerl.train.run import Run


def build_samples(groups: list[list[Trajectory]], config: TrainConfig) -> list[TrainingSample]:
    """Samples of the groups with a learning signal: chains for token-level losses (except in
    `call` mode), single calls for sequence-level losses (a chain would change their sequences)."""
    merge = loss_traits(config.loss.name).token_level and config.batch_mode != "call"
    samples: list[TrainingSample] = []
    for group in groups:
        valid = [t for t in group if t.status != TrajectoryStatus.FAILED and t.reward is not None]
        if len(valid) < 2 or len({t.reward for t in valid}) == 1:
            continue
        advantages = group_normalized(torch.tensor([float(t.reward) for t in valid], dtype=torch.float64))
        for traj, adv in zip(valid, advantages.tolist()):
            samples.extend(chain_samples(traj, [adv] * len(traj.calls), merge=merge))
    return samples


def _loss_kwargs(config: TrainConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if config.loss.eps_low is not None:
        kwargs["eps_low"] = config.loss.eps_low
    if config.loss.eps_high is not None:
        kwargs["eps_high"] = config.loss.eps_high
    if config.loss.trust_region_mask:
        kwargs["trust_region_mask"] = True
    return kwargs


def optimize(run: Run, samples: list[TrainingSample]) -> dict[str, float]:
    """Gradient over all samples (micro-batched), clip, AdamW step, MoE bias update; metrics.
    Sharded (`run.sharding`, train/sharded.py): rank 0 hands the batch to the followers, each rank
    trains its token-balanced share with the loss normalised over the whole batch, and the metrics
    are the whole batch's."""
    sharding = getattr(run, "sharding", None)  # None: one process (bare runs of benchmarks and tests too)
    if sharding is None:
        return _optimize(run, samples, None)
    with sharding.lock:
        if sharding.is_leader:
            sharding.send("optimize", samples)
        return _optimize(run, samples, sharding)


def _optimize(run: Run, samples: list[TrainingSample], sharding: Sharding | None) -> dict[str, float]:
    cfg, policy = run.config, run.policy
    if not samples:
        return {"train/samples": 0.0}
    start = time.perf_counter()
    loss_fn = get_loss(cfg.loss.name)
    total_tokens = sum(s.num_tokens for s in samples)  # the whole batch's, on every rank
    device = next(policy.parameters()).device
    policy.train()
    run.optimizer.zero_grad(set_to_none=True)
    batch_metrics: dict[str, float] = {}
    pad_id = run.tokenizer.pad_token_id or 0
    mine = samples if sharding is None else share(samples, sharding)
    plan = _micro_batches(mine, cfg, device, pad_id, batch_metrics)
    real_count = len(plan)
    count = real_count if sharding is None else max_over_ranks(real_count, sharding)
    if real_count < count:  # zero-weight micro-batches: FSDP's collectives must match on every rank
        filler = plan[0] if plan else _micro_batches(samples[:1], cfg, device, pad_id, {})[0]
        plan = plan + [filler] * (count - len(plan))
    part = _Partial()
    heads = cotrain_heads(policy, cfg.mtp, sharded=sharding is not None)  # MTP co-training (train/mtp_cotrain.py)
    drafts = DraftMetrics(len(heads.depths)) if heads is not None else None
    for index, make in enumerate(plan):
        real = index < real_count
        mb = make()
        if sharding is not None:
            gather_head(policy)
        with mixed_precision(device, run.compute_dtype), run.tracker.counting(real, _multiplicity(mb)):
            if isinstance(mb, MicroBatch):
                logp, entropy, hidden = token_logprobs_and_hidden(policy, mb, cfg.fp32_lm_head)
            else:
                from forgerl.batching.forward import (  # heavy: numpy, kept out of this module's import
                    tree_token_logprobs_and_hidden,
                )

                logp, entropy, hidden = tree_token_logprobs_and_hidden(policy, mb, cfg.fp32_lm_head)
        out = loss_fn(logp, mb.old_logprobs, mb.advantages, mb.loss_mask, num_tokens=total_tokens,
                      num_sequences=len(samples), entropy=entropy, **_loss_kwargs(cfg))
        if not real:
            (out.loss * 0.0).backward()
            continue
        loss = out.loss
        if heads is not None and drafts is not None:  # the heads' routers are not the main model's loads
            t0, weight = time.perf_counter(), mb.num_tokens / total_tokens
            with mixed_precision(device, run.compute_dtype), run.tracker.counting(False):
                kl = draft_kl(policy, heads, *micro_batch_rows(mb, hidden), cfg.mtp, cfg.fp32_lm_head)
            drafts.add(kl, weight, time.perf_counter() - t0)
            loss = loss + kl.loss * weight  # reaches the heads only: everything it reads is detached
        loss.backward()
        part.add(out, mb, logp, entropy, total_tokens)
    # the main model's norm and clipping never include the MTP heads: its update is the same with or without them
    attached = get_mtp(policy)
    mtp_ids = set() if attached is None else {id(p) for p in attached.parameters()}
    trainable = [p for p in policy.parameters() if p.requires_grad and id(p) not in mtp_ids]
    clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(trainable, clip)
    mtp_norm = None if heads is None else torch.nn.utils.clip_grad_norm_([p for p in heads.parameters()], clip)
    if hasattr(grad_norm, "full_tensor"):  # sharded: a DTensor holding the global norm
        grad_norm = grad_norm.full_tensor()
    control = getattr(run, "control", None)  # absent on the bare runs of benchmarks and tests
    abandoned: BaseException | None = None
    try:
        if control is not None:
            control.begin_update()  # an abandoned step stops here, before the weights change
    except BaseException as exc:  # noqa: BLE001 — re-raised below, once the other ranks know
        abandoned = exc
    if sharding is not None and not agree(abandoned is None, sharding):  # rank 0 decides for every rank
        if abandoned is None:
            return {"train/samples": 0.0}  # a follower: rank 0 abandoned the step, no shard may change
    if abandoned is not None:
        raise abandoned
    run.optimizer.step()
    if sharding is not None and run.tracker.is_moe:
        run.tracker.all_reduce_counts()  # every rank applies the same bias update: ranks never diverge
    moe = run.tracker.metrics()
    if cfg.moe_bias_step > 0 and run.tracker.is_moe:
        run.tracker.update_bias(cfg.moe_bias_step)
    if sharding is not None:
        part, batch_metrics = _Partial.merge(gather((part, batch_metrics)))
    metrics = part.metrics()
    metrics.update({
        "train/samples": float(len(samples)),
        "train/tokens": float(total_tokens),
        "train/grad_norm": float(grad_norm),
        "train/tokens_per_s": total_tokens / max(1e-9, time.perf_counter() - start),
        **batch_metrics,
        **moe,
    })
    if drafts is not None and mtp_norm is not None:
        metrics.update(drafts.metrics(float(mtp_norm)))
    return metrics


class _Partial:
    """The metrics' sums over one rank's micro-batches: a few numbers, so merging them across ranks
    costs nothing whatever the batch size (the probability correlation from its sums, Pearson's)."""

    def __init__(self) -> None:
        self.loss = 0.0
        self.weighted: dict[str, float] = {}
        self.sums = torch.zeros(8, dtype=torch.float64)  # n, Σentropy, Σ|Δlogp|, Σp, Σq, Σp², Σq², Σpq

    def add(self, out: Any, mb: Any, logp: torch.Tensor, entropy: torch.Tensor, total_tokens: int) -> None:
        self.loss += float(out.loss.detach())
        share = mb.num_tokens / total_tokens
        for name, value in out.metrics.items():
            if isinstance(value, (int, float)) and math.isfinite(value) and name not in ("tokens", "sequences", "loss"):
                self.weighted[name] = self.weighted.get(name, 0.0) + share * float(value)
        keep = mb.loss_mask.bool()
        new, old = logp.detach()[keep].double(), mb.old_logprobs[keep].double()
        p, q = new.exp(), old.exp()
        self.sums += torch.stack([torch.tensor(float(keep.sum()), dtype=torch.float64), entropy[keep].double().sum(),
                                  (new - old).abs().sum(), p.sum(), q.sum(), (p * p).sum(), (q * q).sum(),
                                  (p * q).sum()]).cpu()

    @staticmethod
    def merge(parts: list[tuple[_Partial, dict[str, float]]]) -> tuple[_Partial, dict[str, float]]:
        """Every rank's partial sums as one (metrics of the whole batch); batch stats add up."""
        total, stats = _Partial(), {}
        for part, batch in parts:
            total.loss += part.loss
            for name, value in part.weighted.items():
                total.weighted[name] = total.weighted.get(name, 0.0) + value
            total.sums += part.sums
            for name, value in batch.items():
                stats[name] = stats.get(name, 0.0) + value
        if "batch/tree_reduction" in stats and stats.get("batch/processed_tokens"):
            stats["batch/tree_reduction"] = stats["batch/sample_tokens"] / stats["batch/processed_tokens"]
        return total, stats

    def metrics(self) -> dict[str, float]:
        n, entropy, abs_diff = (float(x) for x in self.sums[:3])
        out = {f"loss/{k}": v for k, v in self.weighted.items()}
        out.update({"train/loss": self.loss, "train/entropy": entropy / max(n, 1.0),
                    "mismatch/mean_abs_logprob": abs_diff / max(n, 1.0), "mismatch/prob_corr": _corr(self.sums)})
        return out


def _multiplicity(mb: Any) -> torch.Tensor:
    """How many of the micro-batch's samples contain each position of its forward (flattened): a
    tree node once per sample under it, padding 0 (so the MoE loads are the unbatched ones)."""
    if isinstance(mb, MicroBatch):
        return mb.attention_mask.reshape(-1).long()
    lengths = torch.tensor([len(s.input_ids) for s in mb.samples], device=mb.row_packed.device)
    inside = torch.arange(mb.row_packed.shape[1], device=lengths.device)[None, :] < lengths[:, None]
    return torch.bincount(mb.row_packed[inside], minlength=mb.length)


def _micro_batches(samples: list[TrainingSample], cfg: TrainConfig, device: torch.device, pad_id: int,
                   metrics: dict[str, float]) -> list[Callable[[], Any]]:
    """Micro-batches of the configured batch mode, each made on the device when called; fills
    `metrics` with the tokens each mode runs."""
    if not samples:
        return []
    if cfg.batch_mode == "tree":
        from forgerl.batching import build_tree_batch  # heavy: numpy, kept out of this module's import

        batch = build_tree_batch(samples, cfg.optim.micro_batch_tokens, pad_to_multiple=128 if device.type == "cuda" else 1,
                                 pad_id=pad_id)
        metrics.update({"batch/sample_tokens": float(batch.stats.sample_tokens),
                        "batch/processed_tokens": float(batch.stats.packed_tokens),
                        "batch/tree_reduction": batch.stats.reduction,
                        "batch/micro_batches": float(batch.stats.micro_batches)})
        return [lambda mb=mb: mb.to(device) for mb in batch.micro_batches]
    chunks = pack_micro_batches(samples, cfg.optim.micro_batch_tokens)
    metrics.update({"batch/sample_tokens": float(sum(len(s.input_ids) for s in samples)),
                    "batch/processed_tokens": float(sum(len(c) * max(len(s.input_ids) for s in c) for c in chunks)),
                    "batch/micro_batches": float(len(chunks))})
    return [lambda chunk=chunk: collate(chunk, device, pad_id=pad_id) for chunk in chunks]


def _corr(sums: torch.Tensor) -> float:
    """Pearson correlation of trainer vs engine token probabilities from their sums (M1 reports
    0.987 -> 0.997 after moving the LM head to FP32); 1.0 when either side does not vary."""
    n, _, _, sp, sq, spp, sqq, spq = (float(x) for x in sums)
    if n < 2:
        return 1.0
    var_p, var_q = spp - sp * sp / n, sqq - sq * sq / n
    if var_p <= 1e-12 * spp or var_q <= 1e-12 * sqq:  # constant up to rounding
        return 1.0
    return (spq - sp * sq / n) / math.sqrt(var_p * var_q)
