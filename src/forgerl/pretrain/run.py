"""`forgerl pretrain`: next-token pre-training of a policy on the project's corpus (corpus.py).

The objective is the plain causal-LM loss on packed rows (targets = the row shifted by one; rows
attend across the documents they hold and every position but the first is a target, separator and
the first token of a document included, as in GPT-2-style packing) plus the MoE router's
load-balancing loss as transformers' `minimax_m2` computes it (`aux_loss`, weighed by the config's
`router_aux_loss_coef`); after each step the selection bias moves by the sign rule the RL trainer
uses (model/moe.py). The optimiser is SFT's (train/schedule.py), with gradients clipped at 1.0.

A run directory holds `pretrain.json` (the settings), `corpus.json` (the Python and standard-library
fingerprint the code documents came from), `loss.jsonl` (per step: tokens, loss, loss per source,
aux loss, lr, tokens/s, seconds since this session started; at checkpoints also `reading`, the
teacher-forced answer accuracy on synthetic tasks no document uses, reading.py) and `checkpoints/step_N/`, written by the RL trainer's atomic,
checksummed `write_checkpoint` (weights, optimizer, torch RNG, and in state.json the step and the
corpus position). The newest checkpoint is a Hugging Face model directory, so `--model DIR` and
`forgerl sft --init DIR` load it, and `--resume` continues the run exactly where it stopped.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from forgerl.errors import ConfigError
from forgerl.model.checkpoints import CheckpointError, checkpoint_dir, step_dirs
from forgerl.model.loading import load_policy
from forgerl.model.moe import ExpertLoadTracker
from forgerl.pretrain.config import PretrainConfig
from forgerl.pretrain.corpus import Corpus, CorpusState
from forgerl.pretrain.reading import answer_accuracy, check_tasks
from forgerl.pretrain.sources import CodeSource, make_source
from forgerl.pretrain.synthetic import ReadingTask
from forgerl.train.checkpoint import load_checkpoint, write_checkpoint
from forgerl.train.schedule import adamw_warmup_cosine

log = logging.getLogger(__name__)

CONFIG_FILE = "pretrain.json"
CURVE_FILE = "loss.jsonl"


def token_losses(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy per target position: logits [B, L, V], ids [B, L] -> [B, L-1]
    (position t predicts token t+1)."""
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten(),
                                             reduction="none").view(ids.shape[0], -1)


def per_source(losses: torch.Tensor, names: list[list[str]]) -> dict[str, float]:
    """Mean loss of the targets each source contributed (a target's source is its token's)."""
    flat = losses.detach().flatten().tolist()
    sums: dict[str, list[float]] = {}
    for value, name in zip(flat, (n for row in names for n in row[1:]), strict=True):
        sums.setdefault(name, []).append(value)
    return {name: sum(v) / len(v) for name, v in sorted(sums.items())}


@dataclass
class Pretraining:
    """Everything one run's loop touches."""

    config: PretrainConfig
    out: Path
    model: torch.nn.Module
    tokenizer: Any
    corpus: Corpus
    optim: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    tracker: ExpertLoadTracker
    step: int = 0


def run_pretrain(config: PretrainConfig, out: str | Path, *, resume: bool = False, stop_at: int | None = None,
                 echo: Callable[[str], None] = print) -> Path:
    """Pre-train `config.steps` steps into `out` (or continue a run there with `resume`); returns
    the newest checkpoint's directory (a loadable model). `stop_at` ends this session after that
    step with a checkpoint (the schedule stays the whole run's), so a long build can be done in
    parts: run again with `resume`."""
    run = _open(config, Path(out), resume)
    run.model.train()
    t0, aux_coef = time.perf_counter(), float(getattr(run.model.config, "router_aux_loss_coef", 0.0))
    end = config.steps if stop_at is None else min(stop_at, config.steps)
    checks = check_tasks(config.reading_check)
    with _curve(run.out / CURVE_FILE, run.step) as curve:
        for _ in range(run.step, end):
            t_step = time.perf_counter()
            record = _train_step(run, aux_coef)
            record.update(tokens_per_s=config.tokens_per_step / (time.perf_counter() - t_step),
                          seconds=time.perf_counter() - t0)
            checkpoint = run.step % config.checkpoint_every == 0 or run.step == end
            if checkpoint and checks:
                record["reading"] = _reading(run, checks)
            curve.write(json.dumps(record) + "\n")
            curve.flush()
            if run.step % 10 == 0 or run.step in (1, config.steps):
                sources = "  ".join(f"{k} {v:.3f}" for k, v in record["per_source"].items())
                echo(f"step {run.step:5d}  loss {record['loss']:.4f}  ({sources})  {record['tokens_per_s']:.0f} tok/s")
            if "reading" in record:
                echo("    reading (answer tokens right / without the context): " + "  ".join(
                    f"{k} {v['tokens']:.3f}/{v['control']:.3f}" for k, v in record["reading"].items()))
            if checkpoint:
                _save(run)
    run.model.eval()
    return checkpoint_dir(run.out, run.step)


