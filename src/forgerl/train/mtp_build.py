"""Training MTP heads on a frozen policy (`forgerl mtp add`): M2's recipe after expansion — the
main model fixed, only the MTP modules learn — so an existing policy gains drafts for speculative
decoding without changing a single one of its own weights.

Why it is cheap: with the main model frozen its last hidden states never change, so each
conversation's are computed once (`heads_rows`) and every step runs only the heads. Each row is
cropped to what the heads can see of the trainable tokens: a module's attention reaches `window`
positions back, so depth K at position i depends on positions back to i - K*window and nothing
earlier; the crop starts that far before the first target, with the true positions kept for RoPE,
so the cropped loss equals the full-row one.

The acceptance proxy (`heads_agreement`) is what a greedy draft's acceptance would be if every
earlier draft had been right: how often depth k's argmax for token i+k+1 equals the main model's
own argmax for it, teacher-forced on held-out conversations.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from forgerl.chat import get_format
from forgerl.chat.base import ChatFormat
from forgerl.errors import ConfigError
from forgerl.model.loading import default_policy_dir, load_policy, resolve_model_dir
from forgerl.model.lora import causal_lm, decoder_and_head
from forgerl.model.mtp import (
    DEFAULT_WINDOW,
    MTP_FILENAME,
    MTPHeads,
    MTPShape,
    attach_mtp,
    dependency_reach,
    expand_mtp,
    get_mtp,
    mtp_cross_entropy,
    remove_mtp,
    save_mtp,
    without_mtp,
)
from forgerl.rollout.tasks import HELD_OUT_SEED_BASE, make_task
from forgerl.train.checkpoint import normal_file_mode
from forgerl.train.sft import Conversation, encode_within, save_policy, verified_conversations


@dataclass
class HeadsRow:
    """One conversation as the heads see it: tokens from `start` on, their trainable mask, and the
    frozen main model's last hidden states there ([L, H], no gradient)."""

    ids: torch.Tensor
    mask: torch.Tensor
    start: int
    hidden: torch.Tensor


@torch.no_grad()
def heads_rows(model: torch.nn.Module, encoded: Sequence[tuple[list[int], list[int]]], reach: int,
               device: str | torch.device = "cpu") -> list[HeadsRow]:
    """Run the frozen main model once per conversation and keep what the heads need: from `reach`
    (dependency_reach) positions before the first trainable token on. Conversations with nothing
    to train are left out."""
    decoder, _ = decoder_and_head(model)
    rows = []
    for ids, mask in encoded:
        if not any(mask):
            continue
        first = next(i for i, m in enumerate(mask) if m)
        start = max(0, first - reach)
        hidden = decoder(input_ids=torch.tensor([ids], device=device)).last_hidden_state[0]
        rows.append(HeadsRow(torch.tensor(ids[start:], device=device), torch.tensor(mask[start:], device=device).bool(),
                             start, hidden[start:].detach()))
    return rows


