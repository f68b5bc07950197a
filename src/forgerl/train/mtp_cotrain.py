"""Co-training the MTP heads in RL (issue 23): the drafts follow the moving policy.

In the RL step's own forward, the main model's last hidden states (detached) feed the MTP heads
(model/mtp.py) and each depth k learns, at position i, the policy's next-token distribution at
position i+k (which predicts token i+k+1), through a top-K KL (`topk_kl`). Only the positions
whose predicted token is a trainable (loss-mask) token are co-trained: those are the tokens the
engine generates, so the ones it drafts.

Why the main model cannot move because of it: the hidden states, the shared embedding and the
shared LM head are all read detached, so the KL's gradient reaches the heads' own parameters
only; `optimize` clips and reports the main model's gradient norm without them; the heads' MoE
routers (if any) are not counted by the load tracker.

Cost: the main model runs over a prefix tree whose shared prompts count once; the heads instead
run over per-sample rows, but only over *crops*: each trainable span with the K * (window - 1)
positions before it that the windowed attention of K stacked depths can reach (so the crop's
results are exactly the whole row's), merged when they overlap. `max_positions` caps the
co-trained tokens of a micro-batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from forgerl.errors import ConfigError
from forgerl.model.logprobs import head_logits
from forgerl.model.lora import causal_lm, is_peft
from forgerl.model.mtp import MTPHeads, dependency_reach, get_mtp, mtp_logprobs, topk_kl
from forgerl.train.config import MTPConfig

log = logging.getLogger(__name__)
_told: set[int] = set()  # the policies already told (once per run, not every step) why co-training is off

ADD_HEADS_HINT = "add heads to the policy with `forgerl mtp add` (docs/mtp.md), or set [mtp] cotrain = false"


def cotrain_heads(policy: nn.Module, config: MTPConfig, *, sharded: bool = False) -> MTPHeads | None:
    """The heads to co-train, or None. `cotrain = None` means: when the policy has heads and can
    train them (not LoRA, not sharded); `true` where that is impossible is a ConfigError."""
    heads = get_mtp(policy)
    if config.cotrain is False:
        return None
    reason = None
    if heads is None:
        reason = f"the policy has no MTP heads: {ADD_HEADS_HINT}"
    elif is_peft(policy) or not all(p.requires_grad for p in heads.parameters()):
        reason = "the policy is trained with LoRA, which freezes the MTP heads: set [mtp] cotrain = false or train without LoRA"
    elif sharded:
        reason = ("sharded training (--nproc-per-node > 1) does not co-train MTP heads yet: set [mtp] cotrain = "
                  "false (the heads then keep their weights) or train in one process")
    if reason is None:
        return heads
    if config.cotrain:
        raise ConfigError(f"[mtp] cotrain = true, but {reason}")
    if heads is not None and id(policy) not in _told:  # on by default, but impossible here: say so once
        _told.add(id(policy))
        log.warning("MTP co-training is off: %s", reason)
    return None


@dataclass
class DraftKL:
    """One micro-batch's co-training loss (weighted, differentiable in the heads only) and its
    detached per-depth mean KLs (None where a depth had no position)."""

    loss: torch.Tensor
    per_depth: list[float | None]
    positions: int


@dataclass
class CropPlan:
    """Per-sample crops of rows: sample [S], start [S] (first sample position of the crop), length
    [S]; and per depth k the co-trained pairs (crop row, crop column of i, sample, position i+k)."""

    sample: list[int]
    start: list[int]
    length: list[int]
    pairs: list[list[tuple[int, int, int, int]]]

    @property
    def positions(self) -> int:
        return len(self.pairs[0]) if self.pairs else 0


def _spans(mask: torch.Tensor) -> list[tuple[int, int, int]]:
    """Runs (row, a, b) of set entries [a, b) of a [B, W] mask, row by row (vectorised: rows of
    long agent chains have tens of thousands of positions)."""
    edges = torch.diff((mask > 0).to(torch.int8).cpu(), dim=1, prepend=torch.zeros(mask.shape[0], 1, dtype=torch.int8),
                       append=torch.zeros(mask.shape[0], 1, dtype=torch.int8))
    starts, ends = (edges == 1).nonzero().tolist(), (edges == -1).nonzero().tolist()
    return [(b, a, e) for (b, a), (_, e) in zip(starts, ends)]


def plan_crops(loss_mask: torch.Tensor, depths: int, window: int, max_positions: int) -> CropPlan:
    """Which rows the heads run over, for trainable tokens t (loss_mask[b, t] = 1) at every depth
    k with i = t - k - 1 >= 0. A span [a, b) of trainable tokens needs positions a - K - 1 .. b - 1
    plus K * (window - 1) before them (depth k at j reads depth k - 1 over j - window + 1 .. j).
    Over `max_positions` tokens, whole spans evenly spread over the micro-batch are kept
    (`_spread`): each crop costs its reach again, so fewer, longer crops are cheaper."""
    spans = _spread(_spans(loss_mask), max_positions)
    reach = dependency_reach(depths, window)
    crops: list[list[int]] = []  # [sample, start, end, ...]
    targets: list[list[int]] = []
    for b, a, e in spans:
        lo = max(0, a - reach)
        if crops and crops[-1][0] == b and lo <= crops[-1][2]:
            crops[-1][2] = e
            targets[-1].extend(range(a, e))
        else:
            crops.append([b, lo, e])
            targets.append(list(range(a, e)))
    pairs: list[list[tuple[int, int, int, int]]] = [[] for _ in range(depths)]
    for row, ((b, lo, _), ts) in enumerate(zip(crops, targets)):
        for t in ts:
            for k in range(1, depths + 1):
                if t - k - 1 >= 0:
                    pairs[k - 1].append((row, t - k - 1 - lo, b, t - 1))
    return CropPlan([c[0] for c in crops], [c[1] for c in crops], [c[2] - c[1] for c in crops], pairs)


def _spread(spans: list[tuple[int, int, int]], budget: int) -> list[tuple[int, int, int]]:
    """Spans (sample, start, end) holding at most `budget` tokens: all of them when they fit, else
    every n-th one (n so that their mean length fills the budget), the last cut to fit."""
    total = sum(e - a for _, a, e in spans)
    if total <= budget:
        return spans
    keep = max(1, min(len(spans), -(-budget * len(spans) // total)))
    chosen, left = [], budget
    for j in range(keep):
        b, a, e = spans[(2 * j + 1) * len(spans) // (2 * keep)]
        if left <= 0:
            break
        chosen.append((b, a, min(e, a + left)))
        left -= chosen[-1][2] - a
    return chosen


class _Detached(nn.Module):
    """A shared module (embedding, LM head) read with its weights detached: the KL's gradient
    must stop at the heads' inputs, never reach the main model's parameters."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.weight = module.weight.detach()
        bias = getattr(module, "bias", None)
        self.bias = None if bias is None else bias.detach()
        self._embedding = isinstance(module, nn.Embedding)
        self._module = [module]  # not a submodule: its parameters are not this module's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._embedding:
            return self._module[0](x).detach()
        return torch.nn.functional.linear(x, self.weight, self.bias)