def _train_step(run: Pretraining, aux_coef: float) -> dict[str, Any]:
    """One optimizer step on the next batch: the mean next-token loss + aux_coef x the router's
    load-balancing loss, clipped, AdamW, schedule, selection-bias update; the step's curve record."""
    rows, names = run.corpus.batch(run.config.batch_size, run.config.seq_len)
    ids = torch.tensor(rows)
    out = run.model(input_ids=ids, output_router_logits=True)
    losses = token_losses(out.logits, ids)  # [B, L-1]
    loss = losses.mean()
    aux = out.aux_loss if isinstance(out.aux_loss, torch.Tensor) else torch.zeros(())
    run.optim.zero_grad(set_to_none=True)
    (loss + aux_coef * aux).backward()
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), 1.0)
    run.optim.step()
    run.sched.step()
    if run.config.moe_bias_step > 0 and run.tracker.is_moe:
        run.tracker.update_bias(run.config.moe_bias_step)
    run.step += 1
    return {"step": run.step, "tokens": run.step * run.config.tokens_per_step, "loss": float(loss.detach()),
            "per_source": per_source(losses, names), "aux": float(aux.detach()), "lr": run.sched.get_last_lr()[0]}


def _reading(run: Pretraining, tasks: list[ReadingTask]) -> dict[str, dict[str, float]]:
    """The reading check (pretrain/reading.py) in eval mode: no gradient, no expert-load counting."""
    run.model.eval()
    try:
        return answer_accuracy(run.model, run.tokenizer, tasks)
    finally:
        run.model.train()


def _open(config: PretrainConfig, out: Path, resume: bool) -> Pretraining:
    """The run's model, corpus and optimiser: fresh, or at the newest checkpoint that loads."""
    saved = out / CONFIG_FILE
    if resume:
        if not saved.is_file():
            raise ConfigError(f"--resume: {out} holds no pre-training run (no {CONFIG_FILE})",
                              hint="drop --resume to start a run there")
        before = json.loads(saved.read_text())
        if before != config.model_dump(mode="json"):
            changed = sorted(k for k in before.keys() | config.model_dump().keys()
                             if before.get(k) != config.model_dump(mode="json").get(k))
            raise ConfigError(f"--resume: the run in {out} was started with other settings ({', '.join(changed)})",
                              hint=f"pass the same options as when it started (see {saved}), or use a new --out")
    elif saved.exists() or step_dirs(out):
        raise ConfigError(f"{out} already holds a pre-training run", hint="pass --resume to continue it, or choose another --out")
    model, tokenizer = load_policy(config.init, device="cpu", chat_format=config.chat_format, seed=config.seed)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and config.seq_len > limit:
        raise ConfigError(f"--seq-len {config.seq_len} is longer than the model's context ({limit} positions)",
                          hint=f"use --seq-len {limit} or less")
    if tokenizer.eos_token_id is None:
        raise ConfigError(f"the tokenizer of {config.init} has no EOS token to separate documents with",
                          hint="use a model directory whose tokenizer defines eos_token")
    sources = [make_source(name, tokenizer, config.seed) for name in config.mix]
    corpus = Corpus(sources, config.mix, tokenizer.eos_token_id)
    optim, sched = adamw_warmup_cosine(model.parameters(), lr=config.lr, warmup=config.warmup, total=config.steps)
    run = Pretraining(config, out, model, tokenizer, corpus, optim, sched, ExpertLoadTracker(model))
    if resume:
        _restore(run)
    else:
        out.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(config.model_dump(mode="json"), indent=2))
        _describe(run, sources)
    return run


def _describe(run: Pretraining, sources: list[Any]) -> None:
    """`corpus.json`: what the code documents were read from, so two machines can compare."""
    code = next((s for s in sources if isinstance(s, CodeSource)), None)
    info = {"python": sys.version.split()[0], "separator": run.corpus.separator,
            "code": None if code is None else {"stdlib": code.root, "chunks": len(code.chunks),
                                               "fingerprint": code.fingerprint()}}
    (run.out / "corpus.json").write_text(json.dumps(info, indent=2))


def _save(run: Pretraining) -> None:
    state = {"step": run.step, "version": run.step, "corpus": run.corpus.state.to_json(),
             "tokens": run.step * run.config.tokens_per_step}
    write_checkpoint(checkpoint_dir(run.out, run.step), run.model, run.optim, state, tokenizer=run.tokenizer)
    for _, old in step_dirs(run.out)[:-run.config.keep_checkpoints]:
        shutil.rmtree(old)


def _restore(run: Pretraining) -> None:
    """Load the newest checkpoint that verifies (falling back past damaged ones, with a warning)."""
    for _, directory in reversed(step_dirs(run.out)):
        try:
            state = load_checkpoint(directory, run.model, run.optim)
        except CheckpointError as exc:
            log.warning("%s; trying the previous checkpoint", exc)
            continue
        run.step = state["step"]
        run.corpus.state = CorpusState.from_json(state["corpus"])
        with warnings.catch_warnings():  # "scheduler stepped before the optimizer": intended here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(run.step):  # the schedule is a function of the step: replay it
                run.sched.step()
        return
    raise ConfigError(f"--resume: {run.out} has no checkpoint that loads",
                      hint="start again without --resume in a new --out")


def _curve(path: Path, start: int) -> TextIO:
    """The loss curve opened for appending, without the records after `start` (a resumed run
    redoes the steps after its checkpoint)."""
    if path.exists():
        kept = [line for line in path.read_text().splitlines(keepends=True) if json.loads(line)["step"] <= start]
        path.write_text("".join(kept))
    return path.open("a")