def pad_rows(rows: Sequence[HeadsRow]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, trainable mask, valid, positions, hidden) as right-padded batch tensors."""
    width = max(len(r.ids) for r in rows)
    size, device = rows[0].hidden.shape[-1], rows[0].ids.device
    ids = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    mask = torch.zeros(len(rows), width, dtype=torch.bool, device=device)
    valid = torch.zeros(len(rows), width, dtype=torch.bool, device=device)
    hidden = torch.zeros(len(rows), width, size, dtype=rows[0].hidden.dtype, device=device)
    positions = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    for b, row in enumerate(rows):
        n = len(row.ids)
        ids[b, :n], mask[b, :n], valid[b, :n], hidden[b, :n] = row.ids, row.mask, True, row.hidden
        positions[b] = row.start + torch.arange(width, device=device)
    return ids, mask, valid, positions, hidden


def segment(row: HeadsRow, chunk: int, reach: int, rng: random.Random) -> HeadsRow:
    """A random piece of `row` with at most `chunk` target positions and the `reach`
    (dependency_reach) before them that those targets' heads read; targets in the lead-in are
    masked, so each one counted is computed exactly as in the whole row. Short rows are returned
    whole."""
    if len(row.ids) <= chunk + reach:
        return row
    begin = rng.randrange(0, len(row.ids) - chunk - reach + 1)
    end = begin + reach + chunk
    mask = row.mask[begin:end].clone()
    if begin > 0:
        mask[:reach] = False
    return HeadsRow(row.ids[begin:end], mask, row.start + begin, row.hidden[begin:end])


def heads_loss(model: torch.nn.Module, rows: Sequence[HeadsRow]) -> tuple[torch.Tensor, list[float]]:
    """Mean MTP cross-entropy of the batch (mtp_cross_entropy) and its per-depth values."""
    heads = _heads(model)
    decoder, head = decoder_and_head(model)
    ids, mask, valid, positions, hidden = pad_rows(rows)
    outputs = heads(hidden, ids, decoder.embed_tokens, positions=positions, valid=valid)
    return mtp_cross_entropy(head, outputs, ids, mask)


def train_heads(model: torch.nn.Module, rows: Sequence[HeadsRow], *, steps: int, batch_size: int = 8,
                lr: float = 1e-3, warmup: int = 20, seed: int = 0, chunk: int = 256,
                log: Callable[[int, list[float]], None] | None = None) -> list[list[float]]:
    """AdamW on the MTP parameters only (cosine decay after a linear warm-up); the main model's
    parameters are frozen for the duration and come back exactly as they were. Each step trains
    on a random `chunk` of targets per sampled conversation (`segment`: the cost of a step stays
    flat whatever the conversations' lengths). Returns the per-depth losses of every step."""
    heads = _heads(model)
    reach = heads.reach
    frozen = [p for name, p in model.named_parameters() if p.requires_grad and ".mtp." not in f".{name}"]
    for p in frozen:
        p.requires_grad_(False)
    params = [p for p in heads.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, steps)))))
    rng = random.Random(seed)
    history: list[list[float]] = []
    heads.train()
    try:
        for step in range(steps):
            batch = [segment(row, chunk, reach, rng) for row in rng.sample(list(rows), min(batch_size, len(rows)))]
            loss, per_depth = heads_loss(model, batch)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optim.step()
            sched.step()
            history.append(per_depth)
            if log is not None:
                log(step, per_depth)
    finally:
        heads.eval()
        for p in frozen:
            p.requires_grad_(True)
    return history


@torch.no_grad()
def heads_agreement(model: torch.nn.Module, rows: Sequence[HeadsRow], batch_size: int = 8) -> list[float]:
    """Per depth k: the fraction of trainable positions t (t = i+k+1) where depth k's argmax at i
    equals the main model's argmax for token t (its logits at t-1)."""
    heads = _heads(model)
    decoder, head = decoder_and_head(model)
    hits = [0] * len(heads.depths)
    counts = [0] * len(heads.depths)
    for begin in range(0, len(rows), batch_size):
        ids, mask, valid, positions, hidden = pad_rows(rows[begin:begin + batch_size])
        outputs = heads(hidden, ids, decoder.embed_tokens, positions=positions, valid=valid)
        main = head(hidden).argmax(-1)  # [B, L]: position j's argmax predicts token j+1
        for k, out in enumerate(outputs, start=1):
            shift = k + 1
            if ids.shape[1] <= shift:
                continue
            draft = head(out[:, :-shift]).argmax(-1)  # predicts token i+k+1
            target = main[:, k:-1]  # the main model's prediction of token i+k+1, made at i+k
            counted = mask[:, shift:] & valid[:, shift:]
            hits[k - 1] += int(((draft == target) & counted).sum())
            counts[k - 1] += int(counted.sum())
    return [h / max(1, c) for h, c in zip(hits, counts)]


def _heads(model: torch.nn.Module) -> MTPHeads:
    heads = get_mtp(model)
    if heads is None:
        raise ValueError("the model has no MTP heads: attach them first (model.mtp.attach_mtp)")
    return heads