def draft_kl(policy: nn.Module, heads: MTPHeads, hidden: torch.Tensor, index: torch.Tensor, input_ids: torch.Tensor,
             loss_mask: torch.Tensor, config: MTPConfig, fp32_head: bool = True) -> DraftKL:
    """The co-training loss of one micro-batch. hidden [N, H]: the main model's last hidden states
    (flattened; detached here); index [B, W]: where sample b's position t is in `hidden`;
    input_ids [B, W]: the samples' tokens; loss_mask [B, W]: the trainable tokens.
    loss = weight * mean over depths of the mean over positions of topk_kl(policy, draft)."""
    plan = plan_crops(loss_mask, len(heads.depths), heads.window, config.max_positions)
    lm = causal_lm(policy)
    head, embed = _Detached(lm.get_output_embeddings()), _Detached(lm.get_input_embeddings())
    hidden = hidden.detach()
    if plan.positions == 0:  # nothing to co-train here: no gradient for the heads from this micro-batch
        return DraftKL(torch.zeros((), device=hidden.device), [None] * len(heads.depths), 0)
    device = hidden.device
    width = max(plan.length)
    cols = torch.arange(width, device=device)
    sample = torch.tensor(plan.sample, device=device)
    positions = torch.tensor(plan.start, device=device)[:, None] + cols[None, :]
    valid = cols[None, :] < torch.tensor(plan.length, device=device)[:, None]
    positions = torch.where(valid, positions, torch.zeros_like(positions))
    rows_index = index[sample[:, None], positions]  # [S, C] into hidden
    outputs = heads(hidden[rows_index], torch.where(valid, input_ids[sample[:, None], positions], 0), embed,
                    positions=positions, valid=valid)
    losses, per_depth = [], []
    for k, pairs in enumerate(plan.pairs, start=1):
        if not pairs:
            per_depth.append(None)
            continue
        crop_row, crop_col, b, predicting = (torch.tensor(v, device=device) for v in zip(*pairs))
        with torch.no_grad():
            target = torch.log_softmax(head_logits(head, hidden[index[b, predicting]], fp32_head), dim=-1)
        draft = mtp_logprobs(head, outputs[k - 1][crop_row, crop_col], fp32_head)
        kl = topk_kl(target, draft, config.top_k).mean()
        losses.append(kl)
        per_depth.append(float(kl.detach()))
    return DraftKL(config.weight * torch.stack(losses).mean(), per_depth, plan.positions)


