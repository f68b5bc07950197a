"""A training run's state on disk and in memory: run directory, store, policy, engine, optimizer,
checkpoints and metric sinks.

Checkpoints (train/checkpoint.py) are written to a temporary directory with a sha256 per file and
renamed into place before the store records them, so a recorded checkpoint is always complete;
resuming verifies and loads the latest one that is good (weights incl. buffers such as the MoE
selection bias, optimizer state, step, policy version, RNG), falling back to the previous one with a
warning. Resume is exact: the run directory given is the run (a copy resumes itself), and what the
run recorded after the checkpoint it resumes from (trajectories, metrics, TensorBoard events, later
checkpoints) is superseded, so each step is seen once; rollout seeds derive from (seed, step), so the
steps redone after a crash sample the same tasks.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from forgerl.chat import get_format
from forgerl.chat.base import ChatFormat
from forgerl.errors import ConfigError
from forgerl.model.loading import load_policy, resolve_device, resolve_dtype
from forgerl.model.lora import add_lora, inference_weights
from forgerl.model.moe import ExpertLoadTracker
from forgerl.store import TrajectoryStore
from forgerl.train.checkpoint import (
    checkpoint_dir,
    remove_best_pointer,
    restore_latest,
    restore_latest_sharded,
    write_best_pointer,
    write_checkpoint,
    write_sharded_checkpoint,
)
from forgerl.train.config import TrainConfig, dump_config, public_config
from forgerl.train.interrupt import StopControl
from forgerl.train.loggers import open_loggers
from forgerl.train.mtp_cotrain import cotrain_heads
from forgerl.train.sharded import (
    Sharding,
    close_sharding,
    full_weights,
    init_sharding,
    load_training_state,
    save_training_state,
    shard_policy,
)

log = logging.getLogger(__name__)
EVAL_METRIC = "eval/reward"


@dataclass
class Run:
    config: TrainConfig
    run_dir: Path
    store: TrajectoryStore
    run_id: str
    policy: torch.nn.Module
    tokenizer: Any
    fmt: ChatFormat
    engine: Any
    optimizer: torch.optim.Optimizer
    tracker: ExpertLoadTracker
    step: int = 0
    version: int = 0
    sinks: list[Any] = field(default_factory=list)
    compute_dtype: torch.dtype = torch.float32
    """What the trainer's forward runs in (under autocast) and the engine's weights are stored in; the
    trainer's own weights and optimizer state stay FP32 (master weights) whatever this is."""
    control: StopControl = field(default_factory=StopControl)
    """Signals ask the loop to finish or abandon the step (train/interrupt.py)."""
    checkpointed_step: int | None = None
    """The step of the checkpoint the weights in memory were last saved at (or restored from)."""
    best_eval: float | None = None
    """The best held-out reward of a checkpointed step so far (step 0, the starting model, is not one)."""
    sharding: Sharding | None = None
    """Sharded training (train/sharded.py): this is rank 0, the others follow its commands
    (train/follower.py); None for one process."""

    def push_weights(self) -> None:
        """New weights to the engine with the next policy version (in process: a state-dict copy;
        LoRA adapters merged in)."""
        self.version += 1
        self.engine.update_weights(engine_weights(self), self.version)

    def is_new_best(self, eval_reward: float) -> bool:
        """Whether a held-out reward at this (trained) step beats every checkpointed one: the loops
        then checkpoint the step, so the best policy is always on disk (`RUN:best`)."""
        return self.step > 0 and math.isfinite(eval_reward) and (self.best_eval is None or eval_reward > self.best_eval)

    def log(self, metrics: dict[str, float]) -> None:
        self.store.log_metrics(self.run_id, self.step, metrics)
        for sink in self.sinks:
            sink(self.step, metrics)


def engine_weights(run: Run) -> dict[str, Any]:
    """The full weights as the engine names them (sharded: gathered from every rank)."""
    sharding = getattr(run, "sharding", None)  # bare runs (tests) have none
    if sharding is None:
        return inference_weights(run.policy)
    with sharding.lock:
        sharding.send("export")
        return full_weights(run.policy)