@dataclass(frozen=True)
class MTPBuild:
    """What `forgerl mtp add` does: the heads' shape and its two training phases (M2: one module
    first, then expanded by copying and trained again), on `examples` verified conversations of
    `family`; `heldout` conversations from seeds training never draws measure agreement."""

    modules: int = 1
    expand_to: int = 3
    layers: int = 1
    window: int = DEFAULT_WINDOW
    steps: int = 300
    expand_steps: int = 450
    batch_size: int = 8
    chunk: int = 256
    lr: float = 2e-3
    family: str = "tool-reasoning"
    examples: int = 240
    heldout: int = 48
    difficulty: tuple[int, ...] = (1, 2, 3, 4)
    varied: bool = True
    seed: int = 0
    max_length: int = 3072
    log_every: int = 25

    def validate(self) -> MTPBuild:
        if self.modules < 1 or self.expand_to < self.modules:
            raise ConfigError(f"--modules {self.modules} / --expand-to {self.expand_to}: need 1 <= modules <= expand-to")
        if self.steps < 0 or self.expand_steps < 0 or self.examples < 1 or self.heldout < 1 or self.window < 1:
            raise ConfigError("--steps/--expand-steps must be >= 0, --examples/--heldout/--window >= 1")
        return self


def conversations_for(build: MTPBuild, seeds: range) -> list[Conversation]:
    """The verified scripted-solver conversations `forgerl sft` trains on, for these seeds."""
    levels = list(build.difficulty)
    convs, _ = asyncio.run(verified_conversations(
        build.family, seeds, make_task=lambda s: make_task(build.family, s, levels[s % len(levels)])[1],
        error_every=5, varied=build.varied))
    return convs