class DraftMetrics:
    """The step's `mtp/*` metrics from its micro-batches' KLs, each weighted by the micro-batch's
    share of the batch's trainable tokens (as the RL loss is)."""

    def __init__(self, depths: int) -> None:
        self.sums = [0.0] * depths
        self.weights = [0.0] * depths
        self.positions = 0
        self.seconds = 0.0

    def add(self, kl: DraftKL, share: float, seconds: float) -> None:
        self.positions += kl.positions
        self.seconds += seconds
        for k, value in enumerate(kl.per_depth):
            if value is not None:
                self.sums[k] += share * value
                self.weights[k] += share

    def metrics(self, grad_norm: float) -> dict[str, float]:
        depth = {k + 1: s / w for k, (s, w) in enumerate(zip(self.sums, self.weights)) if w > 0}
        out = {f"mtp/draft_kl_depth{k}": v for k, v in depth.items()}
        if depth:
            out["mtp/draft_kl"] = sum(depth.values()) / len(depth)
        out.update({"mtp/positions": float(self.positions), "mtp/grad_norm": grad_norm, "mtp/forward_s": self.seconds})
        return out


def micro_batch_rows(mb: object, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hidden [N, H], index [B, W], input_ids [B, W], loss_mask [B, W]) of a micro-batch in the
    per-sample row layout: a tree's packed row through `row_packed`, padded rows as they are."""
    row_packed = getattr(mb, "row_packed", None)
    if row_packed is not None:  # TreeMicroBatch: hidden [L, H] of the packed row
        return hidden, row_packed, mb.input_ids[0][row_packed], mb.loss_mask  # type: ignore[attr-defined]
    rows, length = mb.input_ids.shape  # type: ignore[attr-defined]
    index = torch.arange(rows * length, device=hidden.device).reshape(rows, length)
    return hidden.reshape(rows * length, -1), index, mb.input_ids, mb.loss_mask  # type: ignore[attr-defined]


def _spec_counters(engine: object) -> dict[str, list[int]] | None:
    """The built-in engine's cumulative speculative-decoding counters (`stats["spec"]`: proposed
    and accepted drafts per depth, row forwards, tokens), or None for an engine without them."""
    stats = getattr(engine, "stats", None)
    spec = stats.get("spec") if isinstance(stats, dict) else None
    if not isinstance(spec, dict):
        return None
    try:
        return {"proposed": [int(v) for v in spec["proposed"]], "accepted": [int(v) for v in spec["accepted"]],
                "totals": [int(spec["row_forwards"]), int(spec["tokens"])]}
    except (KeyError, TypeError, ValueError):
        return None


class SpecMeter:
    """Per-step `mtp/accept_depth{k}` (accepted / proposed drafts at depth k) and
    `mtp/tokens_per_forward` from the engine's cumulative counters: each `step` reports what
    happened since the previous one (evaluation rollouts in between included). Engines without
    the counters (vLLM, remote, the built-in one without heads) give no metrics."""

    def __init__(self, engine: object) -> None:
        self.last = _spec_counters(engine)

    def step(self, engine: object) -> dict[str, float]:
        now = _spec_counters(engine)
        before, self.last = self.last, now
        if now is None:
            return {}
        if before is None or any(n < b for key in now for n, b in zip(now[key], before.get(key, []))):
            before = {key: [0] * len(values) for key, values in now.items()}  # new or reset counters
        delta = {key: [n - (before[key][i] if i < len(before[key]) else 0) for i, n in enumerate(values)]
                 for key, values in now.items()}
        out = {f"mtp/accept_depth{k}": accepted / proposed
               for k, (proposed, accepted) in enumerate(zip(delta["proposed"], delta["accepted"]), start=1) if proposed > 0}
        forwards, tokens = delta["totals"]
        if forwards > 0:
            out["mtp/tokens_per_forward"] = tokens / forwards
        return out