def open_run(config: TrainConfig, *, resume: bool = False, keep_unconsumed: bool = False) -> Run:
    """Open a new run in `config.run_dir`, or (resume) continue the one there from its latest good
    checkpoint, superseding what it recorded after that checkpoint. `keep_unconsumed`: leave the
    collected-but-untrained trajectories live (the async loop's ledger offers them again)."""

    run_dir = Path(config.run_dir)
    # sharded: join the other ranks first; they read config.toml before they join, so it is not
    # rewritten under them
    sharding = init_sharding(resolve_device(config.device), config.distributed.timeout_s)
    if resume:
        if not (run_dir / "store.sqlite").is_file():
            raise ConfigError(f"cannot resume: {run_dir} holds no run (no store.sqlite)")
    elif (run_dir / "store.sqlite").exists():
        raise ConfigError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(dump_config(config))
    policy, tokenizer, engine_model, compute_dtype = build_policy(config, sharding, engine_copy=True)
    cotrain_heads(policy, config.mtp, sharded=sharding is not None)  # a bad [mtp] fails here, before the engine starts
    fmt = get_format(config.chat_format)
    stop = (tokenizer.convert_tokens_to_ids(fmt.end_of_message),)
    slots = max(8, config.groups_per_step * config.group_size)
    # each engine kind opens its own engine (train/config.py: builtin, vllm, remote)
    engine = config.engine.open(engine_model, tokenizer, config=config, run_dir=run_dir, stop_token_ids=stop, slots=slots)
    optimizer = build_optimizer(config, policy)
    store = TrajectoryStore(run_dir)
    runs = store.runs()
    run_id = runs[-1].id if (resume and runs) else store.add_run(public_config(config))
    run = Run(config, run_dir, store, run_id, policy, tokenizer, fmt, engine, optimizer, ExpertLoadTracker(policy))
    run.compute_dtype = compute_dtype
    run.sharding = sharding
    purge_from: int | None = None
    try:
        if resume:
            purge_from = run.step + 1 if _load_latest_checkpoint(run) else 0
            store.supersede_from(run_id, purge_from, unconsumed=not keep_unconsumed)
            store.set_run_status(run_id, "running")
            update_best_checkpoint(run)
        run.sinks.extend(open_sinks(config, run_dir, run_id, purge_step=purge_from))
    except BaseException:
        close_run(run)
        raise
    return run


def build_policy(config: TrainConfig, sharding: Sharding | None, *, engine_copy: bool
                 ) -> tuple[torch.nn.Module, Any, torch.nn.Module | None, torch.dtype]:
    """The trainer's policy (FP32 master weights, LoRA, sharded when there are several ranks), its
    tokenizer, the engine's copy in the compute dtype (when asked: rank 0) and that dtype. Every
    rank runs the same steps in the same order (seed, load, LoRA), so their RNGs agree too."""
    torch.manual_seed(config.seed)
    device = str(sharding.device) if sharding is not None else resolve_device(config.device)
    compute_dtype = resolve_dtype(config.dtype, device)
    # FP32 master weights for the trainer (AdamW updates smaller than a bf16 weight's rounding step
    # would vanish in bf16 weights); the engine serves a copy in the compute dtype.
    policy, tokenizer = load_policy(config.model, device=device, dtype="float32", chat_format=config.chat_format,
                                    seed=config.seed)
    engine_model = copy.deepcopy(policy).to(compute_dtype).eval() if engine_copy else None
    if config.lora.rank > 0:
        policy = add_lora(policy, config.lora.rank, config.lora.alpha, config.lora.targets)  # before sharding
    if sharding is not None:
        shard_policy(policy, sharding, compute_dtype, config.fp32_lm_head)
    policy.train()
    return policy, tokenizer, engine_model, compute_dtype


def build_optimizer(config: TrainConfig, policy: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=config.optim.lr,
                             betas=config.optim.betas, eps=config.optim.adam_eps, weight_decay=config.optim.weight_decay)


def save_checkpoint(run: Run) -> Path:
    """Write the run's checkpoint for its current step (atomically, with checksums; a loadable
    model directory with config and tokenizer), record it, and name the best one."""
    state = {"step": run.step, "version": run.version, "time": time.time()}
    sharding = getattr(run, "sharding", None)  # bare runs (tests) have none
    if sharding is None:
        final = write_checkpoint(checkpoint_dir(run.run_dir, run.step), run.policy, run.optimizer, state,
                                 tokenizer=getattr(run, "tokenizer", None))  # bare runs (tests) have none
    else:
        def training_state(directory: Path) -> None:
            sharding.send("save", str(directory))
            save_training_state(directory, run.policy, run.optimizer)

        with sharding.lock:  # the step in flight (if any) finishes first
            final = write_sharded_checkpoint(checkpoint_dir(run.run_dir, run.step), lambda: engine_weights(run),
                                             run.policy, training_state, state, tokenizer=run.tokenizer)
    run.store.add_checkpoint(run.run_id, run.step, final, policy_version=run.version)
    run.checkpointed_step = run.step
    update_best_checkpoint(run)
    return final