def add_mtp_heads(model: torch.nn.Module, tokenizer: Any, fmt: ChatFormat, build: MTPBuild,
                  echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Attach `build.modules` fresh heads to `model`, train them (main model frozen), expand to
    `build.expand_to` by copying, train again, and measure held-out agreement. Returns the record
    forgerl.json keeps (losses, agreement, sizes, seconds)."""
    t0 = time.perf_counter()
    train_convs = conversations_for(build, range(build.seed, build.seed + build.examples))
    held_convs = conversations_for(build, range(HELD_OUT_SEED_BASE + build.seed,
                                                HELD_OUT_SEED_BASE + build.seed + build.heldout))
    if get_mtp(model) is not None:
        echo("the model already has MTP heads: replacing them with fresh ones")
        remove_mtp(model)
    attach_mtp(model, MTPShape(build.modules, build.layers, build.window), seed=build.seed)
    reach = dependency_reach(build.expand_to, build.window)  # the expanded heads' reach: rows serve both stages
    rows = heads_rows(model, encode_within(tokenizer, fmt, train_convs, build.max_length), reach)
    held = heads_rows(model, encode_within(tokenizer, fmt, held_convs, build.max_length), reach)
    echo(f"MTP data: {len(rows)} training and {len(held)} held-out conversations "
         f"({time.perf_counter() - t0:.0f} s)")

    def progress(phase: str, total: int) -> Callable[[int, list[float]], None]:
        def log(step: int, losses: list[float]) -> None:
            if step % build.log_every == 0 or step == total - 1:
                per_depth = "  ".join(f"d{k}={v:.4f}" for k, v in enumerate(losses, start=1))
                echo(f"mtp {phase} step {step:4d}  {per_depth}  ({time.perf_counter() - t0:.0f} s)")
        return log

    first = train_heads(model, rows, steps=build.steps, batch_size=build.batch_size, lr=build.lr, seed=build.seed,
                        chunk=build.chunk, log=progress(f"K={build.modules}", build.steps))
    second: list[list[float]] = []
    if build.expand_to > build.modules:
        expand_mtp(model, build.expand_to)
        second = train_heads(model, rows, steps=build.expand_steps, batch_size=build.batch_size, lr=build.lr,
                             seed=build.seed + 1, chunk=build.chunk, log=progress(f"K={build.expand_to}", build.expand_steps))
    agreement = heads_agreement(model, held)
    echo("held-out top-1 agreement with the main model: "
         + "  ".join(f"depth {k}: {a:.3f}" for k, a in enumerate(agreement, start=1)))
    history = second or first
    return {"made_by": "forgerl mtp add", **{k: v for k, v in asdict(build).items() if k != "log_every"},
            "difficulty": list(build.difficulty), "training_conversations": len(rows), "heldout_conversations": len(held),
            "first_losses": first[0] if first else None, "final_losses": _tail_mean(history),
            "agreement": agreement, "seconds": time.perf_counter() - t0}


def run_mtp_add(model_name: str, out: Path, *, threads: int = 0, command: str | None = None,
                echo: Callable[[str], None] = print, **options: Any) -> Path:
    """`forgerl mtp add`: load `model_name`, add and train the heads (`add_mtp_heads` with an
    MTPBuild of `options`), save to `out` (`save_with_heads`); returns `out`."""
    build = MTPBuild(**options).validate()
    if threads > 0:
        torch.set_num_threads(threads)
    source = None if model_name == "tiny-random" else (
        default_policy_dir() if model_name == "default" else Path(resolve_model_dir(model_name)))
    model, tokenizer = load_policy(model_name, device="cpu", dtype="float32", seed=build.seed)
    before = _main_digest(model)
    record = add_mtp_heads(model, tokenizer, get_format("minimax_m2"), build, echo=echo)
    if _main_digest(model) != before:  # the contract of this command: a bug if it ever fires
        raise RuntimeError("training the MTP heads changed the main model's weights")
    record["command"] = command or (f"forgerl mtp add --model {model_name} --out {out} --steps {build.steps} "
                                    f"--expand-steps {build.expand_steps} --examples {build.examples}")
    return save_with_heads(model, tokenizer, source, Path(out), record)


def _main_digest(model: torch.nn.Module) -> str:
    """sha256 over the main model's tensors (names sorted), MTP heads left out."""
    digest = hashlib.sha256()
    for name, tensor in sorted(without_mtp(causal_lm(model).state_dict()).items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


_NOT_COPIED = {"config.json", "forgerl.json", MTP_FILENAME, "checksums.json", "state.json", "optimizer.pt", "rng.pt",
               "lora_policy.safetensors"}
"""Files of the source directory written anew (config, records, the heads) or trainer state."""


def save_with_heads(model: torch.nn.Module, tokenizer: Any, source: Path | None, out: Path,
                    record: dict[str, Any]) -> Path:
    """`out` as a policy directory with the heads: the source's main-model files copied byte for
    byte (never re-serialised, so model.safetensors stays identical; `out` may be `source` itself),
    its config.json plus the MTP fields, mtp.safetensors, and its forgerl.json plus an `mtp` record.
    Without a source (tiny-random) the model is saved as `forgerl sft` saves one."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if source is None:
        save_policy(model, tokenizer, out, {"made_by": "forgerl mtp add", "init": "tiny-random"})
        source = out
    elif source.resolve() != out.resolve():
        for path in sorted(source.iterdir()):
            if path.is_file() and path.name not in _NOT_COPIED:
                shutil.copy2(path, out / path.name)
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    lm_config = causal_lm(model).config
    for key in ("num_mtp_modules", "mtp_transformer_layers", "mtp_window"):
        config[key] = getattr(lm_config, key)
    records_path = source / "forgerl.json"
    records = json.loads(records_path.read_text(encoding="utf-8")) if records_path.is_file() else {}
    records["mtp"] = {**record, "created_at": time.time()}
    # heads first, then the config that declares them: a reader of the directory meanwhile (it may
    # be the shipped default) sees the old policy or the new one, never a half-written file
    staging = out / f".mtp-staging-{os.getpid()}"
    staging.mkdir(exist_ok=True)
    try:
        save_mtp(model, staging)
        (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (staging / "forgerl.json").write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
        for name in (MTP_FILENAME, "config.json", "forgerl.json"):
            normal_file_mode(staging / name)
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _tail_mean(history: list[list[float]], tail: int = 20) -> list[float] | None:
    """Per-depth mean of the last `tail` steps (one step's loss is noisy)."""
    last = [h for h in history[-tail:] if h]
    if not last:
        return None
    return [sum(h[k] for h in last) / len(last) for k in range(len(last[-1]))]


__all__ = ["HeadsRow", "MTPBuild", "add_mtp_heads", "heads_agreement", "heads_loss", "heads_rows", "pad_rows",
           "run_mtp_add", "save_with_heads", "train_heads"]