def save_checkpoint_if_new(run: Run) -> bool:
    """Checkpoint the current step unless it already is (a stop after a step that was saved)."""
    if run.checkpointed_step == run.step or run.step == 0:
        return False
    save_checkpoint(run)
    return True


def update_best_checkpoint(run: Run) -> None:
    """Point `checkpoints/best.json` at the live checkpoint with the best held-out reward (ties:
    the earlier step), from the store, so a resume that superseded the old best moves it too."""
    evals = {step: value for step, name, value in run.store.metrics(run.run_id, EVAL_METRIC)
             if step > 0 and math.isfinite(value)}
    scored = [(evals[c.step], -c.step) for c in run.store.checkpoints(run.run_id) if c.step in evals]
    if not scored:
        run.best_eval = None
        remove_best_pointer(run.run_dir)
        return
    reward, negative_step = max(scored)
    run.best_eval = reward
    write_best_pointer(run.run_dir, -negative_step, reward)


def finish_run(run: Run, status: str) -> None:
    """Record how the run ended (completed / failed / interrupted); never masks the error that
    ended it (a store that cannot be written is logged)."""
    try:
        run.store.set_run_status(run.run_id, status)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 — the run's own outcome matters more
        log.warning("could not record run status %r: %s", status, exc)
    if getattr(run, "sharding", None) is not None and status != "failed":  # after a failure a follower may sit in a collective:
        with run.sharding.lock:  # torchrun stops it when rank 0 exits
            run.sharding.send("stop")
    for sink in run.sinks:  # trackers: final reward, report artifacts, their run's status
        finish = getattr(sink, "finish", None)
        if finish is not None:
            try:
                finish(run, status)
            except Exception as exc:  # noqa: BLE001 — as above
                log.warning("a metric sink failed to finish: %s", exc)


def _load_latest_checkpoint(run: Run) -> bool:
    """Load the run's latest good checkpoint into it (falling back past damaged ones, with a
    warning) and push its weights to the engine; False when the run has no checkpoint yet."""
    records = run.store.checkpoints(run.run_id)
    sharding = getattr(run, "sharding", None)  # bare runs (tests) have none
    if sharding is None:
        restored = restore_latest(run.run_dir, records, run.policy, run.optimizer)
    else:
        def training_state(directory: Path) -> None:
            sharding.send("load", str(directory))
            load_training_state(directory, run.policy, run.optimizer)

        restored = restore_latest_sharded(run.run_dir, records, training_state)
    if restored is None:
        return False
    _, state = restored
    run.step, run.version = state["step"], state["version"]
    run.checkpointed_step = run.step
    run.engine.update_weights(engine_weights(run), run.version)
    return True


def close_run(run: Run) -> None:
    close_sharding(getattr(run, "sharding", None))
    run.engine.close()
    run.tracker.close()
    for sink in run.sinks:
        close = getattr(sink, "close", None)
        if close is not None:
            close()
    run.store.close()


class _TensorBoardSink:
    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: on resume, TensorBoard hides the events of the steps being redone (those at
        # or after it, from the files of earlier lives of the run), so each step shows once
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def __call__(self, step: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_sinks(config: TrainConfig, run_dir: Path, run_id: str, *, purge_step: int | None = None) -> list[Any]:
    """The metric sinks `[logging] backends` names: TensorBoard (when installed), W&B, MLflow
    (train/loggers.py; imported only when configured). Each gets every step's metrics dict."""
    sinks: list[Any] = []
    if "tensorboard" in config.logging.backends:
        sinks.append(_tensorboard_sink(run_dir, purge_step=purge_step))
    if any(b != "tensorboard" for b in config.logging.backends):
        try:
            sinks.extend(open_loggers(config, run_dir, run_id))
        except BaseException:
            for sink in sinks:
                getattr(sink, "close", lambda: None)()
            raise
    return sinks


def _tensorboard_sink(run_dir: Path, purge_step: int | None = None) -> Any:
    """TensorBoard event files when the optional `tensorboard` package is installed; else nothing."""
    try:
        return _TensorBoardSink(run_dir / "tensorboard", purge_step)
    except ImportError:
        return lambda step, metrics: None
